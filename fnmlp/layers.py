"""Layers: the lesson's modular framework, the functional way.

Shapes: ``B`` batch, ``D_in`` / ``D_out`` a layer's input / output width.

A layer is a small, static, hashable description (a frozen dataclass of its settings, never
of arrays) with three pure functions, in the spirit of ``jax.example_libraries.stax`` and
the CS231n ``affine_forward`` / ``affine_backward`` pairs::

    out_features, params = layer.init(key, in_features, dtype)   # params: a plain pytree
    y, residuals = layer.forward(params, x, ctx)                 # x [B, D_in] -> y [B, D_out]
    dparams, dx = layer.backward(params, residuals, dy)          # dy [B, D_out] -> dx [B, D_in]

``backward`` is the hand-derived vector-Jacobian product: given ``dy = dL/dy`` it returns
``dL/dparams`` (same structure as ``params``) and ``dL/dx``. It never calls autodiff;
:func:`fnmlp.check_layer` compares it with ``jax.vjp`` of ``forward`` and with finite
differences. ``ctx`` (:class:`Context`) carries what changes per call and is not a
parameter: train vs evaluation, the dropout key, the compute dtype.

:class:`Serial` (``serial(*layers)``) is a layer too: its forward runs its children in
order, its backward folds their backwards in reverse (the chain rule), and its params are
a list with **one entry per child that has parameters** (``Dense``, ``LayerNorm``, your
own): ``serial(Dense(8), Relu(), Dense(3))`` has params
``[{"w": [D, 8], "b": [8]}, {"w": [8, 3], "b": [3]}]``. Parameter-free layers
(activations, ``Softmax``, ``Dropout``) take no entry.

:func:`mlp` is the one builder of the plain MLP: ``mlp([D, H1, ..., C], "relu")`` **is**
``serial(Dense(H1), Relu(), ..., Dense(C), in_features=D)`` (equal objects, so equal
params for the same key). Every other spelling (the scripts' flags, ``compare.py``, a
checkpoint's config) goes through it or through ``serial``.

**What a model outputs** (:attr:`Layer.outputs`): ``"probabilities"`` when its last layer
is a ``Softmax``, ``"logits"`` (raw scores, or a regression prediction) otherwise. Every
entry point reads it: a loss that takes logits on a model that outputs probabilities (and
the reverse) is refused before anything compiles, and ``predict_proba`` never applies a
softmax twice. A ``Softmax`` followed only by parameter-free layers (``Dropout``, an
activation) is refused: its output is neither logits nor probabilities.

Writing your own layer takes a few lines (the README has a learnable-slope activation)::

    @dataclass(frozen=True)
    class Scale(Layer):                   # y = a * x, one learnable a per feature
        def init(self, key, d, dtype=jnp.float32):
            return d, {"a": jnp.ones((d,), dtype)}
        def forward(self, params, x, ctx):
            return params["a"] * x, x     # residual: the input
        def backward(self, params, x, dy):
            return {"a": jnp.sum(dy * x, axis=0)}, dy * params["a"]

BatchNorm is not here: its running statistics are state that is neither a parameter nor
an input, and would have to travel beside the params through ``fit``, the optimizers,
checkpoints and populations. ``LayerNorm`` normalises each example on its own and needs
none of that.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.initializers import DEFAULT_INIT, get_initializer

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
        """The output alone: ``forward(params, x, ctx)[0]``."""
        return self.forward(params, x, ctx)[0]

    def init_params(self, key: Array, in_features: int | None = None,
                    dtype: Any = jnp.float32) -> Params:
        """The params alone, drawn in one compiled program (cached per layer, width and
        dtype, so repeated inits compile nothing).

        Args:
          key: a PRNG key (``jax.random.key(0)``).
          in_features: the input width ``D``; may be left out for a model that records it
            (``mlp([D, ...])``, ``serial(..., in_features=D)``).
          dtype: the params' float dtype.

        Raises:
          ValueError: a bad key, width or dtype, or no width known.
        """
        try:
            hash(self)
        except TypeError:
            raise ValueError(f"{self.name} must be hashable: declare your layer with"
                             " @dataclass(frozen=True)") from None
        d = input_width(self, in_features)
        _check_key(key)
        if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
            raise ValueError(f"dtype must be a float dtype; got {dtype!r}")
        return _jitted_init(self, d, jnp.dtype(dtype).name)(key)

    def to_config(self) -> dict:
        """A JSON-able description: ``{"type": name, field: value, ...}``."""
        out = {"type": self.name}
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


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
    if isinstance(in_features, (bool, np.bool_)) or not isinstance(
            in_features, (int, np.integer)) or in_features <= 0:
        raise ValueError(f"in_features must be a positive integer; got {in_features!r}")
    if own is not None and int(in_features) != own:
        raise ValueError(f"in_features={int(in_features)} but the model was built for"
                         f" inputs of width {own}")
    return int(in_features)


def _check_key(key: Any) -> None:
    """A typed key (``jax.random.key``) or a raw ``uint32[2]`` one; ``ValueError`` else."""
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = (isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,)
           and key.dtype == np.uint32)
    if not (typed or raw):
        raise ValueError(f"key must be a PRNG key such as jax.random.key(0); got {key!r}"[:160])


@functools.lru_cache(maxsize=256)
def _jitted_init(layer: Layer, in_features: int, dtype: str):
    return jax.jit(lambda key: layer.init(key, in_features, jnp.dtype(dtype))[1])


# ----------------------------------------------------------------------------- Dense


@dataclass(frozen=True)
class Dense(Layer):
    """Fully connected: ``y = x @ w + b`` (PyTorch ``nn.Linear``, the lesson's ``Linear``).

    Params ``{"w": [D_in, features], "b": [features]}``; ``b`` starts at zero, ``w`` from
    ``kernel_init`` (a name in :data:`fnmlp.INITIALIZERS`). ``kernel_init=None`` lets
    :class:`Serial` pick by the activation layer that follows (He for the ReLU family,
    LeCun for SELU, Glorot otherwise and when none follows).

    Backward: ``dw = x^T @ dy``, ``db = sum_B dy``, ``dx = dy @ w^T``. With a low-precision
    compute dtype only the products' operands are rounded (float32 accumulation); ``b``,
    the output and the gradients stay in the params' dtype.
    """

    features: int
    kernel_init: str | None = None

    def __post_init__(self):
        f = self.features
        if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)) or f <= 0:
            raise ValueError(f"Dense features must be a positive integer; got {f!r}")
        object.__setattr__(self, "features", int(f))  # np.int64(3) -> 3: one hash, JSON
        if self.kernel_init is not None:
            get_initializer(self.kernel_init)

    def init(self, key, in_features, dtype=jnp.float32):
        w = get_initializer(self.kernel_init or "glorot_uniform")(
            key, in_features, self.features, dtype)
        return self.features, {"w": w, "b": jnp.zeros((self.features,), dtype)}

    def forward(self, params, x, ctx=EVAL):
        w = params["w"]
        low = ctx.compute_dtype or (w.dtype if w.dtype in LOW_PRECISION else None)
        xin = x.astype(low) if low is not None else x  # [B, D_in], the product's operand
        return matmul(xin, w, low) + params["b"][None, :], xin

    def backward(self, params, x, dy):
        w = params["w"]
        d = dy.astype(x.dtype) if x.dtype in LOW_PRECISION else dy  # [B, D_out]
        dw = matmul(x.T, d)  # [D_in, D_out]
        return {"w": dw, "b": jnp.sum(dy, axis=0)}, matmul(d, w.T.astype(d.dtype))


# ----------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise activation as a layer: ``y = f(x)``, ``dx = dy * f'(x)``; ``f`` and
    ``f'`` come from :mod:`fnmlp.activations` (``fn`` names one). The residual is ``x``."""

    fn: str = "identity"
    has_params: ClassVar[bool] = False

    def __post_init__(self):
        get_activation(self.fn)

    @property
    def name(self) -> str:
        # the generic Activation("tanh") is named like its class; subclasses by their own
        return _ACTIVATION_CLASS_NAMES[self.fn] if type(self) is Activation else type(
            self).__name__

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        return get_activation(self.fn).fn(x), x

    def backward(self, params, x, dy):
        return (), dy * get_activation(self.fn).deriv(x)

    def to_config(self) -> dict:
        return {"type": self.name}


def _activation_class(name: str, cls_name: str):
    doc = get_activation(name).fn.__doc__.strip().split("\n")[0]
    cls = dataclass(frozen=True)(type(cls_name, (Activation,), {
        "__doc__": f"The {name} activation as a layer: {doc}",
        "__annotations__": {"fn": str},
        "fn": dataclasses.field(default=name, init=False, repr=False),
    }))
    cls.__module__ = __name__
    return cls


_ACTIVATION_CLASS_NAMES = {
    "identity": "Identity", "relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh",
    "sigmoid": "Sigmoid", "gelu": "Gelu", "softplus": "Softplus", "elu": "Elu",
    "selu": "Selu", "silu": "Silu",
}
assert set(_ACTIVATION_CLASS_NAMES) == set(ACTIVATIONS)
Identity = _activation_class("identity", "Identity")
Relu = _activation_class("relu", "Relu")
LeakyRelu = _activation_class("leaky_relu", "LeakyRelu")
Tanh = _activation_class("tanh", "Tanh")
Sigmoid = _activation_class("sigmoid", "Sigmoid")
Gelu = _activation_class("gelu", "Gelu")
Softplus = _activation_class("softplus", "Softplus")
Elu = _activation_class("elu", "Elu")
Selu = _activation_class("selu", "Selu")
Silu = _activation_class("silu", "Silu")
ACTIVATION_LAYERS = {name: globals()[cls] for name, cls in _ACTIVATION_CLASS_NAMES.items()}


def activation_layer(name: str) -> Activation:
    """The layer for an activation name (``"relu"`` -> ``Relu()``); ``ValueError`` lists
    the names."""
    get_activation(name)
    return ACTIVATION_LAYERS[name]()


# ----------------------------------------------------------------------------- Softmax


@dataclass(frozen=True)
class Softmax(Layer):
    """``p = softmax(x)`` over the features (the lesson's ``Softmax`` module).

    Backward, the Jacobian-vector product without forming the Jacobian
    ``diag(p) - p p^T``: ``dx = p * (dy - sum(p * dy))`` per example. Pair it with the
    ``categorical_cross_entropy`` loss, which takes probabilities; the fused
    ``softmax_cross_entropy`` on logits (no Softmax layer) is the stable choice. A model
    that ends in it outputs probabilities (:attr:`Layer.outputs`).
    """

    has_params: ClassVar[bool] = False
    outputs: ClassVar[str] = "probabilities"

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        p = jax.nn.softmax(x, axis=-1)  # [B, C]
        return p, p

    def backward(self, params, p, dy):
        return (), p * (dy - jnp.sum(p * dy, axis=-1, keepdims=True))


# ----------------------------------------------------------------------------- Dropout


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout (Srivastava et al. 2014; PyTorch ``nn.Dropout``).

    ``rate`` is the **drop** probability, in ``[0, 1)``, as in PyTorch, Flax and Equinox.
    In training (``ctx.train``) each entry is kept with probability ``1 - rate`` and the
    kept ones are scaled by ``1 / (1 - rate)``, so ``E[y] = x``; in evaluation it is the
    identity. The mask is drawn from ``ctx.key`` (training needs one: ``ValueError``
    otherwise), so both gradient paths see the same mask for the same key.
    Backward: ``dx = dy * mask / (1 - rate)``.
    """

    rate: float = 0.5
    has_params: ClassVar[bool] = False

    def __post_init__(self):
        r = self.rate
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.integer,
                                                                 np.floating)) or not 0 <= r < 1:
            raise ValueError(f"Dropout rate (the drop probability) must be a number in"
                             f" [0, 1); got {r!r}")

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=EVAL):
        if not ctx.train or self.rate == 0:
            return x, None
        if ctx.key is None:
            raise ValueError("Dropout in training needs ctx.key (a PRNG key); got None")
        keep = 1.0 - self.rate
        # uniform float32 draws: the same mask whatever x's dtype (and with x64 on or off)
        kept = jax.random.uniform(ctx.key, x.shape, jnp.float32) < keep  # [B, D]
        scale = kept.astype(x.dtype) / keep
        return x * scale, scale

    def backward(self, params, scale, dy):
        return (), dy if scale is None else dy * scale


# ----------------------------------------------------------------------------- LayerNorm


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Layer normalisation over the features (Ba, Kiros & Hinton 2016; PyTorch
    ``nn.LayerNorm`` with its biased variance and ``eps`` inside the root)::

        xhat = (x - mean(x)) / sqrt(var(x) + eps);   y = scale * xhat + bias

    Params ``{"scale": [D] ones, "bias": [D] zeros}``. Backward, with ``g = dy * scale``
    and ``inv = 1 / sqrt(var + eps)``, means over the features::

        dscale = sum_B dy * xhat;  dbias = sum_B dy
        dx = inv * (g - mean(g) - xhat * mean(g * xhat))
    """

    eps: float = 1e-5

    def __post_init__(self):
        e = self.eps
        if (isinstance(e, bool) or not isinstance(e, (int, float, np.integer, np.floating))
                or not math.isfinite(e) or e <= 0):
            raise ValueError(f"LayerNorm eps must be a finite number > 0; got {e!r}")

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, {"scale": jnp.ones((in_features,), dtype),
                             "bias": jnp.zeros((in_features,), dtype)}

    def forward(self, params, x, ctx=EVAL):
        mu = jnp.mean(x, axis=-1, keepdims=True)  # [B, 1]
        xc = x - mu
        inv = jax.lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + self.eps)  # [B, 1]
        xhat = xc * inv  # [B, D]
        return xhat * params["scale"][None, :] + params["bias"][None, :], (xhat, inv)

    def backward(self, params, residuals, dy):
        xhat, inv = residuals
        g = dy * params["scale"][None, :]  # [B, D]
        dx = inv * (g - jnp.mean(g, axis=-1, keepdims=True)
                    - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
        return {"scale": jnp.sum(dy * xhat, axis=0), "bias": jnp.sum(dy, axis=0)}, dx


# ----------------------------------------------------------------------------- Serial


@dataclass(frozen=True)
class Serial(Layer):
    """Layers in sequence; itself a layer (the lesson's ``Net``, stax's ``serial``).

    * params: a list, one entry per child with parameters, in order;
    * forward: ``x -> layer_0 -> layer_1 -> ...``; child ``i`` gets ``ctx`` with
      ``key = fold_in(ctx.key, i)``; residuals are a tuple, one entry per child;
    * backward: the children's backwards in reverse, each ``dx`` the next ``dy``;
    * init: ``key`` is split into one key per child with parameters; a
      ``Dense(kernel_init=None)`` takes the initialiser that suits the activation right
      after it (He for the ReLU family, LeCun for SELU, Glorot otherwise and at the end).

    ``in_features``: the input width ``D``, when the model records it (``mlp`` does);
    ``init_params(key)`` then needs no width.
    """

    layers: tuple = ()
    in_features: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"serial: layer {i} must be a fnmlp Layer (Dense(8),"
                                 f" Relu(), ...); got {layer!r}"[:200])
        if not self.layers:
            raise ValueError("serial needs at least one layer; got none")
        d = self.in_features
        if d is not None:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d <= 0:
                raise ValueError(f"serial in_features must be a positive integer; got {d!r}")
            object.__setattr__(self, "in_features", int(d))
        self.outputs  # noqa: B018 -- a Softmax followed by Dropout is refused at build time

    @property
    def name(self) -> str:
        return "Serial"

    def flat_layers(self) -> tuple:
        """Every leaf layer in order, nested ``Serial`` s opened."""
        out: list[Layer] = []
        for layer in self.layers:
            out += list(layer.flat_layers()) if isinstance(layer, Serial) else [layer]
        return tuple(out)

    @property
    def outputs(self) -> str:
        """``"probabilities"`` when the last leaf layer is a ``Softmax`` (nested serials
        opened), else that layer's own ``outputs``. A Softmax followed only by
        parameter-free layers (``Dropout``, an activation) raises ``ValueError``."""
        flat = self.flat_layers()
        for i in range(len(flat) - 1, -1, -1):
            if flat[i].outputs == "probabilities" and i < len(flat) - 1:
                after = flat[i + 1:]
                if not any(layer.has_params for layer in after):
                    raise ValueError(
                        f"{flat[i].name} (layer {i}) is followed by"
                        f" {', '.join(layer.name for layer in after)}: the model's output would"
                        " be neither probabilities nor logits; put the Softmax last (Dropout"
                        " before it) or drop it")
                break
        return flat[-1].outputs

    def _resolved(self) -> tuple:
        """The children, a ``Dense(kernel_init=None)`` given the default that suits the
        activation after it."""
        out = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense) and layer.kernel_init is None:
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                init = DEFAULT_INIT[nxt.fn] if isinstance(nxt, Activation) else "glorot_uniform"
                layer = dataclasses.replace(layer, kernel_init=init)
            out.append(layer)
        return tuple(out)

    def init(self, key, in_features, dtype=jnp.float32):
        in_features = input_width(self, in_features)
        layers = self._resolved()
        keys = jax.random.split(key, max(1, sum(layer.has_params for layer in layers)))
        params, width, j = [], in_features, 0
        for layer in layers:
            width, p = layer.init(keys[j] if layer.has_params else key, width, dtype)
            if layer.has_params:
                params.append(p)
                j += 1
        return width, params

    def child_context(self, ctx: Context, i: int) -> Context:
        """Child ``i``'s context: its own dropout key, ``fold_in(ctx.key, i)``."""
        return ctx if ctx.key is None else ctx._replace(key=jax.random.fold_in(ctx.key, i))

    def split_params(self, params) -> list:
        """One entry per child: its params, or ``()`` for a child without any."""
        it = iter(params)
        return [next(it) if layer.has_params else () for layer in self.layers]

    def forward(self, params, x, ctx=EVAL):
        residuals = []
        for i, (layer, p) in enumerate(zip(self.layers, self.split_params(params))):
            x, r = layer.forward(p, x, self.child_context(ctx, i))
            residuals.append(r)
        return x, tuple(residuals)

    def backward(self, params, residuals, dy):
        grads = []
        per_layer = self.split_params(params)
        for layer, p, r in zip(reversed(self.layers), reversed(per_layer), reversed(residuals)):
            g, dy = layer.backward(p, r, dy)
            if layer.has_params:
                grads.append(g)
        return grads[::-1], dy

    def to_config(self) -> dict:
        out = {"type": "Serial", "layers": [layer.to_config() for layer in self.layers]}
        if self.in_features is not None:
            out["in_features"] = self.in_features
        return out


