"""The built-in layers: ``Dense``, the activations (one per entry of
:data:`fnmlp.activations.ACTIVATIONS`: ``Relu``, ``Tanh``, ...), ``Softmax``, ``Dropout``,
``LayerNorm``; each forward beside its hand-derived backward.

Shapes: ``B`` batch, ``D_in`` / ``D_out`` a layer's input / output width.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._checks import is_positive_int
from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.initializers import get_initializer
from fnmlp.layers.base import EVAL, LOW_PRECISION, Layer, matmul

# ----------------------------------------------------------------------------- Dense


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected: ``y = x @ w + b`` (PyTorch ``nn.Linear``, the lesson's ``Linear``).

    Params ``{"w": [D_in, features], "b": [features]}``; ``b`` starts at zero, ``w`` from
    ``kernel_init`` (a name in :data:`fnmlp.initializers.INITIALIZERS`). ``kernel_init=None`` lets
    :class:`Serial` pick by the activation layer that follows (He for the ReLU family,
    LeCun for SELU, Glorot otherwise and when none follows).

    Backward: ``dw = x^T @ dy``, ``db = sum_B dy``, ``dx = dy @ w^T``. With a low-precision
    compute dtype only the products' operands are rounded (float32 accumulation); ``b``,
    the output and the gradients stay in the params' dtype.
    """

    features: int
    kernel_init: str | None = None

    def __post_init__(self):
        f = self.features
        if not is_positive_int(f):
            raise ValueError(f"Dense features must be a positive integer; got {f!r}")
        object.__setattr__(self, "features", int(f))  # np.int64(3) -> 3: one hash, JSON
        if self.kernel_init is not None:
            get_initializer(self.kernel_init)

    def init(self, key, in_features, dtype=jnp.float32):
        w = get_initializer(self.kernel_init or "glorot_uniform")(
            key, in_features, self.features, dtype)
        return self.features, {"w": w, "b": jnp.zeros((self.features,), dtype)}

    def forward(self, params, x, ctx=EVAL):
        w = params["w"]
        low = ctx.compute_dtype or (w.dtype if w.dtype in LOW_PRECISION else None)
        xin = x.astype(low) if low is not None else x  # [B, D_in], the product's operand
        return matmul(xin, w, low) + params["b"][None, :], xin

    def backward(self, params, x, dy):
        w = params["w"]
        d = dy.astype(x.dtype) if x.dtype in LOW_PRECISION else dy  # [B, D_out]
        dw = matmul(x.T, d)  # [D_in, D_out]
        return {"w": dw, "b": jnp.sum(dy, axis=0)}, matmul(d, w.T.astype(d.dtype))


# ----------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise activation as a layer: ``y = f(x)``, ``dx = dy * f'(x)``; ``f`` and
    ``f'`` come from :mod:`fnmlp.activations` (``fn`` names one). The residual is ``x``."""

    fn: str = "identity"
    has_params: ClassVar[bool] = False

    def __post_init__(self):
        get_activation(self.fn)

    @property
    def name(self) -> str:
        # the generic Activation("tanh") is named like its class; subclasses by their own
        return get_activation(self.fn).layer if type(self) is Activation else type(
            self).__name__

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        return get_activation(self.fn).fn(x), x

    def backward(self, params, x, dy):
        return (), dy * get_activation(self.fn).deriv(x)

    def to_config(self) -> dict:
        return {"type": self.name}


def _activation_class(name: str, cls_name: str):
    doc = get_activation(name).fn.__doc__.strip().split("\n")[0]
    cls = dataclass(frozen=True)(type(cls_name, (Activation,), {
        "__doc__": f"The {name} activation as a layer: {doc}",
        "__annotations__": {"fn": str},
        "fn": dataclasses.field(default=name, init=False, repr=False),
    }))
    cls.__module__ = __name__
    return cls


# one layer class per entry of fnmlp.activations.ACTIVATIONS (Relu, Tanh, ...), named there
ACTIVATION_LAYERS = {name: _activation_class(name, a.layer) for name, a in ACTIVATIONS.items()}
globals().update({cls.__name__: cls for cls in ACTIVATION_LAYERS.values()})


def activation_layer(name: str) -> Activation:
    """The layer for an activation name (``"relu"`` -> ``Relu()``); ``ValueError`` lists
    the names."""
    get_activation(name)
    return ACTIVATION_LAYERS[name]()


# ----------------------------------------------------------------------------- Softmax


