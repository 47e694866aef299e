"""The TensorFlow-free MNIST download: tfds's DownloadManager against a real HTTP server on
127.0.0.1 that this test starts, serving small IDX files the test writes (no network)."""

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
    load_mnist_tfds,
    write_idx,
)

tfds = pytest.importorskip("tensorflow_datasets")


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
def server():
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


def test_registered_checksums_come_from_tfds():
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


def test_connection_refused_fails_fast(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = {n: FileInfo("x", 1, "0" * 64) for pair in data.IDX_FILES.values()
             for n in (pair[0] + ".gz", pair[1] + ".gz")}
    t = time.perf_counter()
    with pytest.raises(MnistUnavailableError, match=f"127.0.0.1:{port} did not answer"):
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
