"""The compiled programs a gradient check runs: a model's hand-derived and autodiff
gradients, one layer's forward, backward and ``jax.vjp``, and the flat naming of one
layer's gradients (``{"dx": ..., "w": ...}``). See :mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from fnmlp.grad import Params, loss_delta, manual_value_and_grad_kernel, mean_loss
from fnmlp.layers import EVAL, Context, Layer, Serial
from fnmlp.losses import get_loss

Array = jax.Array

# ----------------------------------------------------------------------------- kernels


@functools.partial(jax.jit, static_argnames=("model", "loss", "train"))
def _manual(model, params, x, y, w, key, *, loss, train):
    ctx = Context(True, key) if train else EVAL
    value, grads, out = manual_value_and_grad_kernel(model, params, x, y, loss, ctx, w=w)
    return value, grads, out, loss_delta(get_loss(loss), out, y, w)  # delta: [B, C]


@functools.partial(jax.jit, static_argnames=("model", "loss", "train"))
def _autodiff(model, params, x, y, w, key, *, loss, train):
    ctx = Context(True, key) if train else EVAL
    return jax.grad(mean_loss, argnums=1)(model, params, x, y, loss, ctx, w=w)


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _layer_forward(layer, p, x, key, *, train):
    return layer.forward(p, x, Context(True, key) if train else EVAL)


@functools.partial(jax.jit, static_argnames=("layer",))
def _layer_backward(layer, p, res, dy):
    return layer.backward(p, res, dy)


def _checked_backward(layer, params, res, x, dy, name: str | None = None):
    """``layer.backward``'s ``(dparams, dx)``, or a ValueError naming the layer when it
    fails or returns gradients of the wrong shapes (a forgotten transpose, or a gradient
    per example not summed over the batch)."""
    name = name or layer.name
    hint = (f"dx must be like x {tuple(x.shape)} and each gradient like its param; a"
            " product with a forgotten transpose (dy @ w instead of dy @ w.T)?")
    try:
        dp, dx = _layer_backward(layer, params, res, dy)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}.backward failed on x {tuple(x.shape)} and dy"
                         f" {tuple(dy.shape)}: {type(e).__name__}: {str(e)[:300]}; {hint}"
                         ) from None
    wrong = [f"dx {tuple(np.shape(dx))}"] if np.shape(dx) != x.shape else []
    per_example = []
    try:
        pairs = zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(dp),
                    strict=True)
        for (path, p), g in pairs:
            want, got = tuple(np.shape(p)), tuple(np.shape(g))
            if got in (want, want[::-1]):  # .T: compare_grads diagnoses it
                continue
            what = f"d{jax.tree_util.keystr(path)} {got} for a param of shape {want}"
            wrong.append(what)
            if got == (x.shape[0], *want):
                per_example.append(what)
    except ValueError:
        wrong.append(f"gradients {jax.tree.structure(dp)} for params"
                     f" {jax.tree.structure(params)}")
    if per_example:
        raise ValueError(f"{name}.backward returned gradients of the wrong shape: "
                         f"{', '.join(wrong)}: one gradient per example (B = {x.shape[0]})"
                         " not summed over the batch; sum over axis 0 (e.g."
                         " jnp.sum(dy, axis=0) for a bias)")
    if wrong:
        raise ValueError(f"{name}.backward returned gradients of the wrong shape: "
                         f"{', '.join(wrong)}; {hint}")
    return dp, dx


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _layer_vjp(layer, p, x, key, dy, *, train):
    ctx = Context(True, key) if train else EVAL
    out, vjp = jax.vjp(lambda q, z: layer.forward(q, z, ctx)[0], p, x)
    return vjp(dy.astype(out.dtype))


def _children(model: Layer, params: Params) -> tuple[list, list, Any]:
    """``(layers, per-layer params, serial or None)`` of a model's top level."""
    if isinstance(model, Serial):
        return list(model.layers), model.split_params(params), model
    return [model], [params], None


def _flat(dparams: Any, dx: Array) -> dict:
    """``{"dx": dx, "<param path>": leaf, ...}``: one layer's gradients as a flat dict."""
    out = {"dx": dx}
    for path, leaf in jax.tree_util.tree_leaves_with_path(dparams):
        out[jax.tree_util.keystr(path).strip("[]'\"").replace("']['", "/") or "p"] = leaf
    return out
