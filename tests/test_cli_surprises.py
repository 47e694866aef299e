"""What a new user tripped over in the scripts: tracebacks where one line belongs, checks
that came after an epoch of training, quiet surprises, and --help texts."""

import glob
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO

import fnmlp

TOY = ["--dataset", "moons", "--n", "120", "--batch-size", "16", "--quiet"]


def _run(script, *args, cwd=None, folder="scripts"):
    return subprocess.run([sys.executable, f"{REPO}/{folder}/{script}", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def _one_line_exit_2(r, needle):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]
    assert "epoch 1" not in r.stderr + r.stdout  # refused before any training


def test_out_is_an_existing_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    _one_line_exit_2(_run("train_toy.py", *TOY, "--out", str(f)), "is a file")


@pytest.mark.parametrize("resume", [False, True])
def test_out_not_writable_is_refused_before_training(tmp_path, resume):
    where = "/sys/fnmlp-not-writable"  # refused even to root
    r = _run("train_toy.py", *TOY, "--epochs", "3", "--out", where,
             *(["--resume"] if resume else []))
    _one_line_exit_2(r, "is not a writable folder")


def test_resume_from_a_truncated_checkpoint(tmp_path):
    assert _run("train_toy.py", *TOY, "--epochs", "2", "--out", str(tmp_path)).returncode == 0
    ckpt = tmp_path / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    r = _run("train_toy.py", *TOY, "--epochs", "4", "--out", str(tmp_path), "--resume")
    _one_line_exit_2(r, "not a readable fnmlp checkpoint")


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    assert _run("train_toy.py", *TOY, "--epochs", "4", "--out", str(tmp_path)).returncode == 0
    before = json.loads((tmp_path / "metrics.json").read_text())
    r = _run("train_toy.py", *TOY, "--epochs", "2", "--out", str(tmp_path), "--resume")
    _one_line_exit_2(r, "is at epoch 4, past --epochs 2")
    assert json.loads((tmp_path / "metrics.json").read_text()) == before  # untouched
    # the same epoch count: nothing to train, said so, metrics consistent
    r = _run("train_toy.py", *TOY, "--epochs", "4", "--out", str(tmp_path), "--resume")
    assert r.returncode == 0 and "nothing to train" in r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["epochs"] == 4 and len(m["history"]) == 4


@pytest.mark.parametrize("hidden", ["32,,16", ",32", "32,"])
def test_empty_entries_in_hidden_are_refused(hidden, tmp_path):
    r = _run("train_toy.py", *TOY, "--hidden", hidden, "--out", str(tmp_path))
    assert r.returncode == 2 and "no empty entries" in r.stderr


def test_params_only_template_loads_the_params_of_a_state(tmp_path):
    params = fnmlp.init_mlp(jax.random.key(0), [2, 5, 3])
    state = fnmlp.init_state(params, fnmlp.adam(0.1))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, {"note": 1})
    template = fnmlp.init_mlp(jax.random.key(1), [2, 5, 3])
    loaded, config = fnmlp.load_checkpoint(tmp_path / "c.npz", template)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="the checkpoint has 2 layers, the model 3"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", fnmlp.init_mlp(jax.random.key(1),
                                                                [2, 5, 5, 3]))


def test_missing_mnist_message_names_installable_routes(tmp_path):
    from fnmlp.data import MnistUnavailableError, load_mnist_tfds

    with pytest.raises(MnistUnavailableError) as info:
        load_mnist_tfds("train", data_dir=str(tmp_path), download=False)
    msg = str(info.value)
    assert "mnist-build" not in msg and "fnmlp[mnist]" in msg and "no TensorFlow" in msg


def test_gpu_run_help_does_not_start_the_run(tmp_path):
    r = subprocess.run(["bash", f"{REPO}/benchmarks/gpu_run.sh", "--help"], capture_output=True,
                       text=True, timeout=30, cwd=tmp_path, env={**os.environ, "OUT": "x"})
    assert r.returncode == 0 and "usage:" in r.stdout
    assert not (tmp_path / "x").exists() and not os.path.exists(f"{REPO}/x")


SCRIPTS = [("scripts", os.path.basename(p)) for p in sorted(glob.glob(f"{REPO}/scripts/*.py"))]
BENCHES = [("benchmarks", os.path.basename(p))
           for p in sorted(glob.glob(f"{REPO}/benchmarks/*.py"))
           if not os.path.basename(p).startswith("_") and "torch_threads" not in p]


@pytest.mark.parametrize("folder, script", SCRIPTS + BENCHES)
def test_help_shows_each_default_once_and_a_whole_description(folder, script):
    r = _run(script, "--help", folder=folder, cwd=f"{REPO}/{folder}")
    assert r.returncode == 0, r.stderr
    text = r.stdout
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
