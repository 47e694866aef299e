"""Each script end to end in a fresh Python (tests/conftest.run_script), on tiny data:
the files it writes (real PNGs), --resume (bitwise the same as an uninterrupted run, early
stopping included), crash safety, the architecture flags, the lab's validation set and
early stopping, compare.py, predict.py, and bad flags answered with exit 2 and one line
naming the flag. fnmlp.cli's functions in this process: tests/test_cli.py."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, run_script
from test_mnist import _write_mnist

import fnmlp

TOY = ["--dataset", "moons", "--n", "240", "--batch-size", "16", "--seed", "1"]


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


def _arrays(path):
    """Every array of a checkpoint (its config aside)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


def _bitwise_equal(a, b):
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), [k for k in a
                                                       if not np.array_equal(a[k], b[k])]


def _one_line_exit_2(r, needle):
    """Exit 2, one line on stderr naming the problem, no traceback, no training."""
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if "absl" not in ln]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]
    assert "epoch 1" not in r.stderr + r.stdout  # refused before any training


def _widths(config):
    """``[D, ..., C]``: the input width and each Dense layer's, from the one description
    of the network a config holds (``input`` and ``model``)."""
    return [config["input"]["width"],
            *(c["features"] for c in config["model"]["layers"] if c["type"] == "Dense")]


def _types(out):
    config = json.loads((out / "metrics.json").read_text())["config"]
    return [layer["type"] for layer in config["model"]["layers"]], config


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """Tiny MNIST IDX files (256 train, 64 test digits), shared by the MNIST runs."""
    folder = tmp_path_factory.mktemp("mnist")
    _write_mnist(folder, n_train=256, n_test=64)
    return folder


# ----------------------------------------------------------------------------- each script


def test_train_toy(tmp_path):
    r = run_script("train_toy.py", "--dataset", "moons", "--n", "300", "--epochs", "60",
             "--out", str(tmp_path))
    assert "done:" in r.stdout and "test_accuracy" in r.stdout
    assert "epoch 60/60" in r.stderr  # progress, one line per epoch
    m = _metrics(tmp_path)
    assert m["test_accuracy"] > 0.9 and len(m["history"]) == 60
    assert "train_accuracy" in m["history"][0]
    for png in ("decision_boundary.png", "loss_curve.png", "boundary_epochs.png",
                "hidden_units.png", "weight_norms.png"):
        _assert_real_png(tmp_path / png)
    assert (tmp_path / "checkpoint.npz").exists()
    # each weight matrix's gradient norm, every epoch and at init (issue 43)
    assert all(len(r["grad_norm"]) == 2 for r in m["history"])
    assert len(m["grad_norm_at_init"]) == 2 and m["config"]["grad_norm_batch"] == 225
    # the last line says training and wall time apart
    done = r.stdout.splitlines()[-1]
    assert re.search(r"training [\d.]+ s \(\+[\d.]+ s compiling\), wall [\d.]+ s", done)
    assert m["training_seconds"] + m["compile_seconds"] < m["run_seconds"] < m["wall_seconds"]


def test_train_regression(tmp_path):
    run_script("train_regression.py", "--dataset", "multi", "--n", "200", "--epochs", "20",
         "--out", str(tmp_path), "--quiet", "--loss", "huber")
    m = _metrics(tmp_path)
    assert m["test_mse"] < 1.0 and _widths(m["config"]) == [2, 64, 64, 3]
    for png in ("fit.png", "loss_curve.png"):
        _assert_real_png(tmp_path / png)


