"""fnmlp.grad: the hand-derived backward against jax.grad and finite differences, over the
matrix activation x loss x depth, in float64 and float32; the forward against an
independent NumPy reference; and properties over generated architectures (hypothesis).
(Ported from test_backprop.py and test_properties.py to the model-first API.)"""

import ast
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnmlp
from fnmlp import activations
from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.gradcheck import check_gradients, compare_grads, random_batch
from fnmlp.losses import LOGIT_LOSSES, get_loss

DEPTHS = {0: [5, 3], 1: [5, 7, 3], 3: [5, 6, 7, 6, 3]}


def _problem(activation, loss, depth, dtype, seed=0, n=6):
    key = jax.random.key(seed)
    sizes = DEPTHS[depth]
    model = fnmlp.mlp(sizes, activation)
    params = model.init_params(key, dtype=dtype)
    # biases away from zero so pre-activations are not all at relu's kink
    params = [dict(p, b=p["b"] + 0.1 * jax.random.normal(jax.random.fold_in(key, i),
                                                            p["b"].shape, dtype))
              for i, p in enumerate(params)]
    x, y = random_batch(jax.random.fold_in(key, 99), n, sizes, loss, dtype)
    return model, params, x, y


def _min_abs_preactivation(model, params, x):
    _, residuals = fnmlp.grad.forward_with_cache(model, params, x)
    z = residuals[1::2]  # Dense, activation, Dense, ...: an activation keeps its input
    return min(float(jnp.min(jnp.abs(r))) for r in z) if z else 1.0


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss", sorted(LOGIT_LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_manual_equals_autodiff_and_finite_differences_float64(x64, activation, loss, depth):
    model, params, x, y = _problem(activation, loss, depth, jnp.float64)
    # kinks (relu/leaky_relu/elu at 0, mae at out == target) would make finite
    # differences straddle two branches: make sure no input sits within 1e-4 of one
    assert _min_abs_preactivation(model, params, x) > 1e-4
    result = check_gradients(model, params, x, y, loss)
    assert result.manual_vs_autodiff.max_rel_err <= 1e-9, str(result.manual_vs_autodiff)
    assert result.manual_vs_finite_diff.max_rel_err <= 1e-6, str(result.manual_vs_finite_diff)
    assert result.autodiff_vs_finite_diff.max_rel_err <= 1e-6
    assert result.passed


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss", sorted(LOGIT_LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_manual_equals_autodiff_float32(activation, loss, depth):
    # float32: the two paths sum the same products in different orders. The round-off
    # of a sum of n terms is about sqrt(n) * 6e-8 relative to its magnitude; with
    # n <= B*H = 42 here and a few layers of accumulation, 1e-5 relative (about 100
    # ulps) is generous for round-off and 4 orders below any real bug (see the
    # wrong-backward tests, which give errors of order 1e-1).
    model, params, x, y = _problem(activation, loss, depth, jnp.float32)
    g_manual = fnmlp.manual_grad(model, params, x, y, loss)
    g_auto = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y, loss)
    report = compare_grads(g_manual, g_auto, rtol=1e-5)
    assert report.passed, str(report)
    assert jax.tree.structure(g_manual) == jax.tree.structure(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_manual))


def test_manual_value_matches_loss(x64):
    model, params, x, y = _problem("tanh", "softmax_cross_entropy", 1, jnp.float64)
    value, _ = fnmlp.grad.manual_value_and_grad(model, params, x, y)
    assert abs(float(value) - float(fnmlp.loss(model, params, x, y))) < 1e-14


def test_manual_grad_is_jittable_and_equal(x64):
    model, params, x, y = _problem("gelu", "huber", 3, jnp.float64)
    jitted = jax.jit(fnmlp.manual_grad, static_argnums=(0, 4))
    a = jitted(model, params, x, y, "huber")
    b = fnmlp.manual_grad(model, params, x, y, "huber")
    assert compare_grads(a, b, rtol=1e-12).passed


