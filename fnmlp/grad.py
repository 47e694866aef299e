"""A model's forward, its loss, and the loss's gradient: by hand and by autodiff.

Shapes: ``B`` batch, ``D`` input features, ``C`` outputs, ``D_l`` the width entering
layer ``l``.

Every public function here takes the model first (any :class:`~fnmlp.layers.Layer`,
usually ``mlp([D, H, C], "relu")`` or a ``serial(...)``), then its params (a plain
pytree from ``model.init_params(key)``), then the data::

    fnmlp.loss(model, params, x, y)                          # scalar; jax.grad of it is autodiff
    fnmlp.manual_grad(model, params, x, y)                   # the chain rule, by hand
    jax.grad(fnmlp.loss, argnums=1)(model, params, x, y)     # the same numbers, by autodiff

For the mean loss ``L = (1/B) sum_i loss(out_i, y_i)``::

    out, residuals = model.forward(params, x, ctx)           # [B, C]
    delta = d loss / d out / B                               # [B, C]   (losses.py)
    grads, dx = model.backward(params, residuals, delta)     # each layer's backward, in reverse

For the plain MLP (``Dense``, activation, ..., ``Dense``) the reverse fold is the chain
rule written out::

    dL/dw_l = a_{l-1}^T @ delta_l                      # [D_l, D_{l+1}]   (Dense)
    dL/db_l = sum_i delta_l                            # [D_{l+1}]        (Dense)
    delta_{l-1} = (delta_l @ w_l^T) * act'(z_{l-1})    # [B, D_l]  (Dense, then the activation)

With per-example weights ``w: [B]`` (:mod:`fnmlp.weights`) the loss is the weighted mean
``L = sum_i w_i loss_i / sum_i w_i`` (PyTorch's weighted ``CrossEntropyLoss``), so each
row of ``delta`` is scaled by its own weight: ``delta_i = w_i dloss_i / sum(w)``. A
minibatch whose weights are all zero has loss 0 and gradient 0 (PyTorch gives NaN).

Mixed precision: with a low-precision ``ctx.compute_dtype`` (or bfloat16 params) every
dense product takes its operands in that dtype and accumulates and returns float32
(:func:`fnmlp.layers.matmul`); biases, activations, the loss, ``delta`` and the weight
gradients stay float32.

The kernels (:func:`mean_loss`, :func:`manual_value_and_grad_kernel`,
:func:`value_and_grad_fn`) check nothing and are jit-friendly; they take the loss as a
:class:`~fnmlp.losses.Loss` value (a name still works: :func:`~fnmlp.losses.get_loss`
hands a Loss back as it is). The public functions check their arguments on the host first,
once (``ValueError`` naming the argument), resolving a loss name there. Nothing on the
hand-derived path calls autodiff (grad, vjp, jvp, linearize, jacfwd, jacrev; a test reads
the source): it is the path that :mod:`fnmlp.gradcheck` checks against ``jax.grad``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnmlp import _validate as checks
from fnmlp.layers import EVAL, Context, Layer
from fnmlp.losses import Loss, get_loss
from fnmlp.weights import check_weights

Array = jax.Array
Params = Any  # a pytree of arrays: [{"w": [D_in, D_out], "b": [D_out]}, ...] for an MLP

__all__ = ["Params", "backprop", "batched_predict", "forward_with_cache", "loss",
           "manual_grad", "manual_value_and_grad", "mean_loss", "predict_one",
           "value_and_grad_fn"]


# ----------------------------------------------------------------------------- kernels


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


def value_and_output(model, params, x, y, loss: Loss, ctx=EVAL, loss_dtype=None, aux=False,
                     w=None):
    out = model.forward(params, x, ctx)[0]  # [B, C]
    o = out if loss_dtype is None else out.astype(loss_dtype)
    value = reduce_mean(loss.fn(o, y), w)
    return (value, out) if aux else value


def mean_loss(model: Layer, params: Params, x: Array, y: Array, loss: Loss | str,
              ctx: Context = EVAL, loss_dtype: Any = None, w: Array | None = None) -> Array:
    """The (weighted) mean loss over the batch, a scalar (``jax.grad`` of this is
    autodiff); ``w: [B]`` or None. Unchecked."""
    return value_and_output(model, params, x, y, get_loss(loss), ctx, loss_dtype, w=w)


def loss_delta(lossdef: Loss, o: Array, y: Array, w: Array | None = None) -> Array:
    """``dL/d out [B, C]``: ``dloss_i / B``, or ``w_i dloss_i / sum(w)`` with weights."""
    d = lossdef.deriv(o, y)  # [B, C]
    if w is None:
        return d / o.shape[0]
    w = w.astype(d.dtype)
    return d * (w / weight_total(w))[:, None]


def manual_value_and_grad_kernel(model: Layer, params: Params, x: Array, y: Array,
                                 loss: Loss | str,
                                 ctx: Context = EVAL, loss_dtype: Any = None,
                                 w: Array | None = None) -> tuple[Array, Params, Array]:
    """``(mean loss, grads like params, out [B, C])``, all by hand. Unchecked.

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


