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
Everything is jit-compatible. The kernels (:func:`backward`, the unchecked
value-and-gradient) live in :mod:`fnmlp._core`; this module adds the input checks.
"""

from __future__ import annotations

import jax

from fnmlp import _core
from fnmlp._core import backward
from fnmlp.mlp import Params, check_batch

__all__ = ["backward", "manual_grad", "manual_value_and_grad"]

Array = jax.Array


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
    value, grads, _ = _core.manual_value_and_grad(params, x, y, activation, loss)
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