def test_train_mnist_from_idx_files(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _write_mnist(mnist, n_train=256, n_test=64)
    out = tmp_path / "out"
    run_script("train_mnist.py", "--mnist-dir", str(mnist), "--epochs", "2", "--hidden", "16",
         "--batch-size", "64", "--out", str(out), "--grad", "autodiff")
    m = _metrics(out)
    assert _widths(m["config"]) == [784, 16, 10] and m["config"]["n_train"] == 256
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
    run_script("train_toy.py", *common, "--epochs", "8", "--out", str(tmp_path / "full"))
    run_script("train_toy.py", *common, "--epochs", "3", "--out", str(tmp_path / "part"))
    r = run_script("train_toy.py", *common, "--epochs", "8", "--out", str(tmp_path / "part"),
             "--resume")
    assert "resuming from" in r.stderr
    full, part = arrays(tmp_path / "full"), arrays(tmp_path / "part")
    assert full.keys() == part.keys()
    assert all(np.array_equal(full[k], part[k]) for k in full)
    assert [h["epoch"] for h in _metrics(tmp_path / "part")["history"]] == list(range(1, 9))
    # a different configuration is refused
    r = run_script("train_toy.py", *common, "--epochs", "9", "--hidden", "5", "--out",
             str(tmp_path / "part"), "--resume", check=False)
    assert r.returncode == 2 and "another config" in r.stderr


@pytest.mark.parametrize("script", ["train_toy.py", "train_mnist.py", "train_regression.py",
                                    "predict.py", "compare.py", "gradcheck.py"])
def test_help_imports_no_jax(script):
    """--help answers before jax is imported (python -X importtime lists every module):
    fnmlp imports each name on first use, the flags' choices come from fnmlp._names."""
    r = run_script(script, "--help", env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert "usage:" in r.stdout
    modules = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines()
               if ln.startswith("import time:")]
    assert modules, r.stderr[:500]
    jaxes = [m for m in modules if m == "jax" or m.startswith(("jax.", "jaxlib"))]
    assert not jaxes, f"--help imported {jaxes[:5]}"


SCRIPTS = [("scripts", os.path.basename(p)) for p in sorted(glob.glob(f"{REPO}/scripts/*.py"))]
BENCHES = [("benchmarks", os.path.basename(p))
           for p in sorted(glob.glob(f"{REPO}/benchmarks/*.py"))
           if not os.path.basename(p).startswith("_") and "torch_threads" not in p]


@pytest.mark.parametrize("folder, script", SCRIPTS + BENCHES)
def test_help_shows_each_default_once_and_a_whole_description(folder, script):
    r = run_script(script, "--help", folder=folder, cwd=f"{REPO}/{folder}")
    text = r.stdout
    assert "usage:" in text and "--" in text
    desc = text.split("\n\n")[1]
    assert desc.rstrip().endswith("."), desc  # the description is a whole sentence
    blocks = re.split(r"\n  (?=-)", text.split("options:")[1])
    for block in blocks[1:]:
        flag = block.split()[0]
        if flag in ("-h,", "--help"):
            continue
        n = block.count("(default")
        takes_value = re.match(r"-[-\w]+ [A-Z{]", block) is not None
        assert n == (1 if takes_value else 0), (flag, block)


def test_gpu_run_help_does_not_start_the_run(tmp_path):
    r = subprocess.run(["bash", f"{REPO}/benchmarks/gpu_run.sh", "--help"], capture_output=True,
                       text=True, timeout=30, cwd=tmp_path, env={**os.environ, "OUT": "x"})
    assert r.returncode == 0 and "usage:" in r.stdout
    assert not (tmp_path / "x").exists() and not os.path.exists(f"{REPO}/x")


# ----------------------------------------------------------------------------- bad flags


@pytest.mark.parametrize("script, args, needle", [
    ("train_toy.py", ["--hidden", "-3"], "--hidden: must be positive"),
    ("train_toy.py", ["--lr", "nan"], "--lr: must be a finite number > 0"),
    ("train_toy.py", ["--dataset", "mnist"], "invalid choice: 'mnist'"),
    ("train_toy.py", ["--batch-size", "5000"],
     "--batch-size 5000 is more than the 450 training examples: give a smaller"),
    # a breaker's find: it blamed --batch-size, or named fit's validation_split
    ("train_toy.py", ["--val-split", "0.999", "--batch-size", "1"],
     "--val-split=0.999 of 450 examples leaves an empty split"),
    ("train_toy.py", ["--val-split", "0.001"], "--val-split=0.001 of 450 examples leaves"),
    ("train_toy.py", ["--test-fraction", "2"], "--test-fraction must be in (0, 1)"),
    ("train_regression.py", ["--loss", "softmax_cross_entropy"], "invalid choice"),
    ("train_regression.py", ["--epochs", "-3"], "--epochs: must be a positive integer"),
    ("train_mnist.py", ["--mnist-dir", "/nonexistent/mnist"], "is not a folder"),
    ("train_mnist.py", ["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    ("train_mnist.py", ["--no-download", "--data-dir", "/tmp/fnmlp-empty-tfds"],
     "--mnist-dir DIR"),
    # the architecture flags
    ("train_toy.py", ["--layers", "dense:16,tanhh"], "--layers item 2 'tanhh'"),
    ("train_toy.py", ["--layers", "dense:0,relu"], "--layers item 1 'dense:0'"),
    ("train_toy.py", ["--layers", "dense:8,dropout:1.5"], "--layers item 2 'dropout:1.5'"),
    ("train_toy.py", ["--layers", "dense:8,softmax"], "leave softmax out"),
    ("train_toy.py", ["--activation", "tanh,nope"], "'nope' is not an activation"),
    ("train_toy.py", ["--dropout", "0.2,x"], "'x'"),
    ("train_toy.py", ["--hidden", "8,8", "--activation", "tanh,relu,relu"],
     "--activation gives 3 values"),
    ("train_toy.py", ["--hidden", "8,8", "--dropout", "0.1,0.1,0.1"], "--dropout gives 3 values"),
    ("train_toy.py", ["--hidden", "32,,16"], "no empty entries"),
    ("train_toy.py", ["--hidden", ",32"], "no empty entries"),
    ("train_toy.py", ["--hidden", "32,"], "no empty entries"),
    # the validation set and early stopping
    ("train_toy.py", [*TOY, "--epochs", "3", "--patience", "2"],
     "--patience monitors the validation set and needs --val-split"),
    *[("train_toy.py", [*TOY, "--val-split", bad], "--val-split: must be a fraction in (0, 1)")
      for bad in ("0", "1", "1.5", "x")],
    ("train_toy.py", [*TOY, "--weight-decay", "-1"],
     "--weight-decay: must be a finite number >= 0"),
    ("compare.py", ["--dataset", "moons", "--arch", "16:swish"], "'swish' is not an activation"),
])
def test_bad_flags_exit_2_with_one_line(script, args, needle):
    r = run_script(script, *args, "--out", "/tmp/fnmlp-bad-flags", check=False)
    _one_line_exit_2(r, needle)


def test_out_is_an_existing_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    _one_line_exit_2(run_script("train_toy.py", *TOY, "--quiet", "--out", f, check=False),
                     "is a file")


@pytest.mark.parametrize("resume", [False, True])
def test_out_not_writable_is_refused_before_training(tmp_path, resume):
    where = "/sys/fnmlp-not-writable"  # refused even to root
    r = run_script("train_toy.py", *TOY, "--epochs", "3", "--out", where,
                   *(["--resume"] if resume else []), check=False)
    _one_line_exit_2(r, "is not a writable folder")


# ----------------------------------------------------------------------------- the grammar


def test_hidden_and_layers_train_the_same_model_bitwise(tmp_path):
    common = ["--dataset", "moons", "--seed", "3", "--epochs", "2", "--quiet"]
    run_script("train_toy.py", *common, "--hidden", "16", "--activation", "relu", "--out",
               tmp_path / "A")
    run_script("train_toy.py", *common, "--layers", "dense:16,relu", "--out", tmp_path / "B")
    _bitwise_equal(_arrays(tmp_path / "A" / "checkpoint.npz"),
                   _arrays(tmp_path / "B" / "checkpoint.npz"))
    a, b = _types(tmp_path / "A")[1], _types(tmp_path / "B")[1]
    assert a["model"] == b["model"] == fnmlp.mlp([2, 16, 2], "relu").to_config()


def test_toy_with_an_activation_and_a_dropout_per_layer(tmp_path):
    run_script("train_toy.py", "--n", "200", "--epochs", "3", "--hidden", "12,8", "--activation",
               "tanh,relu", "--dropout", "0.1,0", "--out", tmp_path, "--quiet")
    types, config = _types(tmp_path)
    assert types == ["Dense", "Tanh", "Dropout", "Dense", "Relu", "Dense"]
    assert config["model"]["layers"][2]["rate"] == 0.1 and _widths(config) == [2, 12, 8, 2]
    saved = fnmlp.load_model(tmp_path / "checkpoint.npz")
    assert [type(layer).__name__ for layer in saved.model.layers] == types
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    p = np.asarray(saved.predict_proba(x))
    np.testing.assert_allclose(p, np.asarray(saved.predict_proba(x)))  # no dropout: same
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_toy_without_a_hidden_layer_is_the_lessons_first_network(tmp_path):
    run_script("train_toy.py", "--n", "200", "--epochs", "5", "--hidden", "0", "--out",
               tmp_path, "--quiet")
    types, config = _types(tmp_path)
    assert types == ["Dense"] and _widths(config) == [2, 2]


def test_regression_from_a_layers_spec_and_a_sweep(tmp_path):
    run_script("train_regression.py", "--n", "120", "--epochs", "3", "--layers",
               "dense:16,tanh,layernorm,dense:8,gelu,dropout:0.2", "--out", tmp_path / "a",
               "--quiet")
    types, config = _types(tmp_path / "a")
    assert types == ["Dense", "Tanh", "LayerNorm", "Dense", "Gelu", "Dropout", "Dense"]
    assert _widths(config) == [1, 16, 8, 1]
    run_script("train_regression.py", "--n", "120", "--epochs", "2", "--hidden", "8,8",
               "--activation", "relu,tanh", "--dropout", "0.1", "--sweep", "lr=1e-2,3e-2",
               "--out", tmp_path / "b", "--quiet")
    best = fnmlp.load_model(tmp_path / "b" / "checkpoint.npz")
    assert [type(layer).__name__ for layer in best.model.layers] == [
        "Dense", "Relu", "Dropout", "Dense", "Tanh", "Dropout", "Dense"]


def test_mnist_with_two_activations_and_dropout(tmp_path, mnist_dir):
    out = tmp_path / "run"
    run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--epochs", "1", "--hidden",
               "16,8", "--activation", "tanh,relu", "--dropout", "0.2", "--batch-size", "32",
               "--out", out, "--quiet")
    types, _ = _types(out)
    assert types == ["Dense", "Tanh", "Dropout", "Dense", "Relu", "Dropout", "Dense"]
    assert (out / "weights.png").exists()


def test_mnist_starting_with_layernorm_draws_every_picture(tmp_path, mnist_dir):
    """No picture assumes the layout: weights.png reads the first matrix with 784 rows."""
    out = tmp_path / "ln"
    run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--epochs", "2", "--layers",
               "layernorm,dense:64,relu", "--batch-size", "32", "--out", out, "--quiet")
    types, config = _types(out)
    assert types == ["LayerNorm", "Dense", "Relu", "Dense"] and _widths(config) == [784, 64, 10]
    pngs = ("curves.png", "confusion_matrix.png", "predictions.png", "weights.png",
            "weight_norms.png")
    for png in pngs:
        assert (out / png).stat().st_size > 0
        _assert_real_png(out / png)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(pngs)


