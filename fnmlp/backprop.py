"""The hand-derived backward pass of a model: the reverse fold of its layers' backwards.

Shapes: ``B`` batch, ``D_l`` the width entering layer ``l``, ``C`` outputs.

For the mean loss ``L = (1/B) sum_i loss(out_i, y_i)``::

    delta = d loss / d out / B                      # [B, C]   (losses.py)
                                                    # weighted: w_i dloss_i / sum(w)
    grads, dx = model.backward(params, residuals, delta)

``model.backward`` of a :class:`~fnmlp.layers.Serial` runs each child's backward in
reverse (``layers.py``: Dense ``dw = x^T dy``, ``dx = dy w^T``; an activation
``dx = dy * f'(z)``; ...). Nothing here or there calls autodiff (grad, vjp, jvp,
linearize, jacfwd, jacrev; a test reads the source of every module on this path): this is
the path that ``fnmlp.gradcheck`` checks against autodiff. Everything is jit-compatible.
"""

from __future__ import annotations

from typing import Any

import jax

from fnmlp import _core
from fnmlp.mlp import Params, check_batch, check_weights, resolve_model

__all__ = ["backward", "manual_grad", "manual_value_and_grad"]

Array = jax.Array


def backward(params: Params, residuals: Any, delta: Array, activation: Any = "relu", *,
             model: Any = None) -> Params:
    """Backpropagates ``delta = dL/d out: [B, C]`` through the model, given the residuals
    of :func:`fnmlp.forward_with_cache`; returns grads with the structure of ``params``."""
    return resolve_model(activation, model).backward(params, residuals, delta)[0]


def manual_value_and_grad(
    params: Params,
    x: Array,
    y: Array,
    activation: Any = "relu",
    loss: str = "softmax_cross_entropy",
    *,
    model: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> tuple[Array, Params]:
    """The mean loss and its gradient, both by hand: ``(scalar, grads like params)``.

    Arguments as :func:`fnmlp.loss`; the same value as autodiff's value-and-gradient of
    :func:`fnmlp.loss`. With weights each row of ``delta`` is scaled by its own weight:
    ``delta_i = w_i dloss_i / sum(w)``.
    """
    m = resolve_model(activation, model)
    x, y = check_batch(params, x, y, loss, model=m)
    w = check_weights(params, x, y, loss, m, sample_weight, class_weight)
    value, grads, _ = _core.manual_value_and_grad(m, params, x, y, loss, w=w)
    return value, grads


def manual_grad(
    params: Params,
    x: Array,
    y: Array,
    activation: Any = "relu",
    loss: str = "softmax_cross_entropy",
    *,
    model: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> Params:
    """The gradient of :func:`fnmlp.loss` with respect to params, derived by hand.

    Args:
      params: ``[{"w": [D_in, D_out], "b": [D_out]}, ...]``, or a model's params.
      x: ``[B, D]``; y: targets as for :func:`fnmlp.loss`.
      activation, loss: names.
      model: a :class:`~fnmlp.layers.Layer` instead of the plain MLP.
      sample_weight, class_weight: as :func:`fnmlp.loss` (the weighted mean
        ``sum w_i loss_i / sum w_i``, PyTorch's weighted ``CrossEntropyLoss``).

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
    return manual_value_and_grad(params, x, y, activation, loss, model=model,
                                 sample_weight=sample_weight, class_weight=class_weight)[1]
