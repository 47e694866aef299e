"""Composition: :class:`Serial` (``serial``), the plain MLP's one builder :func:`mlp`, and
layers from and to JSON configs (:func:`from_config`).

Shapes: ``B`` batch, ``D`` input features, ``H`` hidden width, ``C`` outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp._checks import is_positive_int
from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.layers.base import EVAL, Context, Layer, input_width
from fnmlp.layers.basic import (
    ACTIVATION_LAYERS,
    Activation,
    Dense,
    Dropout,
    LayerNorm,
    Softmax,
    activation_layer,
)

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
            if not is_positive_int(d):
                raise ValueError(f"serial in_features must be a positive integer; got {d!r}")
            object.__setattr__(self, "in_features", int(d))
        _ = self.outputs  # a Softmax followed by Dropout is refused at build time

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
                init = get_activation(nxt.fn).init if isinstance(nxt, Activation) else (
                    "glorot_uniform")
                layer = dataclasses.replace(layer, kernel_init=init)
            out.append(layer)
        return tuple(out)

    def init(self, key, in_features, dtype=jnp.float32):
        in_features = input_width(self, in_features)
        layers = self._resolved()
        keys = jax.random.split(key, max(1, sum(layer.has_params for layer in layers)))
        params, width, j = [], in_features, 0
        for i, layer in enumerate(layers):
            said, p = layer.init(keys[j] if layer.has_params else key, width, dtype)
            _check_width(i, layer, p, width, said, dtype)
            width = said
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


def _check_width(i: int, layer: Layer, params, width: int, said: Any, dtype) -> None:
    """The width ``layer.init`` reports must be what its forward returns for inputs of
    ``width`` features (shapes only, ``jax.eval_shape``): a user layer that says ``d``
    and returns ``2d`` would otherwise fail later inside JAX, naming no layer.

    Raises:
      ValueError: naming the layer ``i:Name``, the width said and the width returned.
    """
    if isinstance(layer, Serial):
        return  # its children are checked in its own init
    x = jax.ShapeDtypeStruct((1, width), jnp.dtype(dtype))
    try:
        y = jax.eval_shape(lambda p, x: layer.forward(p, x)[0], params, x)
    except Exception as e:  # the forward cannot run on what init made
        raise ValueError(f"layer {i}:{layer.name}: its forward fails on inputs [B, {width}]"
                         f" with the params its init returns: {type(e).__name__}: {e}"
                         [:600]) from None
    if isinstance(said, (bool, np.bool_)) or not isinstance(said, (int, np.integer)):
        raise ValueError(f"layer {i}:{layer.name}: init must report its output width as an"
                         f" int; got {said!r} for inputs of width {width}")
    got = getattr(y, "shape", None)
    if got is None or len(got) != 2 or got[0] != 1 or got[1] != said:
        raise ValueError(f"layer {i}:{layer.name}: init reports {said!r} output features for"
                         f" inputs of width {width}, but its forward returns shape {got} for"
                         f" inputs [1, {width}]: make init return the forward's output"
                         " width")


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
    if callable(activation) or not hasattr(activation, "__iter__"):  # jax.nn.relu, 3, None
        raise ValueError(
            f"activation must be a name (one of {sorted(ACTIVATIONS)}) or a list of names;"
            f" got {activation!r}: for a function of your own, write a layer with its"
            " backward (README: 'A layer of your own, checked')")
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
        if not is_positive_int(s):
            raise ValueError(f"sizes must be positive integers; got {s!r} at index {i}")
    return [int(s) for s in sizes]


def _per_hidden(value, hidden: int, what: str) -> tuple:
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        value = value.item()  # np.float32(0.2) -> 0.2
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