def test_gradcheck_script_takes_the_same_flags_and_lists_layers():
    r = run_script("gradcheck.py", "--sizes", "4,9,7,3", "--activation", "tanh,gelu",
                   "--dropout", "0.3", "--json")
    d = json.loads(r.stdout)
    assert d["passed"] and d["failing_layers"] == []
    layers = {row["layer"] for row in d["layers"]["leaves"]}
    assert layers == {"0:Dense", "1:Tanh", "2:Dropout", "3:Dense", "4:Gelu", "5:Dropout",
                      "6:Dense"}
    assert {row["leaf"] for row in d["layers"]["leaves"]} == {"dx", "w", "b"}
    r = run_script("gradcheck.py", "--sizes", "4,3", "--layers", "dense:6,elu,layernorm")
    assert "2:LayerNorm  scale" in r.stdout and "overall: PASSED" in r.stdout
    r = run_script("gradcheck.py", "--sizes", "4,8,3", "--activation", "tanh,relu", check=False)
    assert r.returncode == 2 and "--activation gives 2 values" in r.stderr


def test_gradcheck_script_checks_a_probability_loss_with_the_lessons_softmax():
    """A breaker's find: --loss categorical_cross_entropy was offered but never ran (the
    network ended in Dense: 'add Softmax()'; --layers ...,softmax: 'leave softmax out').
    The script now ends such a network in Softmax and checks its backward with the rest."""
    r = run_script("gradcheck.py", "--sizes", "4,8,3", "--loss", "categorical_cross_entropy",
                   "--json")
    d = json.loads(r.stdout)
    assert d["passed"] and d["config"]["model"]["layers"][-1] == {"type": "Softmax"}
    assert {"3:Softmax"} <= {row["layer"] for row in d["layers"]["leaves"]}


# ----------------------------------------------------------------------------- resume


def test_resume_from_a_truncated_checkpoint(tmp_path):
    run_script("train_toy.py", *TOY, "--quiet", "--epochs", "2", "--out", tmp_path)
    ckpt = tmp_path / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    r = run_script("train_toy.py", *TOY, "--quiet", "--epochs", "4", "--out", tmp_path,
                   "--resume", check=False)
    _one_line_exit_2(r, "not a readable fnmlp checkpoint")


@pytest.mark.parametrize("other, named", [
    (["--dataset", "moons", "--n", "200"], "dataset 'spirals' (now 'moons')"),
    (["--n", "200"], "dataset 'spirals' (now 'classification')"),  # --dataset forgotten
    (["--dataset", "spirals", "--n", "240"], "its training data (150 examples"),
    (["--dataset", "spirals", "--n", "200", "--test-fraction", "0.5"], "its training data"),
])
def test_resume_refuses_other_training_data(tmp_path, other, named):
    """A new user's find: --resume with another --dataset (or none) trained the saved
    model on other data and mixed both in one history; --n and --test-fraction too."""
    run_script("train_toy.py", "--dataset", "spirals", "--n", "200", "--epochs", "3",
               "--quiet", "--out", tmp_path)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    r = run_script("train_toy.py", *other, "--epochs", "6", "--quiet", "--out", tmp_path,
                   "--resume", check=False)
    _one_line_exit_2(r, "was made with another config")
    assert named in r.stderr
    assert (tmp_path / "checkpoint.npz").read_bytes() == before  # untouched


def test_resume_of_a_finished_run_whose_metrics_json_was_lost(tmp_path):
    """A SIGTERM while drawing leaves the last checkpoint and no metrics.json: --resume
    then failed ('the history has no weight_max_abs entries to draw', exit 2) every time
    (a breaker's find)."""
    run_script("train_toy.py", *TOY, "--quiet", "--epochs", "3", "--out", tmp_path)
    (tmp_path / "metrics.json").unlink()
    r = run_script("train_toy.py", *TOY, "--quiet", "--epochs", "3", "--out", tmp_path,
                   "--resume")
    assert "metrics.json is missing: the history of epochs 1-3 is lost" in r.stderr
    assert _metrics(tmp_path)["history"] == [] and "test_accuracy" in _metrics(tmp_path)


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    run_script("train_toy.py", *TOY, "--quiet", "--epochs", "4", "--out", tmp_path)
    before = json.loads((tmp_path / "metrics.json").read_text())
    r = run_script("train_toy.py", *TOY, "--quiet", "--epochs", "2", "--out", tmp_path,
                   "--resume", check=False)
    _one_line_exit_2(r, "is at epoch 4, past --epochs 2")
    assert json.loads((tmp_path / "metrics.json").read_text()) == before  # untouched
    # the same epoch count: nothing to train, said so, metrics consistent
    r = run_script("train_toy.py", *TOY, "--quiet", "--epochs", "4", "--out", tmp_path,
                   "--resume")
    assert "nothing to train" in r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["epochs"] == 4 and len(m["history"]) == 4


def test_resume_applies_a_new_learning_rate(tmp_path):
    """Issue 29 item 3: --resume with another --lr says so in one line and trains on."""
    common = [*TOY, "--quiet", "--optimizer", "sgd", "--out", tmp_path]
    run_script("train_toy.py", *common, "--epochs", "2", "--lr", "0.05")
    r = run_script("train_toy.py", *common, "--epochs", "3", "--lr", "0.0001", "--resume")
    said = [ln for ln in r.stderr.splitlines() if "learning rate" in ln]
    assert said == ["--resume: learning rate 0.05 -> 0.0001"], r.stderr
    m = _metrics(tmp_path)
    assert [h["learning_rate"] for h in m["history"]] == pytest.approx([0.05, 0.05, 1e-4])
    assert m["config"]["lr"] == 0.0001


def test_resume_refuses_a_changed_epochs_under_cosine(tmp_path):
    args = [*TOY, "--schedule", "cosine", "--quiet", "--out", tmp_path]
    run_script("train_toy.py", *args, "--epochs", "2")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["history"][-1]["learning_rate"] < 0.01 * 0.01  # near 0 at its horizon
    r = run_script("train_toy.py", *args, "--epochs", "3", "--resume", check=False)
    _one_line_exit_2(r, "would restart the decay")
    r = run_script("train_toy.py", *args, "--epochs", "2", "--resume")  # the same horizon
    assert "nothing to train" in r.stderr


# issue 29 item 1: early stopping interrupted, then resumed, is the uninterrupted run
EARLY = ["--dataset", "classification", "--n", "300", "--hidden", "256,256", "--optimizer",
         "adam", "--lr", "0.03", "--batch-size", "16", "--val-split", "0.2", "--patience", "4",
         "--quiet"]


@pytest.fixture(scope="module")
def early_runs(tmp_path_factory):
    """The uninterrupted run (--epochs 60) and one stopped at --epochs 4, then resumed."""
    root = tmp_path_factory.mktemp("early")
    full = run_script("train_toy.py", *EARLY, "--epochs", "60", "--out", root / "full")
    run_script("train_toy.py", *EARLY, "--epochs", "4", "--out", root / "part")
    part = run_script("train_toy.py", *EARLY, "--epochs", "60", "--resume", "--out",
                      root / "part")
    return root, full, part


