"""Data: seeded toy and regression sets, the IDX loader on files the test writes, and
the real tensorflow-datasets code under tfds.testing.mock_data (no network)."""

import gzip
import os
import time

import numpy as np
import pytest

from fnmlp import data
from fnmlp.data import MnistUnavailableError, load_mnist_idx, load_mnist_tfds, read_idx, write_idx


@pytest.mark.parametrize("name", sorted(data.TOY_SETS))
def test_toy_sets_are_seeded_and_well_formed(name):
    a, b = data.TOY_SETS[name](n=120, seed=3), data.TOY_SETS[name](n=120, seed=3)
    c = data.TOY_SETS[name](n=120, seed=4)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == (120, 2) and a.x.dtype == np.float32
    assert a.y.shape == (120,) and a.y.dtype == np.int32 and a.y.min() == 0
    assert np.isfinite(a.x).all()
    counts = np.bincount(a.y)
    if name == "imbalanced":  # 95:5 by design, exactly
        assert counts.tolist() == [114, 6]
        return
    assert counts.min() >= 120 / len(counts) / 3  # every class present in fair numbers


def test_xor_labels_follow_the_quadrant():
    ds = data.make_xor(400, seed=0)
    assert np.array_equal(ds.y, ((ds.x[:, 0] > 0) != (ds.x[:, 1] > 0)).astype(np.int32))


def test_linear_set_is_separable_with_margin():
    ds = data.make_linear(300, seed=0, margin=0.2)
    s = (ds.x[:, 0] + 2 * ds.x[:, 1] - 0.5) / np.sqrt(5)
    assert np.all((s > 0.2) == (ds.y == 1)) and np.all(np.abs(s) > 0.2 - 1e-6)


@pytest.mark.parametrize("name, width", [("sine", 1), ("surface", 1), ("multi", 3)])
def test_regression_sets(name, width):
    ds = data.REGRESSION_SETS[name](n=200, seed=0)
    assert ds.y.shape == (200, width) and ds.y.dtype == np.float32
    assert np.array_equal(ds.x, data.REGRESSION_SETS[name](n=200, seed=0).x)
    if name == "sine":  # the noise is small: residuals are around 0.1
        assert np.std(ds.y[:, 0] - np.sin(ds.x[:, 0])) == pytest.approx(0.1, rel=0.2)


def test_train_test_split():
    ds = data.make_moons(100)
    tr, te = data.train_test_split(ds.x, ds.y, 0.2, seed=0)
    assert len(tr.x) == 80 and len(te.x) == 20
    joined = np.concatenate([tr.x, te.x])
    assert sorted(map(tuple, joined)) == sorted(map(tuple, ds.x))
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(ds.x, ds.y, 1.5)


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


def test_tfds_loading_code_under_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
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


def test_tfds_offline_without_data_fails_fast_with_help(tmp_path):
    pytest.importorskip("tensorflow_datasets")
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
