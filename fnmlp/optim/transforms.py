"""One-job gradient transformations, a ``chain`` of them, and the injected learning rate.

Each transform is a :class:`~fnmlp.optim.base.GradientTransformation` that does one thing
to the updates flowing through it and keeps its own state NamedTuple (or
:class:`EmptyState`)::

    clip_by_global_norm(max_norm)          g * min(1, max_norm / (|g| + 1e-6))   (PyTorch's)
    add_decayed_weights(wd, mask)          g + wd p on the leaves ``mask`` selects
    trace(momentum, nesterov)              v <- momentum v + g;  v  (or g + momentum v)
    scale_by_adam(b1, b2, eps)             m_hat / (sqrt(v_hat) + eps)
    scale_by_rms(decay, eps)               g / (sqrt(v) + eps)
    scale_by_learning_rate(lr)             -lr u, in the param's dtype

:func:`chain` runs them in order (its state is the tuple of their states), and
:func:`inject_hyperparams` holds the learning rate and weight decay as arrays in its
state (``count``, ``learning_rate``, ``weight_decay``, ``inner_state``), rebuilding the
chain from them at every update, as ``optax.inject_hyperparams``: a new or resumed rate
is a new array, never a new program. fnmlp's ``sgd``, ``adam``, ... are this, e.g.::

    adamw(lr, wd) == inject_hyperparams(lambda learning_rate, weight_decay: chain(
        identity(), identity(), scale_by_adam(0.9, 0.999, 1e-8),
        add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate)), lr, wd)

(the unused slots are :func:`identity`, so the state's layout depends on the optimizer,
not on whether it clips or decays).

Buffers (momentum, moments, mean squares) are kept in :func:`~fnmlp.optim.base.state_dtype`
of each param (float32 for float16 and bfloat16 params); the updates a chain ends with
(:func:`scale_by_learning_rate`) are cast to each param's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._validate import check_positive_float
from fnmlp.optim.base import (
    GradientTransformation,
    _decayed,
    _lr_parts,
    _rate,
    _scalars,
    _shared,
    clip_grads_by_global_norm,
    host_scalar,
    zeros_like_tree,
)
from fnmlp.schedules import Schedule

Array = jax.Array
Mask = Callable[[Any, Any], bool]  # mask(key path, leaf) -> Python bool, at trace time


class EmptyState(NamedTuple):
    """The state of a transform that keeps none (no leaves)."""


class TraceState(NamedTuple):
    velocity: Any  # like params, in state_dtype


class ScaleByAdamState(NamedTuple):
    count: Array  # shape=(), int32: updates seen (the t - 1 of the bias corrections)
    mu: Any  # first moment, like params, in state_dtype
    nu: Any  # second moment, like params, in state_dtype


class ScaleByRmsState(NamedTuple):
    nu: Any  # running mean of g^2, like params, in state_dtype


class InjectHyperparamsState(NamedTuple):
    count: Array  # shape=(), int32: updates applied (a schedule's step)
    learning_rate: Array  # shape=(), the params' float dtype (>= float32): the last rate used
    weight_decay: Array  # shape=(), the params' float dtype (>= float32)
    inner_state: Any  # the state of the transform the factory builds (a chain's: a tuple)


def _empty_init(params):
    return EmptyState()


def _check_unit(value: Any, name: str) -> float:
    """A Python number in ``[0, 1)``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return float(value)


def _check_mask(mask: Any) -> Mask | None:
    if mask is not None and not callable(mask):
        raise ValueError("mask must be None or a callable mask(path, leaf) -> bool (e.g."
                         f" optim.matrices_only); got {mask!r}"[:200])
    return mask


# ----------------------------------------------------------------------------- composition


def identity() -> GradientTransformation:
    """Passes the updates through; state :class:`EmptyState`. (An unused slot of a chain.)"""
    return GradientTransformation(_empty_init, _identity_update)


