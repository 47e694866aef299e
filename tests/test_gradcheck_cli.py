"""scripts/gradcheck.py: JSON output, exit codes, and a wrong derivative caught."""

import json
import subprocess
import sys

import jax.numpy as jnp
import pytest
from conftest import REPO

SCRIPT = f"{REPO}/scripts/gradcheck.py"


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=300)


def test_issue_example_passes_tightly():
    r = _run("--sizes", "5,16,16,3", "--activation", "tanh", "--loss",
             "softmax_cross_entropy", "--dtype", "float64", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["passed"] is True
    assert d["max_rel_err_manual_vs_autodiff"] <= 1e-9
    assert d["max_rel_err_vs_finite_diff"] <= 1e-6
    assert d["config"]["sizes"] == [5, 16, 16, 3]


def test_default_run_passes_and_prints_a_table():
    r = _run()
    assert r.returncode == 0, r.stderr
    assert "manual vs autodiff: PASSED" in r.stdout and "overall: PASSED" in r.stdout


def test_float32_json():
    r = _run("--dtype", "float32", "--activation", "relu", "--loss", "mse", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["max_rel_err_manual_vs_autodiff"] <= 1e-4


@pytest.mark.parametrize("args, needle", [
    (["--activation", "foo"], "'foo' is not an activation; choose from elu"),
    (["--loss", "bar"], "invalid choice: 'bar'"),
    (["--sizes", "3"], "at least two positive layer sizes"),
    (["--sizes", "3,0,2"], "at least two positive layer sizes"),
    (["--sizes", "3,x"], "comma-separated integers"),
    (["--batch-size", "0"], "positive integer"),
    (["--dtype", "float16"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    r = _run(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_wrong_derivative_exits_1(monkeypatch, capsys):
    sys.path.insert(0, f"{REPO}/scripts")
    try:
        import gradcheck as cli
    finally:
        sys.path.pop(0)
    from fnmlp import activations

    wrong = activations.Activation("tanh", jnp.tanh, lambda z: 1 - jnp.tanh(z))
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    assert cli.main(["--activation", "tanh", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] is False and d["max_rel_err_manual_vs_autodiff"] > 1e-3
