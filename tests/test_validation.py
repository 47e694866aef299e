"""Bad input to the public functions raises a ValueError (or TypeError) naming the
argument, what was expected and what arrived, before any computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp


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
        fnmlp.batched_forward(MODEL, params, x)


def test_forward_checks(params):
    with pytest.raises(ValueError, match=r"x must have 1 dimension.*\[D\] with D=4"):
        fnmlp.forward(MODEL, params, X)
    with pytest.raises(ValueError, match="x must have 4 features"):
        fnmlp.forward(MODEL, params, np.ones(3))
    with pytest.raises(TypeError, match="x must be a numeric"):
        fnmlp.forward(MODEL, params, np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="model must be a fnmlp Layer.*activation names go"):
        fnmlp.forward("tanh", params, np.ones(4))


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
        fnmlp.compare_grads(g, g[:1])
    bad = [dict(g[0]), dict(g[1], w=jnp.zeros((5, 4)))]
    with pytest.raises(ValueError, match=r"layer 1 'w': shapes differ"):
        fnmlp.compare_grads(g, bad)
