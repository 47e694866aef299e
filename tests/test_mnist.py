"""MNIST (fnmlp.data.mnist): the IDX loader on files the test writes, the real
tensorflow-datasets code under tfds.testing.mock_data, and the TensorFlow-free download:
tfds's DownloadManager against a real HTTP server on 127.0.0.1 that this test starts,
serving small IDX files the test writes (no network)."""

import gzip
import hashlib
import http.server
import os
import socket
import threading
import time

import numpy as np
import pytest

from fnmlp import data
from fnmlp.data import (
    FileInfo,
    MnistChecksumError,
    MnistUnavailableError,
    download_mnist,
    load_mnist_idx,
    load_mnist_tfds,
    read_idx,
    write_idx,
)


@pytest.fixture
def tfds():
    """tensorflow-datasets, or the test is skipped (the IDX loader needs none)."""
    return pytest.importorskip("tensorflow_datasets")


# ----------------------------------------------------------------------------- IDX files


def _write_mnist(folder, n_train=60, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, n).astype(np.uint8)
        img_name, lab_name = data.IDX_FILES[split]
        write_idx(os.path.join(folder, img_name + ext), img)
        write_idx(os.path.join(folder, lab_name + ext), lab)
        arrays[split] = (img, lab)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader_reads_what_was_written(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    for split in ("train", "test"):
        ds = load_mnist_idx(tmp_path, split)
        img, lab = arrays[split]
        assert ds.x.shape == (len(img), 784) and ds.x.dtype == np.float32
        np.testing.assert_array_equal(ds.x, img.reshape(-1, 784).astype(np.float32) / 255)
        np.testing.assert_array_equal(ds.y, lab.astype(np.int32))
        assert ds.x.min() >= 0 and ds.x.max() <= 1


@pytest.mark.parametrize("written, named", [(True, ""), (False, ".gz")],
                         ids=["gzip_named_raw", "raw_named_gz"])
def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path, written, named):
    """Issue 39 item 12: a gzipped IDX file saved without its .gz (a browser or a copy
    that dropped it) read as 'wrong IDX magic number 0x1f8b0800'; gzip is now told by the
    file's first two bytes, so it loads, and so does a raw file named .gz."""
    arrays = _write_mnist(tmp_path, gz=written)
    for stem in (s for pair in data.IDX_FILES.values() for s in pair):
        old = tmp_path / (stem + (".gz" if written else ""))
        assert (old.read_bytes()[:2] == b"\x1f\x8b") == written  # what is inside
        os.rename(old, tmp_path / (stem + named))
    for split in ("train", "test"):
        ds = load_mnist_idx(tmp_path, split, cache=False)
        img, lab = arrays[split]
        np.testing.assert_array_equal(ds.x, img.reshape(-1, 784).astype(np.float32) / 255)
        np.testing.assert_array_equal(ds.y, lab.astype(np.int32))
    np.testing.assert_array_equal(read_idx(tmp_path / ("t10k-labels-idx1-ubyte" + named), 1),
                                  arrays["test"][1])


def test_idx_cache_is_used_and_invalidated(tmp_path):
    _write_mnist(tmp_path)
    first = load_mnist_idx(tmp_path, "train")
    caches = list((tmp_path / ".fnmlp_cache").glob("mnist-train-*.npz"))
    assert len(caches) == 1
    again = load_mnist_idx(tmp_path, "train")
    np.testing.assert_array_equal(first.x, again.x)
    # new files (other size / mtime) -> a new cache key, new data
    _write_mnist(tmp_path, n_train=30, seed=1)
    changed = load_mnist_idx(tmp_path, "train")
    assert len(changed.x) == 30


def test_truncated_idx_file_is_named(tmp_path):
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated"):
        load_mnist_idx(tmp_path, "train", cache=False)


def test_truncated_gzip_is_named(tmp_path):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz"):
        load_mnist_idx(tmp_path, "test", cache=False)


def test_wrong_magic_is_named(tmp_path):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 0x03  # the images magic in a labels file
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: wrong IDX magic number "
                                         r"0x00000803; expected 0x00000801"):
        load_mnist_idx(tmp_path, "train", cache=False)


def test_missing_files_say_which(tmp_path):
    _write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(MnistUnavailableError, match="t10k-images-idx3-ubyte"):
        load_mnist_idx(tmp_path, "test")
    with pytest.raises(MnistUnavailableError, match="is not a folder"):
        load_mnist_idx(tmp_path / "nope", "test")