def test_resume_of_an_early_stopping_run_without_patience_is_refused(early_runs):
    """A breaker's find: resumed without --patience, the run trained on while metrics.json
    still marked the old best epoch restored and load_model/predict.py used it. The
    scripts refuse the change (fit itself trains on and drops the record)."""
    root, _, _ = early_runs
    args = [a for a in EARLY if a not in ("--patience", "4")]
    run_script("train_toy.py", *EARLY, "--epochs", "2", "--out", root / "short")
    before = (root / "short" / "checkpoint.npz").read_bytes()
    r = run_script("train_toy.py", *args, "--epochs", "80", "--resume", "--out",
                   root / "short", check=False)
    _one_line_exit_2(r, "was trained with --patience 4")
    assert "give --patience again to continue it" in r.stderr
    assert (root / "short" / "checkpoint.npz").read_bytes() == before
    # a run that already stopped: nothing to continue (a new user followed "give --patience
    # again" and got "nothing to train")
    r = run_script("train_toy.py", *args, "--epochs", "80", "--resume", "--out",
                   root / "full", check=False)
    _one_line_exit_2(r, "and stopped early at epoch")
    assert "start a new run with another --out" in r.stderr


def test_early_stopping_resumed_is_the_uninterrupted_run(early_runs):
    root, full, part = early_runs
    assert "resuming from" in part.stderr and "at epoch 4" in part.stderr
    a, b = _metrics(root / "full"), _metrics(root / "part")
    assert len(a["history"]) < 60, "early stopping did not trigger; the test needs it to"
    assert a["best_epoch"] == b["best_epoch"] < len(a["history"])
    for k in ("test_accuracy", "test_loss", "val_loss", "val_accuracy"):
        assert a[k] == b[k], k
    assert [h["epoch"] for h in b["history"]] == [h["epoch"] for h in a["history"]]
    # the checkpoints: bitwise equal, the last state and early stopping's bookkeeping
    ca, cb = _arrays(root / "full" / "checkpoint.npz"), _arrays(root / "part" / "checkpoint.npz")
    _bitwise_equal(ca, cb)
    assert bool(ca["early/stopped"]) and int(ca["early/best_epoch"]) == a["best_epoch"]
    assert int(ca["epoch"]) == len(a["history"]) and int(ca["early/best/epoch"]) == a["best_epoch"]
    # the kept model: load_model reads the kept epoch's params, the same in both
    ma, mb = (fnmlp.load_model(root / d / "checkpoint.npz") for d in ("full", "part"))
    for u, v in zip(jax.tree.leaves(ma.params), jax.tree.leaves(mb.params), strict=True):
        assert np.array_equal(u, v)
    kept = [ca[k] for k in sorted(ca) if k.startswith("early/best/params/")]
    assert all(any(np.array_equal(u, k) for k in kept) for u in jax.tree.leaves(ma.params))
    assert f"epoch {a['best_epoch']}, kept by early stopping" in full.stdout


def test_resuming_a_run_that_stopped_early_trains_nothing(early_runs, tmp_path):
    """Issue 29 item 2: one line says so; metrics.json keeps one record restored; the final
    line names it."""
    root, _, _ = early_runs
    shutil.copytree(root / "full", tmp_path / "run")
    before = _metrics(tmp_path / "run")
    ckpt = _arrays(tmp_path / "run" / "checkpoint.npz")
    r = run_script("train_toy.py", *EARLY, "--epochs", "60", "--resume", "--out",
                   tmp_path / "run")
    said = [ln for ln in r.stderr.splitlines() if "stopped early" in ln]
    assert len(said) == 1 and f"keeping epoch {before['best_epoch']}" in said[0], r.stderr
    assert "resuming from" not in r.stderr  # one line, not a second that contradicts it
    assert not [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]  # no training
    _bitwise_equal(ckpt, _arrays(tmp_path / "run" / "checkpoint.npz"))
    m = _metrics(tmp_path / "run")
    assert m["history"] == before["history"] and m["best_epoch"] == before["best_epoch"]
    assert [h["epoch"] for h in m["history"] if h.get("restored")] == [m["best_epoch"]]
    assert m["test_accuracy"] == before["test_accuracy"]
    last = r.stdout.strip().splitlines()[-1]
    assert f"[epoch {m['best_epoch']} " in last, last


SIGTERM_INSIDE_EXCEPT = """
import os, signal, sys, time
from fnmlp.cli import main_guard, start_run
def main():
    start_run()
    try:  # as JAX's compilation-cache read: a SIGTERM there was swallowed, the run exit 0
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except Exception:
        print("swallowed")
    return 0
sys.argv[0] = "t.py"
main_guard(main)
"""


