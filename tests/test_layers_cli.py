"""Architectures from the command line: per-layer activations, dropout, no hidden layer
and --layers specs on every script and gradcheck.py; bad specs exit 2 with one line."""

import json

import numpy as np
import pytest
from test_data import _write_mnist
from test_scripts import _run

import fnmlp


def _types(out):
    config = json.loads((out / "metrics.json").read_text())["config"]
    return [layer["type"] for layer in config["model"]["layers"]], config


def test_toy_with_an_activation_and_a_dropout_per_layer(tmp_path):
    _run("train_toy.py", "--n", "200", "--epochs", "3", "--hidden", "12,8", "--activation",
         "tanh,relu", "--dropout", "0.1,0", "--out", str(tmp_path), "--quiet")
    types, config = _types(tmp_path)
    assert types == ["Dense", "Tanh", "Dropout", "Dense", "Relu", "Dense"]
    assert config["model"]["layers"][2]["rate"] == 0.1 and config["sizes"] == [2, 12, 8, 2]
    model = fnmlp.load_model(tmp_path / "checkpoint.npz")
    assert [type(layer).__name__ for layer in model.network.layers] == types
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    p = np.asarray(model.predict_proba(x))
    np.testing.assert_allclose(p, np.asarray(model.predict_proba(x)))  # no dropout: same
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_toy_without_a_hidden_layer_is_the_lessons_first_network(tmp_path):
    _run("train_toy.py", "--n", "200", "--epochs", "5", "--hidden", "0", "--out",
         str(tmp_path), "--quiet")
    types, config = _types(tmp_path)
    assert types == ["Dense"] and config["sizes"] == [2, 2]


def test_regression_from_a_layers_spec_and_a_sweep(tmp_path):
    _run("train_regression.py", "--n", "120", "--epochs", "3", "--layers",
         "dense:16,tanh,layernorm,dense:8,gelu,dropout:0.2", "--out", str(tmp_path / "a"),
         "--quiet")
    types, config = _types(tmp_path / "a")
    assert types == ["Dense", "Tanh", "LayerNorm", "Dense", "Gelu", "Dropout", "Dense"]
    assert config["sizes"] == [1, 16, 8, 1]
    _run("train_regression.py", "--n", "120", "--epochs", "2", "--hidden", "8,8",
         "--activation", "relu,tanh", "--dropout", "0.1", "--sweep", "lr=1e-2,3e-2",
         "--out", str(tmp_path / "b"), "--quiet")
    best = fnmlp.load_model(tmp_path / "b" / "checkpoint.npz")
    assert [type(layer).__name__ for layer in best.network.layers] == [
        "Dense", "Relu", "Dropout", "Dense", "Tanh", "Dropout", "Dense"]


def test_mnist_with_two_activations_and_dropout(tmp_path):
    (tmp_path / "idx").mkdir()
    _write_mnist(tmp_path / "idx", n_train=128, n_test=32)
    out = tmp_path / "run"
    _run("train_mnist.py", "--mnist-dir", str(tmp_path / "idx"), "--epochs", "1", "--hidden",
         "16,8", "--activation", "tanh,relu", "--dropout", "0.2", "--batch-size", "32",
         "--out", str(out), "--quiet")
    types, _ = _types(out)
    assert types == ["Dense", "Tanh", "Dropout", "Dense", "Relu", "Dropout", "Dense"]
    assert (out / "weights.png").exists()


@pytest.mark.parametrize("args, needle", [
    (["--layers", "dense:16,tanhh"], "--layers item 2 'tanhh'"),
    (["--layers", "dense:0,relu"], "--layers item 1 'dense:0'"),
    (["--layers", "dense:8,dropout:1.5"], "--layers item 2 'dropout:1.5'"),
    (["--layers", "dense:8,softmax"], "leave softmax out"),
    (["--activation", "tanh,nope"], "'nope' is not an activation"),
    (["--dropout", "0.2,x"], "'x'"),
    (["--hidden", "8,8", "--activation", "tanh,relu,relu"], "--activation gives 3 values"),
    (["--hidden", "8,8", "--dropout", "0.1,0.1,0.1"], "--dropout gives 3 values"),
])
def test_bad_architecture_flags_exit_2_with_one_line(args, needle):
    r = _run("train_toy.py", *args, "--epochs", "1", check=False)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_gradcheck_script_takes_the_same_flags_and_lists_layers():
    r = _run("gradcheck.py", "--sizes", "4,9,7,3", "--activation", "tanh,gelu", "--dropout",
             "0.3", "--json")
    d = json.loads(r.stdout)
    assert d["passed"] and d["failing_layers"] == []
    layers = {row["layer"] for row in d["layers"]["leaves"]}
    assert layers == {"0:Dense", "1:Tanh", "2:Dropout", "3:Dense", "4:Gelu", "5:Dropout",
                      "6:Dense"}
    assert {row["leaf"] for row in d["layers"]["leaves"]} == {"dx", "w", "b"}
    r = _run("gradcheck.py", "--sizes", "4,3", "--layers", "dense:6,elu,layernorm")
    assert "2:LayerNorm  scale" in r.stdout and "overall: PASSED" in r.stdout
    r = _run("gradcheck.py", "--sizes", "4,8,3", "--activation", "tanh,relu", check=False)
    assert r.returncode == 2 and "--activation gives 2 values" in r.stderr
