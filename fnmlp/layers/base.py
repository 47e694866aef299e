"""The layer protocol: :class:`Layer`, the call :class:`Context`, and the product that
mixed precision rounds (:func:`matmul`). See :mod:`fnmlp.layers` for the whole picture.

Shapes: ``B`` batch, ``D_in`` / ``D_out`` a layer's input / output width.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._checks import check_float_dtype, check_key, is_positive_int, is_traced

Array = jax.Array
Params = Any  # a pytree of arrays

LOW_PRECISION = (jnp.bfloat16, jnp.float16)


class Context(NamedTuple):
    """What a forward pass needs besides params and input (static except ``key``).

    ``train``: dropout is on only when True. ``key``: the PRNG key dropout draws its masks
    from (``Serial`` gives child ``i`` ``fold_in(key, i)``). ``compute_dtype``: e.g.
    ``jnp.bfloat16``: dense products take operands in it and accumulate in float32.
    """

    train: bool = False
    key: Any = None
    compute_dtype: Any = None


EVAL = Context()


def matmul(a: Array, b: Array, dtype: Any = None) -> Array:
    """``a @ b``. With a low-precision ``dtype`` (or ``a`` already bfloat16/float16) both
    operands are rounded to it and the product accumulates in and returns float32
    (``preferred_element_type``), which is what bf16 units (AMX, tensor cores) compute."""
    dtype = dtype if dtype is not None else (a.dtype if a.dtype in LOW_PRECISION else None)
    if dtype is not None and jnp.dtype(dtype) in LOW_PRECISION:
        return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)
    return a @ b


class Layer:
    """The layer protocol; subclass it as a ``@dataclass(frozen=True)``.

    ``has_params`` says whether the layer takes an entry in a :class:`Serial`'s params
    (False for activations, ``Softmax``, ``Dropout``). ``outputs`` says what the layer's
    output is when it ends a model: ``"logits"`` (the default: raw scores, or a
    regression prediction) or ``"probabilities"`` (``Softmax``). Override :meth:`init`,
    :meth:`forward` and :meth:`backward`.
    """

    has_params: ClassVar[bool] = True
    outputs: ClassVar[str] = "logits"

    def init(self, key: Array, in_features: int, dtype: Any = jnp.float32
             ) -> tuple[int, Params]:
        """``(out_features, params)`` for an input of width ``in_features``."""
        raise NotImplementedError

    def forward(self, params: Params, x: Array, ctx: Context = EVAL) -> tuple[Array, Any]:
        """``x [B, D_in]`` -> ``(y [B, D_out], residuals for backward)``."""
        raise NotImplementedError

    def backward(self, params: Params, residuals: Any, dy: Array) -> tuple[Params, Array]:
        """``dy = dL/dy [B, D_out]`` -> ``(dL/dparams like params, dL/dx [B, D_in])``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- conveniences

    @property
    def name(self) -> str:
        return type(self).__name__

    def apply(self, params: Params, x: Array, ctx: Context = EVAL) -> Array:
        """The output alone: ``forward(params, x, ctx)[0]``.

        Raises:
          ValueError: float64 params (made inside ``jax.enable_x64``) with JAX's float64
            off, which would compute in float32 (the one dtype rule,
            :func:`fnmlp._checks.check_float_dtype`; traced params are never float64 then).
        """
        leaves = jax.tree.leaves(params)
        if leaves and getattr(leaves[0], "dtype", None) == np.float64 and not is_traced(
                leaves[0]):
            check_float_dtype(leaves[0].dtype, "the params' dtype")
        return self.forward(params, x, ctx)[0]

    def init_params(self, key: Array, in_features: int | None = None,
                    dtype: Any = jnp.float32) -> Params:
        """The params alone, drawn in one compiled program (cached per layer, width and
        dtype, so repeated inits compile nothing).

        Args:
          key: a PRNG key (``jax.random.key(0)``).
          in_features: the input width ``D``; may be left out for a model that records it
            (``mlp([D, ...])``, ``serial(..., in_features=D)``).
          dtype: the params' float dtype (float16, bfloat16, float32, float64; float64
            needs ``jax_enable_x64``).

        Raises:
          ValueError: a bad key, width or dtype (float64 with JAX's float64 off
            included), or no width known.
        """
        try:
            hash(self)
        except TypeError:
            raise ValueError(f"{self.name} must be hashable: declare your layer with"
                             " @dataclass(frozen=True)") from None
        d = input_width(self, in_features)
        check_key(key)
        return _jitted_init(self, d, check_float_dtype(dtype).name)(key)

    def to_config(self) -> dict:
        """A JSON-able description: ``{"type": name, field: value, ...}`` (tuples as lists,
        NumPy scalars such as ``np.float32(0.1)`` as Python numbers)."""
        out = {"type": self.name}
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            out[f.name] = plain(getattr(self, f.name))
        return out


def plain(v: Any) -> Any:
    """``v`` as JSON can hold it: NumPy scalars and 0-d arrays as Python numbers, tuples
    as lists, recursively through lists and dicts; anything else as it is."""
    if isinstance(v, (np.generic, np.ndarray, jax.Array)) and np.ndim(v) == 0:
        return v.item()
    if isinstance(v, (tuple, list)):
        return [plain(a) for a in v]
    if isinstance(v, dict):
        return {k: plain(a) for k, a in v.items()}
    return v


def input_width(model: Layer, in_features: Any = None) -> int:
    """The input width ``D``: ``in_features`` when given (it must equal the width the model
    records, if it records one), else the model's own (``Serial.in_features``).

    Raises:
      ValueError: neither is known, or they differ, or the width is not a positive int.
    """
    own = getattr(model, "in_features", None)
    if in_features is None:
        if own is None:
            raise ValueError(f"in_features (the input width D) must be given: {model.name}"
                             " does not record one (mlp([D, ...]) and serial(...,"
                             " in_features=D) do)")
        return own
    if not is_positive_int(in_features):
        raise ValueError(f"in_features must be a positive integer; got {in_features!r}")
    if own is not None and int(in_features) != own:
        raise ValueError(f"in_features={int(in_features)} but the model was built for"
                         f" inputs of width {own}")
    return int(in_features)


@functools.lru_cache(maxsize=256)
def _jitted_init(layer: Layer, in_features: int, dtype: str):
    return jax.jit(lambda key: layer.init(key, in_features, jnp.dtype(dtype))[1])