def test_sigterm_is_not_swallowed_by_code_that_catches_exception():
    r = subprocess.run([sys.executable, "-c", SIGTERM_INSIDE_EXCEPT], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 143 and "swallowed" not in r.stdout, r.stdout + r.stderr
    assert r.stderr.strip() == "t.py: terminated by signal 15 (SIGTERM)"


def test_divergence_over_an_earlier_runs_checkpoint_says_whose_it_is(tmp_path):
    """It said 'checkpoint.npz holds epoch 0' of a file an earlier run (another network,
    20 epochs) had written (a breaker's find)."""
    run_script("train_toy.py", "--epochs", "3", "--quiet", "--out", tmp_path)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    r = run_script("train_toy.py", "--lr", "1e6", "--optimizer", "sgd", "--epochs", "5",
                   "--activation", "relu", "--hidden", "64,64", "--out", tmp_path, "--quiet",
                   check=False)
    assert r.returncode == 1
    assert "diverged in epoch 1" in r.stderr and "this run wrote no checkpoint" in r.stderr
    assert "is left as it was" in r.stderr and "holds epoch" not in r.stderr
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_sigkill_during_checkpoint_write_then_resume_is_bitwise_equal(tmp_path):
    """Crash safety: a run killed with SIGKILL in the middle of a checkpoint write, then
    resumed, ends bitwise equal to an uninterrupted run (every epoch written:
    ``--checkpoint-seconds 0``)."""
    args = ["--dataset", "spirals", "--n", "240", "--epochs", "6", "--seed", "5", "--quiet",
            "--checkpoint-seconds", "0"]
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    run_script("train_toy.py", *args, "--out", full)

    marker = tmp_path / "writing"
    env = dict(os.environ, FNMLP_MARKER=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DURING_WRITE,
                             f"{REPO}/scripts/train_toy.py", *args, "--out", str(crashed)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in os.listdir(crashed) if p.endswith(".tmp")]
    assert leftovers  # the half-written temporary file is there ...
    ckpt = crashed / "checkpoint.npz"
    assert int(_arrays(ckpt)["epoch"]) == 2  # ... and checkpoint.npz is the intact epoch 2

    r = run_script("train_toy.py", *args, "--out", crashed, "--resume")
    assert "resuming from" in r.stderr and "at epoch 2" in r.stderr
    _bitwise_equal(_arrays(full / "checkpoint.npz"), _arrays(ckpt))
    history = json.loads((crashed / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]  # the history written beside
    # each checkpoint kept epochs 1-2 (before, only the resumed epochs were left)
    whole = json.loads((full / "metrics.json").read_text())["history"]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in whole]


# Runs the real script, SIGKILLed when it is about to write the history beside its 5th
# checkpoint (a breaker's find: the history was written after the checkpoint, so a kill
# between the two left epoch 5 out of the history for good).
KILLED_AT_HISTORY = """
import importlib, os, runpy, signal, sys
r = importlib.import_module("fnmlp.cli.run")  # the module (fnmlp.cli.run is also a function)
real, n = r.write_json, [0]
def write_json(path, obj):
    if "partial" in obj:
        n[0] += 1
        if n[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, obj)
r.write_json = write_json
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_kill_between_history_and_checkpoint_loses_no_epoch(tmp_path):
    args = [*TOY, "--quiet", "--checkpoint-seconds", "0", "--out", tmp_path]
    r = subprocess.run([sys.executable, "-c", KILLED_AT_HISTORY,
                        f"{REPO}/scripts/train_toy.py", *map(str, args), "--epochs", "50"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    run_script("train_toy.py", *args, "--epochs", "10", "--resume")
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 11))


def test_sigterm_writes_the_last_epoch_and_exits_143(tmp_path):
    """With a checkpoint at most once a second, SIGTERM (kill, timeout, a batch system)
    ended the process with nothing written in the first second (a breaker's find): the
    scripts now leave as on Ctrl-C, the latest epoch on disk, one line, status 143."""
    proc = subprocess.Popen([sys.executable, f"{REPO}/scripts/train_toy.py", "--epochs",
                             "1000000", "--log-every", "50", "--checkpoint-seconds", "1e9",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stderr:  # the epochs printed so far
        m = re.match(r"epoch (\d+)/", line)
        if m and int(m.group(1)) >= 100:
            seen = int(m.group(1))
            break
    assert seen, "the run printed no epoch"
    assert not (tmp_path / "checkpoint.npz").exists()  # nothing written yet (1e9 s)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 143, rest
    assert rest.strip().splitlines()[-1] == "train_toy.py: terminated by signal 15 (SIGTERM)"
    assert "Traceback" not in rest
    epoch = int(_arrays(tmp_path / "checkpoint.npz")["epoch"])
    assert epoch >= seen
    fnmlp.load_model(tmp_path / "checkpoint.npz")  # a model to use
    # the history beside it, to the same epoch (a new user's find: it was lost, and
    # --resume said "the history of epochs 1-113 is lost")
    partial = json.loads((tmp_path / "metrics.json").read_text())
    assert "partial" in partial and partial["history"][-1]["epoch"] == epoch
    assert [r["epoch"] for r in partial["history"]] == list(range(1, epoch + 1))


# Runs the real script, but the 3rd checkpoint write stalls halfway through the archive
# (after the temporary file holds part of its data) until the test kills the process.
KILLED_DURING_WRITE = """
import os, runpy, sys, time
import numpy as np
real_savez, calls = np.savez, [0]
def stalling_savez(f, **arrays):
    calls[0] += 1
    if calls[0] == 3:
        real_savez(f, **dict(list(arrays.items())[:3]))
        f.flush()
        open(os.environ["FNMLP_MARKER"], "w").close()
        time.sleep(600)
    real_savez(f, **arrays)
np.savez = stalling_savez
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_divergence_exits_1_and_writes_no_nan_checkpoint(tmp_path):
    r = run_script("train_toy.py", "--lr", "1e6", "--optimizer", "sgd", "--epochs", "5",
                   "--activation", "relu", "--hidden", "64,64", "--out", tmp_path, "--quiet",
                   check=False)
    assert r.returncode == 1
    assert "diverged in epoch 1" in r.stderr and "Traceback" not in r.stderr
    assert "no checkpoint of it was written" in r.stderr
    ckpt = tmp_path / "checkpoint.npz"
    if ckpt.exists():  # nothing written, or only finite params
        assert all(np.isfinite(v).all() for v in _arrays(ckpt).values()
                   if v.dtype.kind == "f")


# ----------------------------------------------------------------------------- the lab (issue 20)


def test_val_split_is_held_out_reported_each_epoch_and_printed(tmp_path):
    r = run_script("train_toy.py", *TOY, "--epochs", "3", "--val-split", "0.25", "--out",
                   tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["val_split"] == 0.25
    for rec in m["history"]:  # both held-out sets, every epoch, and they differ
        assert {"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= rec.keys()
        assert rec["val_loss"] != rec["test_loss"]
    # the examples trained per epoch: 180 training examples, 25% held out = 135, batches
    # of 16 -> 8 full batches = 128 examples (not 176 of all 180)
    rec = m["history"][-1]
    assert rec["examples_per_second"] * (rec["epoch_seconds"] - rec["compile_seconds"]) == (
        pytest.approx(128, rel=1e-6))
    # the lines the student watches show train, validation and test
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]
    assert lines and all("train_acc" in ln and "val_acc" in ln and "test_acc" in ln
                         for ln in lines), r.stderr


def test_val_split_matches_fit_with_the_same_split(tmp_path):
    """The script's validation numbers are fit's with validation_split (same seed)."""
    from fnmlp import cli, data

    run_script("train_toy.py", *TOY, "--epochs", "2", "--val-split", "0.2", "--hidden", "8",
               "--quiet", "--out", tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    ds = data.TOY_SETS["moons"](n=240, seed=1)
    train, _ = data.train_test_split(ds.x, ds.y, 0.25, seed=1)
    model = cli.network(m)
    res = fnmlp.fit(model, model.init_params(jax.random.key(1), 2), train.x, train.y,
                    epochs=2, batch_size=16, optimizer="adam", learning_rate=0.01, seed=1,
                    validation_split=0.2, verbose=False)
    for a, b in zip(m["history"], res.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A toy run that early stopping ends well before --epochs (a large rate, patience 1)."""
    out = tmp_path_factory.mktemp("stopped")
    r = run_script("train_toy.py", *TOY, "--epochs", "60", "--lr", "0.05", "--hidden", "64",
                   "--val-split", "0.25", "--patience", "1", "--out", out)
    return out, r


def test_early_stopping_monitors_validation_not_test(stopped):
    out, r = stopped
    m = json.loads((out / "metrics.json").read_text())
    hist = m["history"]
    assert len(hist) < 60, "early stopping did not trigger; the test needs it to"
    vals = [h["val_loss"] for h in hist]
    assert m["best_epoch"] == hist[int(np.argmin(vals))]["epoch"]
    assert "val_loss has not improved" in r.stderr


def test_early_stopping_saves_and_reports_the_restored_epoch(stopped):
    out, r = stopped
    m = json.loads((out / "metrics.json").read_text())
    best, hist = m["best_epoch"], m["history"]
    assert hist[-1]["epoch"] > best  # the later epochs are still in the history ...
    marked = [h["epoch"] for h in hist if h.get("restored")]
    assert marked == [best]  # ... with the restored one marked
    kept = hist[best - 1]
    assert m["test_accuracy"] == pytest.approx(kept["test_accuracy"], abs=1e-6)
    assert m["val_loss"] == pytest.approx(kept["val_loss"], rel=1e-6)
    # the checkpoint holds the last state (to resume) and, under early/best, the state of
    # the kept epoch, whose params load_model reads and which score the same
    z = _arrays(out / "checkpoint.npz")
    assert int(z["early/best/epoch"]) == best and int(z["epoch"]) == hist[-1]["epoch"]
    saved = fnmlp.load_model(out / "checkpoint.npz")
    from fnmlp import data

    ds = data.TOY_SETS["moons"](n=240, seed=1)
    _, test = data.train_test_split(ds.x, ds.y, 0.25, seed=1)
    acc = float(np.mean(np.asarray(saved.predict_classes(test.x)) == test.y))
    assert acc == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert f"epoch {best}, kept by early stopping" in r.stdout


def test_learning_curves_of_a_stopped_run_mark_the_kept_epoch(stopped, tmp_path):
    """The run's loss_curve.png and a learning_curves picture of its history."""
    out, _ = stopped
    _assert_real_png(out / "loss_curve.png")
    m = json.loads((out / "metrics.json").read_text())
    from fnmlp import plot

    plot.learning_curves(m["history"], str(tmp_path / "c.png"), "t")
    _assert_real_png(tmp_path / "c.png")


def test_weight_decay_flag_in_config(tmp_path):
    run_script("train_toy.py", *TOY, "--epochs", "1", "--quiet", "--optimizer", "sgd",
               "--weight-decay", "0.001", "--out", tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["weight_decay"] == 0.001


def test_train_toy_prints_every_10th_epoch_and_the_last(tmp_path):
    r = run_script("train_toy.py", *TOY, "--epochs", "25", "--hidden", "8", "--out", tmp_path)
    shown = [int(ln.split()[1].split("/")[0]) for ln in r.stderr.splitlines()
             if ln.startswith("epoch ")]
    assert shown == [1, 10, 20, 25]
    for png in ("weight_norms.png", "loss_curve.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_ensemble_draws_members_beside_the_ensemble(tmp_path, mnist_dir):
    out = tmp_path / "ens"
    run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--epochs", "1", "--hidden", "8",
               "--batch-size", "32", "--ensemble", "3", "--quiet", "--out", out)
    _assert_real_png(out / "ensemble.png")
    _assert_real_png(out / "sweep.png")


def test_sweep_with_val_split_ranks_on_validation_and_reports_test(tmp_path, mnist_dir):
    out = tmp_path / "sweep"
    r = run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--epochs", "2", "--hidden", "8",
                   "--batch-size", "32", "--sweep", "lr=1e-3,3e-2", "--val-split", "0.25",
                   "--quiet", "--out", out)
    m = json.loads((out / "metrics.json").read_text())
    assert m["ranked_by"] == "val_loss" and "(by val_loss)" in r.stdout
    rows = {row["member"]: row for row in m["members"]}
    assert m["best"] == min(rows, key=lambda k: rows[k]["val_loss"])
    assert all(0 <= row["test_accuracy"] <= 1 for row in rows.values())
    member = json.loads((out / "members" / "0" / "metrics.json").read_text())
    assert "val_loss" in member["history"][0] and "test_loss" not in member["history"][0]


def test_compare_py_trains_each_architecture_and_draws_one_chart(tmp_path):
    r = run_script("compare.py", "--dataset", "moons", "--n", "200", "--arch", "0", "--arch",
                   "16,16:tanh,relu", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
                   "--val-split", "0.2", "--out", tmp_path)
    m = json.loads((tmp_path / "compare.json").read_text())
    names = [run["name"] for run in m["runs"]]
    assert names == ["no hidden layer", "16-16 tanh,relu"]
    for run in m["runs"]:
        assert [h["epoch"] for h in run["history"]] == [1, 2, 3]
        assert all("val_accuracy" in h and "test_accuracy" not in h for h in run["history"])
        assert 0 <= run["test_accuracy"] <= 1
    # the perceptron has one weight matrix, the other three
    assert [len(run["history"][0]["weight_norm"]) for run in m["runs"]] == [1, 3]
    assert "no hidden layer" in r.stdout and (tmp_path / "compare.png").stat().st_size > 20_000
    _assert_real_png(tmp_path / "compare.png")
    # one line per epoch per architecture, and the gradients and boundaries drawn (issue 43)
    for k, name in enumerate(names):
        assert [ln.split(": epoch ")[1].split()[0] for ln in r.stderr.splitlines()
                if ln.startswith(f"[{k + 1}/2] {name}: epoch")] == ["1/3", "2/3", "3/3"]
    assert [len(run["history"][-1]["grad_norm"]) for run in m["runs"]] == [1, 3]
    assert [len(run["grad_norm_at_init"]) for run in m["runs"]] == [1, 3]
    for png in ("gradients.png", "boundaries.png"):
        _assert_real_png(tmp_path / png)
    assert re.search(r"training [\d.]+ s .*wall [\d.]+ s", r.stdout.splitlines()[-1])


# ----------------------------------------------------------------------------- MNIST and predict.py


def test_train_mnist_writes_the_pictures_and_test_metrics_each_epoch(tmp_path, mnist_dir):
    out = tmp_path / "run"
    run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--epochs", "3", "--hidden", "16",
               "--out", out, "--quiet")
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["history"]) == 3
    for rec in m["history"]:
        assert 0 <= rec["test_accuracy"] <= 1 and rec["test_loss"] > 0
    assert m["history"][-1]["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert m["config"]["input"]["kind"] == "mnist" and m["config"]["schedule"] == "cosine"
    for png in ("curves.png", "confusion_matrix.png", "predictions.png", "weights.png",
                "weight_norms.png"):
        _assert_real_png(out / png)
    saved = fnmlp.load_model(out / "checkpoint.npz")
    assert _widths(saved.config) == [784, 16, 10]
    assert saved.model == fnmlp.mlp([784, 16, 10], "relu")


def _pil():
    """PIL's Image and ImageDraw (the tests drawing digits skip without Pillow)."""
    return pytest.importorskip("PIL.Image"), pytest.importorskip("PIL.ImageDraw")


def _draw(digit: str, size=120, jitter=(0, 0), width=10, dark_on_light=True):
    """A digit drawn with strokes, as a person would on a canvas: [size, size] grey."""
    Image, ImageDraw = _pil()
    ink, paper = (0, 255) if dark_on_light else (255, 0)
    img = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(img)
    s, (dx, dy) = size / 100, jitter
    def p(x, y):  # noqa: E306
        return (x * s + dx, y * s + dy)
    if digit == "1":
        d.line([p(50, 15), p(50, 85)], fill=ink, width=width)
        d.line([p(35, 30), p(50, 15)], fill=ink, width=width)
    elif digit == "7":
        d.line([p(25, 18), p(75, 18)], fill=ink, width=width)
        d.line([p(75, 18), p(40, 85)], fill=ink, width=width)
    else:  # "0"
        d.ellipse([p(28, 12), p(72, 88)], outline=ink, width=width)
    return img


def test_a_drawn_picture_follows_mnists_convention(tmp_path):
    from fnmlp.data.images import mnist_from_grey, mnist_from_image

    path = tmp_path / "seven.png"
    _draw("7", size=300, jitter=(40, -20), width=24).save(path)  # off-centre, dark on light
    x = mnist_from_image(path).reshape(28, 28)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() == pytest.approx(1, abs=0.02)
    assert x[0].max() == 0 and x[:, 0].max() == 0  # black background, white ink
    rows, cols = np.nonzero(x > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # the 20x20 box
    cy = (np.arange(28)[:, None] * x).sum() / x.sum()
    cx = (np.arange(28)[None, :] * x).sum() / x.sum()
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1  # centred by mass
    light = tmp_path / "seven_light.png"  # the same digit, light on dark: the same input
    _draw("7", size=300, jitter=(40, -20), width=24, dark_on_light=False).save(light)
    assert np.abs(mnist_from_image(light) - x.reshape(784)).max() < 0.05
    with pytest.raises(ValueError, match="no digit found"):
        mnist_from_grey(np.ones((50, 50)), "blank")


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory):
    """A model trained on 300 drawn 0/1/7s (jittered, various strokes), saved as the
    scripts save it."""
    from fnmlp.data.images import mnist_from_grey

    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(300):
        digit = "017"[i % 3]
        img = _draw(digit, size=int(rng.integers(80, 200)), width=int(rng.integers(6, 18)),
                    jitter=tuple(rng.integers(-15, 15, 2)), dark_on_light=bool(i % 2))
        xs.append(mnist_from_grey(np.asarray(img, np.float32) / 255))
        ys.append(i % 3)
    x, y = np.stack(xs), np.array(ys)
    model = fnmlp.mlp([784, 32, 3], "relu")
    result = fnmlp.fit(model, model.init_params(jax.random.key(0)), x, y, epochs=15,
                       batch_size=32, optimizer="adam", learning_rate=3e-3, verbose=False)
    path = tmp_path_factory.mktemp("model") / "checkpoint.npz"
    fnmlp.save_checkpoint(path, result.state, fnmlp.model_config(
        model, "softmax_cross_entropy", input={"kind": "mnist"}))
    return path, x, y


def test_load_model_carries_its_config(digit_model):
    path, x, y = digit_model
    saved = fnmlp.load_model(path)
    assert saved.model == fnmlp.mlp([784, 32, 3], "relu") and saved.input_width == 784
    proba = np.asarray(saved.predict_proba(x[:20]))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    classes = np.asarray(saved.predict_classes(x))
    np.testing.assert_array_equal(
        classes, np.asarray(fnmlp.predict(saved.model, saved.params, x)).argmax(1))
    assert (classes == y).mean() > 0.95
    # the free functions take the model first: the same classes
    np.testing.assert_array_equal(
        np.asarray(fnmlp.predict_classes(saved.model, saved.params, x)), classes)


def test_load_model_refuses_a_checkpoint_without_its_config(tmp_path):
    params = fnmlp.mlp([2, 3]).init_params(jax.random.key(0))
    fnmlp.save_checkpoint(tmp_path / "c.npz", params)
    with pytest.raises(ValueError, match=r"holds no model config, so the model cannot be"):
        fnmlp.load_model(tmp_path / "c.npz")


def test_predict_py_classifies_digits_drawn_as_pngs(digit_model, tmp_path):
    path, _, _ = digit_model
    pngs = []
    for digit in "017":
        pngs.append(tmp_path / f"my_{digit}.png")
        _draw(digit, size=256, width=20, jitter=(10, 5)).convert("RGB").save(pngs[-1])
    r = run_script("predict.py", "--checkpoint", path, *pngs, "--json")
    outs = json.loads(r.stdout)["predictions"]
    assert [o["class"] for o in outs] == [0, 1, 2]  # the model's classes are 0, 1, 7
    for out in outs:
        assert len(out["top"]) == 3 and out["top"][0][1] > 0.5
        assert sum(p for _, p in out["top"]) <= 1 + 1e-6


def test_predict_py_finds_the_page_on_a_dark_desk(digit_model, tmp_path):
    """Photos of a sheet lying turned on a dark desk that shows around it (issue 29 item
    9): the page is found first, then the digit on it."""
    from photo_like import _on_desk

    Image, _ = _pil()
    path, _, _ = digit_model
    rng = np.random.default_rng(0)
    photos = []
    for digit in "017":
        page = np.asarray(_draw(digit, size=256, width=20, jitter=(10, 5)), np.float32) / 255
        photos.append(tmp_path / f"desk_{digit}.jpg")
        Image.fromarray((_on_desk(page * 0.9, rng) * 255).astype(np.uint8)).save(photos[-1])
    r = run_script("predict.py", "--checkpoint", path, *photos, "--json")
    outs = json.loads(r.stdout)["predictions"]
    assert [o["class"] for o in outs] == [0, 1, 2], outs  # the model's classes are 0, 1, 7
    assert all(o["warnings"] == [] for o in outs), outs


def test_predict_py_reads_npy_and_idx(digit_model, tmp_path):
    path, x, y = digit_model
    np.save(tmp_path / "batch.npy", (x[:4] * 255).astype(np.uint8).reshape(4, 28, 28))
    fnmlp.data.write_idx(tmp_path / "imgs-idx3-ubyte", (x[:3] * 255).astype(np.uint8)
                         .reshape(3, 28, 28))
    r = run_script("predict.py", "--checkpoint", path, tmp_path / "batch.npy",
                   tmp_path / "imgs-idx3-ubyte")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[0].startswith(f"{tmp_path / 'batch.npy'}[0]: ")
    got = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert got == [*y[:4].tolist(), *y[:3].tolist()]


def test_predict_py_reads_a_scaled_array_with_one_overshoot_as_scaled(digit_model, tmp_path):
    """Issue 39 item 1: one bicubic overshoot (1.02) among scaled floats used to make the
    whole array raw pixels (divided by 255 again): the same rows, the same answers."""
    saved = fnmlp.load_model(digit_model[0])
    path, x, y = tmp_path / "scaled_model.npz", digit_model[1], digit_model[2]
    fnmlp.save_checkpoint(path, saved.params, fnmlp.model_config(
        saved.model, saved.loss, input={"kind": "mnist", "scale": "pixel / 255"}))
    scaled = x[:6].astype(np.float32)
    stray = scaled.copy()
    stray[2, 300] = 1.02
    np.save(tmp_path / "scaled.npy", scaled)
    np.save(tmp_path / "stray.npy", stray)
    r = run_script("predict.py", "--checkpoint", path, tmp_path / "scaled.npy",
                   tmp_path / "stray.npy", "--json")
    outs = json.loads(r.stdout)["predictions"]
    classes = [o["class"] for o in outs]
    assert classes[:6] == classes[6:] == [int(v) for v in y[:6]], outs
    top = [o["top"][0][1] for o in outs]
    np.testing.assert_allclose(np.delete(top[:6], 2), np.delete(top[6:], 2), rtol=1e-6)


def test_predict_py_bad_input_is_exit_2_and_one_line(digit_model, tmp_path):
    path, _, _ = digit_model
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    np.save(tmp_path / "wide.npy", np.zeros((2, 100)))
    toy, reg = tmp_path / "toy", tmp_path / "reg"  # checkpoints as the scripts write them
    for folder, sizes, loss in ((toy, [2, 8, 2], "softmax_cross_entropy"),
                                (reg, [1, 8, 1], "mse")):
        model = fnmlp.mlp(sizes, "tanh")
        params = model.init_params(jax.random.key(0))
        fnmlp.save_checkpoint(folder / "checkpoint.npz", fnmlp.init_state(params, fnmlp.adam()),
                              fnmlp.model_config(model, loss, input={"kind": "features",
                                                                     "width": sizes[0]}))
    png = tmp_path / "d.png"
    _draw("7").save(png)
    cases = [
        (["--checkpoint", path, tmp_path / "missing.png"], "no such file"),
        (["--checkpoint", path, not_image], "not an image"),
        (["--checkpoint", path, tmp_path / "wide.npy"], "width 784"),
        (["--checkpoint", toy / "checkpoint.npz", png], "pictures are for MNIST"),
        (["--checkpoint", reg / "checkpoint.npz", png], "loss 'mse'"),
        (["--checkpoint", tmp_path / "none.npz", png], "no such file"),
    ]
    for args, needle in cases:
        r = run_script("predict.py", *args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_predict_py_photos_warnings_save_input_and_one_bad_file(digit_model, tmp_path):
    """A batch with one bad file: its line on stderr, the others answered, exit 2; a
    doubtful picture's warning on stderr and in --json; --save-input writes what the model
    sees, which is what the library computes."""
    from fnmlp.data.images import mnist_from_image

    Image, _ = _pil()
    path, _, _ = digit_model
    good = tmp_path / "seven.png"
    _draw("7", size=256, width=20).save(good)
    two = tmp_path / "two.png"  # two digits side by side: doubtful
    pair = np.concatenate([np.asarray(_draw("1", 200, width=16)),
                           np.asarray(_draw("0", 200, width=16))], axis=1)
    Image.fromarray(pair).save(two)
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    saved = tmp_path / "seen"
    r = run_script("predict.py", "--checkpoint", path, good, bad, two, "--json",
                   "--save-input", saved, check=False)
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert [o["input"] for o in out["predictions"]] == [str(good), str(two)]
    assert out["predictions"][0]["class"] == 2 and out["predictions"][0]["warnings"] == []
    assert any("large ink components" in w for w in out["predictions"][1]["warnings"])
    assert out["failed"][0]["input"] == str(bad) and "not an image" in out["failed"][0]["error"]
    err = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}: not an image") for line in err)
    assert any(line.startswith(f"{two}: warning: 2 large ink components") for line in err)
    seen = Image.open(saved / "seven.png.input.png")
    assert seen.size == (280, 280)
    small = np.asarray(seen, np.float32)[::10, ::10] / 255  # [28, 28]
    np.testing.assert_allclose(small.reshape(784), mnist_from_image(good), atol=1 / 255)


def test_predict_py_an_unreadable_idx_file_is_one_failed_input(digit_model, tmp_path):
    """A breaker's find: read_idx's ValueError stopped the whole batch, and the good
    .npy beside it got no answer; now it is one failed input like a bad picture."""
    path, _, _ = digit_model
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((1, 784), np.float32))
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"garbage, no IDX header")
    r = run_script("predict.py", "--checkpoint", path, good, bad, "--json", check=False)
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert [o["input"] for o in out["predictions"]] == [f"{good}"]
    assert out["failed"][0]["input"] == str(bad)
    assert "not a readable IDX file" in out["failed"][0]["error"]


# ----------------------------------------------------------------------------- issue 43


def _imports_jax(r) -> bool:
    """Whether a run with PYTHONPROFILEIMPORTTIME=1 imported jax (python -X importtime)."""
    modules = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines()
               if ln.startswith("import time:")]
    assert modules, r.stderr[:300]
    return any(m == "jax" or m.startswith(("jax.", "jaxlib")) for m in modules)


@pytest.mark.parametrize("script, args, needle", [
    ("train_mnist.py", ["--n", "5000"], "unrecognized arguments: --n"),  # not --no-download
    ("train_mnist.py", ["--layers", "dense:8,tanhh"], "--layers item 2 'tanhh'"),
    ("train_mnist.py", ["--mnist-dir", "/nonexistent/mnist"], "is not a folder"),
    ("compare.py", ["--arch", "8", "--mnist-dir", "/nonexistent/mnist"], "is not a folder"),
    ("compare.py", ["--arch", "8", "--dataset", "moons", "--train-size", "9"],
     "--train-size is for --dataset mnist"),
])
def test_mistakes_are_answered_before_jax_is_imported(script, args, needle):
    r = run_script(script, *args, "--out", "/tmp/fnmlp-bad-flags", check=False,
                   env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert r.returncode == 2 and needle in r.stderr, r.stderr[-500:]
    assert not _imports_jax(r)


def test_train_size_resume_of_another_architecture_and_predict_from_a_folder(tmp_path,
                                                                             mnist_dir):
    out = tmp_path / "run"
    r = run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--train-size", "100",
                   "--epochs", "1", "--hidden", "8", "--batch-size", "32", "--quiet",
                   "--out", out)
    m = _metrics(out)
    assert (m["config"]["n_train"], m["config"]["train_size"]) == (100, 100)
    assert m["config"]["n_train_available"] == 256
    assert "training" in r.stdout and "wall" in r.stdout
    # --resume with another architecture is refused before the data is read: the training
    # images are broken, and the answer is still about the architecture
    broken = tmp_path / "broken"
    shutil.copytree(mnist_dir, broken)
    image = next(broken.glob("train-images*"))
    image.write_bytes(image.read_bytes()[:100])
    r = run_script("train_mnist.py", "--mnist-dir", broken, "--epochs", "2", "--hidden", "9",
                   "--batch-size", "32", "--resume", "--out", out, check=False)
    _one_line_exit_2(r, "holds a 784-8-relu-10 network; the flags ask for 784-9-relu-10")
    r = run_script("train_mnist.py", "--mnist-dir", mnist_dir, "--train-size", "300",
                   "--epochs", "1", "--out", tmp_path / "big", check=False)
    _one_line_exit_2(r, "--train-size 300 is more than the 256 training examples")
    # predict.py takes the run's folder for its checkpoint
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.float32))
    r = run_script("predict.py", "--checkpoint", out, tmp_path / "x.npy", "--json")
    assert json.loads(r.stdout)["checkpoint"] == str(out / "checkpoint.npz")
    r = run_script("predict.py", "--checkpoint", tmp_path, tmp_path / "x.npy", check=False)
    _one_line_exit_2(r, "is a folder without checkpoint.npz")


