"""fnmlp._validate, the host checks every entry point runs first: bad input raises a
ValueError (or TypeError) naming the argument, what was expected and what arrived, before
any computation (a CLI exits 2 with one line); never a raw XLA error, a hang or a silently
wrong result. Also: a loss that does not take what the model outputs (softmax twice, a
probability loss on logits) is refused before anything compiles; fit's other checks (a
resumed state, weights); a tampered checkpoint (io.checkpoint); the scripts' flags."""

import io
import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles, run_script

import fnmlp
from fnmlp import data, optim, parallel, schedules
from fnmlp.layers import Dense, Relu, Softmax, Tanh, serial
from fnmlp.population import grid, make_population

MODEL = fnmlp.mlp([4, 5, 3], "tanh")


@pytest.fixture(scope="module")
def params():
    return MODEL.init_params(jax.random.key(0))


X = np.ones((6, 4), np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])

BAD_BATCHES = [
    (np.ones((6, 5), np.float32), Y, r"x must have 4 features.*\(6, 5\)"),
    (np.ones((6, 4, 1), np.float32), Y, r"x must have 2 dimension.*\(6, 4, 1\)"),
    (np.ones(4, np.float32), Y, r"x must have 2 dimension.*\(4,\)"),
    (np.zeros((0, 4), np.float32), Y[:0], r"x must hold at least one example"),
    (X, np.array([0, 1, 2, 0, 1, 3]), r"labels must be in \[0, 3\); got 3 at index 5"),
    (X, np.array([0, 1, -1, 0, 1, 2]), r"labels must be in \[0, 3\); got -1 at index 2"),
    (X, np.array([0, 1, 1.5, 0, 1, 2]), r"whole-number class labels; got 1.5 at index 2"),
    (X, Y[:5], r"y must be integer class labels of shape \(6,\); got shape \(5,\)"),
    (X, np.ones((6, 3)), r"y must be integer class labels of shape \(6,\)"),
]


@pytest.mark.parametrize("fn", ["loss", "manual_grad", "check_gradients"])
@pytest.mark.parametrize("x, y, match", BAD_BATCHES)
def test_bad_batches(params, fn, x, y, match):
    with pytest.raises(ValueError, match=match):
        getattr(fnmlp, fn)(MODEL, params, x, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(params, bad):
    x = X.copy()
    x[2, 1] = bad
    for fn in (fnmlp.loss, fnmlp.manual_grad):
        with pytest.raises(ValueError, match=r"x must be finite; got .* at index \(2, 1\)"):
            fn(MODEL, params, x, Y)
    with pytest.raises(ValueError, match="x must be finite"):
        fnmlp.grad.batched_predict(MODEL, params, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, jnp.bfloat16])
@pytest.mark.parametrize("values", [(np.nan,), (np.inf,), (-np.inf,), (np.inf, -np.inf),
                                    (np.nan, np.inf)])
def test_check_finite_finds_every_kind_and_counts(dtype, values):
    # the fast path (min and max) must not miss a NaN beside an inf, nor opposite infs
    from fnmlp._validate import check_finite

    a = np.zeros((7, 5), np.float32)
    for i, v in enumerate(values):
        a[3 + i, 4 - i] = v
    with pytest.raises(ValueError, match=rf"x must be finite; got .* at index \(3, 4\)"
                                         rf" \({len(values)} non-finite"):
        check_finite(a.astype(dtype), "x")
    check_finite(np.zeros((0, 5), dtype), "x")  # empty: nothing to check
    check_finite(np.full((7, 5), jnp.finfo(dtype).max, dtype), "x")  # large, finite


def test_the_inputs_are_checked_for_finiteness_once(params, monkeypatch):
    # check_batch checks x's shape before the params' and then again against them: the
    # finiteness pass over x (the cost of validating a large x) must run once, not twice
    import fnmlp._validate as V

    names = []
    real = V.check_finite
    monkeypatch.setattr(V, "check_finite", lambda a, name: (names.append(name),
                                                             real(a, name))[1])
    V.check_batch(MODEL, params, X, Y, "softmax_cross_entropy")
    V.check_x(MODEL, params, X)
    assert names.count("x") == 2, names


