"""The hand-derived backward against jax.grad and finite differences, over the matrix
activation x loss x depth, in float64 and float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.gradcheck import check_gradients, compare_grads, random_batch
from fnmlp.losses import LOSSES

DEPTHS = {0: [5, 3], 1: [5, 7, 3], 3: [5, 6, 7, 6, 3]}


def _problem(activation, loss, depth, dtype, seed=0, n=6):
    key = jax.random.key(seed)
    sizes = DEPTHS[depth]
    params = fnmlp.init_mlp(key, sizes, activation, dtype=dtype)
    # biases away from zero so pre-activations are not all at relu's kink
    params = [dict(p, b=p["b"] + 0.1 * jax.random.normal(jax.random.fold_in(key, i),
                                                            p["b"].shape, dtype))
              for i, p in enumerate(params)]
    x, y = random_batch(jax.random.fold_in(key, 99), n, sizes, loss, dtype)
    return params, x, y


def _min_abs_preactivation(params, x, activation):
    _, residuals = fnmlp.forward_with_cache(params, x, activation)
    z = residuals[1::2]  # Dense, activation, Dense, ...: an activation keeps its input
    return min(float(jnp.min(jnp.abs(r))) for r in z) if z else 1.0


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_manual_equals_autodiff_and_finite_differences_float64(x64, activation, loss, depth):
    params, x, y = _problem(activation, loss, depth, jnp.float64)
    # kinks (relu/leaky_relu/elu at 0, mae at out == target) would make finite
    # differences straddle two branches: make sure no input sits within 1e-4 of one
    assert _min_abs_preactivation(params, x, activation) > 1e-4
    result = check_gradients(params, x, y, activation, loss)
    assert result.manual_vs_autodiff.max_rel_err <= 1e-9, str(result.manual_vs_autodiff)
    assert result.manual_vs_finite_diff.max_rel_err <= 1e-6, str(result.manual_vs_finite_diff)
    assert result.autodiff_vs_finite_diff.max_rel_err <= 1e-6
    assert result.passed


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_manual_equals_autodiff_float32(activation, loss, depth):
    # float32: the two paths sum the same products in different orders. The round-off
    # of a sum of n terms is about sqrt(n) * 6e-8 relative to its magnitude; with
    # n <= B*H = 42 here and a few layers of accumulation, 1e-5 relative (about 100
    # ulps) is generous for round-off and 4 orders below any real bug (see the
    # wrong-backward tests, which give errors of order 1e-1).
    params, x, y = _problem(activation, loss, depth, jnp.float32)
    g_manual = fnmlp.manual_grad(params, x, y, activation, loss)
    g_auto = jax.grad(fnmlp.loss)(params, x, y, activation, loss)
    report = compare_grads(g_manual, g_auto, rtol=1e-5)
    assert report.passed, str(report)
    assert jax.tree.structure(g_manual) == jax.tree.structure(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_manual))


def test_manual_value_matches_loss(x64):
    params, x, y = _problem("tanh", "softmax_cross_entropy", 1, jnp.float64)
    value, _ = fnmlp.manual_value_and_grad(params, x, y, "tanh")
    assert abs(float(value) - float(fnmlp.loss(params, x, y, "tanh"))) < 1e-14


def test_manual_grad_is_jittable_and_equal(x64):
    params, x, y = _problem("gelu", "huber", 3, jnp.float64)
    jitted = jax.jit(fnmlp.manual_grad, static_argnums=(3, 4))
    a = jitted(params, x, y, "gelu", "huber")
    b = fnmlp.manual_grad(params, x, y, "gelu", "huber")
    assert compare_grads(a, b, rtol=1e-12).passed


def _wrong_manual_grad(params, x, y, activation, loss, bug):
    """A copy of the MLP's backward, written out, with one deliberate bug."""
    lossdef = fnmlp.get_loss(loss)
    out, residuals = fnmlp.forward_with_cache(params, x, activation)
    inputs, zs = residuals[0::2], residuals[1::2]  # each Dense's input, each pre-activation
    delta = lossdef.deriv(out, y) / x.shape[0]
    deriv = get_activation(activation).deriv
    if bug == "derivative":  # d tanh = 1 - tanh instead of 1 - tanh^2
        deriv = lambda z: 1 - jnp.tanh(z)  # noqa: E731
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        a_in = inputs[l]
        grads[l] = {"w": a_in.T @ delta, "b": jnp.sum(delta, axis=0)}
        if l > 0:
            w = params[l]["w"]
            # missing transpose in the square middle layer ([6, 6]): shapes still fit
            w_used = w if bug == "transpose" and w.shape[0] == w.shape[1] else w.T
            delta = (delta @ w_used) * deriv(zs[l - 1])
    return grads