def serial(*layers: Layer, in_features: int | None = None) -> Serial:
    """Composes layers in order: ``serial(Dense(256), Relu(), Dropout(0.2), Dense(10))``;
    ``in_features`` records the input width (optional)."""
    return Serial(tuple(layers), in_features)


# ----------------------------------------------------------------------------- MLP sugar


def mlp(sizes: Sequence[int], activation: str | Sequence[str] = "relu", *,
        dropout: float | Sequence[float] = 0.0, kernel_init: str | None = None) -> Serial:
    """The plain MLP, the one builder every other spelling goes through::

        mlp([D, H1, ..., Hk, C], act)  ==  serial(Dense(H1), Act(), [Dropout(r)], ...,
                                                  Dense(C), in_features=D)

    Args:
      sizes: layer widths, input first: ``[D, H1, ..., C]``, at least two, all > 0
        (``[D, C]``: no hidden layer, a linear model).
      activation: one name (:data:`fnmlp.activations.ACTIVATIONS`) for every hidden layer,
        or one per hidden layer.
      dropout: one drop rate after every hidden activation, or one per hidden layer (0
        adds no layer).
      kernel_init: the initialiser of every Dense; default None lets :class:`Serial` pick
        per Dense by the activation after it (He for the ReLU family, LeCun for SELU,
        Glorot otherwise and for the output layer).

    Returns:
      A :class:`Serial`; ``model.init_params(key)`` gives
      ``[{"w": [sizes[i], sizes[i+1]], "b": [sizes[i+1]]}, ...]``, biases zero.

    Raises:
      ValueError: bad sizes, activation names, rates or initialiser.

    Examples:
      >>> import jax
      >>> from fnmlp.layers import mlp, serial, Dense, Relu
      >>> model = mlp([4, 8, 3], "relu")
      >>> model == serial(Dense(8), Relu(), Dense(3), in_features=4)
      True
      >>> [p["w"].shape for p in model.init_params(jax.random.key(0))]
      [(4, 8), (8, 3)]
    """
    sizes = check_sizes(sizes)
    hidden = len(sizes) - 2
    for a in (activation,) if isinstance(activation, str) else tuple(activation):
        get_activation(a)  # checked even with no hidden layer
    acts = _per_hidden(activation, hidden, "activation")
    rates = _per_hidden(dropout, hidden, "dropout")
    layers: list[Layer] = []
    for i, width in enumerate(sizes[1:-1]):
        layers += [Dense(width, kernel_init), activation_layer(acts[i])]
        if rates[i]:
            layers.append(Dropout(float(rates[i])))
    layers.append(Dense(sizes[-1], kernel_init))
    return Serial(tuple(layers), sizes[0])