def test_read_idx_rejects_trailing_bytes(tmp_path):
    write_idx(tmp_path / "l", np.arange(5, dtype=np.uint8))
    with open(tmp_path / "l", "ab") as f:
        f.write(b"xx")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(tmp_path / "l", 1)


def test_write_idx_makes_its_folder_and_round_trips_gzipped_or_not(tmp_path):
    """A new user's find: scripts/README's snippet writing the 5,000 digits as IDX files
    failed with FileNotFoundError on a folder not yet made."""
    img = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    for name in ("new/deeper/train-images-idx3-ubyte", "gz/t10k-images-idx3-ubyte.gz"):
        write_idx(tmp_path / name, img)
        np.testing.assert_array_equal(read_idx(tmp_path / name, 3), img)


def test_tfds_loading_code_under_mock_data(tmp_path, tfds):
    with tfds.testing.mock_data(num_examples=24):
        train = load_mnist_tfds("train", data_dir=str(tmp_path))
        test = load_mnist_tfds("test", data_dir=str(tmp_path))
    for ds in (train, test):
        assert ds.x.shape == (24, 784) and ds.x.dtype == np.float32
        assert ds.y.shape == (24,) and ds.y.dtype == np.int32
        assert 0 <= ds.x.min() and ds.x.max() <= 1 and ds.x.max() > 0.5
        assert 0 <= ds.y.min() and ds.y.max() < 10
    # the decoded arrays were cached under data_dir: a second load (no mock) reads them
    assert (tmp_path / "fnmlp_cache" / "mnist-train.npz").exists()
    again = load_mnist_tfds("train", data_dir=str(tmp_path), download=False)
    np.testing.assert_array_equal(again.x, train.x)


def test_tfds_offline_without_data_fails_fast_with_help(tmp_path, tfds):
    t = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match=r"--mnist-dir DIR.*") as info:
        load_mnist_tfds("train", data_dir=str(tmp_path), download=False)
    assert time.perf_counter() - t < 5
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_a_folder_named_like_an_mnist_file_says_what_is_there(tmp_path):
    _write_mnist(tmp_path, n_train=8, n_test=4)
    name = "train-images-idx3-ubyte"
    inner = tmp_path / name
    os.rename(tmp_path / f"{name}.gz", tmp_path / "tmp.gz")
    inner.mkdir()
    os.rename(tmp_path / "tmp.gz", inner / name)
    with pytest.raises(MnistUnavailableError, match=rf"{name} is a folder \(holding"
                       rf" \['{name}'\]\); expected the file {name} itself"):
        load_mnist_idx(tmp_path, "train")


# ----------------------------------------------------------------------------- download


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # name -> bytes
    cut: set = set()  # names whose body is cut off halfway
    hits: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.rsplit("/", 1)[-1]
        self.hits.append(name)
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if name in self.cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tfds):
    """A real HTTP server on 127.0.0.1, started and stopped by the test."""
    handler = type("H", (_Handler,), {"files": {}, "cut": set(), "hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    httpd.shutdown()
    httpd.server_close()


def _serve_mnist(handler, tmp_path, n_train=50, n_test=20):
    """Writes small IDX files, serves them, returns (files info, arrays)."""
    rng = np.random.default_rng(0)
    files, arrays = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, n).astype(np.uint8)
        arrays[split] = (img, lab)
        for stem, arr in zip(data.IDX_FILES[split], (img, lab)):
            path = tmp_path / "src" / (stem + ".gz")
            path.parent.mkdir(exist_ok=True)
            write_idx(path, arr)
            body = path.read_bytes()
            handler.files[path.name] = body
            files[path.name] = FileInfo("https://unused.invalid/" + path.name, len(body),
                                        hashlib.sha256(body).hexdigest())
    return files, arrays


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp." in p.name]


def test_registered_checksums_come_from_tfds(tfds):
    files = data.registered_files()
    assert set(files) == {s + ".gz" for pair in data.IDX_FILES.values() for s in pair}
    assert files["train-images-idx3-ubyte.gz"].size == 9912422
    assert all(len(f.sha256) == 64 and f.url.startswith("https://") for f in files.values())


def test_good_download_decodes_caches_and_is_reused(server, tmp_path, monkeypatch):
    handler, url = server
    files, arrays = _serve_mnist(handler, tmp_path)
    dd = tmp_path / "tfds"
    img_path, lab_path = download_mnist("test", dd, base_url=url, files=files)
    assert gzip.decompress(img_path.read_bytes()) == gzip.decompress(
        handler.files["t10k-images-idx3-ubyte.gz"])
    assert handler.hits == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] or sorted(
        handler.hits) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    # a second call finds the verified files and does not download again
    handler.hits.clear()
    assert download_mnist("test", dd, base_url=url, files=files) == (img_path, lab_path)
    assert handler.hits == []
    # through the loader: $FNMLP_MNIST_URL points at the mirror; the registered files'
    # checksums are replaced by the test's through registered_files
    monkeypatch.setenv(data.MIRROR_ENV, url)
    monkeypatch.setattr(data.mnist, "registered_files", lambda: files)
    ds = load_mnist_tfds("train", data_dir=str(tmp_path / "fresh"))
    img, lab = arrays["train"]
    np.testing.assert_array_equal(ds.x, img.reshape(-1, 784).astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y, lab.astype(np.int32))
    assert (tmp_path / "fresh" / "fnmlp_cache" / "mnist-train.npz").exists()
    handler.files.clear()  # the server forgets everything: the cache answers
    again = load_mnist_tfds("train", data_dir=str(tmp_path / "fresh"), download=False)
    np.testing.assert_array_equal(again.x, ds.x)


