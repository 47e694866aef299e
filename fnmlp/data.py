"""Datasets: MNIST (tensorflow-datasets or the IDX files), toy 2D sets, regression sets.

Shapes: ``N`` examples, ``D`` features, ``C`` classes or regression outputs.

Every loader returns numpy arrays on the host: inputs ``x: [N, D]`` float32, and targets
``y`` as int32 labels ``[N]`` (classification) or float32 ``[N, C]`` (regression).
Toy and regression sets are pure numpy and seeded: the same ``seed`` gives the same data.

MNIST comes two ways, both giving ``x: [N, 784]`` float32 in [0, 1] and ``y: [N]`` int32:

* :func:`load_mnist_tfds` reads it through ``tensorflow_datasets`` (``tfds.data_source``,
  which needs no TensorFlow once the dataset is prepared).
* :func:`load_mnist_idx` reads the four standard IDX files (gzipped or raw) from a folder.

Both cache the decoded arrays as ``.npz`` so a second run starts fast.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fnmlp import _validate as V


class Dataset(NamedTuple):
    """A split of a dataset, host numpy arrays."""

    x: np.ndarray  # [N, D] float32
    y: np.ndarray  # [N] int32 labels, or [N, C] float32 targets


# ----------------------------------------------------------------------------- helpers


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_n(n: Any, name: str = "n", minimum: int = 1) -> int:
    return V.check_positive_int(n, name, minimum)


def train_test_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Shuffles with ``seed`` and splits off ``test_fraction`` of the examples."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    n_test = int(round(len(x) * test_fraction))
    if n_test < 1 or n_test >= len(x):
        raise ValueError(
            f"test_fraction={test_fraction} of {len(x)} examples leaves an empty split")
    perm = _rng(seed).permutation(len(x))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr]), Dataset(x[te], y[te])


def random_batch(key, n: int, sizes, loss: str, dtype: Any = "float32"):
    """A random batch fitting ``sizes`` and ``loss`` (for gradient checks): ``x: [n, D]``
    standard normal; labels uniform in ``[0, C)``, 0/1 targets, or normal targets."""
    import jax

    from fnmlp.losses import get_loss

    kind = get_loss(loss).kind
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, sizes[0]), dtype)
    if kind == "multiclass":
        y = jax.random.randint(ky, (n,), 0, sizes[-1])
    elif kind == "binary":
        y = jax.random.bernoulli(ky, 0.5, (n, sizes[-1])).astype(dtype)
    else:
        y = jax.random.normal(ky, (n, sizes[-1]), dtype)
    return x, y


# ----------------------------------------------------------------------------- toy sets


def make_classification(
    n: int = 400, seed: int = 0, class_sep: float = 1.5, flip_y: float = 0.03
) -> Dataset:
    """The lesson's 2D two-class problem: two Gaussian clusters with some label noise.

    Like scikit-learn's ``make_classification(n_features=2, n_informative=2)``: each
    class is a correlated Gaussian centred ``class_sep`` from the origin; a fraction
    ``flip_y`` of the labels is then reassigned at random.
    """
    n = _check_n(n)
    rng = _rng(seed)
    y = rng.integers(0, 2, n)
    centres = np.array([[-1.0, -0.5], [1.0, 0.5]]) * class_sep
    cov = np.array([[1.0, 0.4], [0.4, 0.6]])
    x = centres[y] + rng.multivariate_normal(np.zeros(2), cov, n)
    flip = rng.random(n) < flip_y
    y = np.where(flip, rng.integers(0, 2, n), y)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_blobs(n: int = 600, k: int = 3, seed: int = 0, std: float = 0.6) -> Dataset:
    """``k`` isotropic Gaussian blobs in 2D, centres on a circle of radius 3."""
    n, k = _check_n(n), _check_n(k, "k", 2)
    rng = _rng(seed)
    y = rng.integers(0, k, n)
    angles = 2 * np.pi * np.arange(k) / k
    centres = 3 * np.stack([np.cos(angles), np.sin(angles)], 1)
    x = centres[y] + std * rng.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_moons(n: int = 600, seed: int = 0, noise: float = 0.1) -> Dataset:
    """Two interleaving half circles (as scikit-learn's ``make_moons``)."""
    n = _check_n(n, minimum=2)
    rng = _rng(seed)
    y = np.arange(n) % 2
    t = rng.random(n) * np.pi
    x = np.where(
        (y == 0)[:, None],
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    )
    x = x + noise * rng.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_circles(n: int = 600, seed: int = 0, noise: float = 0.05, factor: float = 0.5) -> Dataset:
    """A small circle (label 1) inside a large one (label 0)."""
    n = _check_n(n, minimum=2)
    rng = _rng(seed)
    y = np.arange(n) % 2
    t = rng.random(n) * 2 * np.pi
    r = np.where(y == 1, factor, 1.0)
    x = r[:, None] * np.stack([np.cos(t), np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_spirals(n: int = 600, arms: int = 2, seed: int = 0, noise: float = 0.1) -> Dataset:
    """``arms`` interleaved spirals, one class per arm (CS231n's spiral set)."""
    n, arms = _check_n(n), _check_n(arms, "arms", 2)
    rng = _rng(seed)
    y = np.arange(n) % arms
    r = rng.random(n)  # radius in [0, 1)
    theta = 4 * r + 2 * np.pi * y / arms + noise * rng.standard_normal(n)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], 1)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_xor(n: int = 400, seed: int = 0, std: float = 0.15) -> Dataset:
    """XOR: clusters at the four corners (+-1, +-1); label 1 where the signs differ."""
    n = _check_n(n)
    rng = _rng(seed)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    c = np.arange(n) % 4
    x = corners[c] + std * rng.standard_normal((n, 2))
    y = (corners[c, 0] != corners[c, 1]).astype(np.int32)
    return Dataset(x.astype(np.float32), y)


def make_linear(n: int = 400, seed: int = 0, margin: float = 0.2) -> Dataset:
    """A linearly separable 2D set: the label is the side of the line ``x0 + 2 x1 = 0.5``,
    with no point closer than ``margin`` to it."""
    n = _check_n(n)
    rng = _rng(seed)
    x = rng.uniform(-2, 2, (4 * n, 2))
    s = (x[:, 0] + 2 * x[:, 1] - 0.5) / np.sqrt(5)
    keep = np.abs(s) > margin
    x, s = x[keep][:n], s[keep][:n]
    return Dataset(x.astype(np.float32), (s > 0).astype(np.int32))


TOY_SETS = {
    "classification": make_classification,
    "blobs": make_blobs,
    "moons": make_moons,
    "circles": make_circles,
    "spirals": make_spirals,
    "xor": make_xor,
    "linear": make_linear,
}


# ----------------------------------------------------------------------------- regression


def make_sine(n: int = 400, seed: int = 0, noise: float = 0.1) -> Dataset:
    """Noisy ``y = sin(x)``, ``x`` uniform in [-pi, pi]: ``x: [N, 1]``, ``y: [N, 1]``."""
    n = _check_n(n)
    rng = _rng(seed)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return Dataset(x.astype(np.float32), y.astype(np.float32))


def make_surface(n: int = 800, seed: int = 0, noise: float = 0.05) -> Dataset:
    """A 2D function ``y = sin(x0) cos(x1)`` on [-2, 2]^2 plus noise: ``y: [N, 1]``."""
    n = _check_n(n)
    rng = _rng(seed)
    x = rng.uniform(-2, 2, (n, 2))
    y = (np.sin(x[:, 0]) * np.cos(x[:, 1]))[:, None] + noise * rng.standard_normal((n, 1))
    return Dataset(x.astype(np.float32), y.astype(np.float32))


def make_multi_output(n: int = 600, seed: int = 0, noise: float = 0.05) -> Dataset:
    """Three targets from two inputs: ``[sin(x0), cos(x1), x0 x1 / 2]``, ``y: [N, 3]``."""
    n = _check_n(n)
    rng = _rng(seed)
    x = rng.uniform(-2, 2, (n, 2))
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1]), x[:, 0] * x[:, 1] / 2], 1)
    y = y + noise * rng.standard_normal(y.shape)
    return Dataset(x.astype(np.float32), y.astype(np.float32))


