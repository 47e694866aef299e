"""The unchecked, jit-friendly kernels that several modules share: a model's loss and its
gradient by hand.

Shapes: ``B`` batch, ``D`` input features, ``C`` outputs. Nothing here validates its
arguments (the public wrappers in :mod:`fnmlp.mlp` and :mod:`fnmlp.backprop` do, on the
host) and nothing here calls autodiff: :func:`manual_value_and_grad` is the hand-derived
path that :mod:`fnmlp.gradcheck` checks against ``jax.grad`` of :func:`mean_loss`.

For the mean loss ``L = (1/B) sum_i loss(out_i, y_i)`` of a model (a
:class:`~fnmlp.layers.Layer`, usually a :class:`~fnmlp.layers.Serial`)::

    out, residuals = model.forward(params, x, ctx)           # [B, C]
    delta = d loss / d out / B                               # [B, C]   (losses.py)
    grads, dx = model.backward(params, residuals, delta)     # each layer's backward, in reverse

With per-example weights ``w: [B]`` (:mod:`fnmlp.weights`) the loss is the weighted mean
``L = sum_i w_i loss_i / sum_i w_i`` (PyTorch's weighted ``CrossEntropyLoss``), so each
row of ``delta`` is scaled by its own weight: ``delta_i = w_i dloss_i / sum(w)``. A
minibatch whose weights are all zero has loss 0 and gradient 0 (PyTorch gives NaN).
``w=None`` is the unweighted program, unchanged.

For the plain MLP (``Dense``, activation, ..., ``Dense``) the reverse fold is the chain
rule written out::

    dL/dw_l = a_{l-1}^T @ delta_l                      # [D_l, D_{l+1}]   (Dense)
    dL/db_l = sum_i delta_l                            # [D_{l+1}]        (Dense)
    delta_{l-1} = (delta_l @ w_l^T) * act'(z_{l-1})    # [B, D_l]  (Dense, then the activation)

Mixed precision: with a low-precision ``ctx.compute_dtype`` (or bfloat16 params) every
dense product takes its operands in that dtype and accumulates and returns float32
(:func:`fnmlp.layers.matmul`); biases, activations, the loss, ``delta`` and the weight
gradients stay float32: only a product's operands are rounded to the compute dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnmlp.layers import EVAL, Context, Layer
from fnmlp.losses import get_loss

Array = jax.Array
Params = Any


def mean_loss(model: Layer, params: Params, x: Array, y: Array, loss: str,
              ctx: Context = EVAL, loss_dtype: Any = None, w: Array | None = None) -> Array:
    """The (weighted) mean loss over the batch, a scalar (``jax.grad`` of this is
    autodiff); ``w: [B]`` or None."""
    return value_and_output(model, params, x, y, loss, ctx, loss_dtype, w=w)


def weight_total(w: Array) -> Array:
    """``sum(w)``, or 1 where it is 0 (all weights zero: loss and gradient 0, not NaN)."""
    s = jnp.sum(w)
    return jnp.where(s > 0, s, jnp.ones_like(s))


def reduce_mean(per_example: Array, w: Array | None = None) -> Array:
    """``mean(l)``, or the weighted mean ``sum(w l) / sum(w)`` of ``l: [B]``."""
    if w is None:
        return jnp.mean(per_example)
    w = w.astype(per_example.dtype)
    return jnp.sum(w * per_example) / weight_total(w)


def value_and_output(model, params, x, y, loss, ctx=EVAL, loss_dtype=None, aux=False,
                     w=None):
    out = model.forward(params, x, ctx)[0]  # [B, C]
    o = out if loss_dtype is None else out.astype(loss_dtype)
    value = reduce_mean(get_loss(loss).fn(o, y), w)
    return (value, out) if aux else value


def loss_delta(lossdef, o: Array, y: Array, w: Array | None = None) -> Array:
    """``dL/d out [B, C]``: ``dloss_i / B``, or ``w_i dloss_i / sum(w)`` with weights."""
    d = lossdef.deriv(o, y)  # [B, C]
    if w is None:
        return d / o.shape[0]
    w = w.astype(d.dtype)
    return d * (w / weight_total(w))[:, None]


def manual_value_and_grad(model: Layer, params: Params, x: Array, y: Array, loss: str,
                          ctx: Context = EVAL, loss_dtype: Any = None, w: Array | None = None
                          ) -> tuple[Array, Params, Array]:
    """``(mean loss, grads like params, out [B, C])``, all by hand.

    ``loss_dtype`` (e.g. float32 under bfloat16 compute) is the dtype the loss and its
    gradient ``delta`` are computed in. ``w: [B]``: per-example weights (module doc).
    """
    lossdef = get_loss(loss)
    out, residuals = model.forward(params, x, ctx)  # [B, C]
    o = out if loss_dtype is None else out.astype(loss_dtype)
    value = reduce_mean(lossdef.fn(o, y), w)
    delta = loss_delta(lossdef, o, y, w).astype(out.dtype)  # [B, C]
    grads, _ = model.backward(params, residuals, delta)
    return value, grads, out
