"""PENDING (for the lead to merge into the cli's test file once fnmlp.cli lands): the
scripts' --class-weight flag, moved unchanged from test_weights.py (issue 21). Only the
imports changed; base_parser / members_from_args / run / parse_class_weight are the old
fnmlp.cli names and may need the new package's spelling."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from fnmlp.cli import parse_class_weight

from fnmlp import data


def test_class_weight_flag_parsing():
    import argparse

    assert parse_class_weight("balanced") == "balanced"
    assert parse_class_weight("0=1,1=19") == {0: 1.0, 1: 19.0}
    for bad in ("0=1,0=2", "a=1", "0=-1", "0=inf", "heavy", "0:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_class_weight(bad)


def _run_toy(*flags):
    """What scripts/train_toy.py runs, in this process (the imports and compiles shared)."""
    from fnmlp.cli import base_parser, members_from_args, run

    args = base_parser("toy", hidden="8", activation="tanh", optimizer="adam", lr=0.01,
                       batch_size=32, epochs=2, out="unused").parse_args(list(flags))
    ds = data.make_imbalanced(400, seed=0)
    train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=0)
    run(args, members=members_from_args(args), train=train, test=test,
        loss="softmax_cross_entropy", dataset="imbalanced")


def test_scripts_class_weight(tmp_path):
    _run_toy("--class-weight", "0=1,1=19", "--quiet", "--out", str(tmp_path / "one"))
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m["config"]["class_weight"] == {"0": 1.0, "1": 19.0}
    cm = np.asarray(m["test_confusion_matrix"])
    assert cm.sum() == 100 and len(m["test_recall"]) == 2
    assert m["test_recall"][1] == pytest.approx(cm[1, 1] / cm[1].sum())
    assert m["test_balanced_accuracy"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(1)))
    _run_toy("--class-weight", "balanced", "--sweep", "lr=0.01,0.02", "--quiet", "--out",
             str(tmp_path / "pop"))
    pop = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert pop["config"]["class_weight"] == "balanced"
    assert all("test_balanced_accuracy" in row for row in pop["members"])
    member = json.loads((tmp_path / "pop" / "members" / "1" / "metrics.json").read_text())
    assert len(member["test_precision"]) == 2
    r = subprocess.run([sys.executable, f"{REPO}/scripts/train_regression.py",
                        "--class-weight", "balanced", "--epochs", "1", "--out",
                        str(tmp_path / "reg")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "--class-weight needs a classification loss" in r.stderr
