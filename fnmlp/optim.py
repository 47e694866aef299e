"""Optimizers, written by hand: pure ``(init, update)`` pairs over param pytrees.

An optimizer is a :class:`GradientTransformation`::

    opt_state = opt.init(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = apply_updates(params, updates)          # params + updates

The per-array math is written once and lifted over the pytree with ``jax.tree.map``.

**The state contract.** fnmlp's training loop (``fit``, ``make_trainer``, populations)
accepts any ``GradientTransformation`` whose state is a NamedTuple with a field
``learning_rate``: a scalar array, the rate the last update used. The loop reads it only
through :func:`get_learning_rate` (to report it each epoch) and changes it only through
:func:`set_learning_rate` (an array, so a jitted epoch never recompiles). A state without
it is refused by :func:`check_optimizer` before anything compiles. fnmlp's own states
also hold ``count`` (updates applied, int32 ``[]``) and ``weight_decay`` (a scalar
array, so a population can give each member its own; see :func:`set_weight_decay`).

**Compiled once.** An optimizer's ``update`` depends only on its static options (momentum,
betas, eps, clipping, whether there is a decay term, the weight-decay mask, the schedule
object): the builders hand out one shared ``update`` function per such configuration (a
mask or schedule that is not hashable gets an update of its own), so ``adam(0.1)`` and
``adam(0.01)`` have the same ``update`` and fnmlp's compiled trainers (cached by it) serve
both. ``init`` makes its zero buffers in one cached program per params structure and its
scalars on the host, so it compiles nothing new per call.

**Precision.** Every scalar of an update (learning rate, weight decay, bias corrections)
is held and computed in the params' float dtype: float64 params get float64 optimizer
arithmetic (PyTorch's optimizers compute these scalars in Python float64, too). A schedule
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

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._validate import check_positive_float
from fnmlp.schedules import Schedule

Array = jax.Array
Params = Any
Updates = Any
OptState = Any

CLIP_EPS = 1e-6  # PyTorch's clip_grad_norm_: scale = max_norm / (norm + 1e-6)


class GradientTransformation(NamedTuple):
    """A pair of pure functions ``init(params) -> state`` and
    ``update(grads, state, params) -> (updates, state)``."""

    init: Callable[[Params], OptState]
    update: Callable[[Any, OptState, Params], tuple[Updates, OptState]]


class SGDState(NamedTuple):
    count: Array  # shape=(), int32: updates applied
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    velocity: Any  # like params; () when momentum == 0


class AdamState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    mu: Any  # first moment, like params
    nu: Any  # second moment, like params


class RMSPropState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    nu: Any  # running mean of g^2, like params


# ----------------------------------------------------------------------------- contract


def check_optimizer(optimizer: Any, params: Params) -> None:
    """Raises a clear error, before anything compiles, unless ``optimizer`` is a
    :class:`GradientTransformation` whose state has a scalar ``learning_rate`` field
    (the contract in the module doc). Runs ``init`` abstractly (``jax.eval_shape``)."""
    if not isinstance(optimizer, GradientTransformation):
        raise ValueError(f"optimizer must be a name or a fnmlp.GradientTransformation;"
                         f" got {optimizer!r}"[:200])
    state = jax.eval_shape(optimizer.init, params)
    fields = getattr(state, "_fields", None)
    lr = getattr(state, "learning_rate", None)
    if lr is None or getattr(lr, "shape", None) != ():
        raise ValueError(
            "optimizer state must be a NamedTuple with a scalar array field 'learning_rate'"
            " (fnmlp's training loop reads the rate through optim.get_learning_rate and sets"
            " it through optim.set_learning_rate); got"
            f" {type(state).__name__} with fields {list(fields) if fields else None}")


def get_learning_rate(opt_state: OptState) -> Array:
    """The learning rate the last update used (``opt_state.learning_rate``)."""
    return opt_state.learning_rate


def set_learning_rate(opt_state: OptState, learning_rate: float) -> OptState:
    """A copy of ``opt_state`` whose constant learning rate is ``learning_rate``.

    The new rate is an array of the same shape and dtype, so a jitted step or epoch
    does not recompile. (With a schedule, the schedule decides and this is overwritten.)
    """
    lr = check_positive_float(learning_rate, "learning_rate")
    return opt_state._replace(learning_rate=host_scalar(lr, opt_state.learning_rate.dtype))


def set_weight_decay(opt_state: OptState, weight_decay: float) -> OptState:
    """A copy of ``opt_state`` with another weight decay (same dtype: no recompile).

    Only takes effect in an optimizer built with ``weight_decay > 0`` (which decides at
    build time whether the decay term is computed at all)."""
    wd = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    return opt_state._replace(weight_decay=host_scalar(wd, opt_state.weight_decay.dtype))


# ----------------------------------------------------------------------------- helpers


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates`` leaf by leaf, keeping each param's dtype."""
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


