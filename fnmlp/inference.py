"""Using a trained model: outputs, probabilities, classes, and loading a saved model.

Shapes: ``N`` examples, ``D`` input features, ``C`` outputs.

A checkpoint written by the scripts (or by :func:`fnmlp.save_checkpoint` with a config
from :func:`model_config`) carries everything needed to use its params: the architecture
as JSON (``config["model"]``, :meth:`fnmlp.layers.Layer.to_config`), the loss, and how raw
inputs were scaled. :func:`load_model` returns a :class:`Model` (params and config
together), whose methods run the saved architecture in evaluation mode (no dropout), so
nothing can be run with the wrong one::

    model = fnmlp.load_model("runs/mnist/checkpoint.npz")
    model.predict_classes(x)          # [N] int
    model.predict_proba(x)            # [N, C], rows sum to 1
    model.config["input"]             # how raw inputs were scaled for training

Checkpoints of the earlier format (``sizes`` and ``activation`` instead of ``model``)
load as the plain MLP they describe.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnmlp.checkpoint import load_checkpoint, read_checkpoint_meta
from fnmlp.data.scaling import raw_input_scale
from fnmlp.layers import Layer, from_config, mlp
from fnmlp.losses import PROBABILITY_LOSSES, get_loss
from fnmlp.mlp import Params, check_sizes, check_x, resolve_model


@functools.lru_cache(maxsize=64)
def _jit_apply(model: Layer):
    return jax.jit(lambda p, x: model.apply(p, x))


def predict(params: Params, x: Any, activation: Any = "relu", *, model: Any = None
            ) -> jax.Array:
    """Outputs ``[N, C]`` (logits, or the regression prediction) for inputs ``[N, D]``,
    in evaluation mode. ``model`` (a Layer) instead of the plain MLP's ``activation``."""
    m = resolve_model(activation, model)
    return _jit_apply(m)(params, check_x(params, x, m))


def predict_proba(params: Params, x: Any, activation: Any = "relu",
                  loss: str = "softmax_cross_entropy", *, model: Any = None) -> jax.Array:
    """Class probabilities ``[N, C]``: ``softmax`` of the logits for
    ``softmax_cross_entropy`` (rows sum to 1), ``sigmoid`` of each output for
    ``sigmoid_cross_entropy`` (independent labels), the output itself for a model that
    ends in a Softmax (``categorical_cross_entropy``). Regression losses have none."""
    return probabilities(predict(params, x, activation, model=model), loss)


def probabilities(out: jax.Array, loss: str) -> jax.Array:
    """Network outputs ``[..., N, C]`` -> probabilities (see :func:`predict_proba`)."""
    kind = get_loss(loss).kind
    if kind == "regression":
        raise ValueError(f"probabilities need a classification loss; got loss={loss!r}")
    if loss in PROBABILITY_LOSSES:
        return out
    return jax.nn.softmax(out, axis=-1) if kind == "multiclass" else jax.nn.sigmoid(out)


def predict_classes(params: Params, x: Any, activation: Any = "relu",
                    loss: str = "softmax_cross_entropy", *, model: Any = None) -> jax.Array:
    """Predicted labels: ``argmax`` of the outputs ``[N]`` (multiclass), or ``out > 0``
    per output ``[N, C]`` (``sigmoid_cross_entropy``)."""
    kind = get_loss(loss).kind
    if kind == "regression":
        raise ValueError(f"classes need a classification loss; got loss={loss!r}")
    out = predict(params, x, activation, model=model)
    return jnp.argmax(out, axis=1) if kind == "multiclass" else (out > 0).astype(jnp.int32)