@dataclass(frozen=True)
class Softmax(Layer):
    """``p = softmax(x)`` over the features (the lesson's ``Softmax`` module).

    Backward, the Jacobian-vector product without forming the Jacobian
    ``diag(p) - p p^T``: ``dx = p * (dy - sum(p * dy))`` per example. Pair it with the
    ``categorical_cross_entropy`` loss, which takes probabilities; the fused
    ``softmax_cross_entropy`` on logits (no Softmax layer) is the stable choice. A model
    that ends in it outputs probabilities (:attr:`Layer.outputs`).
    """

    has_params: ClassVar[bool] = False
    outputs: ClassVar[str] = "probabilities"

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        p = jax.nn.softmax(x, axis=-1)  # [B, C]
        return p, p

    def backward(self, params, p, dy):
        return (), p * (dy - jnp.sum(p * dy, axis=-1, keepdims=True))


# ----------------------------------------------------------------------------- Dropout


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014; PyTorch ``nn.Dropout``).

    ``rate`` is the **drop** probability, in ``[0, 1)``, as in PyTorch, Flax and Equinox.
    In training (``ctx.train``) each entry is kept with probability ``1 - rate`` and the
    kept ones are scaled by ``1 / (1 - rate)``, so ``E[y] = x``; in evaluation it is the
    identity. The mask is drawn from ``ctx.key`` (training needs one: ``ValueError``
    otherwise), so both gradient paths see the same mask for the same key.
    Backward: ``dx = dy * mask / (1 - rate)``.
    """

    rate: float = 0.5
    has_params: ClassVar[bool] = False

    def __post_init__(self):
        r = self.rate
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.integer,
                                                                 np.floating)) or not 0 <= r < 1:
            raise ValueError(f"Dropout rate (the drop probability) must be a number in"
                             f" [0, 1); got {r!r}")
        object.__setattr__(self, "rate", float(r))  # np.float32(0.1) -> 0.1...: JSON, one hash

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        if not ctx.train or self.rate == 0:
            return x, None
        if ctx.key is None:
            raise ValueError("Dropout in training needs ctx.key (a PRNG key); got None")
        keep = 1.0 - self.rate
        # uniform float32 draws: the same mask whatever x's dtype (and with x64 on or off)
        kept = jax.random.uniform(ctx.key, x.shape, jnp.float32) < keep  # [B, D]
        scale = kept.astype(x.dtype) / keep
        return x * scale, scale

    def backward(self, params, scale, dy):
        return (), dy if scale is None else dy * scale


# ----------------------------------------------------------------------------- LayerNorm


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the features (Ba, Kiros & Hinton 2016; PyTorch
    ``nn.LayerNorm`` with its biased variance and ``eps`` inside the root)::

        xhat = (x - mean(x)) / sqrt(var(x) + eps);   y = scale * xhat + bias

    Params ``{"scale": [D] ones, "bias": [D] zeros}``. Backward, with ``g = dy * scale``
    and ``inv = 1 / sqrt(var + eps)``, means over the features::

        dscale = sum_B dy * xhat;  dbias = sum_B dy
        dx = inv * (g - mean(g) - xhat * mean(g * xhat))
    """

    eps: float = 1e-5

    def __post_init__(self):
        e = self.eps
        if (isinstance(e, bool) or not isinstance(e, (int, float, np.integer, np.floating))
                or not math.isfinite(e) or e <= 0):
            raise ValueError(f"LayerNorm eps must be a finite number > 0; got {e!r}")
        object.__setattr__(self, "eps", float(e))  # a NumPy scalar -> float: JSON, one hash

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, {"scale": jnp.ones((in_features,), dtype),
                             "bias": jnp.zeros((in_features,), dtype)}

    def forward(self, params, x, ctx=EVAL):
        mu = jnp.mean(x, axis=-1, keepdims=True)  # [B, 1]
        xc = x - mu
        inv = jax.lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + self.eps)  # [B, 1]
        xhat = xc * inv  # [B, D]
        return xhat * params["scale"][None, :] + params["bias"][None, :], (xhat, inv)

    def backward(self, params, residuals, dy):
        xhat, inv = residuals
        g = dy * params["scale"][None, :]  # [B, D]
        dx = inv * (g - jnp.mean(g, axis=-1, keepdims=True)
                    - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
        return {"scale": jnp.sum(dy * xhat, axis=0), "bias": jnp.sum(dy, axis=0)}, dx