def check_sizes(sizes: Any) -> list[int]:
    """Validates a list of layer sizes (input first, at least two, each > 0)."""
    if isinstance(sizes, (str, bytes)):
        raise ValueError(f"sizes must be a list of positive integers; got {sizes!r}")
    try:
        sizes = list(sizes)
    except TypeError:
        raise ValueError(f"sizes must be a list of layer widths; got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least two layer widths [D, ..., C]; got {sizes}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
            raise ValueError(f"sizes must be positive integers; got {s!r} at index {i}")
    return [int(s) for s in sizes]


def _per_hidden(value, hidden: int, what: str) -> tuple:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return (value,) * hidden
    values = tuple(value)
    if len(values) == 1:
        return values * hidden
    if len(values) != hidden:
        raise ValueError(f"{what} must be one value or one per hidden layer ({hidden});"
                         f" got {len(values)}: {list(values)}")
    return values


def check_model(model: Any, name: str = "model") -> Layer:
    """``model`` if it is a :class:`Layer`; a ``ValueError`` that says how to build one
    otherwise (an activation name is the most common mistake)."""
    if isinstance(model, Layer):
        return model
    hint = ""
    if isinstance(model, str) or (isinstance(model, (tuple, list)) and model
                                  and all(isinstance(a, str) for a in model)):
        hint = " (activation names go to the builder: mlp([D, H, C], 'relu'))"
    elif isinstance(model, (list, tuple)):
        hint = " (params come second: fit(model, params, x, y))"
    raise ValueError(f"{name} must be a fnmlp Layer such as mlp([2, 16, 2], 'relu') or"
                     f" serial(Dense(16), Relu(), Dense(2)){hint}; got"
                     f" {type(model).__name__} {model!r}"[:300])


# ----------------------------------------------------------------------------- configs

BUILTIN = {cls.__name__: cls for cls in
           (Dense, Softmax, Dropout, LayerNorm, Serial, *ACTIVATION_LAYERS.values())}


def from_config(config: dict, custom: dict | None = None) -> Layer:
    """Rebuilds a layer from :meth:`Layer.to_config` output. ``custom`` maps the type
    names of your own layers to their classes. An unknown type raises ``ValueError``."""
    registry = {**BUILTIN, **(custom or {})}
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(f"a layer config must be a dict with a 'type' name; got {config!r}"
                         [:200])
    kind = config["type"]
    if kind not in registry:
        raise ValueError(f"unknown layer type {kind!r}: not a built-in layer"
                         f" ({sorted(BUILTIN)}); pass your own layer classes as"
                         f" custom_layers={{'{kind}': {kind}}}")
    fields = {k: v for k, v in config.items() if k != "type"}
    if kind == "Serial":
        layers = fields.get("layers", [])
        if not isinstance(layers, list):
            raise ValueError(f"a Serial config's 'layers' must be a list of layer configs;"
                             f" got {layers!r}"[:200])
        try:
            return Serial(tuple(from_config(c, custom) for c in layers),
                          fields.get("in_features"))
        except TypeError as e:
            raise ValueError(f"a Serial config does not fit: {e}"[:300]) from None
    cls = registry[kind]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return cls(**fields)
    except TypeError as e:
        raise ValueError(f"layer config {config!r} does not fit {kind}: {e}"[:300]) from None


__all__ = ["ACTIVATION_LAYERS", "Activation", "Context", "Dense", "Dropout", "EVAL", "Elu",
           "Gelu", "Identity", "Layer", "LayerNorm", "LeakyRelu", "Relu", "Selu",
           "Serial", "Sigmoid", "Silu", "Softmax", "Softplus", "Tanh", "activation_layer",
           "check_model", "check_sizes", "from_config", "input_width", "matmul", "mlp",
           "serial"]