def _identity_update(updates, state, params=None):
    return updates, state


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies ``transforms`` in order, each to the updates the previous one returned.

    Args:
      *transforms: GradientTransformations.

    Returns:
      A GradientTransformation whose state is the tuple of the transforms' states.

    Examples:
      >>> import jax.numpy as jnp
      >>> opt = chain(clip_by_global_norm(1.0), scale_by_learning_rate(0.5))
      >>> params = {"w": jnp.zeros(2)}
      >>> updates, _ = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init(params), params)
      >>> [round(float(u), 4) for u in updates["w"]]  # clipped to norm 1, times -0.5
      [-0.3, -0.4]
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain takes GradientTransformations; got {t!r} at position"
                            f" {i}"[:200])

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if len(state) != len(transforms):
            raise ValueError(f"chain of {len(transforms)} transforms given a state of"
                             f" {len(state)}")
        new = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new.append(s)
        return updates, tuple(new)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------------- transforms


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scales the updates by ``min(1, max_norm / (global_norm + 1e-6))``: PyTorch's
    ``clip_grad_norm_`` (:func:`~fnmlp.optim.base.clip_grads_by_global_norm`, overflow-free).

    Args:
      max_norm: the largest global norm kept, > 0.
    """
    max_norm = check_positive_float(max_norm, "clip_norm")

    def update(updates, state, params=None):
        return clip_grads_by_global_norm(updates, max_norm), state

    return GradientTransformation(_empty_init, update)


def add_decayed_weights(weight_decay: float | Array = 0.0,
                        mask: Mask | None = None) -> GradientTransformation:
    """``u + weight_decay * p`` on the leaves ``mask`` selects (every leaf when None).

    Before a scaling (``scale_by_adam``, ``trace``) it is PyTorch's coupled L2 penalty
    (``g += wd p``); right before :func:`scale_by_learning_rate` it is AdamW's decoupled
    decay (``p -= lr wd p``). Computed in the update's dtype.

    Args:
      weight_decay: ``wd >= 0``, a number or a scalar array (an injected one).
      mask: a predicate ``mask(path, leaf) -> bool`` run at trace time on each param's key
        path and (abstract) array, e.g. :func:`~fnmlp.optim.base.matrices_only`.
    """
    if not isinstance(weight_decay, jax.Array):
        weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    mask = _check_mask(mask)

    def update(updates, state, params):
        wd = jnp.asarray(weight_decay)

        def one(u, p, decays):
            return u + wd.astype(u.dtype) * p if decays else u

        return jax.tree.map(one, updates, params, _decayed(mask, params)), state

    return GradientTransformation(_empty_init, update)


def trace(momentum: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum, PyTorch's form (no dampening): ``v <- momentum v + g``, out ``v``, or
    ``g + momentum v`` with ``nesterov``. ``v`` starts at 0, so the first ``v`` is ``g``.

    Args:
      momentum: in ``[0, 1)``.
      nesterov: Nesterov's look-ahead form.
    """
    momentum = _check_unit(momentum, "momentum")

    def init(params):
        return TraceState(zeros_like_tree(params))

    def update(updates, state, params=None):
        g = jax.tree.map(lambda v, g: g.astype(v.dtype), state.velocity, updates)  # half: f32
        v = jax.tree.map(lambda v, g: momentum * v + g, state.velocity, g)  # v = mu v + g
        out = jax.tree.map(lambda v, g: g + momentum * v, v, g) if nesterov else v
        return out, TraceState(v)

    return GradientTransformation(init, update)


def _bias_correction(b: float, t: Array) -> Array:
    # 1 - b^t computed as -expm1(t log b): no cancellation when b^t is close to 1
    # (1 - 0.999 in float32 has a relative error of 6e-5; this, a few ulps)
    if b == 0:
        return jnp.ones_like(t)
    return -jnp.expm1(t * jnp.asarray(math.log(b), t.dtype))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                  ) -> GradientTransformation:
    """Adam's direction at step ``t = count + 1``, PyTorch's arrangement of ``eps``::

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        out = (1 / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    The bias corrections are ``-expm1(t log b)``, in each buffer's dtype.

    Args:
      b1, b2: the moments' decay rates, in ``[0, 1)``.
      eps: added to the denominator outside the square root, > 0.
    """
    b1, b2 = _check_unit(b1, "b1"), _check_unit(b2, "b2")
    eps = check_positive_float(eps, "eps")

    def init(params):
        return ScaleByAdamState(host_scalar(0, np.int32), zeros_like_tree(params),
                                zeros_like_tree(params))  # two buffers

    def update(updates, state, params=None):
        g = jax.tree.map(lambda m, g: g.astype(m.dtype), state.mu, updates)  # half: in f32
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)

        def direction(m, v):
            t = (state.count + 1).astype(m.dtype)
            c1, c2 = _bias_correction(b1, t), _bias_correction(b2, t)
            return (1 / c1) * m / (jnp.sqrt(v) / jnp.sqrt(c2) + eps)

        return jax.tree.map(direction, mu, nu), ScaleByAdamState(state.count + 1, mu, nu)

    return GradientTransformation(init, update)


