"""The hand-derived backward pass: the chain rule, layer by layer.

Shapes: ``B`` batch, ``D_l`` the width entering layer ``l``.

For the mean loss ``L = (1/B) sum_i loss(out_i, y_i)`` and layers
``z_l = a_{l-1} @ w_l + b_l``, ``a_l = act(z_l)`` (the last layer linear, ``out = z_L``)::

    delta_L = d loss / d out / B                       # [B, C]   (losses.py)
    dL/dw_l = a_{l-1}^T @ delta_l                      # [D_l, D_{l+1}]
    dL/db_l = sum_i delta_l                            # [D_{l+1}]
    delta_{l-1} = (delta_l @ w_l^T) * act'(z_{l-1})    # [B, D_l]   (activations.py)

Nothing here calls autodiff (grad, vjp, jvp, linearize, jacfwd, jacrev; a test reads
the source of this module and of everything it calls to make sure): this is the path
that ``fnmlp.gradcheck`` checks against autodiff.
Everything is jit-compatible.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnmlp.activations import get_activation
from fnmlp.losses import get_loss
from fnmlp.mlp import LayerCache, Params, _forward_with_cache, check_batch

Array = jax.Array


def backward(
    params: Params,
    cache: list[LayerCache],
    delta: Array,
    act_deriv: Callable[[Array], Array],
) -> Params:
    """Backpropagates ``delta = dL/d out: [B, C]`` through the layers.

    Returns grads with exactly the structure of ``params``.
    """
    grads: list = [None] * len(params)
    for l in reversed(range(len(params))):
        a_in = cache[l].inputs  # [B, D_l]
        grads[l] = {"w": a_in.T @ delta, "b": jnp.sum(delta, axis=0)}
        if l > 0:
            delta = (delta @ params[l]["w"].T) * act_deriv(cache[l - 1].z)  # [B, D_l]
    return grads


def _manual_value_and_grad(
    params: Params, x: Array, y: Array, activation: str, loss: str, loss_dtype=None
) -> tuple[Array, Params, Array]:
    """No checks. Returns ``(mean loss, grads, out [B, C])``.

    ``loss_dtype`` (e.g. float32 under bfloat16 compute) is the dtype the loss and its
    gradient ``delta`` are computed in; ``delta`` goes back to the compute dtype.
    """
    lossdef = get_loss(loss)
    out, cache = _forward_with_cache(params, x, activation)  # [B, C]
    o = out if loss_dtype is None else out.astype(loss_dtype)
    value = jnp.mean(lossdef.fn(o, y))
    delta = (lossdef.deriv(o, y) / x.shape[0]).astype(out.dtype)  # [B, C]
    grads = backward(params, cache, delta, get_activation(activation).deriv)
    return value, grads, out


def manual_value_and_grad(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "softmax_cross_entropy",
) -> tuple[Array, Params]:
    """The mean loss and its gradient, both by hand: ``(scalar, grads like params)``.

    Arguments as :func:`fnmlp.loss`; the same value as autodiff's value-and-gradient of
    :func:`fnmlp.loss`.
    """
    x, y = check_batch(params, x, y, loss)
    value, grads, _ = _manual_value_and_grad(params, x, y, activation, loss)
    return value, grads


def manual_grad(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "softmax_cross_entropy",
) -> Params:
    """The gradient of :func:`fnmlp.loss` with respect to params, derived by hand.

    Args:
      params: ``[{"w": [D_in, D_out], "b": [D_out]}, ...]``.
      x: ``[B, D]``; y: targets as for :func:`fnmlp.loss`.
      activation, loss: names.

    Returns:
      Gradients with exactly the pytree structure, shapes and dtype of ``params``.

    Examples:
      >>> import jax, jax.numpy as jnp, fnmlp
      >>> p = fnmlp.init_mlp(jax.random.key(0), [3, 4, 2])
      >>> x, y = jnp.ones((5, 3)), jnp.array([0, 1, 0, 1, 1])
      >>> g = fnmlp.manual_grad(p, x, y)
      >>> jax.tree.structure(g) == jax.tree.structure(p)
      True
    """
    return manual_value_and_grad(params, x, y, activation, loss)[1]
