"""Crash safety: a run killed with SIGKILL in the middle of a checkpoint write, then
resumed, ends bitwise equal to an uninterrupted run; a diverging run writes no NaN
checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import REPO

TOY = f"{REPO}/scripts/train_toy.py"
ARGS = ["--dataset", "spirals", "--n", "240", "--epochs", "6", "--seed", "5", "--quiet"]

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


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


def test_sigkill_during_checkpoint_write_then_resume_is_bitwise_equal(tmp_path):
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    r = subprocess.run([sys.executable, TOY, *ARGS, "--out", str(full)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    marker = tmp_path / "writing"
    env = dict(os.environ, FNMLP_MARKER=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DURING_WRITE, TOY, *ARGS, "--out",
                             str(crashed)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
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
    meta_epoch = int(_arrays(ckpt)["epoch"])
    assert meta_epoch == 2  # ... and checkpoint.npz is the intact one from epoch 2

    r = subprocess.run([sys.executable, TOY, *ARGS, "--out", str(crashed), "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr and "at epoch 2" in r.stderr
    a, b = _arrays(full / "checkpoint.npz"), _arrays(ckpt)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    history = json.loads((crashed / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [3, 4, 5, 6]  # metrics.json of the crashed run
    # was never written, so only the resumed epochs are in its history


def test_divergence_exits_1_and_writes_no_nan_checkpoint(tmp_path):
    r = subprocess.run([sys.executable, TOY, "--lr", "1e6", "--optimizer", "sgd", "--epochs",
                        "5", "--activation", "relu", "--hidden", "64,64", "--out",
                        str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "diverged in epoch 1" in r.stderr and "Traceback" not in r.stderr
    assert "no checkpoint of it was written" in r.stderr
    ckpt = tmp_path / "checkpoint.npz"
    if ckpt.exists():  # nothing written, or only finite params
        assert all(np.isfinite(v).all() for v in _arrays(ckpt).values()
                   if v.dtype.kind == "f")
