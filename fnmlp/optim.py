"""Optimizers, written by hand: pure ``(init, update)`` pairs over param pytrees.

An optimizer is a :class:`GradientTransformation`::

    opt_state = opt.init(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = apply_updates(params, updates)          # params + updates

The per-array math is written once and lifted over the pytree with ``jax.tree.map``.
Every state holds ``count`` (updates applied so far, int32 ``[]``) and ``learning_rate``
(float32 ``[]``, the rate used by the last update): both are arrays, so changing the
rate between epochs (:func:`set_learning_rate`) never recompiles a jitted step.
``learning_rate`` may also be a schedule (:mod:`fnmlp.schedules`), evaluated at
``count``.

Definitions followed (``g`` the gradient after clipping and coupled weight decay):

==========  ======================================================================
sgd         ``p -= lr g``
momentum    PyTorch's form: ``v = mu v + g;  p -= lr v``
nesterov    PyTorch's form: ``v = mu v + g;  p -= lr (g + mu v)``
adam        Kingma & Ba (2015) with bias correction:
            ``m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;``
            ``p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``
adamw       Loshchilov & Hutter (2019), PyTorch's form: adam, plus the decoupled
            ``p -= lr wd p`` (weight decay not added to ``g``)
rmsprop     PyTorch's form (Hinton's): ``v = a v + (1-a) g^2;  p -= lr g / (sqrt(v) + eps)``
==========  ======================================================================

``weight_decay`` on the others is L2 regularisation coupled into the gradient
(``g += wd p``), as PyTorch's ``weight_decay``. ``clip_norm`` clips the raw gradient by
its global norm first (``g *= min(1, clip_norm / ||g||)``), as ``clip_grad_norm_``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnmlp._validate import check_positive_float
from fnmlp.schedules import Schedule

Array = jax.Array
Params = Any
Updates = Any
OptState = Any


class GradientTransformation(NamedTuple):
    """A pair of pure functions ``init(params) -> state`` and
    ``update(grads, state, params) -> (updates, state)``."""

    init: Callable[[Params], OptState]
    update: Callable[[Any, OptState, Params], tuple[Updates, OptState]]


class SGDState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), float32
    velocity: Any  # like params; () when momentum == 0


class AdamState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), float32
    mu: Any  # first moment, like params
    nu: Any  # second moment, like params


class RMSPropState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), float32
    nu: Any  # running mean of g^2, like params


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leaf by leaf, keeping each param's dtype."""
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