def global_norm(tree: Any) -> Array:
    """``sqrt(sum of squares)`` over every leaf."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def clip_grads_by_global_norm(grads: Any, max_norm: float) -> Any:
    """Scales ``grads`` by ``min(1, max_norm / (global_norm(grads) + 1e-6))``.

    Exactly PyTorch's ``clip_grad_norm_`` (the ``1e-6`` included). Not optax's
    ``clip_by_global_norm``, which is a GradientTransformation and has no ``1e-6``.
    """
    norm = global_norm(grads)
    scale = jnp.minimum(1.0, max_norm / (norm + CLIP_EPS))
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def _float_dtype(params: Params):
    floats = [a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
    return floats[0] if floats else jnp.dtype(jnp.float32)


def _lr_parts(learning_rate: float | Schedule) -> tuple[Schedule | None, float | None]:
    """``(schedule, None)`` for a schedule (its first rate is taken in ``init``, in the
    params' dtype), ``(None, lr)`` for a constant rate."""
    if callable(learning_rate):
        return learning_rate, None
    return None, check_positive_float(learning_rate, "learning_rate")


def _takes_dtype(schedule: Callable) -> bool:
    """Whether ``schedule`` accepts a ``dtype`` keyword (fnmlp's schedules do)."""
    try:
        params = inspect.signature(schedule).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): call it with the step
        return False
    return any(p.name == "dtype" or p.kind is p.VAR_KEYWORD for p in params)


def _rate(schedule: Callable, count: Any, dtype: Any) -> Array:
    """``schedule(count, dtype=dtype)``, or ``schedule(count)`` cast to ``dtype`` for a
    one-argument schedule: a ``dtype`` scalar."""
    if _takes_dtype(schedule):
        return jnp.asarray(schedule(count, dtype=dtype), dtype)
    return jnp.asarray(schedule(count), dtype)


def host_scalar(value: float, dtype: Any) -> Array:
    """A scalar array made on the host and transferred (``jax.device_put``): unlike
    ``jnp.asarray(value, dtype)`` it compiles no conversion program."""
    return jax.device_put(np.asarray(value, dtype=np.dtype(dtype)))


@jax.jit
def zeros_like_tree(tree: Any) -> Any:
    """Zeros like every leaf of ``tree``: one compiled program per tree structure (eager
    ``jnp.zeros_like`` compiles one per leaf shape); inlined under a trace."""
    return jax.tree.map(jnp.zeros_like, tree)


def _scalars(params, lr0: float | None, schedule: Schedule | None,
             weight_decay: float) -> tuple[Array, Array, Array]:
    dtype = _float_dtype(params)
    if schedule is not None:  # the rate at step 0, in dtype, on the host even under a trace
        with jax.ensure_compile_time_eval():
            lr0 = float(_rate(schedule, np.int32(0), dtype))
    return (host_scalar(0, np.int32), host_scalar(lr0, dtype), host_scalar(weight_decay, dtype))


