"""The optimizer contract and the per-array helpers the optimizers share.

:class:`GradientTransformation`, the learning-rate and weight-decay accessors the
training loop uses (see :mod:`fnmlp.optim` for the contract),
and the arithmetic every optimizer builds on: :func:`apply_updates`, an overflow-free
:func:`global_norm` and PyTorch's clipping, the dtype of optimizer state
(:func:`state_dtype`), the weight-decay mask, the shared ``update`` cache.
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


# ----------------------------------------------------------------------------- contract


def check_optimizer(optimizer: Any, params: Params) -> None:
    """Raises a clear error, before anything compiles, unless ``optimizer`` is a
    :class:`GradientTransformation` whose state has a scalar ``learning_rate`` field
    (the contract in the module doc). Runs ``init`` abstractly (``jax.eval_shape``)."""
    if not isinstance(optimizer, GradientTransformation):
        raise ValueError(f"optimizer must be a name or a fnmlp.optim.GradientTransformation;"
                         f" got {optimizer!r}"[:200])
    state = jax.eval_shape(optimizer.init, params)
    fields = getattr(state, "_fields", None)
    lr = getattr(state, "learning_rate", None)
    if lr is None or getattr(lr, "shape", None) != ():
        raise ValueError(
            "optimizer state must be a NamedTuple with a scalar array field 'learning_rate'"
            " (fnmlp's training loop reads the rate through optim.get_learning_rate and sets"
            " it through optim.set_learning_rate; optim.inject_hyperparams(factory, lr) adds"
            " it to any transform); got a state of type "
            + (f"{type(state).__name__} with fields {list(fields)}" if fields else
               f"{type(state).__name__} without a learning_rate field"))


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


def _scaled(tree: Any) -> tuple[list, Array, Array, Array]:
    """``(leaves s, norm s, h, e)`` with ``s = 2^-e`` the power of two that brings
    ``m = max |x|`` into ``[0.5, 1)``, ``h = e // 2``; leaves in at least float32. ``s`` is
    applied as two factors ``2^-h`` and ``2^(h-e)``, each a normal number, because XLA:CPU
    flushes subnormals to zero (``1 / 1e38`` is 0 there), and only by multiplying (XLA
    turns ``x / a / b`` into ``x / (a b)``). ``m`` 0, inf or NaN: ``s = 1``."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.size(x)]
    dtype = jnp.result_type(jnp.float32, *[x.dtype for x in leaves])
    leaves = [x.astype(dtype) for x in leaves]
    m = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(x)) for x in leaves])  # [] >= 0
    ok = jnp.isfinite(m) & (m > 0)
    _, e = jnp.frexp(jnp.where(ok, m, jnp.ones_like(m)))  # m = f 2^e, f in [0.5, 1)
    half = e // 2
    s1 = jnp.ldexp(jnp.ones_like(m), -half)  # both factors normal numbers
    s2 = jnp.ldexp(jnp.ones_like(m), half - e)
    scaled = [x * s1 * s2 for x in leaves]  # each |entry| < 1: the squares cannot overflow
    return scaled, jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in scaled)), half, e


def global_norm(tree: Any) -> Array:
    """``sqrt(sum of squares)`` over every leaf, without overflow or underflow: a scalar in
    the leaves' float dtype, at least float32.

    The leaves are first scaled by a power of two ``s`` that brings ``m = max |x|`` into
    ``[0.5, 1)`` (the scaling of LAPACK's ``nrm2`` and of ``torch.linalg.vector_norm``;
    exact, so the result is ``sqrt(sum((x s)^2)) / s``), in at least float32 (PyTorch
    #46849: a float16 gradient's squares overflow): the norm of a float32 gradient
    ``[1e20]`` is 1e20, of ``[1e38, 5e37]`` 1.118e38, of a float16 ``[300]`` 300, where the
    plain sum of squares is ``inf``. A norm beyond the dtype's range is ``inf``; a NaN
    anywhere gives NaN. All zeros (or no leaves) give 0."""
    if not [x for x in jax.tree.leaves(tree) if jnp.size(x)]:
        return jnp.zeros((), jnp.float32)
    _, norm_s, h, e = _scaled(tree)
    one = jnp.ones_like(norm_s)
    return norm_s * jnp.ldexp(one, h) * jnp.ldexp(one, e - h)  # exact; inf only if it is


def clip_grads_by_global_norm(grads: Any, max_norm: float) -> Any:
    """Scales ``grads`` by ``min(1, max_norm / (global_norm(grads) + 1e-6))``.

    PyTorch's ``clip_grad_norm_`` (the ``1e-6`` included), computed without overflow or
    flushed subnormals: a clipped leaf is ``(g s) max_norm / (norm s + 1e-6 s)``, with
    ``s`` the power of two of :func:`global_norm` (the same value, exactly rescaled), so a
    finite gradient of any size keeps its direction and comes out with norm ``max_norm``
    (a float32 ``[1e38, -1e38]`` becomes ``max_norm [0.707, -0.707]``, not 0). Computed in
    at least float32, each leaf cast back to its dtype. Not optax's
    ``clip_by_global_norm``, which is a GradientTransformation and has no ``1e-6``.

    Args:
      grads: a pytree of float arrays.
      max_norm: the largest global norm kept, > 0.

    Returns:
      ``grads`` scaled, same structure, shapes and dtypes.
    """
    if not [x for x in jax.tree.leaves(grads) if jnp.size(x)]:
        return grads
    _, norm_s, h, e = _scaled(grads)
    one = jnp.ones_like(norm_s)
    s1, s2 = jnp.ldexp(one, -h), jnp.ldexp(one, h - e)  # s = s1 s2, each a normal number
    eps_s = CLIP_EPS * s1 * s2  # 1e-6 in the scaled units (0 if it underflows: negligible)
    clip = norm_s + eps_s > max_norm * s1 * s2  # norm + eps > max_norm; norm may be inf
    factor = max_norm / (norm_s + eps_s)  # for the scaled leaves

    def one_leaf(g):
        wide = g.astype(jnp.result_type(g.dtype, factor.dtype))
        return jnp.where(clip, (wide * s1) * s2 * factor, wide).astype(g.dtype)

    return jax.tree.map(one_leaf, grads)