class Model(NamedTuple):
    """Params with the config they were trained with (``model``: the architecture as JSON,
    ``sizes``, ``loss``, and for the scripts ``input``: how raw inputs are scaled) and the
    rebuilt architecture ``layer``."""

    params: Params
    config: dict
    layer: Layer | None = None

    @property
    def activation(self) -> str | None:
        return self.config.get("activation")

    @property
    def loss(self) -> str:
        return self.config["loss"]

    @property
    def network(self) -> Layer:
        return self.layer if self.layer is not None else architecture(self.config)

    def predict(self, x: Any) -> jax.Array:
        """Outputs ``[N, C]`` for inputs ``[N, D]``."""
        x = raw_input_scale(x, self.config.get("input"))  # raw pixels -> as trained
        return predict(self.params, x, model=self.network)

    def predict_proba(self, x: Any) -> jax.Array:
        """Probabilities ``[N, C]`` (see :func:`predict_proba`)."""
        x = raw_input_scale(x, self.config.get("input"))
        return predict_proba(self.params, x, loss=self.loss, model=self.network)

    def predict_classes(self, x: Any) -> jax.Array:
        """Labels (see :func:`predict_classes`)."""
        x = raw_input_scale(x, self.config.get("input"))
        return predict_classes(self.params, x, loss=self.loss, model=self.network)


def model_config(sizes, activation: Any, loss: str, *, model: Layer | None = None,
                 **extra) -> dict:
    """The config :func:`load_model` needs, checked: ``sizes`` ``[D, ..., C]``, the loss,
    and the architecture as JSON (``model``, or the plain MLP of ``sizes`` and
    ``activation``); ``extra`` (e.g. ``input=``) is kept."""
    get_loss(loss)
    sizes = check_sizes(sizes)
    net = model if model is not None else mlp(tuple(sizes[1:]), activation)
    config = {"sizes": sizes, "model": net.to_config(), "loss": loss, **extra}
    if isinstance(activation, str):
        config["activation"] = activation
    elif activation is not None and not isinstance(activation, Layer):
        config["activation"] = list(activation)
    return config


def architecture(config: dict, custom_layers: dict | None = None) -> Layer:
    """The Layer a checkpoint's config describes: ``config["model"]`` rebuilt, or for the
    earlier format the plain MLP of ``sizes`` and ``activation``."""
    if "model" in config:
        return from_config(config["model"], custom_layers)
    acts = config["activation"]
    return mlp(tuple(check_sizes(config["sizes"])[1:]), acts if isinstance(acts, str)
               else tuple(acts))


def load_model(path: str | os.PathLike, dtype: Any = jnp.float32,
               custom_layers: dict | None = None) -> Model:
    """Loads the params of a checkpoint together with its config and architecture.

    The checkpoint's config must name the architecture (``model``, or ``sizes`` and
    ``activation``) and the ``loss`` (the scripts' checkpoints do); the params are read
    into that architecture (optimizer state, if any, is skipped). ``custom_layers`` maps
    the type names of your own layers to their classes. A checkpoint without them raises
    ``ValueError`` saying what is missing.
    """
    meta = read_checkpoint_meta(path)
    config = dict(meta.get("config") or {})
    needed = ("sizes", "loss") if "model" in config else ("sizes", "activation", "loss")
    missing = [k for k in needed if k not in config]
    if missing:
        raise ValueError(f"{path}: the checkpoint's config lacks {missing}, so the model"
                         " cannot be rebuilt (the architecture is 'model', or 'sizes' and"
                         " 'activation' for the plain MLP); save it with save_checkpoint(path,"
                         " state, config=fnmlp.inference.model_config(sizes, activation, loss,"
                         " model=...))")
    get_loss(config["loss"])
    sizes = check_sizes(config["sizes"])
    layer = architecture(config, custom_layers)
    # shapes only (jax.eval_shape allocates nothing), in the dtype asked for
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), sizes[0], dtype)[1])
    template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.dtype(dtype)), shapes)
    need = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(template))
    if need > physical_memory() // 2:
        raise ValueError(f"{path}: the checkpoint's config describes a model of"
                         f" {need / 2**30:.1f} GiB of params, more than half of this machine's"
                         f" {physical_memory() / 2**30:.1f} GiB; refused unread")
    params, _ = load_checkpoint(path, template)
    return Model(params, config, layer)


def physical_memory() -> int:
    """Bytes of physical memory (``sysconf``); a very large number where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62