REGRESSION_SETS = {"sine": make_sine, "surface": make_surface, "multi": make_multi_output}


# ----------------------------------------------------------------------------- MNIST: IDX

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


class MnistUnavailableError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable; the message says how to get it."""


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Reads one IDX file of uint8 data (gzipped or raw) and checks it.

    The format: a 4-byte big-endian magic number (``0x00000803`` for 3-D images,
    ``0x00000801`` for 1-D labels), ``ndim`` big-endian int32 sizes, then the uint8 data.
    A wrong magic number, a truncated file or trailing bytes raise ``ValueError``
    naming the file.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'IDX'}"
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
    raise MnistUnavailableError(
        f"{folder}: no MNIST file {stem} (or {stem}.gz); the folder must hold the four files"
        f" {', '.join(s for pair in IDX_FILES.values() for s in pair)} (gzipped or raw)")


def _cache_key(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_cache(path: Path) -> dict | None:
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
    """MNIST from the four standard IDX files in ``folder`` (gzipped or raw).

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
    if cache and (hit := _load_cache(cache_path)) is not None:
        return _to_dataset(hit["images"], hit["labels"], str(cache_path))
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds"
                         f" {len(labels)} labels")
    if cache:
        try:
            _atomic_savez(cache_path, images=images, labels=labels)
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
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(raw)