def value_and_grad_fn(model: Layer, loss: Loss | str, grad: str, loss_dtype=None) -> Callable:
    """``(params, x, y, ctx=EVAL, w=None) -> (loss, grads, out)`` by the chosen gradient
    path: ``"manual"`` (the model's hand-written backwards) or ``"autodiff"``
    (``jax.value_and_grad`` of its forward). Unchecked."""
    loss = get_loss(loss)  # a Loss as it is
    if grad == "manual":
        return lambda p, x, y, ctx=EVAL, w=None: manual_value_and_grad_kernel(
            model, p, x, y, loss, ctx, loss_dtype, w)

    def autodiff(p, x, y, ctx=EVAL, w=None):
        (value, out), grads = jax.value_and_grad(
            lambda q: value_and_output(model, q, x, y, loss, ctx, loss_dtype, aux=True, w=w),
            has_aux=True)(p)
        return value, grads, out

    return autodiff


# ----------------------------------------------------------------------------- public


def _one(model: Layer, params: Params, x: Array) -> Array:
    return model.apply(params, x[None])[0]  # [D] -> [C], evaluation mode


def predict_one(model: Layer, params: Params, x: Array) -> Array:
    """One example's output: ``x: [D]`` -> ``[C]`` (logits, probabilities or a
    prediction, as the model's last layer says), in evaluation mode (no dropout); the JAX
    tutorial's per-example ``predict``. (:meth:`Layer.forward` is the batched pass that
    also returns the residuals.)

    A pure function; ``jax.vmap`` it over ``x`` (or call :func:`batched_predict`).

    Raises:
      ValueError: ``model`` is not a Layer, params that do not fit it, or bad ``x``.
    """
    return _one(model, params, checks.check_x(model, params, x, batched=False))


def batched_predict(model: Layer, params: Params, x: Array) -> Array:
    """``x: [B, D]`` -> ``[B, C]``, made from :func:`predict_one` with ``jax.vmap``."""
    x = checks.check_x(model, params, x)
    return jax.vmap(_one, in_axes=(None, None, 0))(model, params, x)


def forward_with_cache(model: Layer, params: Params, x: Array) -> tuple[Array, Any]:
    """Batched forward ``x: [B, D]`` -> ``([B, C], residuals)`` keeping what backprop needs
    (evaluation mode). For a Serial ``residuals[i]`` is layer ``i``'s: a Dense keeps its
    input ``[B, D_in]``, an activation its pre-activation."""
    x = checks.check_x(model, params, x)  # first: a non-Layer model gets the ValueError
    return model.forward(params, x, EVAL)


def backprop(model: Layer, params: Params, residuals: Any, delta: Array) -> Params:
    """Backpropagates ``delta = dL/d out: [B, C]`` through the model, given the residuals
    of :func:`forward_with_cache`; returns the grads alone, with the structure of
    ``params`` (:meth:`Layer.backward` returns ``(dparams, dx)``).

    Raises:
      ValueError: ``model`` is not a Layer, or ``delta`` is not ``[B, C]`` for those
        residuals (its shape named).
    """
    model = checks.check_model(model)
    delta = checks.as_numeric_array(delta, "delta")
    if delta.ndim != 2:
        raise ValueError(f"delta must be dL/d out of shape [B, C]; got shape {delta.shape}")
    try:
        return model.backward(params, residuals, delta)[0]
    except (TypeError, ValueError) as e:  # a width that does not meet the model's
        raise ValueError(f"delta of shape {tuple(delta.shape)} does not fit the model's"
                         f" output for these residuals (it must be dL/d out [B, C], the"
                         f" forward_with_cache output's shape): {str(e)[:200]}") from None


def _renamed(new: Callable, old: str) -> Callable:
    """``new`` under its earlier name, with a DeprecationWarning that names the new one."""

    @functools.wraps(new)
    def call(*args, **kwargs):
        warnings.warn(f"fnmlp.grad.{old} is now fnmlp.grad.{new.__name__} (its old name"
                      " read like Layer's, which returns other things)", DeprecationWarning,
                      stacklevel=2)
        return new(*args, **kwargs)

    call.__name__ = call.__qualname__ = old
    return call


