"""A sweep of bad input over every public entry point: each raises ValueError or
TypeError naming the problem (a CLI exits 2 with one line), never a raw XLA error, a
hang or a silently wrong result."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

import fnmlp
from fnmlp import data, optim, parallel, schedules

P = fnmlp.init_mlp(jax.random.key(0), [4, 5, 3])
X = np.ones((6, 4), np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])

BAD_X = {
    "string": ("abc", TypeError, "x must be a numeric"),
    "strings array": (np.full((6, 4), "a"), TypeError, "x must be a numeric"),
    "object array": (np.array([[1, None, 2, 3]] * 6, dtype=object), TypeError, "numeric"),
    "bool array": (np.ones((6, 4), bool), TypeError, "x must be a numeric"),
    "ragged list": ([[1, 2], [3]], ValueError, "x must be a numeric array"),
    "nan": (np.where(np.eye(6, 4) > 0, np.nan, 1.0), ValueError, "x must be finite"),
    "inf": (np.full((6, 4), np.inf), ValueError, "x must be finite"),
    "empty": (np.zeros((0, 4)), ValueError, "at least one example"),
    "wrong width": (np.ones((6, 7)), ValueError, "x must have 4 features"),
    "3-d": (np.ones((6, 4, 2)), ValueError, "x must have 2 dimension"),
    "scalar": (np.float32(1), ValueError, "x must have 2 dimension"),
}
BAD_Y = {
    "out of range": (np.array([0, 1, 2, 0, 1, 3]), ValueError, r"in \[0, 3\); got 3"),
    "negative": (np.array([0, -1, 2, 0, 1, 2]), ValueError, r"in \[0, 3\); got -1"),
    "fractional": (np.array([0, 1, 0.5, 0, 1, 2]), ValueError, "whole-number"),
    "nan": (np.array([0, 1, np.nan, 0, 1, 2]), ValueError, "y must be finite"),
    "strings": (np.array(list("abcdef")), TypeError, "y must be a numeric"),
    "object": (np.array([0, 1, None, 0, 1, 2], dtype=object), TypeError, "y must be a numeric"),
    "wrong length": (Y[:4], ValueError, r"shape \(6,\); got shape \(4,\)"),
    "2-d": (np.ones((6, 3)), ValueError, "integer class labels"),
}

BATCH_FNS = {
    "loss": lambda x, y: fnmlp.loss(P, x, y),
    "manual_grad": lambda x, y: fnmlp.manual_grad(P, x, y),
    "manual_value_and_grad": lambda x, y: fnmlp.manual_value_and_grad(P, x, y),
    "check_gradients": lambda x, y: fnmlp.check_gradients(P, x, y),
    "per_example_grads": lambda x, y: fnmlp.per_example_grads(P, x, y),
    "evaluate": lambda x, y: fnmlp.evaluate(P, x, y),
    "fit": lambda x, y: fnmlp.fit(P, x, y, epochs=1, batch_size=2, verbose=False),
    "fit validation_data": lambda x, y: fnmlp.fit(P, X, Y, epochs=1, batch_size=2,
                                                  validation_data=(x, y), verbose=False),
}


@pytest.mark.parametrize("fn", sorted(BATCH_FNS))
@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_x(fn, case):
    x, err, match = BAD_X[case]
    if fn == "fit" and case == "empty":
        match = "at least one example|same length"
    y = Y if case != "empty" else Y[:0]
    with pytest.raises(err, match=match.replace("x must", "x(_val)? must")):
        BATCH_FNS[fn](x, y)


@pytest.mark.parametrize("fn", sorted(BATCH_FNS))
@pytest.mark.parametrize("case", sorted(BAD_Y))
def test_bad_y(fn, case):
    y, err, match = BAD_Y[case]
    if fn == "fit" and case == "wrong length":
        match = "same length"
    with pytest.raises(err, match=match.replace("y must", "y(_val)? must")):
        BATCH_FNS[fn](X, y)


@pytest.mark.parametrize("x, err, match", [
    (np.ones(5), ValueError, "x must have 4 features"),
    (np.ones((2, 4)), ValueError, "x must have 1 dimension"),
    (np.array([1.0, np.nan, 0, 0]), ValueError, "x must be finite"),
    ("abcd", TypeError, "numeric"),
])
def test_forward_bad_x(x, err, match):
    with pytest.raises(err, match=match):
        fnmlp.forward(P, x)


@pytest.mark.parametrize("fn", [fnmlp.batched_forward, fnmlp.predict,
                                fnmlp.forward_with_cache])
@pytest.mark.parametrize("case", ["string", "nan", "empty", "wrong width", "3-d"])
def test_batched_forward_bad_x(fn, case):
    x, err, match = BAD_X[case]
    with pytest.raises(err, match=match):
        fn(P, x)


@pytest.mark.parametrize("call, match", [
    (lambda: fnmlp.init_mlp(jax.random.key(0), [4, 0, 3]), "positive integers; got 0"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), [4, -2]), "positive integers; got -2"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), []), "at least two"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), "4,3"), "positive integers"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), None), "sizes must be a list"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), [4, 3], "nope"), "activation must be one of"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), [4, 3], init="xavier"), "init must be one of"),
    (lambda: fnmlp.init_mlp(jax.random.key(0), [4, 3], dtype=jnp.int32), "float dtype"),
    (lambda: fnmlp.init_mlp(0, [4, 3]), "key must be a PRNG key"),
    (lambda: fnmlp.init_mlp("seed", [4, 3]), "key must be a PRNG key"),
    (lambda: fnmlp.loss(P, X, Y, "tanh", "nll"), "loss must be one of"),
    (lambda: fnmlp.loss(P, X, Y, 3), "activation must be one of"),
    (lambda: fnmlp.loss([], X, Y), "params must be a non-empty list"),
    (lambda: fnmlp.loss([{"w": np.ones((4, 3))}], X, Y), "keys 'b' and 'w'"),
    (lambda: fnmlp.loss([{"w": np.ones(4), "b": np.ones(3)}], X, Y), r"w of shape \[D_in"),
    (lambda: fnmlp.compare_grads(P, P, rtol=None, mask=None) and fnmlp.compare_grads(P, P[:1]),
     "structure"),
    (lambda: fnmlp.evaluate(P, X, Y, batch_size=0), "batch_size"),
    (lambda: fnmlp.per_example_grads(P, X, Y, grad="finite"), "grad must be one of"),
    (lambda: fnmlp.make_trainer(fnmlp.sgd(0.1), batch_size=0), "batch_size"),
    (lambda: fnmlp.make_trainer(fnmlp.sgd(0.1), 4, activation="x"), "activation"),
    (lambda: fnmlp.make_train_step(fnmlp.sgd(0.1), loss="hinge"), "loss must be one of"),
    (lambda: fnmlp.fit(P, X, Y, optimizer=42), "optimizer must be a name"),
    (lambda: fnmlp.fit(P, X, Y, validation_split=0.5, validation_data=(X, Y)), "not both"),
    (lambda: fnmlp.fit(P, X, Y, validation_data=X), "pair"),
    (lambda: fnmlp.fit(P, X, Y, batch_size=4, learning_rate=float("inf")), "learning_rate"),
    (lambda: optim.get_optimizer("sgd", -1), "learning_rate"),
    (lambda: optim.set_learning_rate(optim.sgd(0.1).init(P), 0), "learning_rate"),
    (lambda: schedules.exponential_decay(0.1, decay_steps=-1), "decay_steps"),
    (lambda: schedules.inverse_time(float("nan"), 10), "learning_rate"),
    (lambda: schedules.cosine_warmup(0.1, -1, 10), "warmup_steps"),
    (lambda: data.make_moons(0), "n must be an integer >= 2"),
    (lambda: data.make_blobs(100, k=1), "k must be an integer >= 2"),
    (lambda: data.make_spirals(100, arms=1), "arms must be"),
    (lambda: data.make_sine(-5), "n must be"),
    (lambda: data.train_test_split(X, Y[:3]), "same length"),
    (lambda: data.load_mnist_idx("/nonexistent"), "is not a folder"),
    (lambda: data.load_mnist_idx("/tmp", split="validation"), "split must be one of"),
    (lambda: data.load_mnist_tfds(split=""), "split must be"),
    (lambda: data.write_idx("/tmp/x.idx", np.ones((2, 2), np.float32)), "uint8"),
    (lambda: fnmlp.load_checkpoint("/nonexistent/c.npz", P), "no checkpoint"),
    (lambda: parallel.make_mesh(0), "devices must be an integer >= 1"),
])
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        call()


def test_optimizer_update_with_mismatched_trees_is_a_clear_error():
    opt = fnmlp.adam(0.1)
    state = opt.init(P)
    with pytest.raises((ValueError, TypeError)):
        opt.update(P[:1], state, P)


def test_checkpoint_into_wrong_template(tmp_path):
    state = fnmlp.init_state(P, fnmlp.sgd(0.1))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state)
    other = fnmlp.init_state(fnmlp.init_mlp(jax.random.key(0), [4, 6, 3]), fnmlp.sgd(0.1))
    with pytest.raises(ValueError, match=r"layer 0 'b' has shape \(5,\)"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", other)
    with pytest.raises(ValueError, match="does not match the model"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", fnmlp.init_state(P, fnmlp.adam(0.1)))


CLI = [
    ("gradcheck.py", ["--sizes", "4,-1"]), ("gradcheck.py", ["--seed", "x"]),
    ("gradcheck.py", ["--batch-size", "abc"]), ("gradcheck.py", ["--nonsense"]),
    ("train_toy.py", ["--n", "0"]), ("train_toy.py", ["--epochs", "1.5"]),
    ("train_toy.py", ["--hidden", "a,b"]), ("train_toy.py", ["--activation", "RELU"]),
    ("train_toy.py", ["--batch-size", "-4"]), ("train_toy.py", ["--lr", "inf"]),
    ("train_toy.py", ["--devices", "0"]), ("train_toy.py", ["--n", "3", "--batch-size", "32"]),
    ("train_regression.py", ["--dataset", "sinus"]), ("train_regression.py", ["--n", "-1"]),
    ("train_mnist.py", ["--hidden", ""]), ("train_mnist.py", ["--grad", "numeric"]),
    ("train_mnist.py", ["--mnist-dir", "/tmp"]),
]


@pytest.mark.parametrize("script, args", CLI)
def test_cli_bad_input_exit_2_one_line(script, args):
    r = subprocess.run([sys.executable, f"{REPO}/scripts/{script}", *args, "--out",
                        "/tmp/fnmlp-sweep"] if script != "gradcheck.py" else
                       [sys.executable, f"{REPO}/scripts/{script}", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], r.stderr