# ----------------------------------------------------------------------------- MNIST: tfds

TFDS_HOST = ("storage.googleapis.com", 443)


def _can_reach(host: tuple[str, int], timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def _how_to_get_mnist(data_dir: str) -> str:
    return (
        f"MNIST is not prepared under data_dir={data_dir!r} and cannot be downloaded here."
        " Either run once on a machine with internet (pip install 'fnmlp[mnist-build]';"
        " the first build needs TensorFlow) and copy the prepared folder there, or get the"
        " four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
        " t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) and pass their folder"
        " (--mnist-dir DIR, or fnmlp.load_mnist_idx(DIR))."
    )


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
                    download: bool = True, cache: bool = True) -> Dataset:
    """MNIST through tensorflow-datasets: ``Dataset(x [N, 784] float32 in [0, 1], y [N])``.

    Reading goes through ``tfds.data_source`` (random access, no TensorFlow needed once
    the dataset is prepared in the ``array_record`` format). A dataset that ``tfds.load``
    prepared earlier in the ``tfrecord`` format is read with ``tfds.load(...,
    batch_size=-1)``, which needs TensorFlow. The decoded arrays are cached under
    ``data_dir/fnmlp_cache``.

    When the dataset is not prepared and ``download`` is False, or the download host
    cannot be reached within 3 s, this fails at once with :class:`MnistUnavailableError`
    saying how to get the data (tfds itself would retry for minutes).

    Args:
      split: ``"train"`` or ``"test"`` (any tfds split string works).
      data_dir: tfds data folder; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      download: allow a download and first build (needs TensorFlow and internet).
      cache: keep the decoded arrays as ``.npz`` for a fast second load.
    """
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a tfds split name like 'train'; got {split!r}")
    tfds = _import_tfds()
    _quiet_absl()
    data_dir = str(data_dir or os.environ.get("TFDS_DATA_DIR")
                   or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
    safe = "".join(c if c.isalnum() else "_" for c in split)
    cache_path = Path(data_dir) / "fnmlp_cache" / f"mnist-{safe}.npz"
    if cache and (hit := _load_cache(cache_path)) is not None:
        return _to_dataset(hit["images"], hit["labels"], str(cache_path))
    try:  # prepared in the array_record format: random access, no TensorFlow
        source = tfds.data_source("mnist", split=split, data_dir=data_dir, download=False)
    except Exception:  # not prepared, or prepared in another format
        source = None
        if tfds.builder("mnist", data_dir=data_dir).is_prepared():
            # prepared by tfds.load in the tfrecord format: reading it needs TensorFlow
            arr = tfds.as_numpy(tfds.load("mnist", split=split, data_dir=data_dir,
                                          batch_size=-1, download=False))
            images, labels = np.asarray(arr["image"]), np.asarray(arr["label"])
        elif not download or not _can_reach(TFDS_HOST):
            raise MnistUnavailableError(_how_to_get_mnist(data_dir)) from None
        else:
            source = tfds.data_source("mnist", split=split, data_dir=data_dir, download=True)
    if source is not None:
        n = len(source)
        images = np.empty((n, 28, 28), np.uint8)
        labels = np.empty((n,), np.int64)
        for i in range(n):
            ex = source[i]  # {"image": [28, 28, 1] uint8, "label": int}
            images[i] = np.asarray(ex["image"]).reshape(28, 28)
            labels[i] = ex["label"]
    if cache and images.size:
        try:
            _atomic_savez(cache_path, images=images.reshape(-1, 28, 28), labels=labels)
        except OSError:
            pass
    return _to_dataset(images, labels, f"tfds mnist {split}")


def load_mnist(split: str = "train", mnist_dir: str | None = None,
               data_dir: str | None = None, download: bool = True) -> Dataset:
    """MNIST from the IDX files in ``mnist_dir`` when given, else through tfds."""
    if mnist_dir is not None:
        return load_mnist_idx(mnist_dir, split)
    return load_mnist_tfds(split, data_dir=data_dir, download=download)