forward = _renamed(predict_one, "forward")
batched_forward = _renamed(batched_predict, "batched_forward")
backward = _renamed(backprop, "backward")


def _checked(model, params, x, y, loss, sample_weight, class_weight):
    """The public functions' one check: ``(loss as a Loss, x, y, w)``."""
    model, lossdef = checks.check_config(model, loss)
    x, y, _, n_out = checks.check_data(model, params, x, y, lossdef)
    return lossdef, x, y, check_weights(model, params, x, y, lossdef, sample_weight,
                                        class_weight, n_out=n_out)


def loss(
    model: Layer,
    params: Params,
    x: Array,
    y: Array,
    loss: str = "softmax_cross_entropy",
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> Array:
    """The mean loss over the batch, a scalar: ``jax.grad(fnmlp.loss, argnums=1)`` is
    autodiff. Evaluation mode (no dropout).

    With weights it is the weighted mean ``sum_i w_i loss_i / sum_i w_i``, ``w_i =
    sample_weight_i * class_weight[y_i]``: for ``softmax_cross_entropy`` and class
    weights, PyTorch's ``CrossEntropyLoss(weight=...)`` (``sum_n w_{y_n} l_n /
    sum_n w_{y_n}``); see :mod:`fnmlp.weights`.

    Args:
      model: a :class:`~fnmlp.layers.Layer`.
      params: the model's params.
      x: inputs ``[B, D]``.
      y: targets: integer labels ``[B]`` for ``softmax_cross_entropy`` and
        ``categorical_cross_entropy``; ``[B, C]`` (or ``[B]`` when C == 1) otherwise.
      loss: a loss name (see :mod:`fnmlp.losses`) or a :class:`~fnmlp.losses.Loss`; it
        must take what the model outputs (logits, or probabilities after a final
        ``Softmax``).
      sample_weight: optional ``[B]`` weights, finite and >= 0.
      class_weight: optional ``"balanced"`` (scikit-learn's ``n_samples / (n_classes *
        count)``) or ``{label: weight}`` (classification losses only); both given, the
        weight of an example is their product (as Keras).

    Raises:
      ValueError: a model that is not a Layer, a loss that does not take the model's
        output, params that do not fit, bad x / y, or bad weights (names the argument).

    Examples:
      >>> import jax, jax.numpy as jnp, fnmlp
      >>> model = fnmlp.mlp([3, 4, 2], "tanh")
      >>> params = model.init_params(jax.random.key(0))
      >>> x, y = jnp.ones((5, 3)), jnp.array([0, 1, 0, 1, 1])
      >>> bool(fnmlp.loss(model, params, x, y) > 0)
      True
    """
    lossdef, x, y, w = _checked(model, params, x, y, loss, sample_weight, class_weight)
    return value_and_output(model, params, x, y, lossdef, w=w)


def manual_value_and_grad(
    model: Layer,
    params: Params,
    x: Array,
    y: Array,
    loss: str = "softmax_cross_entropy",
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> tuple[Array, Params]:
    """The mean loss and its gradient, both by hand: ``(scalar, grads like params)``.

    Arguments as :func:`loss`; the same value as autodiff's value-and-gradient of
    :func:`loss`. With weights each row of ``delta`` is scaled by its own weight:
    ``delta_i = w_i dloss_i / sum(w)``.
    """
    lossdef, x, y, w = _checked(model, params, x, y, loss, sample_weight, class_weight)
    value, grads, _ = manual_value_and_grad_kernel(model, params, x, y, lossdef, w=w)
    return value, grads


def manual_grad(
    model: Layer,
    params: Params,
    x: Array,
    y: Array,
    loss: str = "softmax_cross_entropy",
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> Params:
    """The gradient of :func:`loss` with respect to params, derived by hand.

    Args:
      model, params, x, y, loss, sample_weight, class_weight: as :func:`loss`.

    Returns:
      Gradients with exactly the pytree structure, shapes and dtype of ``params``.

    Raises:
      ValueError: as :func:`loss`.

    Examples:
      >>> import jax, jax.numpy as jnp, fnmlp
      >>> model = fnmlp.mlp([3, 4, 2])
      >>> p = model.init_params(jax.random.key(0))
      >>> x, y = jnp.ones((5, 3)), jnp.array([0, 1, 0, 1, 1])
      >>> g = fnmlp.manual_grad(model, p, x, y)
      >>> jax.tree.structure(g) == jax.tree.structure(p)
      True
    """
    return manual_value_and_grad(model, params, x, y, loss, sample_weight=sample_weight,
                                 class_weight=class_weight)[1]