def test_forward_checks(params):
    with pytest.raises(ValueError, match=r"x must have 1 dimension.*\[D\] with D=4"):
        fnmlp.grad.predict_one(MODEL, params, X)
    with pytest.raises(ValueError, match="x must have 4 features"):
        fnmlp.grad.predict_one(MODEL, params, np.ones(3))
    with pytest.raises(TypeError, match="x must be a numeric"):
        fnmlp.grad.predict_one(MODEL, params, np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="model must be a fnmlp Layer.*activation names go"):
        fnmlp.grad.predict_one("tanh", params, np.ones(4))


def test_regression_and_binary_targets(params):
    with pytest.raises(ValueError, match=r"y must have shape \(6, 3\) for loss 'mse'"):
        fnmlp.loss(MODEL, params, X, np.ones((6, 2)), "mse")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]; got 2.0"):
        fnmlp.loss(MODEL, params, X, np.full((6, 3), 2.0), "sigmoid_cross_entropy")
    with pytest.raises(ValueError, match="y must be finite"):
        fnmlp.loss(MODEL, params, X, np.full((6, 3), np.nan), "mse")
    model = fnmlp.mlp([4, 1])
    one_out = model.init_params(jax.random.key(0))
    # [N] targets are accepted for a single output
    assert np.isfinite(float(fnmlp.loss(model, one_out, X, np.ones(6), "mse")))


def test_bad_params_and_sizes():
    with pytest.raises(ValueError, match="at least two"):
        fnmlp.mlp([4]).init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=r"positive integers; got 0 at index 1"):
        fnmlp.mlp([4, 0, 3]).init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=r"positive integers; got 2.5"):
        fnmlp.mlp([4, 2.5, 3]).init_params(jax.random.key(0))
    model = fnmlp.mlp([4, 5, 3])
    p = model.init_params(jax.random.key(0))
    p[1]["w"] = jnp.ones((6, 3))
    with pytest.raises(ValueError, match=r"params\[1\]\['w'\] must have shape \(5, 3\)"):
        fnmlp.loss(model, p, X, Y)
    with pytest.raises(ValueError, match="params do not fit the model Serial"):
        fnmlp.loss(model, {"w": 1}, X, Y)


def test_under_jit_shapes_are_still_checked(params):
    f = jax.jit(fnmlp.loss, static_argnums=(0, 4))
    with pytest.raises(ValueError, match="x must have 4 features"):
        f(MODEL, params, np.ones((6, 5), np.float32), Y, "softmax_cross_entropy")
    # values are not known under jit: an out-of-range label raises nothing there (JAX's
    # gather fills it; this version gives NaN), which is why the docs say to validate on
    # the host (fit does); eagerly it is caught.
    bad = np.array([0, 1, 2, 0, 1, 7])
    f(MODEL, params, X, bad, "softmax_cross_entropy")
    with pytest.raises(ValueError, match="got 7 at index 5"):
        fnmlp.loss(MODEL, params, X, bad)


def test_compare_grads_structure_mismatch(params):
    g = jax.tree.map(jnp.zeros_like, params)
    with pytest.raises(TypeError, match="structure"):
        fnmlp.gradcheck.compare_grads(g, g[:1])
    bad = [dict(g[0]), dict(g[1], w=jnp.zeros((5, 4)))]
    with pytest.raises(ValueError, match=r"layer 1 'w': shapes differ"):
        fnmlp.gradcheck.compare_grads(g, bad)


# ----------------------------------------------------------------------- every entry point