def _wrong_manual_grad(model, params, x, y, activation, loss, bug):
    """A copy of the MLP's backward, written out, with one deliberate bug."""
    lossdef = fnmlp.losses.get_loss(loss)
    out, residuals = fnmlp.grad.forward_with_cache(model, params, x)
    inputs, zs = residuals[0::2], residuals[1::2]  # each Dense's input, each pre-activation
    delta = lossdef.deriv(out, y) / x.shape[0]
    deriv = get_activation(activation).deriv
    if bug == "derivative":  # d tanh = 1 - tanh instead of 1 - tanh^2
        deriv = lambda z: 1 - jnp.tanh(z)  # noqa: E731
    grads = [None] * len(params)
    for l in reversed(range(len(params))):  # noqa: E741
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
    model = fnmlp.mlp(sizes, "tanh")
    params = model.init_params(key, dtype=jnp.float64)
    x, y = random_batch(key, 8, sizes, "softmax_cross_entropy", jnp.float64)
    wrong = _wrong_manual_grad(model, params, x, y, "tanh", "softmax_cross_entropy", bug)
    right = _wrong_manual_grad(model, params, x, y, "tanh", "softmax_cross_entropy", None)
    auto = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y, "softmax_cross_entropy")
    assert compare_grads(right, auto).passed  # the copy without the bug is right
    report = compare_grads(wrong, auto, title="buggy vs autodiff")
    assert not report.passed
    failing = {(r.layer, r.leaf) for r in report.failing()}
    assert ("0", "w") in failing  # the error reaches the first layer
    assert ("2", "w") not in failing  # the last layer does not depend on the bug
    assert "FAIL" in str(report)


def test_vmapped_forward_equals_explicit_batched_matmul(x64):
    key = jax.random.key(1)
    model = fnmlp.mlp([5, 9, 4, 3], "elu")
    params = model.init_params(key, dtype=jnp.float64)
    x = jax.random.normal(key, (11, 5), jnp.float64)
    got = fnmlp.grad.batched_predict(model, params, x)
    h = np.asarray(x)
    for i, p in enumerate(params):  # independent numpy reference
        z = h @ np.asarray(p["w"]) + np.asarray(p["b"])
        h = z if i == len(params) - 1 else np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    np.testing.assert_allclose(np.asarray(got), h, rtol=1e-13, atol=1e-13)
    single = jnp.stack([fnmlp.grad.predict_one(model, params, xi) for xi in x])
    np.testing.assert_allclose(np.asarray(single), np.asarray(got), rtol=1e-13)
    out, cache = fnmlp.grad.forward_with_cache(model, params, x)
    np.testing.assert_allclose(np.asarray(out), h, rtol=1e-13, atol=1e-13)
    # Dense 0 keeps x, Elu its input z_0, Dense 1 keeps elu(z_0), ...
    assert [r.shape for r in cache] == [(11, 5), (11, 9), (11, 9), (11, 4), (11, 4)]


AUTODIFF = {"grad", "value_and_grad", "vjp", "jvp", "linearize", "jacfwd", "jacrev",
            "hessian", "custom_vjp", "custom_jvp", "linear_transpose"}


@pytest.mark.parametrize("module", ["grad", "losses", "activations", "layers",
                                    "layers.base", "layers.basic", "layers.serial"])