def _readme_block_after(marker: str) -> str:
    """The first fenced block after ``marker`` in scripts/README.md."""
    text = open(os.path.join(REPO, "scripts", "README.md")).read()
    rest = text[text.index(marker) + len(marker):]
    return rest.split("```", 2)[1].split("\n", 1)[1]


def test_readme_gradcheck_output_is_what_the_script_prints():
    """scripts/README.md's sample output of gradcheck.py, the error columns aside (their
    last digits depend on the machine)."""
    command = _readme_block_after("## 3. Comparing gradients from the command line")
    args = command.split("scripts/gradcheck.py", 1)[1].split()
    shown = _readme_block_after(command.strip() + "\n```")
    r = run_script("gradcheck.py", *args)
    mask = lambda t: re.sub(r"\d\.\d\de[-+]\d\d", "X", t).strip()  # noqa: E731
    assert mask(r.stdout) == mask(shown)


def test_readme_imbalanced_recall_is_what_the_command_gives(tmp_path):
    """The minority class's test recall scripts/README.md quotes for its command."""
    text = open(os.path.join(REPO, "scripts", "README.md")).read()
    quoted = re.search(r"test recall of the minority class ([\d.]+) and", text)
    run_script("train_toy.py", "--dataset", "imbalanced", "--n", "2000", "--hidden", "16",
               "--activation", "relu", "--epochs", "20", "--out", tmp_path, "--quiet")
    # 32 minority points in the test set: one point is 0.03; allow one either way
    assert _metrics(tmp_path)["test_recall"][1] == pytest.approx(float(quoted[1]), abs=0.035)


