"""Activation functions, each with its hand-derived derivative beside it.

Every activation is elementwise, so shapes are unchanged: ``z`` may be ``[H]`` (one
example) or ``[B, H]`` (a batch). Derivatives are written as functions of the
pre-activation ``z`` (``d act(z) / dz``), which is what the backward pass keeps.

An :class:`Activation` is a frozen pair ``(fn, deriv)``; :func:`get_activation` looks one
up by name. Names are plain strings so they can be static, hashable arguments under
``jax.jit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

LEAKY_RELU_SLOPE = 0.01  # PyTorch's default negative slope
ELU_ALPHA = 1.0
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


class Activation(NamedTuple):
    """An elementwise activation and its derivative, both ``z -> same shape``."""

    name: str
    fn: Callable[[Array], Array]
    deriv: Callable[[Array], Array]


# identity(z) = z
def identity(z: Array) -> Array:
    return z


# d identity(z)/dz = 1
def d_identity(z: Array) -> Array:
    return jnp.ones_like(z)


# relu(z) = max(z, 0)
def relu(z: Array) -> Array:
    return jnp.maximum(z, 0)


# d relu(z)/dz = 1 if z > 0 else 0   (0 at the kink, as jax.nn.relu)
def d_relu(z: Array) -> Array:
    return (z > 0).astype(z.dtype)


# leaky_relu(z) = z if z >= 0 else a z
def leaky_relu(z: Array) -> Array:
    return jnp.where(z >= 0, z, LEAKY_RELU_SLOPE * z)


# d leaky_relu(z)/dz = 1 if z >= 0 else a
def d_leaky_relu(z: Array) -> Array:
    return jnp.where(z >= 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_RELU_SLOPE))


# tanh(z)
def tanh(z: Array) -> Array:
    return jnp.tanh(z)


# d tanh(z)/dz = 1 - tanh(z)^2
def d_tanh(z: Array) -> Array:
    t = jnp.tanh(z)
    return 1 - t * t


# sigmoid(z) = 1 / (1 + exp(-z))   (jax.nn.sigmoid is stable for large |z|)
def sigmoid(z: Array) -> Array:
    return jax.nn.sigmoid(z)


# d sigmoid(z)/dz = sigmoid(z) (1 - sigmoid(z))
def d_sigmoid(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


# gelu(z) = z Phi(z), Phi the standard normal CDF (the exact form, not the tanh fit)
def gelu(z: Array) -> Array:
    return z * _normal_cdf(z)


# d gelu(z)/dz = Phi(z) + z phi(z),  phi(z) = exp(-z^2/2) / sqrt(2 pi)
def d_gelu(z: Array) -> Array:
    return _normal_cdf(z) + z * jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _normal_cdf(z: Array) -> Array:
    return 0.5 * (1 + jax.scipy.special.erf(z / math.sqrt(2)))


# softplus(z) = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|))   (stable form)
def softplus(z: Array) -> Array:
    return jnp.logaddexp(z, 0)


# d softplus(z)/dz = sigmoid(z)
def d_softplus(z: Array) -> Array:
    return jax.nn.sigmoid(z)


# elu(z) = z if z > 0 else alpha (exp(z) - 1)
def elu(z: Array) -> Array:
    return jnp.where(z > 0, z, ELU_ALPHA * jnp.expm1(jnp.minimum(z, 0)))


# d elu(z)/dz = 1 if z > 0 else alpha exp(z)
def d_elu(z: Array) -> Array:
    return jnp.where(z > 0, jnp.ones_like(z), ELU_ALPHA * jnp.exp(jnp.minimum(z, 0)))


# selu(z) = scale * (z if z > 0 else alpha (exp(z) - 1))
def selu(z: Array) -> Array:
    return SELU_SCALE * jnp.where(z > 0, z, SELU_ALPHA * jnp.expm1(jnp.minimum(z, 0)))


# d selu(z)/dz = scale * (1 if z > 0 else alpha exp(z))
def d_selu(z: Array) -> Array:
    neg = SELU_ALPHA * jnp.exp(jnp.minimum(z, 0))
    return SELU_SCALE * jnp.where(z > 0, jnp.ones_like(z), neg)


# silu(z) = z sigmoid(z)   (also called swish)
def silu(z: Array) -> Array:
    return z * jax.nn.sigmoid(z)


# d silu(z)/dz = s + z s (1 - s),  s = sigmoid(z)
def d_silu(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s + z * s * (1 - s)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("identity", identity, d_identity),
        Activation("relu", relu, d_relu),
        Activation("leaky_relu", leaky_relu, d_leaky_relu),
        Activation("tanh", tanh, d_tanh),
        Activation("sigmoid", sigmoid, d_sigmoid),
        Activation("gelu", gelu, d_gelu),
        Activation("softplus", softplus, d_softplus),
        Activation("elu", elu, d_elu),
        Activation("selu", selu, d_selu),
        Activation("silu", silu, d_silu),
    ]
}


def get_activation(name: str) -> Activation:
    """Returns the activation called ``name``; a ``ValueError`` lists the valid names."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}"
        )
    return ACTIVATIONS[name]
