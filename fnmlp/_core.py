"""The unchecked, jit-friendly kernels that several modules share, under plain names.

Shapes: ``B`` batch, ``D`` input features, ``D_l`` the width entering layer ``l``,
``C`` outputs. Nothing here validates its arguments (the public wrappers in
:mod:`fnmlp.mlp` and :mod:`fnmlp.backprop` do, on the host) and nothing here calls
autodiff: :func:`backward` and :func:`manual_value_and_grad` are the hand-derived path
that :mod:`fnmlp.gradcheck` checks against ``jax.grad`` of :func:`mean_loss`.

The chain rule, for ``L = (1/B) sum_i loss(out_i, y_i)`` and layers
``z_l = a_{l-1} @ w_l + b_l``, ``a_l = act(z_l)`` (the last layer linear, ``out = z_L``)::

    delta_L = d loss / d out / B                       # [B, C]   (losses.py)
    dL/dw_l = a_{l-1}^T @ delta_l                      # [D_l, D_{l+1}]
    dL/db_l = sum_i delta_l                            # [D_{l+1}]
    delta_{l-1} = (delta_l @ w_l^T) * act'(z_{l-1})    # [B, D_l]   (activations.py)

Mixed precision: with ``bfloat16`` (or ``float16``) params and inputs, every matrix product
takes its operands in that dtype and accumulates and returns float32 (:func:`matmul`,
``preferred_element_type``), which is what bf16 units (AMX, tensor cores) compute natively;
biases, activations, the loss, ``delta`` and the weight gradients stay float32, and only a
product's operands are rounded to the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fnmlp.activations import get_activation
from fnmlp.losses import get_loss

Array = jax.Array
Params = list  # list[dict[str, Array]]

_LOW = (jnp.bfloat16, jnp.float16)


def matmul(a: Array, b: Array) -> Array:
    """``a @ b``; with low-precision ``a`` (bfloat16 / float16), ``b`` is rounded to that
    dtype and the product accumulates in and returns float32."""
    if a.dtype in _LOW:
        return jnp.matmul(a, b.astype(a.dtype), preferred_element_type=jnp.float32)
    return a @ b


def _operand(h: Array, like: Array) -> Array:
    """``h`` as the next product's operand: in ``like``'s dtype when that is a low
    precision one (float32 activations feeding a bfloat16 layer)."""
    return h.astype(like.dtype) if like.dtype in _LOW else h


def forward(params: Params, x: Array, activation: str) -> Array:
    """One example ``x: [D]`` -> ``[C]``."""
    act = get_activation(activation).fn
    h = x
    for layer in params[:-1]:
        h = act(matmul(_operand(h, layer["w"]), layer["w"]) + layer["b"])  # [H]
    return matmul(_operand(h, params[-1]["w"]), params[-1]["w"]) + params[-1]["b"]  # [C]


def batched_forward(params: Params, x: Array, activation: str) -> Array:
    """``x: [B, D]`` -> ``[B, C]``: the per-example forward, vmapped over the batch."""
    return jax.vmap(forward, in_axes=(None, 0, None))(params, x, activation)


class LayerCache(NamedTuple):
    """What the backward pass needs from one layer."""

    inputs: Array  # [B, D_in]  the layer's input (x, or the previous activation)
    z: Array  # [B, D_out]  the pre-activation x @ w + b


def forward_with_cache(params: Params, x: Array, activation: str
                       ) -> tuple[Array, list[LayerCache]]:
    """Batched forward ``x: [B, D]`` -> ``([B, C], cache)``; ``cache[l]`` holds layer l's
    input and pre-activation."""
    act = get_activation(activation).fn
    cache = []
    h = x  # [B, D]
    for i, layer in enumerate(params):
        h = _operand(h, layer["w"])
        z = matmul(h, layer["w"]) + layer["b"][None, :]  # [B, D_out]
        cache.append(LayerCache(h, z))
        h = z if i == len(params) - 1 else act(z)
    return h, cache


def mean_loss(params: Params, x: Array, y: Array, activation: str, loss: str) -> Array:
    """The mean loss over the batch, a scalar (``jax.grad`` of this is autodiff)."""
    out = batched_forward(params, x, activation)  # [B, C]
    return jnp.mean(get_loss(loss).fn(out, y))


def backward(params: Params, cache: list[LayerCache], delta: Array,
             act_deriv: Callable[[Array], Array]) -> Params:
    """Backpropagates ``delta = dL/d out: [B, C]`` through the layers; returns grads with
    exactly the structure of ``params``."""
    grads: list = [None] * len(params)
    for l in reversed(range(len(params))):
        a_in = cache[l].inputs  # [B, D_l]
        d = _operand(delta, a_in)
        grads[l] = {"w": matmul(a_in.T, d), "b": jnp.sum(delta, axis=0)}
        if l > 0:
            delta = matmul(d, params[l]["w"].T) * act_deriv(cache[l - 1].z)  # [B, D_l]
    return grads


def manual_value_and_grad(params: Params, x: Array, y: Array, activation: str, loss: str,
                          loss_dtype=None) -> tuple[Array, Params, Array]:
    """``(mean loss, grads, out [B, C])``, all by hand.

    ``loss_dtype`` (e.g. float32 under bfloat16 compute) is the dtype the loss and its
    gradient ``delta`` are computed in; ``delta`` goes back to the compute dtype.
    """
    lossdef = get_loss(loss)
    out, cache = forward_with_cache(params, x, activation)  # [B, C]
    o = out if loss_dtype is None else out.astype(loss_dtype)
    value = jnp.mean(lossdef.fn(o, y))
    delta = (lossdef.deriv(o, y) / x.shape[0]).astype(out.dtype)  # [B, C]  float32 if mixed
    grads = backward(params, cache, delta, get_activation(activation).deriv)
    return value, grads, out
