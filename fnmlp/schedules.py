"""Learning-rate schedules: pure functions of the step count.

A schedule is a callable ``schedule(step, dtype=jnp.float32) -> learning rate``: ``step``
is an int32 scalar array (the number of updates already applied, starting at 0) and the
result a scalar of ``dtype``, so it runs inside a jitted train step without recompiling
as the step changes. fnmlp's optimizers call it with the params' float dtype, so float64
training gets a float64 rate (not a float32 one widened); a user's one-argument
``schedule(step)`` works too (its result is cast to the params' dtype).

Every schedule's constants are converted to ``dtype`` only once, and a power
``rate ** k`` is computed as ``exp(k * log(rate))`` with ``log(rate)`` taken in Python
float64 (``math.log``) before the cast: ``float32(rate) ** k`` would multiply the rounding
of ``rate`` by ``k`` (``exponential_decay(0.05, 1, 0.9999)`` at step 10,000 gave 0.0183900
for the formula's 0.0183931).

=================  ==========================================================  ================
schedule           lr(step)                                                    follows
=================  ==========================================================  ================
constant           ``lr``                                                      -
step_decay         ``lr * rate ** floor(step / step_size)``                    PyTorch StepLR
exponential_decay  ``lr * rate ** (step / decay_steps)``                       TF ExponentialDecay
inverse_time       ``lr / (1 + rate * step / decay_steps)``                    TF InverseTimeDecay
cosine_warmup      linear ``init_value`` -> ``peak`` over ``warmup_steps``,    optax
                   then cosine to ``end`` at ``total_steps``, ``end`` after     warmup_cosine_decay
=================  ==========================================================  ================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnmlp._validate import check_positive_float, check_positive_int

Array = jax.Array
Schedule = Callable[..., Array]  # schedule(step: int32 [], dtype=jnp.float32) -> dtype []


def constant(lr: float) -> Schedule:
    """``lr`` at every step.

    Args:
      lr: the rate, a finite float > 0.

    Returns:
      ``schedule(step, dtype=jnp.float32)``: ``lr`` as a ``dtype`` scalar.

    Raises:
      ValueError: ``lr`` is not a finite float > 0 (named ``learning_rate``).
    """
    lr = check_positive_float(lr, "learning_rate")

    def schedule(step: Array, dtype: Any = jnp.float32) -> Array:
        return jnp.asarray(lr, dtype)

    return schedule


def step_decay(lr: float, step_size: int, rate: float = 0.1) -> Schedule:
    """Multiplies by ``rate`` every ``step_size`` steps (PyTorch's ``StepLR``):
    ``lr * rate ** floor(step / step_size)``, the power as ``exp(k log(rate))``.

    Args:
      lr: the rate at step 0, a finite float > 0.
      step_size: steps between two decays, an int >= 1.
      rate: the factor (PyTorch's ``gamma``), a finite float > 0; default 0.1.

    Returns:
      ``schedule(step, dtype=jnp.float32)``, a ``dtype`` scalar.

    Raises:
      ValueError: an argument is out of range (the error names it).
    """
    lr = check_positive_float(lr, "learning_rate")
    step_size = check_positive_int(step_size, "step_size")
    rate = check_positive_float(rate, "rate")
    log_rate = math.log(rate)  # float64, on the host

    def schedule(step: Array, dtype: Any = jnp.float32) -> Array:
        k = (jnp.asarray(step) // step_size).astype(dtype)
        return jnp.asarray(lr, dtype) * jnp.exp(k * jnp.asarray(log_rate, dtype))

    return schedule


def exponential_decay(lr: float, decay_steps: int, rate: float = 0.96) -> Schedule:
    """Smooth exponential decay, a factor ``rate`` per ``decay_steps`` steps (TF's
    ``ExponentialDecay``): ``lr * rate ** (step / decay_steps)``, computed as
    ``lr * exp((step / decay_steps) * log(rate))`` with ``log(rate)`` taken in float64.

    Args:
      lr: the rate at step 0, a finite float > 0.
      decay_steps: steps per factor ``rate``, an int >= 1.
      rate: the factor, a finite float > 0; default 0.96.

    Returns:
      ``schedule(step, dtype=jnp.float32)``, a ``dtype`` scalar.

    Raises:
      ValueError: an argument is out of range (the error names it).
    """
    lr = check_positive_float(lr, "learning_rate")
    decay_steps = check_positive_int(decay_steps, "decay_steps")
    rate = check_positive_float(rate, "rate")
    log_rate = math.log(rate)  # float64, on the host

    def schedule(step: Array, dtype: Any = jnp.float32) -> Array:
        k = jnp.asarray(step).astype(dtype) / decay_steps
        return jnp.asarray(lr, dtype) * jnp.exp(k * jnp.asarray(log_rate, dtype))

    return schedule


def inverse_time(lr: float, decay_steps: int, rate: float = 1.0) -> Schedule:
    """``lr / (1 + rate * step / decay_steps)`` (TF's ``InverseTimeDecay``).

    Args:
      lr: the rate at step 0, a finite float > 0.
      decay_steps: an int >= 1.
      rate: a finite float >= 0; default 1.

    Returns:
      ``schedule(step, dtype=jnp.float32)``, a ``dtype`` scalar.

    Raises:
      ValueError: an argument is out of range (the error names it).
    """
    lr = check_positive_float(lr, "learning_rate")
    decay_steps = check_positive_int(decay_steps, "decay_steps")
    rate = check_positive_float(rate, "rate", allow_zero=True)

    def schedule(step: Array, dtype: Any = jnp.float32) -> Array:
        s = jnp.asarray(step).astype(dtype)
        return jnp.asarray(lr, dtype) / (1 + jnp.asarray(rate, dtype) * s / decay_steps)

    return schedule


def cosine_warmup(
    peak: float,
    warmup_steps: int,
    total_steps: int,
    end: float = 0.0,
    init_value: float | None = None,
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak`` over ``warmup_steps``, then a half
    cosine from ``peak`` to ``end`` at ``total_steps``; ``end`` after that (optax's
    ``warmup_cosine_decay_schedule(init_value, peak, warmup_steps, total_steps, end)``)::

        step < warmup_steps:  init_value + (peak - init_value) step / warmup_steps
        otherwise:            end + (peak - end) (1 + cos(pi min(1, (step - W) / (T - W)))) / 2

    The default ``init_value`` is ``peak / (warmup_steps + 1)``: the same as counting the
    steps from 1, ``lr(step) = peak (step + 1) / (warmup_steps + 1)`` during warm-up, so
    the ramp's points are evenly spaced, the last warm-up step is just under ``peak`` and
    ``peak`` is reached at ``step = warmup_steps`` as before, and **the first update
    moves the params**. A warm-up from 0 (``init_value=0.0``, this function's old
    behaviour and the value optax's examples use) spends the first update at rate 0: it
    leaves the params bit-identical (the bug reported as huggingface/transformers#34754
    for ``get_linear_schedule_with_warmup``). optax has no default; PyTorch's
    ``LinearLR`` starts at a third of the rate.

    Args:
      peak: the rate at the end of warm-up, a finite float > 0.
      warmup_steps: the warm-up's length, an int >= 0 (0: no warm-up, start at ``peak``).
      total_steps: where the cosine reaches ``end``, an int > ``warmup_steps``.
      end: the final rate, a finite float >= 0; default 0.
      init_value: the rate at step 0, a finite float >= 0; default
        ``peak / (warmup_steps + 1)``. Unused when ``warmup_steps == 0``.

    Returns:
      ``schedule(step, dtype=jnp.float32)``, a ``dtype`` scalar.

    Raises:
      ValueError: an argument is out of range, or ``total_steps <= warmup_steps``.
    """
    peak = check_positive_float(peak, "peak")
    warmup_steps = check_positive_int(warmup_steps, "warmup_steps", 0)
    total_steps = check_positive_int(total_steps, "total_steps")
    end = check_positive_float(end, "end", allow_zero=True)
    if init_value is None:
        init_value = peak / (warmup_steps + 1)
    init_value = check_positive_float(init_value, "init_value", allow_zero=True)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must exceed warmup_steps={warmup_steps}; got {total_steps}")

    def schedule(step: Array, dtype: Any = jnp.float32) -> Array:
        s = jnp.asarray(step).astype(dtype)

        def c(x):  # a constant in dtype
            return jnp.asarray(x, dtype)

        warm = c(init_value) + c(peak - init_value) * s / max(warmup_steps, 1)
        frac = jnp.clip((s - warmup_steps) / (total_steps - warmup_steps), 0, 1)
        cos = c(end) + c(peak - end) * 0.5 * (1 + jnp.cos(c(math.pi) * frac))
        return jnp.where(s < warmup_steps, warm, cos).astype(dtype)

    return schedule
