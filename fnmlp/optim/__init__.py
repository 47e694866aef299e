"""Optimizers, written by hand: pure ``(init, update)`` pairs over param pytrees.

An optimizer is a :class:`GradientTransformation`::

    opt_state = opt.init(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = apply_updates(params, updates)          # params + updates

The per-array math is written once and lifted over the pytree with ``jax.tree.map``.

**Composed, as optax.** Each job is a small transform (:mod:`fnmlp.optim.transforms`):
``clip_by_global_norm``, ``add_decayed_weights`` (with a mask), ``trace`` (momentum,
Nesterov), ``scale_by_adam``, ``scale_by_rms``, ``scale_by_learning_rate``; ``chain``
runs them in order, and ``inject_hyperparams`` keeps the learning rate and the weight
decay as arrays in the state. The names users call are sugar over them::

    sgd      inject(chain(clip, decay, trace(momentum, nesterov), scale_by_learning_rate))
    adam     inject(chain(clip, decay, scale_by_adam(b1, b2, eps), identity, scale_by_lr))
    adamw    inject(chain(clip, identity, scale_by_adam(b1, b2, eps), decay, scale_by_lr))
    rmsprop  inject(chain(clip, decay, scale_by_rms(decay, eps), scale_by_learning_rate))

(an unused slot is ``identity()``; ``clip`` and ``decay`` only when asked for).

**The state contract.** fnmlp's training loop (``fit``, ``make_trainer``, populations)
accepts any ``GradientTransformation`` whose state is a NamedTuple with a field
``learning_rate``: a scalar array, the rate the last update used. The loop reads it only
through :func:`get_learning_rate` (to report it each epoch) and changes it only through
:func:`set_learning_rate` (an array, so a jitted epoch never recompiles). A state without
it is refused by :func:`check_optimizer` before anything compiles;
``inject_hyperparams(factory, lr)`` gives any transform that field. fnmlp's own states
(:class:`InjectHyperparamsState`) also hold ``count`` (updates applied, int32 ``[]``),
``weight_decay`` (a scalar array, so a population can give each member its own; see
:func:`set_weight_decay`) and ``inner_state``, the chain's states (``tree_get(state,
"mu")`` finds Adam's first moment in it).

**Compiled once.** An optimizer's ``update`` depends only on its static options (momentum,
betas, eps, clipping, whether there is a decay term, the weight-decay mask, the schedule
object): ``inject_hyperparams`` hands out one shared ``update`` function per such
configuration (a mask or schedule that is not hashable gets an update of its own), so
``adam(0.1)`` and ``adam(0.01)`` have the same ``update`` and fnmlp's compiled trainers
(cached by it) serve both. ``init`` makes its zero buffers and its scalars on the host,
so it compiles nothing new per call.

**Precision.** Every scalar of an update (learning rate, weight decay, bias corrections)
is held and computed in the params' float dtype: float64 params get float64 optimizer
arithmetic (PyTorch's optimizers compute these scalars in Python float64, too).
float16 and bfloat16 params get float32 scalars, buffers (momentum, Adam's moments,
RMSprop's mean square) and update arithmetic, cast to the param's dtype only in the
update (:func:`state_dtype`): in float16 Adam's ``eps = 1e-8`` is 0, so the first
exactly-zero gradient (an always-blank pixel) would give ``0 / 0`` (optax #1754). A schedule
is called as ``schedule(count, dtype)`` with that dtype, so a scheduled rate is float64
too (a user's one-argument ``schedule(count)`` is called so and its result cast).

**What weight decay touches.** Every optimizer takes ``mask=``, as optax's
``add_decayed_weights(mask=)`` and ``adamw(mask=)``: ``None`` (the default) decays every
leaf, biases and normalisation scales included. That is PyTorch's default (one param
group, one ``weight_decay``), kept so that each optimizer still matches ``torch.optim``
step for step. The lesson, CS231n and scikit-learn's ``MLPClassifier`` penalise the
weight matrices only: pass ``mask=matrices_only`` (decay the leaves with ``ndim >= 2``,
nanoGPT's rule), or any predicate ``mask(path, leaf) -> bool``, ``path`` as in
``jax.tree_util.tree_flatten_with_path``. The predicate runs at trace time, on each
leaf's path and (abstract) array, and must return a Python bool. A masked-out leaf gets
neither the coupled L2 term (``g += wd p``) nor AdamW's decoupled decay.

Each optimizer follows PyTorch's documented algorithm (``torch.optim``) with the same
defaults, tested step by step against a float64 NumPy re-implementation of it. Where the
names differ: ``decay`` here is PyTorch's ``alpha`` (RMSprop), ``b1, b2`` are ``betas``,
``clip_norm`` is ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` applied first.
``learning_rate`` may be a schedule (:mod:`fnmlp.schedules`), evaluated at ``count``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax

from fnmlp._validate import check_positive_float
from fnmlp.optim.base import (
    CLIP_EPS,
    GradientTransformation,
    _lr_parts,
    apply_updates,
    check_optimizer,
    clip_grads_by_global_norm,
    get_learning_rate,
    global_norm,
    host_scalar,
    matrices_only,
    set_learning_rate,
    set_weight_decay,
    state_dtype,
    zeros_like_tree,
)
from fnmlp.optim.transforms import (
    EmptyState,
    InjectHyperparamsState,
    ScaleByAdamState,
    ScaleByRmsState,
    TraceState,
    add_decayed_weights,
    chain,
    clip_by_global_norm,
    identity,
    inject_hyperparams,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    trace,
    tree_get,
)
from fnmlp.schedules import Schedule

Array = jax.Array

__all__ = [
    "CLIP_EPS", "OPTIMIZERS", "EmptyState", "GradientTransformation",
    "InjectHyperparamsState", "ScaleByAdamState", "ScaleByRmsState", "TraceState", "adam",
    "adamw", "add_decayed_weights", "apply_updates", "chain", "check_optimizer",
    "clip_by_global_norm", "clip_grads_by_global_norm", "default_learning_rate",
    "get_learning_rate", "get_optimizer", "global_norm", "host_scalar", "identity",
    "inject_hyperparams", "matrices_only", "momentum", "nesterov", "rmsprop",
    "scale_by_adam", "scale_by_learning_rate", "scale_by_rms", "set_learning_rate",
    "set_weight_decay", "sgd", "state_dtype", "trace", "tree_get", "zeros_like_tree",
]


def _check_common(learning_rate, weight_decay, clip_norm, mask):
    """Checks the shared options when the optimizer is built; returns the mask to key the
    shared update on (None when there is no decay term, so that a mask without decay
    changes nothing)."""
    _lr_parts(learning_rate)
    wd = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    if clip_norm is not None:
        check_positive_float(clip_norm, "clip_norm")
    if mask is not None and not callable(mask):
        raise ValueError("mask must be None or a callable mask(path, leaf) -> bool (e.g."
                         f" optim.matrices_only); got {mask!r}"[:200])
    return mask if wd > 0 else None


def _clip(clip_norm):
    return identity() if clip_norm is None else clip_by_global_norm(clip_norm)


def _decay(on, weight_decay, mask):
    return add_decayed_weights(weight_decay, mask) if on else identity()


# ----------------------------------------------------------------------------- optimizers


def sgd(
    learning_rate: float | Schedule = 0.1,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    mask: Callable[[Any, Any], bool] | None = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, optionally with momentum (PyTorch's ``torch.optim.SGD``).

    With ``g`` the gradient (clipped, then ``g += weight_decay * p`` on the leaves ``mask``
    selects)::

        plain:     p <- p - lr g
        momentum:  v <- momentum v + g;            p <- p - lr v
        nesterov:  v <- momentum v + g;            p <- p - lr (g + momentum v)

    (``v`` starts at 0, so the first step is ``v = g`` as in PyTorch; no dampening.)

    Args:
      learning_rate: ``lr``; default 0.1 (the lesson's; PyTorch's has none, Keras's is
        0.01), or a schedule of the step count,
        called as ``schedule(count, dtype=params' float dtype)`` (:mod:`fnmlp.schedules`;
        a one-argument ``schedule(count)`` is called so, its result cast).
      momentum: the momentum factor, in ``[0, 1)``; default 0.
      nesterov: Nesterov momentum (needs ``momentum > 0``); default False.
      weight_decay: L2 penalty added to the gradient (PyTorch's ``weight_decay``);
        default 0.
      clip_norm: if given, the gradient is first scaled as by PyTorch's
        ``clip_grad_norm_(max_norm=clip_norm)``; default None.
      mask: which leaves weight decay touches: ``None`` (default) every leaf, as
        PyTorch; or a predicate ``mask(path, leaf) -> bool`` evaluated at trace time,
        e.g. :func:`matrices_only` (weights, not biases nor norm scales).

    Raises:
      ValueError: a hyperparameter is out of range or ``mask`` is not callable (the
        error names the argument), raised here, when the optimizer is built.

    Examples:
      >>> import jax.numpy as jnp, fnmlp
      >>> opt = fnmlp.sgd(0.1)
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> updates, state = opt.update({"w": jnp.array([1.0, -1.0])}, opt.init(params), params)
      >>> fnmlp.optim.apply_updates(params, updates)["w"]
      Array([0.9, 2.1], dtype=float32)
    """
    momentum = check_positive_float(momentum, "momentum", allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
    mask = _check_common(learning_rate, weight_decay, clip_norm, mask)
    return inject_hyperparams(_sgd, learning_rate, weight_decay, momentum=momentum,
                              nesterov=nesterov, decays=weight_decay > 0,
                              clip_norm=clip_norm, mask=mask)


def _sgd(learning_rate, weight_decay, momentum, nesterov, decays, clip_norm, mask):
    return chain(_clip(clip_norm), _decay(decays, weight_decay, mask),
                 trace(momentum, nesterov) if momentum else identity(),
                 scale_by_learning_rate(learning_rate))


def momentum(learning_rate=0.1, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with heavy-ball momentum: ``sgd(learning_rate, momentum=0.9, **kw)``.

    ``v <- momentum v + g;  p <- p - lr v`` (PyTorch's form; see :func:`sgd`)."""
    return sgd(learning_rate, momentum=momentum, **kw)


def nesterov(learning_rate=0.1, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with Nesterov momentum: ``sgd(learning_rate, momentum=0.9, nesterov=True)``.

    ``v <- momentum v + g;  p <- p - lr (g + momentum v)`` (PyTorch's form)."""
    return sgd(learning_rate, momentum=momentum, nesterov=True, **kw)


def adam(
    learning_rate: float | Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    decoupled: bool = False,
    mask: Callable[[Any, Any], bool] | None = None,
) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015) with bias correction, as PyTorch's ``torch.optim.Adam``.

    With ``g`` the gradient (clipped, then ``g += weight_decay * p`` on the leaves ``mask``
    selects, unless decoupled) at step ``t = 1, 2, ...``::

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    With ``decoupled=True`` (AdamW, :func:`adamw`) the decay is not added to ``g``;
    instead ``p <- p - lr weight_decay p`` is applied too (on the leaves ``mask`` selects:
    PyTorch's param groups with ``weight_decay=0`` for the others). Bias corrections are computed
    as ``-expm1(t log b)`` in the params' dtype.

    Args:
      learning_rate: ``lr``; default 1e-3 (as PyTorch), or a schedule.
      b1, b2: PyTorch's ``betas``; default 0.9 and 0.999.
      eps: added to the denominator, outside the square root; default 1e-8.
      weight_decay: L2 penalty (coupled) or AdamW's decay (decoupled); default 0.
      clip_norm: clip the gradient as ``clip_grad_norm_(max_norm=clip_norm)``; default None.
      decoupled: AdamW's decoupled weight decay; default False.
      mask: which leaves weight decay touches: ``None`` (default) every leaf, as
        PyTorch; or a predicate ``mask(path, leaf) -> bool`` evaluated at trace time,
        e.g. :func:`matrices_only` (weights, not biases nor norm scales).

    Raises:
      ValueError: a hyperparameter is out of range or ``mask`` is not callable (the
        error names the argument), raised here, when the optimizer is built.
    """
    for name, b in (("b1", b1), ("b2", b2)):
        if not (isinstance(b, (int, float)) and 0 <= b < 1):
            raise ValueError(f"{name} must be in [0, 1); got {b!r}")
    check_positive_float(eps, "eps")
    mask = _check_common(learning_rate, weight_decay, clip_norm, mask)
    return inject_hyperparams(_adam, learning_rate, weight_decay, b1=b1, b2=b2, eps=eps,
                              decays=weight_decay > 0, decoupled=decoupled,
                              clip_norm=clip_norm, mask=mask)


def _adam(learning_rate, weight_decay, b1, b2, eps, decays, decoupled, clip_norm, mask):
    return chain(_clip(clip_norm), _decay(decays and not decoupled, weight_decay, mask),
                 scale_by_adam(b1, b2, eps),
                 _decay(decays and decoupled, weight_decay, mask),  # AdamW: p -= lr wd p
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: float | Schedule = 1e-3, weight_decay: float = 1e-2,
          **kw) -> GradientTransformation:
    """AdamW (Loshchilov & Hutter, 2019), as PyTorch's ``torch.optim.AdamW``.

    :func:`adam` with ``decoupled=True``: ``p <- p - lr weight_decay p`` besides the Adam
    step, and the decay is not added to the gradient. Defaults as PyTorch: ``lr=1e-3``,
    ``weight_decay=1e-2``; other arguments as :func:`adam`. ``mask=matrices_only`` is
    PyTorch's usual two param groups (``weight_decay=0`` for biases and norm scales) and
    optax's ``adamw(mask=)``.
    """
    return adam(learning_rate, weight_decay=weight_decay, decoupled=True, **kw)


def rmsprop(
    learning_rate: float | Schedule = 1e-2,
    decay: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    mask: Callable[[Any, Any], bool] | None = None,
) -> GradientTransformation:
    r"""RMSprop as PyTorch's ``torch.optim.RMSprop`` (Hinton's; not centered, no momentum).

    With ``g`` the gradient (clipped, then ``g += weight_decay * p`` on the leaves ``mask``
    selects)::

        v <- decay v + (1 - decay) g^2
        p <- p - lr g / (sqrt(v) + eps)

    Args:
      learning_rate: ``lr``; default 1e-2 (as PyTorch), or a schedule.
      decay: PyTorch's ``alpha``, the smoothing constant; default 0.99.
      eps: added to the denominator, outside the square root; default 1e-8.
      weight_decay: L2 penalty added to the gradient; default 0.
      clip_norm: clip the gradient as ``clip_grad_norm_(max_norm=clip_norm)``; default None.
      mask: which leaves weight decay touches: ``None`` (default) every leaf, as
        PyTorch; or a predicate ``mask(path, leaf) -> bool`` evaluated at trace time,
        e.g. :func:`matrices_only` (weights, not biases nor norm scales).

    Raises:
      ValueError: a hyperparameter is out of range or ``mask`` is not callable (the
        error names the argument), raised here, when the optimizer is built.
    """
    if not (isinstance(decay, (int, float)) and 0 <= decay < 1):
        raise ValueError(f"decay must be in [0, 1); got {decay!r}")
    check_positive_float(eps, "eps")
    mask = _check_common(learning_rate, weight_decay, clip_norm, mask)
    return inject_hyperparams(_rmsprop, learning_rate, weight_decay, decay=decay, eps=eps,
                              decays=weight_decay > 0, clip_norm=clip_norm, mask=mask)


def _rmsprop(learning_rate, weight_decay, decay, eps, decays, clip_norm, mask):
    return chain(_clip(clip_norm), _decay(decays, weight_decay, mask),
                 scale_by_rms(decay, eps), scale_by_learning_rate(learning_rate))


OPTIMIZERS: dict[str, Callable[..., GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
    "adamw": adamw,
    "rmsprop": rmsprop,
}


def default_learning_rate(name: str) -> float:
    """The rate the optimizer ``name`` takes when none is given: its builder's default,
    PyTorch's where PyTorch has one (``adam``, ``adamw`` 1e-3; ``rmsprop`` 1e-2), 0.1 for
    ``sgd``, ``momentum`` and ``nesterov`` (PyTorch's SGD has none).

    Raises:
      ValueError: an unknown name.
    """
    _check_name(name)
    return inspect.signature(OPTIMIZERS[name]).parameters["learning_rate"].default


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}; got {name!r}")


def get_optimizer(name: str, learning_rate: float | Schedule | None = None,
                  **kwargs) -> GradientTransformation:
    """Builds the optimizer called ``name`` (one of :data:`OPTIMIZERS`) with
    ``learning_rate``, or its own default rate (:func:`default_learning_rate`) when None.

    Raises:
      ValueError: an unknown name, or a bad hyperparameter (named).
    """
    _check_name(name)
    if learning_rate is None:
        return OPTIMIZERS[name](**kwargs)
    return OPTIMIZERS[name](learning_rate, **kwargs)