def matrices_only(path: Any, leaf: Any) -> bool:
    """A weight-decay ``mask``: decay the leaves with ``ndim >= 2``, nothing else.

    nanoGPT's rule: weight matrices decay, biases and normalisation scales (1-D) do
    not. It reads only the leaf's rank, never the layer's names, so it holds for any
    layer, a user's included. Pass it as ``mask=matrices_only`` to any optimizer.

    Args:
      path: the leaf's key path (unused), as in ``jax.tree_util.tree_flatten_with_path``.
      leaf: the param array (or its abstract value under a trace).

    Returns:
      ``True`` for a matrix or higher-rank array, ``False`` for a vector or scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> matrices_only((), jnp.ones((3, 2))), matrices_only((), jnp.ones(2))
      (True, False)
    """
    return jnp.ndim(leaf) >= 2


def _decayed(mask: Callable | None, params: Params) -> Any:
    """A tree like ``params`` of Python bools: which leaves weight decay touches.
    Evaluated at trace time."""
    if mask is None:
        return jax.tree.map(lambda _: True, params)

    def one(path, leaf):
        d = mask(path, leaf)
        if not isinstance(d, (bool, np.bool_)):
            raise TypeError(
                f"mask(path, leaf) must return a Python bool at trace time; got {d!r}"
                f" for the leaf at {jax.tree_util.keystr(path)}"[:300])
        return bool(d)

    return jax.tree.map_with_path(one, params)


def _shared(factory: Callable, *static) -> Callable:
    """``factory(*static)``, one object per distinct (hashable) ``static`` tuple; a fresh
    one when some option is unhashable (e.g. a schedule or mask object without
    ``__hash__``)."""
    try:
        return _shared_cache(factory, *static)
    except TypeError:
        return factory(*static)


@functools.lru_cache(maxsize=256)
def _shared_cache(factory: Callable, *static) -> Callable:
    return factory(*static)


def _prepare(grads, state, params, schedule, use_wd, clip_norm, decoupled, mask):
    """Clipping, coupled L2 weight decay on the leaves ``mask`` selects, and the rate of
    this step (params' dtype)."""
    dtype = state.learning_rate.dtype
    lr = _rate(schedule, state.count, dtype) if schedule is not None else state.learning_rate
    if clip_norm is not None:
        grads = clip_grads_by_global_norm(grads, clip_norm)
    if use_wd and not decoupled:
        wd = state.weight_decay
        grads = jax.tree.map(lambda g, p, d: g + wd.astype(g.dtype) * p if d else g,  # L2
                             grads, params, _decayed(mask, params))
    return grads, jnp.asarray(lr, dtype)


def _check_common(weight_decay, clip_norm, mask):
    """Checks the shared options; returns the mask to key the shared update on (None when
    there is no decay term, so that a mask without decay changes nothing)."""
    wd = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
    if clip_norm is not None:
        check_positive_float(clip_norm, "clip_norm")
    if mask is not None and not callable(mask):
        raise ValueError("mask must be None or a callable mask(path, leaf) -> bool (e.g."
                         f" optim.matrices_only); got {mask!r}"[:200])
    return mask if wd > 0 else None


# ----------------------------------------------------------------------------- optimizers


