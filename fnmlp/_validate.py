"""Host-side input checks shared by the public entry points: the one place for them.

Shapes: ``B`` batch, ``D`` input features, ``C`` outputs.

JAX clamps out-of-range indices and ``one_hot`` turns an unknown label into a row of
zeros, so a bad label would become a silently wrong loss. These checks run on the host,
before any computation, and raise a ``ValueError`` (or ``TypeError`` for a wrong kind of
object) that names the argument, what was expected and what arrived.

Under ``jax.jit`` the arguments are tracers: shape and dtype checks still run (at trace
time, shapes are static), but value checks (finiteness, label range, integrality) are
skipped because the values are not known yet. Check data once on the host (``fit`` does).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._checks import (
    check_float_dtype,
    check_positive_float,
    check_positive_int,
    is_traced,
    overflow_at,
)
from fnmlp.layers import Layer, check_model
from fnmlp.losses import Loss, check_loss_for_model, check_outputs, get_loss

Array = jax.Array
__all__ = ["check_batch", "check_config", "check_data", "check_positive_float",
           "check_positive_int", "check_x", "is_traced"]  # the scalar checks: fnmlp._checks


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def refuse_sparse(x: Any, name: str) -> None:
    """Raises ValueError for a sparse matrix (scipy's, or another with ``toarray``),
    saying to pass ``x.toarray()``: NumPy would make it a 0-d object array."""
    if callable(getattr(x, "toarray", None)) and not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a dense array; got a sparse {type(x).__name__} of"
                         f" shape {getattr(x, 'shape', '?')}: pass {name}.toarray()")


def as_numeric_array(x: Any, name: str) -> Any:
    """Returns ``x`` as an array of a real numeric dtype (bool is refused).

    Raises:
      ValueError: a sparse matrix (scipy's or another with ``toarray``), or what NumPy
        cannot turn into an array.
      TypeError: a dtype that is not int or float.
    """
    if is_traced(x) or isinstance(x, jax.Array):
        arr = x
    else:
        refuse_sparse(x, name)
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
        a = a.astype(np.float32) if a.dtype == jnp.bfloat16 else a
        # min and max propagate NaN and show an inf: two passes, no [N, D] temporary
        # (isfinite's boolean array costs more, in a fresh process mostly page faults)
        if a.size == 0 or np.isfinite(np.min(a)) and np.isfinite(np.max(a)):
            return
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), a.shape)
            raise ValueError(
                f"{name} must be finite; got {a[idx]} at index {tuple(int(i) for i in idx)}"
                f" ({int(bad.sum())} non-finite value(s) in all)"
            )


def check_inputs(x: Any, d_in: int, name: str = "x", batched: bool = True,
                 finite: bool = True) -> Any:
    """``x`` must be ``[B, D]`` (or ``[D]`` when not batched), numeric and finite
    (``finite=False``: already checked, the shape only)."""
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
    if finite:
        check_finite(x, name)
    return x


def check_targets(y: Any, n: int, loss: str | Loss, n_out: int, name: str = "y") -> Any:
    """Checks targets for ``n`` examples against the loss; returns them in canonical
    shape (``[B]`` int labels for multiclass, ``[B, C]`` otherwise)."""
    lossdef = get_loss(loss)
    kind, loss = lossdef.kind, lossdef.name
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


# ----------------------------------------------------------------------------- a model


def dtype_of(params: Any) -> Any:
    """The params' float dtype (float32 for a model without params)."""
    leaves = jax.tree.leaves(params)
    dtype = getattr(leaves[0], "dtype", None) if leaves else None
    return dtype if dtype is not None and jnp.issubdtype(dtype, jnp.floating) else jnp.float32


@functools.lru_cache(maxsize=256)
def _expected(model: Layer, d_in: int, dtype: str):
    shapes = jax.eval_shape(lambda k: model.init(k, d_in, jnp.dtype(dtype))[1],
                            jax.random.key(0))
    return jax.tree_util.tree_flatten_with_path(shapes)


def check_model_params(model: Layer, params: Any, d_in: int) -> tuple[int, int]:
    """Checks ``params`` against ``model`` for inputs of width ``d_in``; returns ``(D, C)``,
    the input and output widths. Shapes only: nothing is computed or compiled.

    Raises:
      ValueError: ``model`` is not a Layer, or the first leaf whose place or shape does
        not fit ``model.init_params(key, d_in)`` (named by its path), or ``d_in`` differs
        from the width the model records.
    """
    return param_widths(check_model(model), params, d_in)


def param_widths(model: Layer, params: Any, d_in: int) -> tuple[int, int]:
    """:func:`check_model_params` for a model already checked to be a Layer."""
    d = getattr(model, "in_features", None)
    if d is not None and d_in is not None and int(d_in) != d:
        raise ValueError(f"x must have {d} features (the model's input width); got {d_in}")
    d = int(d_in if d_in is not None else d)
    # the structure and shapes in a dtype JAX holds now (they do not depend on it; float64
    # with float64 off is refused below, without JAX's truncation warnings first)
    flat, treedef = _expected(model, d, jax.dtypes.canonicalize_dtype(dtype_of(params)).name)
    got, got_def = jax.tree_util.tree_flatten_with_path(params)
    if got_def != treedef:
        raise ValueError(
            f"params do not fit the model {model.name}: expected the structure of"
            f" model.init_params(key, {d}) ({treedef}); got {got_def}"[:600])
    for (path, want), (_, have) in zip(flat, got):
        if tuple(np.shape(have)) != tuple(want.shape):
            raise ValueError(f"params{jax.tree_util.keystr(path)} must have shape"
                             f" {tuple(want.shape)} for the model; got {tuple(np.shape(have))}")
    # float64 params made inside jax.enable_x64, used outside it: the one dtype rule
    # (fit failed inside lax.scan, evaluate computed in float32 with JAX's warnings)
    check_float_dtype(dtype_of(params), "the params' dtype")
    out = jax.eval_shape(lambda p: model.apply(p, jnp.zeros((1, d), dtype_of(params))), params)
    return d, int(out.shape[-1])


def cast(x: Any, params: Any, name: str = "x") -> Array:
    """``x`` in the params' dtype, the dtype the model computes in; a host array is
    converted on the host and transferred (``jnp.asarray`` of a NumPy array compiles a
    small program per shape).

    Raises:
      ValueError: a finite value that the conversion turns into ``inf`` (float64 1e39, or
        the integer 70000 in a float16 model), named by its index: the model would see
        inf, not what was passed.
    """
    dtype = np.dtype(dtype_of(params))
    src = np.dtype(x.dtype) if hasattr(x, "dtype") else None
    host = isinstance(x, np.ndarray)
    with np.errstate(over="ignore"):  # an overflow is reported below, by index
        out = np.asarray(x, dtype=dtype) if host else jnp.asarray(x, dtype=dtype)
    if src is not None and _may_overflow(src, dtype) and not is_traced(out):
        _refuse_overflow(x, dtype, name, "the model's dtype", "use params of a wider dtype")
    return jax.device_put(out) if host else out


def check_fits(x: Any, dtype: Any, name: str = "x", what: str = "compute_dtype") -> None:
    """``ValueError`` when a finite value of ``x`` would become inf in ``dtype`` (the
    dtype ``what`` names): a float16 ``compute_dtype`` turned an input of 1e5 into inf, and
    the run diverged naming the learning rate. Reads the range of ``x`` on the host, and
    the offending index only when there is one."""
    if _may_overflow(np.asarray(x).dtype, jnp.dtype(dtype)):
        _refuse_overflow(x, jnp.dtype(dtype), name, what, "compute in a wider dtype")


def _refuse_overflow(x: Any, dtype: np.dtype, name: str, what: str, fix: str) -> None:
    """``ValueError`` naming the first value of ``x`` that becomes inf as ``dtype``
    (:func:`fnmlp._checks.overflow_at`), if any."""
    hit = overflow_at(x, dtype)
    if hit is not None:
        (idx, count), a = hit, np.asarray(x)
        raise ValueError(f"{name} must fit {what} {dtype.name} (|v| <="
                         f" {float(jnp.finfo(dtype).max):.4g}); got {a[idx]:g} at index {idx}"
                         f" ({count} value(s) in all), which would become inf: scale {name},"
                         f" or {fix}")


def _may_overflow(src: np.dtype, dtype: np.dtype) -> bool:
    """Whether a finite ``src`` value can become inf as ``dtype`` (a float dtype).
    ``jnp.finfo``, not NumPy's: NumPy's refuses bfloat16, which read as "cannot
    overflow" and let 3.4e38 reach a bfloat16 model as inf."""
    top = float(jnp.finfo(dtype).max)
    if src.kind in "iu":
        return float(np.iinfo(src).max) > top
    try:
        return float(jnp.finfo(src).max) > top
    except (ValueError, TypeError):  # not a float dtype: nothing to check
        return False


def check_model_loss(model: Any, loss: str | Loss) -> Layer:
    """The model, checked to be a Layer whose output (:attr:`Layer.outputs`) the loss
    takes; ``ValueError`` with one line that says what to change (softmax twice, or a
    probability loss on logits)."""
    return check_config(model, loss)[0]


def check_config(model: Any, loss: str | Loss, grad: str | None = None
                 ) -> tuple[Layer, Loss]:
    """The boundary check of a model, its loss and (when given) the gradient path:
    returns ``(model, loss)``, the loss as a :class:`~fnmlp.losses.Loss` value (resolved
    from its name here, once) that the functions below take as it is.

    Raises:
      ValueError: not a Layer, an unknown loss, a loss that does not take the model's
        output, or a gradient path other than ``"manual"`` / ``"autodiff"``.
    """
    model = check_model(model)
    lossdef = check_loss_for_model(loss, model.outputs)
    if grad is not None:
        check_grad_path(grad)
    return model, lossdef


def check_batch(model: Any, params: Any, x: Any, y: Any, loss: str | Loss, names=("x", "y")):
    """Validates ``(x, y)`` against the model, its params and the loss (the model's output
    must be what the loss takes); returns them as arrays (x in the params' dtype)."""
    model, lossdef = check_config(model, loss)
    return check_data(model, params, x, y, lossdef, names)[:2]


def check_data(model: Layer, params: Any, x: Any, y: Any, loss: Loss, names=("x", "y"),
               widths: tuple[int, int] | None = None) -> tuple[Array, Array, int, int]:
    """:func:`check_batch` for a model and a :class:`~fnmlp.losses.Loss` already checked
    together (:func:`check_config`): ``(x, y, D, C)``, the data as arrays the kernels
    trust (x in the params' dtype) and the model's input and output widths. ``widths``:
    ``(D, C)`` already checked against the params (a second data set of one call)."""
    x = as_numeric_array(x, names[0])
    own = getattr(model, "in_features", None)
    early = x.ndim != 2 or own is not None
    if early:  # x's own errors before the params' (its width is the model's, when known)
        x = check_inputs(x, own or (x.shape[-1] if x.ndim else 0), names[0])
    if widths is None:
        d_in, n_out = param_widths(model, params, x.shape[-1])
        check_outputs(loss.kind, n_out)  # one output cannot be multiclass
    else:
        d_in, n_out = widths
    if not early or x.shape[-1] != d_in:  # else checked above, against d_in itself
        x = check_inputs(x, d_in, names[0], finite=not early)
    y = check_targets(y, x.shape[0], loss, n_out, names[1])
    if loss.kind != "multiclass":  # targets in the dtype the model computes in
        return cast(x, params, names[0]), cast(y, params, names[1]), d_in, n_out
    return (cast(x, params, names[0]),
            jax.device_put(y) if isinstance(y, np.ndarray) else jnp.asarray(y), d_in, n_out)


def check_x(model: Any, params: Any, x: Any, batched: bool = True,
            checked: bool = False) -> Array:
    """Validates inputs ``x`` (``[B, D]``, or ``[D]`` when not batched) for the model
    (``checked``: the model is already known to be a Layer)."""
    model = model if checked else check_model(model)
    x = as_numeric_array(x, "x")
    want = 2 if batched else 1
    own = getattr(model, "in_features", None)
    early = x.ndim != want or own is not None
    if early:
        x = check_inputs(x, own or (x.shape[-1] if x.ndim else 0), "x", batched)
    d_in, _ = param_widths(model, params, x.shape[-1])
    if not early or x.shape[-1] != d_in:
        x = check_inputs(x, d_in, "x", batched=batched, finite=not early)
    return cast(x, params)


def check_grad_path(grad: str) -> str:
    """``"manual"`` or ``"autodiff"``; ``ValueError`` otherwise."""
    if grad not in GRAD_PATHS:
        raise ValueError(f"grad must be one of {list(GRAD_PATHS)}; got {grad!r}")
    return grad


GRAD_PATHS = ("manual", "autodiff")


def physical_memory() -> int:
    """Bytes of physical memory (``sysconf``); a very large number where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62