def test_resume_without_lr_keeps_the_checkpoints_rate(tmp_path):
    """A breaker's finding: --lr has a default, so --resume without --lr trained at the
    script's default instead of the checkpoint's rate (fit's rule: a name alone keeps
    the state's rate; a rate asked for is applied)."""
    args = ["--dataset", "moons", "--n", "200", "--seed", "3", "--quiet", "--out", tmp_path]
    run_script("train_toy.py", *args, "--epochs", "2", "--lr", "0.05")
    r = run_script("train_toy.py", *args, "--epochs", "3", "--resume")
    assert "learning rate" not in r.stderr
    rates = [h["learning_rate"] for h in
             json.loads((tmp_path / "metrics.json").read_text())["history"]]
    assert rates == pytest.approx([0.05] * 3)
    r = run_script("train_toy.py", *args, "--epochs", "4", "--resume", "--lr", "0.02")
    assert "learning rate 0.05 -> 0.02" in r.stderr
    last = json.loads((tmp_path / "metrics.json").read_text())["history"][-1]
    assert last["learning_rate"] == pytest.approx(0.02)


@pytest.mark.parametrize("script, extra", [("compare.py", ["--arch", "8"]),
                                           ("train_toy.py", []), ("gradcheck.py", [])])
@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999"])
def test_every_scripts_seed_is_checked_by_one_rule(script, extra, seed):
    """A breaker's find: compare.py read --seed with int(): a traceback (OverflowError)
    for 1e20, 'expected non-negative integer' without the flag's name for -1, and 2**32
    accepted. Every script's --seed is cli.seed_int: exit 2, one line naming the flag."""
    r = run_script(script, *extra, "--seed", seed, check=False, timeout=120)
    _one_line_exit_2(r, "argument --seed: must be an integer in [0, 2**32)")