def test_checksum_mismatch_names_file_and_both_checksums(server, tmp_path):
    handler, url = server
    files, _ = _serve_mnist(handler, tmp_path)
    good = files["t10k-labels-idx1-ubyte.gz"]
    tampered = bytearray(handler.files["t10k-labels-idx1-ubyte.gz"])
    tampered[-1] ^= 0xFF  # same size, other bytes
    handler.files["t10k-labels-idx1-ubyte.gz"] = bytes(tampered)
    dd = tmp_path / "tfds"
    with pytest.raises(MnistChecksumError) as info:
        download_mnist("test", dd, base_url=url, files=files)
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and good.sha256 in msg
    assert hashlib.sha256(bytes(tampered)).hexdigest() in msg
    assert "nothing was kept" in msg
    assert _leftovers(dd) == []
    assert not [p for p in (dd / "downloads").glob("*") if good.sha256 in p.name]
    # nothing cached: the loader does not find a decoded array either
    assert not (dd / "fnmlp_cache").exists()


def test_http_404_fails_fast(server, tmp_path):
    handler, url = server
    files, _ = _serve_mnist(handler, tmp_path)
    del handler.files["t10k-images-idx3-ubyte.gz"]
    t = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match="404"):
        download_mnist("test", tmp_path / "tfds", base_url=url, files=files)
    assert time.perf_counter() - t < 10


def test_connection_refused_fails_fast(tmp_path, tfds):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = {n: FileInfo("x", 1, "0" * 64) for pair in data.IDX_FILES.values()
             for n in (pair[0] + ".gz", pair[1] + ".gz")}
    t = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match=f"127.0.0.1:{port} could not be reached"):
        download_mnist("train", tmp_path, base_url=f"http://127.0.0.1:{port}/", files=files)
    assert time.perf_counter() - t < 5


def test_connection_closed_mid_file_keeps_nothing_and_retries(server, tmp_path):
    handler, url = server
    files, arrays = _serve_mnist(handler, tmp_path)
    handler.cut.add("t10k-images-idx3-ubyte.gz")
    dd = tmp_path / "tfds"
    t = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match="nothing partial was kept"):
        download_mnist("test", dd, base_url=url, files=files)
    assert time.perf_counter() - t < 30
    assert _leftovers(dd) == []
    sha = files["t10k-images-idx3-ubyte.gz"].sha256
    assert not [p for p in (dd / "downloads").glob("*") if sha in p.name]
    handler.cut.clear()  # the next run downloads again and gets the whole file
    handler.hits.clear()
    img_path, _ = download_mnist("test", dd, base_url=url, files=files)
    assert "t10k-images-idx3-ubyte.gz" in handler.hits
    assert gzip.decompress(img_path.read_bytes())[16:] == arrays["test"][0].tobytes()


def test_no_tensorflow_is_imported(server, tmp_path):
    """The download route must work where TensorFlow is not installed."""
    import subprocess
    import sys

    handler, url = server
    files, _ = _serve_mnist(handler, tmp_path)
    code = (
        "import sys, json; from fnmlp.data import download_mnist, FileInfo;"
        f"files = {{k: FileInfo(*v) for k, v in json.loads({_json(files)!r}).items()}};"
        f"download_mnist('test', {str(tmp_path / 'dd')!r}, base_url={url!r}, files=files);"
        "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def _json(files):
    import json

    return json.dumps({k: list(v) for k, v in files.items()})