def _float_dtype(params: Params):
    """The dtype of the optimizer's scalars and buffers: the params' float dtype, at least
    float32 (half-precision params keep their moments and rates in float32)."""
    floats = [a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
    return state_dtype(floats[0] if floats else jnp.float32)


def state_dtype(dtype: Any) -> Any:
    """The dtype an optimizer keeps state of a ``dtype`` param in: ``dtype`` itself, or
    float32 for float16 and bfloat16, where Adam's ``eps = 1e-8`` is 0 and ``g^2`` of a
    gradient of 1e-4 underflows (optax #1754: the first exactly-zero gradient gives
    ``0 / 0``)."""
    return jnp.promote_types(dtype, jnp.float32)


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


def zeros_like_tree(tree: Any) -> Any:
    """Zeros like every leaf of ``tree``, in :func:`state_dtype` of its dtype (float32 for
    half-precision leaves). Made on the host and transferred (``jax.device_put``; to the
    leaf's sharding when the leaf is committed to one): nothing is compiled. Under a trace
    (a leaf is a tracer), traced ``jnp.zeros`` instead (a host array would be baked into
    the program)."""
    leaves = jax.tree.leaves(tree)
    if any(isinstance(a, jax.core.Tracer) for a in leaves):
        return jax.tree.map(lambda a: jnp.zeros(a.shape, state_dtype(a.dtype)), tree)

    def zeros(a):  # placed as a jitted zeros_like would be: committed like ``a``
        z = np.zeros(np.shape(a), np.dtype(state_dtype(a.dtype)))
        committed = isinstance(a, jax.Array) and a.committed
        return jax.device_put(z, a.sharding if committed else None)

    return jax.tree.map(zeros, tree)


def _scalars(params, lr0: float | None, schedule: Schedule | None,
             weight_decay: float) -> tuple[Array, Array, Array]:
    dtype = _float_dtype(params)
    if schedule is not None and any(isinstance(a, jax.core.Tracer)
                                    for a in jax.tree.leaves(params)):
        # under a trace (eval_shape, jit, vmap): the rate at step 0 traced with the rest
        rate = jnp.asarray(_rate(schedule, jnp.int32(0), dtype), dtype)
        return host_scalar(0, np.int32), rate, host_scalar(weight_decay, dtype)
    if schedule is not None:  # the rate at step 0, in dtype: one small compiled program
        lr0 = _first_rate(schedule, jnp.dtype(dtype).name)
        check_rate(lr0, "at step 0")
    return (host_scalar(0, np.int32), host_scalar(lr0, dtype), host_scalar(weight_decay, dtype))


def unusable_rate(rate: float, before: float = 0.0) -> bool:
    """The one rule for a schedule's rate: unusable when not finite (it ruins the params)
    or below 0 (it climbs the loss) by more than 1% of ``before``, the rate the schedule
    gave one epoch earlier (0 at step 0: any negative rate). So a schedule past its zero is
    caught within an epoch of crossing it, and round-off at a decay's end is not: a linear
    decay to 0 at a run's last step came out -1.5e-9 in float32, and after 2,063 epochs
    -5.2e-10 against 4.9e-6 an epoch earlier. Checked at step 0 here and after every epoch
    by :func:`fnmlp.train.train_epoch` and ``fit_population``, on the lowest rate any of
    the epoch's updates used (a schedule negative inside an epoch and positive at its end
    is seen)."""
    return not math.isfinite(rate) or rate < -0.01 * abs(before)


def check_rate(rate: float, when: str) -> None:
    """``ValueError`` naming the rate and ``when`` (``"at step 0"``) for an
    :func:`unusable_rate`."""
    if unusable_rate(rate):
        raise ValueError(f"learning_rate: the schedule gives {rate:g} {when}; a learning rate"
                         " must be finite and >= 0 (a negative rate climbs the loss)")


def _first_rate(schedule: Schedule, dtype: str) -> float:
    """``schedule(0)`` in ``dtype``, as a float: one compiled program per schedule and
    dtype (evaluated op by op, a cosine warm-up compiled 15 small programs), or op by op
    where the schedule cannot be hashed)."""
    try:
        return _first_rate_jitted(schedule, dtype)
    except TypeError:  # an unhashable schedule
        with jax.ensure_compile_time_eval():
            return float(_rate(schedule, np.int32(0), jnp.dtype(dtype)))


@functools.lru_cache(maxsize=64)
def _first_rate_jitted(schedule: Schedule, dtype: str) -> float:
    return float(jax.jit(lambda: _rate(schedule, np.int32(0), jnp.dtype(dtype)))())


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
