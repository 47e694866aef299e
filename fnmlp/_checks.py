"""Scalar checks: the ground floor of fnmlp's imports (only NumPy and JAX below it).

A positive integer, a positive float, a PRNG key, a float dtype: each checked in one
place, with a ``ValueError`` that names the argument, what was expected and what arrived.
``layers/``, ``optim/``, ``schedules``, ``cli/`` and the public entry points use them;
:mod:`fnmlp._validate` (arrays, a model and its params) sits above.

The predicates (:func:`is_int`, :func:`is_positive_int`) let a caller keep its own message
(``Dense features must be a positive integer; got 0``) while the rule lives here.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_float_dtype", "check_key", "check_positive_float", "check_positive_int",
           "check_seed", "overflow_at",
           "is_int", "is_key", "is_positive_int", "is_traced"]


def is_traced(x: Any) -> bool:
    """Whether ``x`` is a JAX tracer (an argument seen under ``jit``/``vmap``/``grad``)."""
    return isinstance(x, jax.core.Tracer)


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_positive_int(value: Any, minimum: int = 1) -> bool:
    """:func:`is_int` and ``>= minimum``."""
    return is_int(value) and value >= minimum


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an int in ``[0, 2**32)`` (:data:`fnmlp._names.SEED_LIMIT`);
    ``ValueError`` otherwise: ``2**32`` made the same key as 0, -1 the same as
    ``2**32 - 1``, 1.5 failed inside JAX, True passed as 1."""
    from fnmlp._names import SEED_LIMIT

    if not (is_int(value) and 0 <= value < SEED_LIMIT):
        raise ValueError(f"{name} must be an integer in [0, 2**32); got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; ``ValueError`` naming ``name`` otherwise."""
    if not is_int(value):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    """``value`` as a float: a finite number > 0 (>= 0 with ``allow_zero``); Python, NumPy
    and 0-d JAX or NumPy float/int arrays are numbers; ``ValueError`` naming ``name``."""
    if isinstance(value, (jax.Array, np.ndarray)) and value.ndim == 0 and not is_traced(
            value) and np.dtype(value.dtype).kind in "iuf":
        value = value.item()  # jnp.float32(0.1) -> 0.1
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    if not ok_type or not math.isfinite(float(value)) or value < 0 or (
        value == 0 and not allow_zero
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return float(value)


def is_key(key: Any) -> bool:
    """A typed key (``jax.random.key``) or a raw ``uint32[2]`` one (``PRNGKey``)."""
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = (isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,)
           and key.dtype == np.uint32)
    return typed or raw


def check_key(key: Any, name: str = "key") -> Any:
    """``key`` when it is a PRNG key (:func:`is_key`); ``ValueError`` otherwise."""
    if not is_key(key):
        raise ValueError(f"{name} must be a PRNG key such as jax.random.key(0); got {key!r}"
                         [:160])
    return key


PARAM_DTYPES = ("float16", "bfloat16", "float32", "float64")
"""The float dtypes params may have: those JAX draws, trains and reduces in on every
backend. float8 and float4 load but predict NaN, float128 fails inside JAX."""


def overflow_at(a: Any, dtype: Any) -> tuple[tuple[int, ...], int] | None:
    """Where finite values of the host array ``a`` become inf as the float ``dtype``: the
    index of the first and how many, or None. The one rule of "this would become inf" for
    inputs cast to the params' dtype, inputs to a ``compute_dtype`` and a checkpoint's
    weights loaded in another dtype: the range is read first, the element-wise cast made
    only when a value lies beyond ``dtype``'s largest (65519 rounds to float16's 65504,
    65520 becomes inf). Non-finite values of ``a`` are not counted."""
    a = np.asarray(a)
    if a.size == 0 or a.dtype.kind not in "iufV":
        return None
    top = float(jnp.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        if not max(abs(float(np.min(a))), abs(float(np.max(a)))) > top:  # NaN: not beyond
            return None
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(a.astype(dtype)) & np.isfinite(a.astype(np.float64))
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape)), int(bad.sum())


def check_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``dtype`` as a NumPy dtype, one of :data:`PARAM_DTYPES`, that JAX holds now.

    The one rule for a dtype asked for by name (``init_params``, ``load_model(dtype=)``,
    ``fit_population``): float64 with ``jax_enable_x64`` off is refused, not truncated to
    float32 with JAX's warning (``init_params`` did that while ``fit_population`` refused).

    Raises:
      ValueError: an int, a float8, ``np.longdouble``, a name that is no dtype; float64
        while JAX's float64 is off (saying how to turn it on).
    """
    try:
        want = None if dtype is None else jnp.dtype(dtype)  # dtype(None) is float64
    except TypeError:
        want = None
    if want is None or want.name not in PARAM_DTYPES:
        raise ValueError(f"{name} must be a float dtype, one of {', '.join(PARAM_DTYPES)};"
                         f" got {dtype!r}")
    if jax.dtypes.canonicalize_dtype(want) != want:
        raise ValueError(f"{name}={want.name} needs JAX's float64: call jax.config.update("
                         f"'jax_enable_x64', True) at the start of the program (or run"
                         f" inside jax.enable_x64(True)); got {name}={want.name} with it off")
    return want