def scale_by_rms(decay: float = 0.99, eps: float = 1e-8) -> GradientTransformation:
    """RMSprop's direction, PyTorch's form: ``v <- decay v + (1 - decay) g^2``, out
    ``g / (sqrt(v) + eps)`` (``eps`` outside the root; optax's is inside).

    Args:
      decay: PyTorch's ``alpha``, in ``[0, 1)``.
      eps: > 0.
    """
    decay = _check_unit(decay, "decay")
    eps = check_positive_float(eps, "eps")

    def init(params):
        return ScaleByRmsState(zeros_like_tree(params))

    def update(updates, state, params=None):
        g = jax.tree.map(lambda v, g: g.astype(v.dtype), state.nu, updates)  # half: in f32
        nu = jax.tree.map(lambda v, g: decay * v + (1 - decay) * g * g, state.nu, g)
        out = jax.tree.map(lambda g, v: g / (jnp.sqrt(v) + eps), g, nu)
        return out, ScaleByRmsState(nu)

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: float | Array) -> GradientTransformation:
    """``-learning_rate * u``, cast to each param's dtype: the step downhill.

    Args:
      learning_rate: a number > 0 or a scalar array (an injected one: see
        :func:`inject_hyperparams`; a schedule belongs there, evaluated at its count).
    """
    if not isinstance(learning_rate, jax.Array):
        learning_rate = check_positive_float(learning_rate, "learning_rate")

    def update(updates, state, params=None):
        lr = jnp.asarray(learning_rate)
        if params is None:
            return jax.tree.map(lambda u: -lr.astype(u.dtype) * u, updates), state
        return jax.tree.map(lambda u, p: (-lr.astype(u.dtype) * u).astype(p.dtype),
                            updates, params), state

    return GradientTransformation(_empty_init, update)


# ----------------------------------------------------------------------------- the rate


def inject_hyperparams(factory: Callable[..., GradientTransformation],
                       learning_rate: float | Schedule, weight_decay: float = 0.0,
                       **static: Any) -> GradientTransformation:
    """The transform ``factory(learning_rate=, weight_decay=, **static)`` with the rate and
    the decay held as arrays in its state (:class:`InjectHyperparamsState`).

    At every update the factory is called with the state's arrays (a schedule's rate at
    the state's ``count`` instead, when ``learning_rate`` is a schedule) and its
    transform applied; the rate used is stored back. So
    :func:`~fnmlp.optim.base.set_learning_rate` and ``set_weight_decay`` change a run
    without compiling anything, and fnmlp's training loop reads the rate from the state.
    ``update`` is shared by every call with the same ``factory``, schedule and ``static``
    options (one compiled trainer serves ``adam(0.1)`` and ``adam(0.01)``).

    Args:
      factory: ``factory(learning_rate, weight_decay, **static) -> GradientTransformation``;
        the two arrive as scalar arrays (the params' float dtype, at least float32).
      learning_rate: a float > 0, or a schedule ``schedule(count, dtype=...)``
        (:mod:`fnmlp.schedules`; a one-argument ``schedule(count)`` works too).
      weight_decay: a float >= 0 (a factory that does not decay ignores it).
      **static: options that decide the program (momentum, betas, the mask, ...):
        passed to ``factory`` and part of the key ``update`` is shared by (hashable
        values share; an unhashable one gets an update of its own).

    Examples:
      >>> import jax.numpy as jnp
      >>> def signed(learning_rate, weight_decay):
      ...     return chain(scale_by_learning_rate(learning_rate))
      >>> opt = inject_hyperparams(signed, 0.1)
      >>> params = {"w": jnp.array([1.0])}
      >>> updates, state = opt.update({"w": jnp.array([2.0])}, opt.init(params), params)
      >>> updates["w"], state.learning_rate
      (Array([-0.2], dtype=float32), Array(0.1, dtype=float32))
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable; got {factory!r}"[:200])
    schedule, lr0 = _lr_parts(learning_rate)
    weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)

    def init(params):
        count, lr, wd = _scalars(params, lr0, schedule, weight_decay)
        inner = factory(learning_rate=lr, weight_decay=wd, **static)
        return InjectHyperparamsState(count, lr, wd, inner.init(params))

    key = tuple(sorted(static.items()))
    return GradientTransformation(init, _shared(_injected_update, factory, schedule, key))


def _injected_update(factory, schedule, static):
    static = dict(static)

    def update(grads, state, params):
        dtype = state.learning_rate.dtype
        lr = _rate(schedule, state.count, dtype) if schedule is not None else state.learning_rate
        inner = factory(learning_rate=lr, weight_decay=state.weight_decay, **static)
        updates, inner_state = inner.update(grads, state.inner_state, params)
        return updates, state._replace(count=state.count + 1, learning_rate=lr,
                                       inner_state=inner_state)

    return update


def tree_get(state: Any, name: str, default: Any = ...) -> Any:
    """The first field called ``name`` in an optimizer state, searching its nested
    NamedTuple states depth first (as ``optax.tree_utils.tree_get``): ``tree_get(adam_state,
    "mu")`` is Adam's first moment, wherever the chain keeps it.

    Raises:
      KeyError: no such field and no ``default``.
    """
    todo = [state]
    while todo:
        s = todo.pop(0)
        fields = getattr(s, "_fields", None)
        if fields is not None and name in fields:
            return getattr(s, name)
        if isinstance(s, (tuple, list)):
            todo = [c for c in s if isinstance(c, (tuple, list))] + todo
    if default is ...:
        raise KeyError(f"no field {name!r} in the optimizer state {type(state).__name__}")
    return default
