"""fnmlp.activations (and the initialisers each names as its default): every activation's
hand-derived derivative against jax.grad, values by hand, finiteness at extremes, the
registry's one entry per activation (function, layer class, default initialiser)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnmlp import activations
from fnmlp.activations import ACTIVATIONS, DEFAULT_INIT, get_activation
from fnmlp.initializers import INITIALIZERS, get_initializer
from fnmlp.layers import ACTIVATION_LAYERS, Activation, activation_layer


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


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_one_registry_entry_makes_the_function_its_layer_and_its_default_init(name):
    entry = get_activation(name)
    layer = activation_layer(name)
    assert type(layer) is ACTIVATION_LAYERS[name] and type(layer).__name__ == entry.layer
    assert isinstance(layer, Activation) and layer.fn == name and layer.name == entry.layer
    z = jnp.array([[-1.5, 0.3, 2.0]])
    assert np.array_equal(np.asarray(layer.apply((), z)), np.asarray(entry.fn(z)))
    assert DEFAULT_INIT[name] == entry.init and entry.init in INITIALIZERS
    family = {"relu": "he", "leaky_relu": "he", "gelu": "he", "silu": "he", "elu": "he",
              "selu": "lecun"}.get(name, "glorot")
    assert entry.init.startswith(family), (name, entry.init)


# ----------------------------------------------------------------------------- initializers


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
    with pytest.raises(ValueError, match="activation must be one of"):
        activation_layer("rellu")
    with pytest.raises(ValueError, match="he_normal"):
        get_initializer("kaiming")


# subgradients at kinks are PyTorch's (an outside oracle)

SELU = activations.SELU_SCALE * activations.SELU_ALPHA
# PyTorch's derivative at z = 0 (its backward formulas), and the numpy derivative elsewhere
AT_ZERO = {"identity": 1.0, "relu": 0.0, "leaky_relu": activations.LEAKY_RELU_SLOPE,
           "tanh": 1.0, "sigmoid": 0.25, "gelu": 0.5, "softplus": 0.5,
           "elu": activations.ELU_ALPHA, "selu": SELU, "silu": 0.5}


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_derivatives_agree_at_their_kinks(name, x64):
    act = activations.ACTIVATIONS[name]
    z = jnp.array([-1e-300, -0.0, 0.0, 1e-300])  # the kink, and the two sides next to it
    hand = np.asarray(act.deriv(z))
    auto = np.asarray(jax.vmap(jax.grad(act.fn))(z))
    np.testing.assert_array_equal(hand, auto)
    assert hand[1] == hand[2] == pytest.approx(AT_ZERO[name], rel=1e-15)


def test_leaky_relu_at_zero_is_pytorchs_slope(x64):
    # leaky_relu'(0) is the slope, as torch.nn.functional.leaky_relu's backward
    assert float(activations.d_leaky_relu(jnp.zeros(()))) == activations.LEAKY_RELU_SLOPE