def global_norm(tree: Any) -> Array:
    """``sqrt(sum of squares)`` over every leaf."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def clip_by_global_norm(grads: Any, max_norm: float) -> Any:
    """Scales ``grads`` by ``min(1, max_norm / global_norm(grads))``."""
    norm = global_norm(grads)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def set_learning_rate(opt_state: OptState, learning_rate: float) -> OptState:
    """A copy of ``opt_state`` whose constant learning rate is ``learning_rate``.

    The new rate is an array of the same shape and dtype, so a jitted step or epoch
    does not recompile. (With a schedule, the schedule decides and this is overwritten.)
    """
    lr = check_positive_float(learning_rate, "learning_rate")
    return opt_state._replace(learning_rate=jnp.asarray(lr, jnp.float32))


def _lr_parts(learning_rate: float | Schedule) -> tuple[Schedule | None, float]:
    if callable(learning_rate):
        return learning_rate, float(learning_rate(jnp.int32(0)))
    return None, check_positive_float(learning_rate, "learning_rate")


def _prepare(grads, state, params, schedule, weight_decay, clip_norm, decoupled):
    lr = schedule(state.count) if schedule is not None else state.learning_rate
    if clip_norm is not None:
        grads = clip_by_global_norm(grads, clip_norm)
    if weight_decay and not decoupled:
        grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)  # L2
    return grads, jnp.asarray(lr, jnp.float32)


def _check_common(weight_decay, clip_norm):
    check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    if clip_norm is not None:
        check_positive_float(clip_norm, "clip_norm")


def sgd(
    learning_rate: float | Schedule,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> GradientTransformation:
    """Plain SGD, heavy-ball momentum or Nesterov momentum (PyTorch's forms)."""
    schedule, lr0 = _lr_parts(learning_rate)
    momentum = check_positive_float(momentum, "momentum", allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
    _check_common(weight_decay, clip_norm)

    def init(params):
        v = jax.tree.map(jnp.zeros_like, params) if momentum else ()
        return SGDState(jnp.zeros((), jnp.int32), jnp.asarray(lr0, jnp.float32), v)

    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, weight_decay, clip_norm, False)
        if momentum:
            v = jax.tree.map(lambda v, g: momentum * v + g, state.velocity, g)  # v = mu v + g
            step = jax.tree.map(lambda v, g: g + momentum * v, v, g) if nesterov else v
        else:
            v, step = (), g
        updates = jax.tree.map(lambda s: -lr.astype(s.dtype) * s, step)
        return updates, SGDState(state.count + 1, lr, v)

    return GradientTransformation(init, update)


def momentum(learning_rate, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with heavy-ball momentum (``sgd(..., momentum=0.9)``)."""
    return sgd(learning_rate, momentum=momentum, **kw)


def nesterov(learning_rate, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with Nesterov momentum (``sgd(..., momentum=0.9, nesterov=True)``)."""
    return sgd(learning_rate, momentum=momentum, nesterov=True, **kw)


def adam(
    learning_rate: float | Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    decoupled: bool = False,
) -> GradientTransformation:
    """Adam with bias correction; ``decoupled=True`` (or :func:`adamw`) is AdamW."""
    schedule, lr0 = _lr_parts(learning_rate)
    for name, b in (("b1", b1), ("b2", b2)):
        if not (isinstance(b, (int, float)) and 0 <= b < 1):
            raise ValueError(f"{name} must be in [0, 1); got {b!r}")
    check_positive_float(eps, "eps")
    _check_common(weight_decay, clip_norm)

    def init(params):
        return AdamState(jnp.zeros((), jnp.int32), jnp.asarray(lr0, jnp.float32),
                         jax.tree.map(jnp.zeros_like, params),
                         jax.tree.map(jnp.zeros_like, params))  # two buffers (donation)

    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, weight_decay, clip_norm, decoupled)
        t = (state.count + 1).astype(jnp.float32)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)
        c1, c2 = 1 - b1**t, 1 - b2**t  # bias corrections

        def step(m, v, p):
            u = -lr * (m / c1) / (jnp.sqrt(v / c2) + eps)
            if decoupled and weight_decay:
                u = u - lr * weight_decay * p  # AdamW: p -= lr wd p
            return u.astype(p.dtype)

        updates = jax.tree.map(step, mu, nu, params)
        return updates, AdamState(state.count + 1, lr, mu, nu)

    return GradientTransformation(init, update)


def adamw(learning_rate: float | Schedule = 1e-3, weight_decay: float = 1e-2,
          **kw) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay (PyTorch's default ``weight_decay=0.01``)."""
    return adam(learning_rate, weight_decay=weight_decay, decoupled=True, **kw)


def rmsprop(
    learning_rate: float | Schedule = 1e-3,
    decay: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
) -> GradientTransformation:
    """RMSProp as PyTorch defines it (``alpha=0.99``, eps outside the square root)."""
    schedule, lr0 = _lr_parts(learning_rate)
    if not (isinstance(decay, (int, float)) and 0 <= decay < 1):
        raise ValueError(f"decay must be in [0, 1); got {decay!r}")
    check_positive_float(eps, "eps")
    _check_common(weight_decay, clip_norm)

    def init(params):
        return RMSPropState(jnp.zeros((), jnp.int32), jnp.asarray(lr0, jnp.float32),
                            jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, weight_decay, clip_norm, False)
        nu = jax.tree.map(lambda v, g: decay * v + (1 - decay) * g * g, state.nu, g)
        updates = jax.tree.map(lambda g, v: (-lr * g / (jnp.sqrt(v) + eps)).astype(g.dtype),
                               g, nu)
        return updates, RMSPropState(state.count + 1, lr, nu)

    return GradientTransformation(init, update)


OPTIMIZERS: dict[str, Callable[..., GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
    "adamw": adamw,
    "rmsprop": rmsprop,
}


def get_optimizer(name: str, learning_rate: float | Schedule, **kwargs) -> GradientTransformation:
    """Builds the optimizer called ``name`` (one of :data:`OPTIMIZERS`)."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}; got {name!r}")
    return OPTIMIZERS[name](learning_rate, **kwargs)