def sgd(
    learning_rate: float | Schedule,
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
      learning_rate: ``lr`` (no default, as PyTorch), or a schedule of the step count,
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
      >>> fnmlp.apply_updates(params, updates)["w"]
      Array([0.9, 2.1], dtype=float32)
    """
    schedule, lr0 = _lr_parts(learning_rate)
    momentum = check_positive_float(momentum, "momentum", allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum}")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
    mask = _check_common(weight_decay, clip_norm, mask)
    use_wd = weight_decay > 0

    def init(params):
        v = zeros_like_tree(params) if momentum else ()
        return SGDState(*_scalars(params, lr0, schedule, weight_decay), v)

    return GradientTransformation(
        init, _shared(_sgd_update, schedule, momentum, nesterov, use_wd, clip_norm, mask))


def _sgd_update(schedule, momentum, nesterov, use_wd, clip_norm, mask):
    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, use_wd, clip_norm, False, mask)
        if momentum:
            v = jax.tree.map(lambda v, g: momentum * v + g, state.velocity, g)  # v = mu v + g
            step = jax.tree.map(lambda v, g: g + momentum * v, v, g) if nesterov else v
        else:
            v, step = (), g
        updates = jax.tree.map(lambda s: -lr.astype(s.dtype) * s, step)
        return updates, state._replace(count=state.count + 1, learning_rate=lr, velocity=v)

    return update


def momentum(learning_rate, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with heavy-ball momentum: ``sgd(learning_rate, momentum=0.9, **kw)``.

    ``v <- momentum v + g;  p <- p - lr v`` (PyTorch's form; see :func:`sgd`)."""
    return sgd(learning_rate, momentum=momentum, **kw)


def nesterov(learning_rate, momentum: float = 0.9, **kw) -> GradientTransformation:
    """SGD with Nesterov momentum: ``sgd(learning_rate, momentum=0.9, nesterov=True)``.

    ``v <- momentum v + g;  p <- p - lr (g + momentum v)`` (PyTorch's form)."""
    return sgd(learning_rate, momentum=momentum, nesterov=True, **kw)


def _bias_correction(b: float, t: Array) -> Array:
    # 1 - b^t computed as -expm1(t log b): no cancellation when b^t is close to 1
    # (1 - 0.999 in float32 has a relative error of 6e-5; this, a few ulps)
    if b == 0:
        return jnp.ones_like(t)
    return -jnp.expm1(t * jnp.asarray(math.log(b), t.dtype))


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
    schedule, lr0 = _lr_parts(learning_rate)
    for name, b in (("b1", b1), ("b2", b2)):
        if not (isinstance(b, (int, float)) and 0 <= b < 1):
            raise ValueError(f"{name} must be in [0, 1); got {b!r}")
    check_positive_float(eps, "eps")
    mask = _check_common(weight_decay, clip_norm, mask)
    use_wd = weight_decay > 0

    def init(params):
        return AdamState(*_scalars(params, lr0, schedule, weight_decay),
                         zeros_like_tree(params), zeros_like_tree(params))  # two buffers

    return GradientTransformation(
        init, _shared(_adam_update, schedule, b1, b2, eps, use_wd, clip_norm, decoupled, mask))


def _adam_update(schedule, b1, b2, eps, use_wd, clip_norm, decoupled, mask):
    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, use_wd, clip_norm, decoupled, mask)
        t = (state.count + 1).astype(lr.dtype)
        c1, c2 = _bias_correction(b1, t), _bias_correction(b2, t)
        step_size, root_c2 = lr / c1, jnp.sqrt(c2)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, g)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, g)

        def step(m, v, p, decays):
            d = m.dtype
            u = -step_size.astype(d) * m / (jnp.sqrt(v) / root_c2.astype(d) + eps)
            if decoupled and use_wd and decays:
                u = u - (lr * state.weight_decay).astype(d) * p  # AdamW: p -= lr wd p
            return u.astype(p.dtype)

        updates = jax.tree.map(step, mu, nu, params, _decayed(mask, params))
        return updates, state._replace(count=state.count + 1, learning_rate=lr, mu=mu, nu=nu)

    return update


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
    schedule, lr0 = _lr_parts(learning_rate)
    if not (isinstance(decay, (int, float)) and 0 <= decay < 1):
        raise ValueError(f"decay must be in [0, 1); got {decay!r}")
    check_positive_float(eps, "eps")
    mask = _check_common(weight_decay, clip_norm, mask)
    use_wd = weight_decay > 0

    def init(params):
        return RMSPropState(*_scalars(params, lr0, schedule, weight_decay),
                            zeros_like_tree(params))

    return GradientTransformation(
        init, _shared(_rmsprop_update, schedule, decay, eps, use_wd, clip_norm, mask))


def _rmsprop_update(schedule, decay, eps, use_wd, clip_norm, mask):
    def update(grads, state, params):
        g, lr = _prepare(grads, state, params, schedule, use_wd, clip_norm, False, mask)
        nu = jax.tree.map(lambda v, g: decay * v + (1 - decay) * g * g, state.nu, g)
        updates = jax.tree.map(
            lambda g, v: (-lr.astype(g.dtype) * g / (jnp.sqrt(v) + eps)).astype(g.dtype), g, nu)
        return updates, state._replace(count=state.count + 1, learning_rate=lr, nu=nu)

    return update


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