def test_hand_derived_path_calls_no_autodiff(module):
    """The manual backward and every module it uses must not touch autodiff. In fnmlp.grad
    only value_and_grad_fn, which builds the autodiff path on purpose, may (and a parameter
    there is called ``grad``: names are read as jax attributes and jax imports)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(f"fnmlp.{module}")))
    if module == "grad":
        tree.body = [n for n in tree.body if getattr(n, "name", "") != "value_and_grad_fn"]
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and (n.module or "").startswith("jax") for a in n.names}
    else:
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 for a in n.names}
    assert not (used & AUTODIFF), (module, used & AUTODIFF)


# ----------------------------------------------------------------------------- properties
# Property-based tests (hypothesis): generated architectures, batches, activations and
# losses. Derandomized, no deadline, few distinct shapes so compiles stay bounded.

SETTINGS = settings(derandomize=True, deadline=None, max_examples=10,
                    suppress_health_check=[HealthCheck.too_slow])

ARCHS = [[3, 2], [3, 5, 2], [3, 5, 5, 4], [4, 3, 3]]


@st.composite
def problems(draw):
    sizes = draw(st.sampled_from(ARCHS))
    batch = draw(st.sampled_from([1, 4, 7]))
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    loss = draw(st.sampled_from(sorted(LOGIT_LOSSES)))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    return sizes, batch, activation, loss, seed, scale


def _make(sizes, batch, activation, loss, seed, scale, dtype=jnp.float64):
    key = jax.random.key(seed)
    model = fnmlp.mlp(sizes, activation)
    params = model.init_params(key, dtype=dtype)
    x, y = random_batch(jax.random.fold_in(key, 1), batch, sizes, loss, dtype)
    return model, params, x * scale, y


@SETTINGS
@given(problems())
def test_forward_shape_and_finite(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        model, params, x, _ = _make(*p)
        out = fnmlp.grad.batched_predict(model, params, x)
        assert out.shape == (batch, sizes[-1])
        assert bool(jnp.all(jnp.isfinite(out)))


@SETTINGS
@given(problems())
def test_softmax_probabilities_sum_to_one(p):
    """exp(-CE(z, c)) is softmax(z)[c]: over all classes c it sums to 1, and the CE
    gradient's rows sum to 0."""
    sizes, batch, activation, _, seed, scale = p
    with jax.enable_x64(True):
        model, params, x, _ = _make(sizes, batch, activation, "mse", seed, scale)
        out = fnmlp.grad.batched_predict(model, params, x)
        ce = get_loss("softmax_cross_entropy")
        probs = jnp.stack([jnp.exp(-ce.fn(out, jnp.full(batch, c))) for c in range(sizes[-1])],
                          1)
        np.testing.assert_allclose(np.asarray(probs.sum(1)), 1.0, rtol=1e-12)
        g = ce.deriv(out, jnp.zeros(batch, jnp.int32))
        np.testing.assert_allclose(np.asarray(g.sum(1)), 0.0, atol=1e-12)


@SETTINGS
@given(problems())
def test_manual_gradient_equals_autodiff(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        model, params, x, y = _make(*p)
        g_m = fnmlp.manual_grad(model, params, x, y, loss)
        g_a = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y, loss)
        report = fnmlp.gradcheck.compare_grads(g_m, g_a, rtol=1e-9)
        assert report.passed, str(report)


@SETTINGS
@given(problems(), st.integers(0, 1000))
def test_loss_and_gradient_invariant_to_batch_permutation(p, perm_seed):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        model, params, x, y = _make(*p)
        perm = np.random.default_rng(perm_seed).permutation(batch)
        v1, g1 = fnmlp.grad.manual_value_and_grad(model, params, x, y, loss)
        v2, g2 = fnmlp.grad.manual_value_and_grad(model, params, x[perm], y[perm], loss)
        assert abs(float(v1) - float(v2)) <= 1e-12 * max(1.0, abs(float(v1)))
        assert fnmlp.gradcheck.compare_grads(g1, g2, rtol=1e-12).passed


@SETTINGS
@given(problems())
def test_mean_of_per_example_gradients_is_the_batch_gradient(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        model, params, x, y = _make(*p)
        pe = fnmlp.train.per_example_grads(model, params, x, y, loss)
        mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), pe)
        batch_grad = fnmlp.manual_grad(model, params, x, y, loss)
        assert fnmlp.gradcheck.compare_grads(mean, batch_grad, rtol=1e-10).passed


# both gradient paths agree where every unit sits on its kink (an outside oracle)

KINKED = ["relu", "leaky_relu", "elu", "selu"]
ZERO_ROW = ([(a, loss) for a in sorted(activations.ACTIVATIONS)
             for loss in ("softmax_cross_entropy", "mae")]
            + [(a, loss) for a in KINKED for loss in ("sigmoid_cross_entropy", "huber", "mse")])


@pytest.mark.parametrize("activation, loss", ZERO_ROW)
def test_zero_input_row_with_zero_biases_both_paths_agree(activation, loss, x64):
    """The default init has zero biases, so an all-zero input row puts every hidden unit
    exactly at z = 0; mae with a target equal to the output sits on its kink too."""
    sizes = [4, 6, 5, 3]
    model = fnmlp.mlp(sizes, activation)
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    assert all(not np.any(p["b"]) for p in params)  # what this test stands on
    x, y = random_batch(jax.random.key(1), 5, sizes, loss, jnp.float64)
    x = x.at[0].set(0.0)
    if loss in ("mae", "huber", "mse"):
        y = y.at[0].set(fnmlp.grad.batched_predict(model, params, x[:1])[0])  # residual 0
    hand = fnmlp.manual_grad(model, params, x, y, loss)
    auto = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y, loss)
    report = compare_grads(hand, auto)
    assert report.passed, str(report)