P = MODEL.init_params(jax.random.key(0))

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
    "loss": lambda x, y: fnmlp.loss(MODEL, P, x, y),
    "manual_grad": lambda x, y: fnmlp.manual_grad(MODEL, P, x, y),
    "manual_value_and_grad": lambda x, y: fnmlp.grad.manual_value_and_grad(MODEL, P, x, y),
    "check_gradients": lambda x, y: fnmlp.check_gradients(MODEL, P, x, y),
    "per_example_grads": lambda x, y: fnmlp.train.per_example_grads(MODEL, P, x, y),
    "evaluate": lambda x, y: fnmlp.evaluate(MODEL, P, x, y),
    "fit": lambda x, y: fnmlp.fit(MODEL, P, x, y, epochs=1, batch_size=2, verbose=False),
    "fit validation_data": lambda x, y: fnmlp.fit(MODEL, P, X, Y, epochs=1, batch_size=2,
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
        fnmlp.grad.predict_one(MODEL, P, x)


@pytest.mark.parametrize("fn", [fnmlp.grad.batched_predict, fnmlp.predict,
                                fnmlp.grad.forward_with_cache])
@pytest.mark.parametrize("case", ["string", "nan", "empty", "wrong width", "3-d"])
def test_batched_forward_bad_x(fn, case):
    x, err, match = BAD_X[case]
    with pytest.raises(err, match=match):
        fn(MODEL, P, x)


KEY = jax.random.key(0)


@pytest.mark.parametrize("call, match", [
    (lambda: fnmlp.mlp([4, 0, 3]), "positive integers; got 0"),
    (lambda: fnmlp.mlp([4, -2]), "positive integers; got -2"),
    (lambda: fnmlp.mlp([]), "at least two"),
    (lambda: fnmlp.mlp("4,3"), "positive integers"),
    (lambda: fnmlp.mlp(None), "sizes must be a list"),
    (lambda: fnmlp.mlp([4, 3], "nope"), "activation must be one of"),
    (lambda: fnmlp.mlp([4, 3], kernel_init="xavier"), "init must be one of"),
    (lambda: MODEL.init_params(KEY, dtype=jnp.int32), "float dtype"),
    (lambda: MODEL.init_params(0), "key must be a PRNG key"),
    (lambda: MODEL.init_params("seed"), "key must be a PRNG key"),
    (lambda: fnmlp.loss(MODEL, P, X, Y, "nll"), "loss must be one of"),
    (lambda: fnmlp.loss(MODEL, P, X, Y, 3), "loss must be one of"),
    (lambda: fnmlp.loss(MODEL, [], X, Y), "params do not fit the model Serial"),
    (lambda: fnmlp.loss(MODEL, [{"w": np.ones((4, 5))}, P[1]], X, Y),
     "params do not fit the model Serial"),
    (lambda: fnmlp.loss(serial(Dense(3)), [{"w": np.ones(4), "b": np.ones(3)}], X, Y),
     r"params\[0\]\['w'\] must have shape \(4, 3\)"),
    (lambda: fnmlp.gradcheck.compare_grads(P, P, rtol=None, mask=None)
     and fnmlp.gradcheck.compare_grads(P, P[:1]),
     "structure"),
    (lambda: fnmlp.evaluate(MODEL, P, X, Y, batch_size=0), "batch_size"),
    (lambda: fnmlp.train.per_example_grads(MODEL, P, X, Y, grad="finite"), "grad must be one of"),
    (lambda: fnmlp.train.make_trainer(MODEL, fnmlp.sgd(0.1), batch_size=0), "batch_size"),
    (lambda: fnmlp.train.make_trainer(MODEL, fnmlp.sgd(0.1), 4, activation="x"), "activation"),
    (lambda: fnmlp.train.make_train_step(MODEL, fnmlp.sgd(0.1), loss="hinge"),
     "loss must be one of"),
    (lambda: fnmlp.fit(MODEL, P, X, Y, optimizer=42), "optimizer must be a name"),
    (lambda: fnmlp.fit(MODEL, P, X, Y, validation_split=0.5, validation_data=(X, Y)),
     "not both"),
    (lambda: fnmlp.fit(MODEL, P, X, Y, validation_data=X), "pair"),
    (lambda: fnmlp.fit(MODEL, P, X, Y, batch_size=4, learning_rate=float("inf")),
     "learning_rate"),
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


# ------------------------------------------------------------------ what the model outputs

PROBS = serial(Dense(5), Tanh(), Dense(3), Softmax(), in_features=4)
NESTED = serial(Dense(8), Relu(), serial(Dense(3), Softmax()), in_features=4)
SOFTMAX_TWICE = r"outputs probabilities, and loss '\w+' takes logits \(softmax would be" \
                r" applied twice\): use loss='categorical_cross_entropy'"
LOG_OF_LOGITS = r"loss 'categorical_cross_entropy' takes probabilities, and the model outputs" \
                r" logits .*: add Softmax\(\) as the last layer"


def _entry_points(model, loss):
    params = model.init_params(KEY)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    one = grid(lr=[0.1])
    kw = dict(epochs=1, batch_size=2, verbose=False, loss=loss)
    return {
        "fit": lambda: fnmlp.fit(model, params, X, Y, **kw),
        "evaluate": lambda: fnmlp.evaluate(model, params, X, Y, loss),
        "loss": lambda: fnmlp.loss(model, params, X, Y, loss),
        "manual_grad": lambda: fnmlp.manual_grad(model, params, X, Y, loss),
        "manual_value_and_grad": lambda: fnmlp.grad.manual_value_and_grad(model, params, X, Y,
                                                                          loss),
        "per_example_grads": lambda: fnmlp.train.per_example_grads(model, params, X, Y, loss),
        "check_gradients": lambda: fnmlp.check_gradients(model, params, X, Y, loss),
        "predict_proba": lambda: fnmlp.predict_proba(model, params, X, loss),
        "predict_classes": lambda: fnmlp.predict_classes(model, params, X, loss),
        "ensemble_predict_proba": lambda: fnmlp.population.ensemble_predict_proba(
            model, stacked, X, loss),
        "classification_report": lambda: fnmlp.classification_report(model, params, X, Y,
                                                                       loss=loss),
        "make_trainer": lambda: fnmlp.train.make_trainer(model, fnmlp.sgd(0.1), 2, loss=loss),
        "make_train_step": lambda: fnmlp.train.make_train_step(model, fnmlp.sgd(0.1), loss=loss),
        "fit_population": lambda: fnmlp.fit_population(model, X, Y, one, **kw),
        "make_population": lambda: make_population(model, None, one, batch_size=2, loss=loss),
        "model_config": lambda: fnmlp.model_config(model, loss),
    }


@pytest.mark.parametrize("model, loss, match", [
    (PROBS, "softmax_cross_entropy", SOFTMAX_TWICE),
    (NESTED, "softmax_cross_entropy", SOFTMAX_TWICE),
    (MODEL, "categorical_cross_entropy", LOG_OF_LOGITS),
], ids=["softmax twice", "softmax twice, nested", "probability loss on logits"])
def test_a_loss_that_does_not_take_the_models_output_is_refused_before_compiling(model, loss,
                                                                                  match):
    """It used to warn (fit only) and train with softmax applied twice."""
    calls = _entry_points(model, loss)
    assert len(calls) == 16
    for name, call in calls.items():
        with count_compiles() as compiled, pytest.raises(ValueError, match=match):
            call()
        assert compiled == [], (name, compiled)


def test_the_right_loss_for_a_probability_model_runs():
    params = NESTED.init_params(KEY)
    r = fnmlp.fit(NESTED, params, X, Y, epochs=1, batch_size=2, verbose=False,
                  loss="categorical_cross_entropy")
    assert np.isfinite(r.history[-1]["train_loss"])
    with pytest.raises(ValueError, match="drop the final Softmax layer"):
        fnmlp.loss(PROBS, PROBS.init_params(KEY), X, np.zeros((6, 3)), "mse")


# ---------------------------------------------------------------------- fit's other checks

XB = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
YB = np.array([0, 1, 2, 0, 1] * 4)
SMALL = serial(Dense(4), Relu(), Dense(3))


def test_a_resumed_state_must_fit_the_model_and_the_optimizer():
    p = SMALL.init_params(KEY, 3)
    kw = dict(batch_size=4, verbose=False)
    r1 = fnmlp.fit(SMALL, p, XB, YB, epochs=1, **kw)
    wider = serial(Dense(5), Tanh(), Dense(3))
    with pytest.raises(ValueError, match=r"state.params\[0\]\['b'\] has shape \(4,\)"):
        fnmlp.fit(wider, wider.init_params(KEY, 3), XB, YB, state=r1.state, epochs=2, **kw)
    with pytest.raises(ValueError, match="made by another optimizer than this fit's; its"
                       " structure is that of 'sgd': pass the optimizer it was trained with"):
        fnmlp.fit(SMALL, p, XB, YB, state=r1.state, optimizer="adam", epochs=2, **kw)
    assert len(fnmlp.fit(SMALL, p, XB, YB, state=r1.state, epochs=2,
                         **kw).history) == 1  # the right state still resumes


def test_weights_of_any_scale_train_like_weights_of_one():
    p = SMALL.init_params(KEY, 3)
    kw = dict(epochs=2, batch_size=4, verbose=False)
    ones = fnmlp.fit(SMALL, p, XB, YB, sample_weight=np.ones(20), **kw).params
    for scale in (1e-46, 1e39):  # below float32's smallest and above its largest
        got = fnmlp.fit(SMALL, p, XB, YB, sample_weight=np.full(20, scale), **kw).params
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ones)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_into_wrong_template(tmp_path):
    state = fnmlp.init_state(P, fnmlp.sgd(0.1))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state)
    other = fnmlp.init_state(fnmlp.mlp([4, 6, 3]).init_params(KEY), fnmlp.sgd(0.1))
    with pytest.raises(ValueError, match=r"layer 0 'b' has shape \(5,\)"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", other)
    with pytest.raises(ValueError, match="does not match the model"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", fnmlp.init_state(P, fnmlp.adam(0.1)))


def test_a_tampered_meta_document_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    fnmlp.save_checkpoint(path, SMALL.init_params(KEY, 3), {"sizes": [3, 4, 3], "loss": "mse"})
    for doc in ([1, 2], {"format": "fnmlp-checkpoint-v1", "paths": 5}, "[" * 600 + "]" * 600):
        buf = io.BytesIO()
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(buf, "w") as zout:
            for item in zin.infolist():
                raw = zin.read(item)
                if item.filename == "__meta__.npy":
                    text = np.frombuffer(json.dumps(doc).encode() if not isinstance(doc, str)
                                         else doc.encode(), np.uint8)
                    out = io.BytesIO()
                    np.save(out, text)
                    raw = out.getvalue()
                zout.writestr(item.filename, raw)
        bad = tmp_path / "bad.npz"
        bad.write_bytes(buf.getvalue())
        with pytest.raises(ValueError, match="not .*fnmlp checkpoint"):
            fnmlp.load_model(bad)


# ----------------------------------------------------------------------------- the scripts

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
    out = [] if script == "gradcheck.py" else ["--out", "/tmp/fnmlp-sweep"]
    r = run_script(script, *args, *out, check=False, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--hidden", "100000000000"], "GiB"),
    (["--layers", "dense:100000000000"], "GiB"),
    (["--seed", "99999999999999999999"], "[0, 2**32)"),
    (["--hidden", "none", "--dropout", "0.5,0.5"], "--dropout gives 2 values for 0"),
])
def test_scripts_refuse_impossible_sizes_and_seeds_in_one_line(args, needle):
    r = run_script("train_toy.py", *args, "--epochs", "1", check=False)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
