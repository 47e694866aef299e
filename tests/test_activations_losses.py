"""Each activation's and loss's hand-derived derivative against jax.grad, closed forms
computed by hand, and numerical stability at extreme logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.initializers import INITIALIZERS, get_initializer
from fnmlp.losses import LOSSES, accuracy, get_loss, zero_one_loss


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_matches_autodiff(x64, name):
    act = get_activation(name)
    z = jnp.array([-3.0, -1.2, -0.3, 0.2, 0.7, 2.5, 6.0], jnp.float64)  # no z == 0
    auto = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(np.asarray(act.deriv(z)), np.asarray(auto), rtol=1e-12,
                               atol=1e-15)


def test_activation_values_by_hand():
    z = np.array([-2.0, 0.5])
    assert np.allclose(ACTIVATIONS["relu"].fn(z), [0, 0.5])
    assert np.allclose(ACTIVATIONS["leaky_relu"].fn(z), [-0.02, 0.5])
    assert np.allclose(ACTIVATIONS["sigmoid"].fn(z), 1 / (1 + np.exp(-z)))
    assert np.allclose(ACTIVATIONS["softplus"].fn(z), np.log1p(np.exp(z)))
    assert np.allclose(ACTIVATIONS["elu"].fn(z), [math.expm1(-2), 0.5])
    # exact gelu: z * Phi(z); Phi(0.5) = 0.691462461274013
    assert np.allclose(ACTIVATIONS["gelu"].fn(z)[1], 0.5 * 0.691462461274013)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_finite_at_extremes(name):
    z = jnp.array([-1e4, 1e4], jnp.float32)
    act = get_activation(name)
    assert bool(jnp.all(jnp.isfinite(act.fn(z)))) and bool(jnp.all(jnp.isfinite(act.deriv(z))))


def _targets(loss, b, c, key):
    kind = get_loss(loss).kind
    if kind == "multiclass":
        return jax.random.randint(key, (b,), 0, c)
    if kind == "binary":
        return jax.random.bernoulli(key, 0.5, (b, c)).astype(jnp.float64)
    return jax.random.normal(key, (b, c), jnp.float64)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient_matches_autodiff(x64, name):
    key = jax.random.key(0)
    out = 2 * jax.random.normal(key, (5, 4), jnp.float64)
    y = _targets(name, 5, 4, jax.random.fold_in(key, 1))
    lossdef = get_loss(name)
    auto = jax.grad(lambda o: jnp.sum(lossdef.fn(o, y)))(out)
    np.testing.assert_allclose(np.asarray(lossdef.deriv(out, y)), np.asarray(auto), rtol=1e-12,
                               atol=1e-15)


def test_loss_values_by_hand(x64):
    logits = jnp.array([[1.0, 2.0, 3.0]])
    ce = get_loss("softmax_cross_entropy").fn(logits, jnp.array([0]))
    assert abs(float(ce[0]) - (math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 1)) < 1e-12
    bce = get_loss("sigmoid_cross_entropy").fn(jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 0.0]]))
    assert abs(float(bce[0]) - (math.log(2) + math.log(1 + math.exp(2))) / 2) < 1e-12
    out, t = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, 0.5]])
    assert abs(float(get_loss("mse").fn(out, t)[0]) - (1 + 6.25) / 2) < 1e-12
    assert abs(float(get_loss("mae").fn(out, t)[0]) - (1 + 2.5) / 2) < 1e-12
    # huber, delta 1: |d| = 1 -> 0.5; |d| = 2.5 -> 2.5 - 0.5 = 2
    assert abs(float(get_loss("huber").fn(out, t)[0]) - (0.5 + 2.0) / 2) < 1e-12


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_stable_at_extreme_logits(name):
    out = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], jnp.float32)
    lossdef = get_loss(name)
    y = jnp.array([1, 0]) if lossdef.kind == "multiclass" else jnp.array(
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    val, grad = lossdef.fn(out, y), lossdef.deriv(out, y)
    assert bool(jnp.all(jnp.isfinite(val))) and bool(jnp.all(jnp.isfinite(grad)))
    if lossdef.kind != "regression":  # the wrong answer at 1e4 costs about 2e4
        assert 1e4 <= float(val[0]) * (1 if lossdef.kind == "multiclass" else 3) <= 3e4


def test_accuracy_and_zero_one_loss():
    out = jnp.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    y = jnp.array([0, 1, 1])
    assert abs(float(accuracy(out, y)) - 2 / 3) < 1e-6
    assert abs(float(zero_one_loss(out, y)) - 1 / 3) < 1e-6
    bin_out, bin_y = jnp.array([[1.0], [-1.0], [2.0], [-3.0]]), jnp.array([[1.0], [0], [0], [0]])
    assert abs(float(accuracy(bin_out, bin_y, "sigmoid_cross_entropy")) - 0.75) < 1e-6
    with pytest.raises(ValueError, match="classification"):
        accuracy(out, y, "mse")


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializer_variance(name):
    fan_in, fan_out = 400, 300
    w = get_initializer(name)(jax.random.key(0), fan_in, fan_out)
    family = name.split("_")[0]
    want = {"glorot": 2 / (fan_in + fan_out), "he": 2 / fan_in, "lecun": 1 / fan_in}[family]
    # 120,000 draws: the sample variance is within a few percent
    assert abs(float(jnp.var(w)) / want - 1) < 0.03
    if name.endswith("uniform"):
        assert float(jnp.max(jnp.abs(w))) <= math.sqrt(3 * want) + 1e-6


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="relu"):
        get_activation("rellu")
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        get_loss("crossentropy")
    with pytest.raises(ValueError, match="he_normal"):
        get_initializer("kaiming")
