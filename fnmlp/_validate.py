"""Host-side input checks shared by the public entry points.

JAX clamps out-of-range indices and ``one_hot`` turns an unknown label into a row of
zeros, so a bad label would become a silently wrong loss. These checks run on the host,
before any computation, and raise a ``ValueError`` (or ``TypeError`` for a wrong kind of
object) that names the argument, what was expected and what arrived.

Under ``jax.jit`` the arguments are tracers: shape and dtype checks still run (at trace
time, shapes are static), but value checks (finiteness, label range, integrality) are
skipped because the values are not known yet. Check data once on the host (``fit`` does).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def as_numeric_array(x: Any, name: str) -> Any:
    """Returns ``x`` as an array of a real numeric dtype (bool is refused)."""
    if is_traced(x) or isinstance(x, jax.Array):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise ValueError(f"{name} must be a numeric array; got {_describe(x)} ({e})") from None
    kind = np.dtype(arr.dtype).kind
    if kind not in "iuf":
        if np.dtype(arr.dtype) == jnp.bfloat16:
            return arr
        raise TypeError(
            f"{name} must be a numeric (int or float) array; got dtype {arr.dtype}"
        )
    return arr


def check_finite(x: Any, name: str) -> None:
    if is_traced(x):
        return
    a = np.asarray(x)
    if a.dtype.kind == "f" or a.dtype == jnp.bfloat16:
        bad = ~np.isfinite(a.astype(np.float32) if a.dtype == jnp.bfloat16 else a)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), a.shape)
            raise ValueError(
                f"{name} must be finite; got {a[idx]} at index {tuple(int(i) for i in idx)}"
                f" ({int(bad.sum())} non-finite value(s) in all)"
            )


def check_params(params: Any) -> list[int]:
    """Checks the params pytree and returns the layer sizes ``[D, H1, ..., C]``."""
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise ValueError(
            "params must be a non-empty list of {'w': [D_in, D_out], 'b': [D_out]} dicts;"
            f" got {_describe(params)}"
        )
    sizes: list[int] = []
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
            keys = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"params[{i}] must be a dict with keys 'b' and 'w'; got {keys}")
        w, b = layer["w"], layer["b"]
        if getattr(w, "ndim", None) != 2 or getattr(b, "ndim", None) != 1:
            raise ValueError(
                f"params[{i}] must hold w of shape [D_in, D_out] and b of shape [D_out];"
                f" got w {getattr(w, 'shape', None)}, b {getattr(b, 'shape', None)}"
            )
        if w.shape[1] != b.shape[0]:
            raise ValueError(
                f"params[{i}]: b must have shape ({w.shape[1]},) to match w {tuple(w.shape)};"
                f" got {tuple(b.shape)}"
            )
        if sizes and sizes[-1] != w.shape[0]:
            raise ValueError(
                f"params[{i}]['w'] must have {sizes[-1]} rows (the width of layer {i - 1});"
                f" got shape {tuple(w.shape)}"
            )
        if not sizes:
            sizes.append(int(w.shape[0]))
        sizes.append(int(w.shape[1]))
    return sizes


def check_inputs(x: Any, d_in: int, name: str = "x", batched: bool = True) -> Any:
    """``x`` must be ``[B, D]`` (or ``[D]`` when not batched), numeric and finite."""
    x = as_numeric_array(x, name)
    want = 2 if batched else 1
    legend = "[B, D]" if batched else "[D]"
    if x.ndim != want:
        raise ValueError(
            f"{name} must have {want} dimension(s) {legend} with D={d_in}; got shape"
            f" {tuple(x.shape)}"
        )
    if x.shape[-1] != d_in:
        raise ValueError(
            f"{name} must have {d_in} features (the network's input width); got shape"
            f" {tuple(x.shape)}"
        )
    if batched and x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example; got shape {tuple(x.shape)}")
    check_finite(x, name)
    return x


def check_targets(y: Any, n: int, loss: str, n_out: int, name: str = "y") -> Any:
    """Checks targets for ``n`` examples against the loss; returns them in canonical
    shape (``[B]`` int labels for multiclass, ``[B, C]`` otherwise)."""
    from fnmlp.losses import get_loss

    kind = get_loss(loss).kind
    y = as_numeric_array(y, name)
    if kind == "multiclass":
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(
                f"{name} must be integer class labels of shape ({n},); got shape {tuple(y.shape)}"
            )
        if not is_traced(y):
            a = np.asarray(y)
            if a.dtype.kind == "f":
                check_finite(a, name)
                frac = a != np.round(a)
                if frac.any():
                    i = int(np.argmax(frac))
                    raise ValueError(
                        f"{name} must hold whole-number class labels; got {a[i]} at index {i}"
                    )
            bad = (a < 0) | (a >= n_out)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{name} labels must be in [0, {n_out}); got {a[i]} at index {i}"
                )
            return jax.device_put(a.astype(np.int32))  # no conversion program compiled
        return y.astype(jnp.int32)
    if y.ndim == 1 and n_out == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape != (n, n_out):
        raise ValueError(
            f"{name} must have shape ({n}, {n_out}) for loss {loss!r}"
            f"{' (or (' + str(n) + ',))' if n_out == 1 else ''}; got shape {tuple(y.shape)}"
        )
    check_finite(y, name)
    if kind == "binary" and not is_traced(y):
        a = np.asarray(y)
        bad = (a < 0) | (a > 1)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), a.shape)
            raise ValueError(
                f"{name} targets for {loss!r} must be in [0, 1]; got {a[idx]} at index"
                f" {tuple(int(i) for i in idx)}"
            )
    return y


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of ``/proc/meminfo``; the int64
    maximum where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(np.iinfo(np.int64).max)


def device_memory_available(device: Any = None) -> int:
    """Bytes free on ``device`` (default: the first device): ``bytes_limit - bytes_in_use``
    from ``device.memory_stats()`` on an accelerator, :func:`available_memory` on a CPU
    (whose ``memory_stats`` says nothing)."""
    device = device if device is not None else jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return available_memory()


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    if not ok_type or not math.isfinite(float(value)) or value < 0 or (
        value == 0 and not allow_zero
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return float(value)
