"""Property-based tests (hypothesis): generated architectures, batches, activations and
losses. Derandomized, no deadline, few distinct shapes so compiles stay bounded."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnmlp
from fnmlp.activations import ACTIVATIONS
from fnmlp.gradcheck import random_batch
from fnmlp.losses import LOSSES, get_loss

SETTINGS = settings(derandomize=True, deadline=None, max_examples=10,
                    suppress_health_check=[HealthCheck.too_slow])

ARCHS = [[3, 2], [3, 5, 2], [3, 5, 5, 4], [4, 3, 3]]


@st.composite
def problems(draw):
    sizes = draw(st.sampled_from(ARCHS))
    batch = draw(st.sampled_from([1, 4, 7]))
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    return sizes, batch, activation, loss, seed, scale


def _make(sizes, batch, activation, loss, seed, scale, dtype=jnp.float64):
    key = jax.random.key(seed)
    params = fnmlp.init_mlp(key, sizes, activation, dtype=dtype)
    x, y = random_batch(jax.random.fold_in(key, 1), batch, sizes, loss, dtype)
    return params, x * scale, y


@SETTINGS
@given(problems())
def test_forward_shape_and_finite(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        params, x, _ = _make(*p)
        out = fnmlp.batched_forward(params, x, activation)
        assert out.shape == (batch, sizes[-1])
        assert bool(jnp.all(jnp.isfinite(out)))


@SETTINGS
@given(problems())
def test_softmax_probabilities_sum_to_one(p):
    """exp(-CE(z, c)) is softmax(z)[c]: over all classes c it sums to 1, and the CE
    gradient's rows sum to 0."""
    sizes, batch, activation, _, seed, scale = p
    with jax.enable_x64(True):
        params, x, _ = _make(sizes, batch, activation, "mse", seed, scale)
        out = fnmlp.batched_forward(params, x, activation)
        ce = get_loss("softmax_cross_entropy")
        probs = jnp.stack([jnp.exp(-ce.fn(out, jnp.full(batch, c))) for c in range(sizes[-1])], 1)
        np.testing.assert_allclose(np.asarray(probs.sum(1)), 1.0, rtol=1e-12)
        g = ce.deriv(out, jnp.zeros(batch, jnp.int32))
        np.testing.assert_allclose(np.asarray(g.sum(1)), 0.0, atol=1e-12)


@SETTINGS
@given(problems())
def test_manual_gradient_equals_autodiff(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        params, x, y = _make(*p)
        g_m = fnmlp.manual_grad(params, x, y, activation, loss)
        g_a = jax.grad(fnmlp.loss)(params, x, y, activation, loss)
        report = fnmlp.compare_grads(g_m, g_a, rtol=1e-9)
        assert report.passed, str(report)


@SETTINGS
@given(problems(), st.integers(0, 1000))
def test_loss_and_gradient_invariant_to_batch_permutation(p, perm_seed):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        params, x, y = _make(*p)
        perm = np.random.default_rng(perm_seed).permutation(batch)
        v1, g1 = fnmlp.manual_value_and_grad(params, x, y, activation, loss)
        v2, g2 = fnmlp.manual_value_and_grad(params, x[perm], y[perm], activation, loss)
        assert abs(float(v1) - float(v2)) <= 1e-12 * max(1.0, abs(float(v1)))
        assert fnmlp.compare_grads(g1, g2, rtol=1e-12).passed


@SETTINGS
@given(problems())
def test_mean_of_per_example_gradients_is_the_batch_gradient(p):
    sizes, batch, activation, loss, seed, scale = p
    with jax.enable_x64(True):
        params, x, y = _make(*p)
        pe = fnmlp.per_example_grads(params, x, y, activation, loss)
        mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), pe)
        batch_grad = fnmlp.manual_grad(params, x, y, activation, loss)
        assert fnmlp.compare_grads(mean, batch_grad, rtol=1e-10).passed
