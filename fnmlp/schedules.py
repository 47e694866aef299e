"""Learning-rate schedules: pure functions of the step count.

A schedule is a callable ``step -> learning rate``: ``step`` is an int32 scalar array
(the number of updates already applied, starting at 0) and the result a float32 scalar,
so it runs inside a jitted train step without recompiling as the step changes.

=================  ==========================================================  ================
schedule           lr(step)                                                    follows
=================  ==========================================================  ================
constant           ``lr``                                                      -
step_decay         ``lr * rate ** floor(step / step_size)``                    PyTorch StepLR
exponential_decay  ``lr * rate ** (step / decay_steps)``                       TF ExponentialDecay
inverse_time       ``lr / (1 + rate * step / decay_steps)``                    TF InverseTimeDecay
cosine_warmup      linear 0 -> ``peak`` over ``warmup_steps``, then cosine to  optax
                   ``end`` at ``total_steps``, constant ``end`` after           warmup_cosine_decay
=================  ==========================================================  ================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from fnmlp._validate import check_positive_float, check_positive_int

Array = jax.Array
Schedule = Callable[[Array], Array]


def _f32(x) -> Array:
    return jnp.asarray(x, jnp.float32)


def constant(lr: float) -> Schedule:
    """``lr`` at every step."""
    lr = check_positive_float(lr, "learning_rate")
    return lambda step: _f32(lr)


def step_decay(lr: float, step_size: int, rate: float = 0.1) -> Schedule:
    """Multiplies by ``rate`` every ``step_size`` steps."""
    lr = check_positive_float(lr, "learning_rate")
    step_size = check_positive_int(step_size, "step_size")
    rate = check_positive_float(rate, "rate")
    return lambda step: _f32(lr) * _f32(rate) ** (step // step_size).astype(jnp.float32)


def exponential_decay(lr: float, decay_steps: int, rate: float = 0.96) -> Schedule:
    """Smooth exponential decay: a factor ``rate`` per ``decay_steps`` steps."""
    lr = check_positive_float(lr, "learning_rate")
    decay_steps = check_positive_int(decay_steps, "decay_steps")
    rate = check_positive_float(rate, "rate")
    return lambda step: _f32(lr) * _f32(rate) ** (_f32(step) / decay_steps)


def inverse_time(lr: float, decay_steps: int, rate: float = 1.0) -> Schedule:
    """``lr / (1 + rate * step / decay_steps)``."""
    lr = check_positive_float(lr, "learning_rate")
    decay_steps = check_positive_int(decay_steps, "decay_steps")
    rate = check_positive_float(rate, "rate", allow_zero=True)
    return lambda step: _f32(lr) / (1 + rate * _f32(step) / decay_steps)


def cosine_warmup(
    peak: float, warmup_steps: int, total_steps: int, end: float = 0.0
) -> Schedule:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then a half cosine
    from ``peak`` to ``end`` at ``total_steps``; ``end`` after that."""
    peak = check_positive_float(peak, "peak")
    warmup_steps = check_positive_int(warmup_steps, "warmup_steps", 0)
    total_steps = check_positive_int(total_steps, "total_steps")
    end = check_positive_float(end, "end", allow_zero=True)
    if total_steps <= warmup_steps:
        raise ValueError(
            f"total_steps must exceed warmup_steps={warmup_steps}; got {total_steps}")

    def schedule(step: Array) -> Array:
        s = _f32(step)
        warm = peak * s / max(warmup_steps, 1)
        frac = jnp.clip((s - warmup_steps) / (total_steps - warmup_steps), 0, 1)
        cos = end + (peak - end) * 0.5 * (1 + jnp.cos(math.pi * frac))
        return jnp.where(s < warmup_steps, warm, cos).astype(jnp.float32)

    return schedule


SCHEDULES = {
    "constant": constant,
    "step_decay": step_decay,
    "exponential_decay": exponential_decay,
    "inverse_time": inverse_time,
    "cosine_warmup": cosine_warmup,
}