@pytest.mark.parametrize("bug", ["derivative", "transpose"])
def test_deliberately_wrong_backward_is_caught(x64, bug):
    key = jax.random.key(3)
    sizes = [4, 6, 6, 3]
    params = fnmlp.init_mlp(key, sizes, "tanh", dtype=jnp.float64)
    x, y = random_batch(key, 8, sizes, "softmax_cross_entropy", jnp.float64)
    wrong = _wrong_manual_grad(params, x, y, "tanh", "softmax_cross_entropy", bug)
    right = _wrong_manual_grad(params, x, y, "tanh", "softmax_cross_entropy", None)
    auto = jax.grad(fnmlp.loss)(params, x, y, "tanh", "softmax_cross_entropy")
    assert compare_grads(right, auto).passed  # the copy without the bug is right
    report = compare_grads(wrong, auto, title="buggy vs autodiff")
    assert not report.passed
    failing = {(r.layer, r.leaf) for r in report.failing()}
    assert ("0", "w") in failing  # the error reaches the first layer
    assert ("2", "w") not in failing  # the last layer does not depend on the bug
    assert "FAIL" in str(report)


def test_vmapped_forward_equals_explicit_batched_matmul(x64):
    key = jax.random.key(1)
    params = fnmlp.init_mlp(key, [5, 9, 4, 3], "elu", dtype=jnp.float64)
    x = jax.random.normal(key, (11, 5), jnp.float64)
    got = fnmlp.batched_forward(params, x, "elu")
    h = np.asarray(x)
    for i, p in enumerate(params):  # independent numpy reference
        z = h @ np.asarray(p["w"]) + np.asarray(p["b"])
        h = z if i == len(params) - 1 else np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    np.testing.assert_allclose(np.asarray(got), h, rtol=1e-13, atol=1e-13)
    single = jnp.stack([fnmlp.forward(params, xi, "elu") for xi in x])
    np.testing.assert_allclose(np.asarray(single), np.asarray(got), rtol=1e-13)
    out, cache = fnmlp.forward_with_cache(params, x, "elu")
    np.testing.assert_allclose(np.asarray(out), h, rtol=1e-13, atol=1e-13)
    # Dense 0 keeps x, Elu its input z_0, Dense 1 keeps elu(z_0), ...
    assert [r.shape for r in cache] == [(11, 5), (11, 9), (11, 9), (11, 4), (11, 4)]


def test_report_table_lists_every_leaf(x64):
    params, x, y = _problem("relu", "mse", 1, jnp.float64)
    text = str(check_gradients(params, x, y, "relu", "mse"))
    for needle in ("manual vs autodiff", "manual vs finite differences", "5x7", "7x3",
                   "max rel err", "PASSED"):
        assert needle in text


AUTODIFF = {"grad", "value_and_grad", "vjp", "jvp", "linearize", "jacfwd", "jacrev",
            "hessian", "custom_vjp", "custom_jvp", "linear_transpose"}


@pytest.mark.parametrize("module", ["_core", "backprop", "mlp", "losses", "activations",
                                    "layers"])
def test_hand_derived_path_calls_no_autodiff(module):
    """The manual backward and every module it uses must not touch autodiff."""
    import ast
    import importlib
    import inspect

    tree = ast.parse(inspect.getsource(importlib.import_module(f"fnmlp.{module}")))
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not (used & AUTODIFF), (module, used & AUTODIFF)
