"""Each training script end to end on tiny data: files written, real PNGs, resume,
and bad flags answered with exit 2 and one line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from test_data import _write_mnist


def _run(script, *args, check=True):
    r = subprocess.run([sys.executable, f"{REPO}/scripts/{script}", *args],
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def _assert_real_png(path):
    import matplotlib.image as mpimg

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] >= 200 and img.shape[1] >= 300
    assert img[..., :3].std() > 0.05  # not a blank canvas


def _metrics(out):
    m = json.loads((out / "metrics.json").read_text())
    for k in ("config", "history", "wall_seconds", "device"):
        assert k in m
    for r in m["history"]:
        for k in ("epoch", "train_loss", "epoch_seconds", "examples_per_second"):
            assert k in r
    return m


def test_train_toy(tmp_path):
    r = _run("train_toy.py", "--dataset", "moons", "--n", "300", "--epochs", "60",
             "--out", str(tmp_path))
    assert "done:" in r.stdout and "test_accuracy" in r.stdout
    assert "epoch 60/60" in r.stderr  # progress, one line per epoch
    m = _metrics(tmp_path)
    assert m["test_accuracy"] > 0.9 and len(m["history"]) == 60
    assert "train_accuracy" in m["history"][0]
    for png in ("decision_boundary.png", "loss_curve.png"):
        _assert_real_png(tmp_path / png)
    assert (tmp_path / "checkpoint.npz").exists()


def test_train_regression(tmp_path):
    _run("train_regression.py", "--dataset", "multi", "--n", "200", "--epochs", "20",
         "--out", str(tmp_path), "--quiet", "--loss", "huber")
    m = _metrics(tmp_path)
    assert m["test_mse"] < 1.0 and m["config"]["sizes"] == [2, 64, 64, 3]
    for png in ("fit.png", "loss_curve.png"):
        _assert_real_png(tmp_path / png)


def test_train_mnist_from_idx_files(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _write_mnist(mnist, n_train=256, n_test=64)
    out = tmp_path / "out"
    _run("train_mnist.py", "--mnist-dir", str(mnist), "--epochs", "2", "--hidden", "16",
         "--batch-size", "64", "--out", str(out), "--grad", "autodiff")
    m = _metrics(out)
    assert m["config"]["sizes"] == [784, 16, 10] and m["config"]["n_train"] == 256
    assert 0 <= m["test_accuracy"] <= 1 and len(m["history"]) == 2


def test_train_mnist_through_tfds_mock(tmp_path, monkeypatch, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    sys.path.insert(0, f"{REPO}/scripts")
    try:
        import train_mnist
    finally:
        sys.path.pop(0)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["train_mnist.py", "--data-dir", str(tmp_path / "tfds"),
                                      "--epochs", "1", "--hidden", "8", "--batch-size", "16",
                                      "--out", str(out), "--quiet"])
    with tfds.testing.mock_data(num_examples=64):
        assert train_mnist.main() == 0
    m = _metrics(out)
    assert m["config"]["source"] == "tfds" and m["config"]["n_train"] == 64


def test_resume_continues_to_the_same_params(tmp_path):
    def arrays(out):
        with np.load(out / "checkpoint.npz") as z:
            return {k: z[k] for k in z.files if k != "__meta__"}

    common = ["--dataset", "spirals", "--n", "200", "--quiet", "--seed", "3"]
    _run("train_toy.py", *common, "--epochs", "8", "--out", str(tmp_path / "full"))
    _run("train_toy.py", *common, "--epochs", "3", "--out", str(tmp_path / "part"))
    r = _run("train_toy.py", *common, "--epochs", "8", "--out", str(tmp_path / "part"),
             "--resume")
    assert "resuming from" in r.stderr
    full, part = arrays(tmp_path / "full"), arrays(tmp_path / "part")
    assert full.keys() == part.keys()
    assert all(np.array_equal(full[k], part[k]) for k in full)
    assert [h["epoch"] for h in _metrics(tmp_path / "part")["history"]] == list(range(1, 9))
    # a different configuration is refused
    r = _run("train_toy.py", *common, "--epochs", "9", "--hidden", "5", "--out",
             str(tmp_path / "part"), "--resume", check=False)
    assert r.returncode == 2 and "another config" in r.stderr


@pytest.mark.parametrize("script, args, needle", [
    ("train_toy.py", ["--hidden", "-3"], "--hidden: must be positive"),
    ("train_toy.py", ["--lr", "nan"], "--lr: must be a finite number > 0"),
    ("train_toy.py", ["--dataset", "mnist"], "invalid choice: 'mnist'"),
    ("train_toy.py", ["--batch-size", "5000"], "batch_size must be at most"),
    ("train_toy.py", ["--test-fraction", "2"], "--test-fraction must be in (0, 1)"),
    ("train_regression.py", ["--loss", "softmax_cross_entropy"], "invalid choice"),
    ("train_regression.py", ["--epochs", "-3"], "--epochs: must be a positive integer"),
    ("train_mnist.py", ["--mnist-dir", "/nonexistent/mnist"], "is not a folder"),
    ("train_mnist.py", ["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    ("train_mnist.py", ["--no-download", "--data-dir", "/tmp/fnmlp-empty-tfds"],
     "--mnist-dir DIR"),
])
def test_bad_flags_exit_2_with_one_line(script, args, needle):
    r = _run(script, *args, "--out", "/tmp/fnmlp-bad-flags", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if "absl" not in ln]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("script", ["train_toy.py", "train_regression.py", "train_mnist.py",
                                    "gradcheck.py"])
def test_help(script):
    r = _run(script, "--help")
    assert "usage:" in r.stdout and "--" in r.stdout
