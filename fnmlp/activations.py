"""Activation functions, each with its hand-derived derivative beside it.

Every activation is elementwise, so shapes are unchanged: ``z`` may be ``[H]`` (one
example) or ``[B, H]`` (a batch). Derivatives are written as functions of the
pre-activation ``z`` (``d act(z) / dz``), which is what the backward pass keeps.

An :class:`ActivationFn` is a frozen pair ``(fn, deriv)``; :func:`get_activation` looks one
up by name. Names are plain strings so they can be static, hashable arguments under
``jax.jit``.

**Kinks.** Where an activation is not differentiable (``relu``, ``leaky_relu``, ``elu``,
``selu`` at ``z = 0``), the hand-written derivative and ``jax.grad`` of the forward take
the same subgradient, PyTorch's: ``relu'(0) = 0``, ``leaky_relu'(0) = slope``,
``elu'(0) = alpha``, ``selu'(0) = scale alpha``. The forwards are written with ``where``
on ``z > 0`` so that autodiff picks that branch (``jnp.maximum`` would give 0.5).
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


class ActivationFn(NamedTuple):
    """An elementwise activation and its derivative, both ``z -> same shape``; ``layer`` is
    the name of its layer class in :mod:`fnmlp.layers` (made from this entry), ``init``
    the weight initialiser a ``Dense`` right before it gets by default."""

    name: str
    fn: Callable[[Array], Array]
    deriv: Callable[[Array], Array]
    layer: str
    init: str = "glorot_uniform"


def identity(z: Array) -> Array:
    """``identity(z) = z``.  Derivative: ``1``."""
    return z


def d_identity(z: Array) -> Array:
    """``d identity(z)/dz = 1``."""
    return jnp.ones_like(z)


def relu(z: Array) -> Array:
    """``relu(z) = 0 if z <= 0 else z``.  Derivative: ``0 if z <= 0 else 1``.

    At the kink ``z = 0`` both paths take 0, as PyTorch does, and NaN passes through, as
    in PyTorch (``where(z > 0, z, 0)`` made a NaN unit 0: a model with NaN weights then
    predicted finite numbers). The forward is a ``where`` (not ``jnp.maximum``, whose
    autodiff splits a tie as 0.5).
    """
    return jnp.where(z <= 0, jnp.zeros_like(z), z)


def d_relu(z: Array) -> Array:
    """``d relu(z)/dz = 0 if z <= 0 else 1`` (0 at ``z = 0``, 1 at NaN, as PyTorch's
    ``threshold_backward``)."""
    return jnp.where(z <= 0, jnp.zeros_like(z), jnp.ones_like(z))


def leaky_relu(z: Array) -> Array:
    """``leaky_relu(z) = z if z > 0 else a z`` with ``a = LEAKY_RELU_SLOPE`` (0.01).

    Derivative: ``1 if z > 0 else a``; at ``z = 0`` it is ``a``, as PyTorch.
    """
    return jnp.where(z > 0, z, LEAKY_RELU_SLOPE * z)


def d_leaky_relu(z: Array) -> Array:
    """``d leaky_relu(z)/dz = 1 if z > 0 else a`` (``a`` at ``z = 0``, as PyTorch)."""
    return jnp.where(z > 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_RELU_SLOPE))


def tanh(z: Array) -> Array:
    """``tanh(z) = (e^z - e^-z) / (e^z + e^-z)``.  Derivative: ``1 - tanh(z)^2``."""
    return jnp.tanh(z)


def d_tanh(z: Array) -> Array:
    """``d tanh(z)/dz = 1 - tanh(z)^2``."""
    t = jnp.tanh(z)
    return 1 - t * t


def sigmoid(z: Array) -> Array:
    """``sigmoid(z) = 1 / (1 + exp(-z))`` (stable for large ``|z|``).

    Derivative: ``sigmoid(z) (1 - sigmoid(z))``.
    """
    return jax.nn.sigmoid(z)


def d_sigmoid(z: Array) -> Array:
    """``d sigmoid(z)/dz = sigmoid(z) (1 - sigmoid(z))``."""
    s = jax.nn.sigmoid(z)
    return s * (1 - s)


def gelu(z: Array) -> Array:
    """``gelu(z) = z Phi(z)``, ``Phi`` the standard normal CDF (the exact form, not the
    tanh fit).  Derivative: ``Phi(z) + z phi(z)``, ``phi(z) = exp(-z^2/2) / sqrt(2 pi)``."""
    return z * _normal_cdf(z)


def d_gelu(z: Array) -> Array:
    """``d gelu(z)/dz = Phi(z) + z phi(z)``."""
    return _normal_cdf(z) + z * jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _normal_cdf(z: Array) -> Array:
    return 0.5 * (1 + jax.scipy.special.erf(z / math.sqrt(2)))


def softplus(z: Array) -> Array:
    """``softplus(z) = log(1 + exp(z))``, computed as ``logaddexp(z, 0)`` (stable).

    Derivative: ``sigmoid(z)``.
    """
    return jnp.logaddexp(z, 0)


def d_softplus(z: Array) -> Array:
    """``d softplus(z)/dz = sigmoid(z)``."""
    return jax.nn.sigmoid(z)


def _neg_part(z: Array) -> Array:
    # z where z <= 0, else 0: the argument of the exponential branch. A where on z > 0
    # (not jnp.minimum, whose autodiff splits a tie) keeps d/dz = 1 at z = 0.
    return jnp.where(z > 0, jnp.zeros_like(z), z)


def elu(z: Array) -> Array:
    """``elu(z) = z if z > 0 else alpha (exp(z) - 1)``, ``alpha = ELU_ALPHA`` (1).

    Derivative: ``1 if z > 0 else alpha exp(z)``; at ``z = 0`` it is ``alpha``, as PyTorch.
    """
    return jnp.where(z > 0, z, ELU_ALPHA * jnp.expm1(_neg_part(z)))


def d_elu(z: Array) -> Array:
    """``d elu(z)/dz = 1 if z > 0 else alpha exp(z)`` (``alpha`` at 0, as PyTorch)."""
    return jnp.where(z > 0, jnp.ones_like(z), ELU_ALPHA * jnp.exp(_neg_part(z)))


def selu(z: Array) -> Array:
    """``selu(z) = scale (z if z > 0 else alpha (exp(z) - 1))`` with PyTorch's constants.

    Derivative: ``scale (1 if z > 0 else alpha exp(z))``; ``scale alpha`` at ``z = 0``,
    as PyTorch.
    """
    return SELU_SCALE * jnp.where(z > 0, z, SELU_ALPHA * jnp.expm1(_neg_part(z)))


def d_selu(z: Array) -> Array:
    """``d selu(z)/dz = scale (1 if z > 0 else alpha exp(z))``."""
    neg = SELU_ALPHA * jnp.exp(_neg_part(z))
    return SELU_SCALE * jnp.where(z > 0, jnp.ones_like(z), neg)


def silu(z: Array) -> Array:
    """``silu(z) = z sigmoid(z)`` (also called swish).

    Derivative: ``s + z s (1 - s)``, ``s = sigmoid(z)``.
    """
    return z * jax.nn.sigmoid(z)


def d_silu(z: Array) -> Array:
    """``d silu(z)/dz = s + z s (1 - s)``, ``s = sigmoid(z)``."""
    s = jax.nn.sigmoid(z)
    return s + z * s * (1 - s)


# One entry per activation: its function, derivative, layer class name and default
# initialiser (He for the ReLU family, LeCun for SELU, Glorot for the saturating and linear
# ones). Adding an activation is one entry here: fnmlp.layers makes its layer from it.
ACTIVATIONS: dict[str, ActivationFn] = {
    a.name: a
    for a in [
        ActivationFn("identity", identity, d_identity, "Identity"),
        ActivationFn("relu", relu, d_relu, "Relu", "he_normal"),
        ActivationFn("leaky_relu", leaky_relu, d_leaky_relu, "LeakyRelu", "he_normal"),
        ActivationFn("tanh", tanh, d_tanh, "Tanh"),
        ActivationFn("sigmoid", sigmoid, d_sigmoid, "Sigmoid"),
        ActivationFn("gelu", gelu, d_gelu, "Gelu", "he_normal"),
        ActivationFn("softplus", softplus, d_softplus, "Softplus"),
        ActivationFn("elu", elu, d_elu, "Elu", "he_normal"),
        ActivationFn("selu", selu, d_selu, "Selu", "lecun_normal"),
        ActivationFn("silu", silu, d_silu, "Silu", "he_normal"),
    ]
}
DEFAULT_INIT: dict[str, str] = {a.name: a.init for a in ACTIVATIONS.values()}


def get_activation(name: str) -> ActivationFn:
    """Returns the activation called ``name``; a ``ValueError`` lists the valid names."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}"
        )
    return ACTIVATIONS[name]
