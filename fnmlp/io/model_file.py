"""A saved model: a checkpoint's params with the architecture and loss it was trained with.

Shapes: ``N`` examples, ``D`` input features, ``C`` outputs.

A checkpoint written by the scripts (or by :func:`fnmlp.save_checkpoint` with a config
from :func:`model_config`) carries everything needed to use its params: the architecture
as JSON (``config["model"]``, :meth:`fnmlp.layers.Layer.to_config`), the loss, and how raw
inputs were scaled. :func:`load_model` returns a :class:`SavedModel` (params, config and
the rebuilt architecture together), whose methods run the saved architecture in
evaluation mode (no dropout), so nothing can be run with the wrong one::

    saved = fnmlp.load_model("runs/mnist/checkpoint.npz")
    saved.predict_classes(x)          # [N] int
    saved.predict_proba(x)            # [N, C], rows sum to 1
    saved.config["input"]             # how raw inputs were scaled for training

The config describes the network once: ``{model, loss, input}`` (``input``: the input
record, its ``width`` ``D``, ``kind`` and, for pixels, ``scale``), beside what a run keeps
(epochs, seed, optimizer, ...). Checkpoints of the earlier formats load through
:mod:`fnmlp.io.legacy`, the one reader that knows them.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp._checks import check_float_dtype
from fnmlp.grad import Params
from fnmlp.io import legacy
from fnmlp.io.checkpoint import load_checkpoint, read_checkpoint_meta, stored_float_dtype
from fnmlp.layers import Layer, check_model, from_config, input_width
from fnmlp.losses import LOSSES, check_loss_for_model
from fnmlp.prediction import predict, predict_classes, predict_proba
from fnmlp.scaling import input_record, raw_input_scale

__all__ = ["SavedModel", "architecture", "load_model", "model_config", "saved_config"]


class SavedModel(NamedTuple):
    """Params with the config they were trained with (``model``: the architecture as JSON,
    ``loss``, ``input``: the input record, its ``width`` and how raw inputs are scaled) and
    the rebuilt architecture ``model``."""

    params: Params
    config: dict
    model: Layer

    @property
    def loss(self) -> str:
        return self.config["loss"]

    @property
    def input_width(self) -> int:
        """``D``, the width of one input (``config["input"]["width"]``)."""
        return self.config["input"]["width"]

    def predict(self, x: Any) -> jax.Array:
        """Outputs ``[N, C]`` for inputs ``[N, D]`` (raw pixels scaled as in training)."""
        x = raw_input_scale(x, input_record(self.config), checks.dtype_of(self.params))
        return predict(self.model, self.params, x)

    def predict_proba(self, x: Any) -> jax.Array:
        """Probabilities ``[N, C]`` (see :func:`fnmlp.predict_proba`)."""
        x = raw_input_scale(x, input_record(self.config), checks.dtype_of(self.params))
        return predict_proba(self.model, self.params, x, self.loss)

    def predict_classes(self, x: Any) -> jax.Array:
        """Labels (see :func:`fnmlp.predict_classes`)."""
        x = raw_input_scale(x, input_record(self.config), checks.dtype_of(self.params))
        return predict_classes(self.model, self.params, x, self.loss)


def model_config(model: Layer, loss: Any, in_features: int | None = None, **extra) -> dict:
    """The config :func:`load_model` needs, checked: ``{model, loss, input}``, the
    architecture as JSON (``model``), the loss (it must take the model's output) and the
    input record (``input``: ``extra["input"]``, e.g. ``{"kind": "mnist", "scale": "pixel /
    255"}``, kind ``"features"`` when it names none, with its ``width``: ``in_features``,
    or the model's own). Other ``extra`` entries (run metadata) are kept.

    Raises:
      ValueError: a model that is not a Layer, no input width (or two that differ), or a
        loss that does not take the model's output.
    """
    model = check_model(model)
    lossdef = check_loss_for_model(loss, model.outputs)
    if LOSSES.get(lossdef.name) is not lossdef:
        raise ValueError(f"loss: a checkpoint records its loss by name, and {lossdef.name!r}"
                         f" is not a built-in one ({sorted(LOSSES)}); save with the nearest"
                         " built-in name, or keep your Loss beside the checkpoint yourself")
    loss = lossdef.name
    given = dict(extra.pop("input", None) or {})
    d = input_width(model, in_features if in_features is not None else given.get("width"))
    if given.get("width", d) != d:
        raise ValueError(f"input={{'width': {given['width']!r}}} but the input width is {d}")
    record = {"kind": "features", **given, "width": d}
    return {"model": model.to_config(), "loss": loss, "input": record, **extra}


def saved_config(config: dict, where: Any = "config") -> dict:
    """A checkpoint's config as today's ``{model, loss, input}`` (with the input
    ``width``) and whatever else it keeps; an earlier format read by :mod:`.legacy`.

    Raises:
      ValueError: a config that lacks one of them (saying which), or an input record
        without a positive ``width``.
    """
    if legacy.is_legacy(config):
        return legacy.upgrade(config, where)
    missing = [k for k in ("model", "loss", "input") if k not in config]
    if missing:
        raise ValueError(f"{where}: the checkpoint's config lacks {missing}, so the model"
                         f" cannot be rebuilt; {legacy.HINT}")
    width = config["input"].get("width") if isinstance(config["input"], dict) else None
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"{where}: the checkpoint's config 'input' must be a record with the"
                         f" input width (a positive int); got {config['input']!r}"[:200])
    return config


def architecture(config: dict, custom_layers: dict | None = None) -> Layer:
    """The Layer a checkpoint's config describes: ``config["model"]`` rebuilt (for an
    earlier format, the one :mod:`.legacy` reads)."""
    return from_config(saved_config(config)["model"], custom_layers)


def _saved_dtype(path, prefix: str | None) -> Any:
    """The params' dtype as saved (float32 when none is found); float64 with float64 off
    in JAX: float32, with a warning."""
    dtype = stored_float_dtype(path, prefix or "params/")
    if dtype is None and not prefix:
        dtype = stored_float_dtype(path, "")  # params saved bare (0/w, 0/b, ...)
    if dtype is None:
        return jnp.float32
    if dtype == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        warnings.warn(f"{path}: the params were saved in float64 but float64 is off in JAX;"
                      " loaded as float32 (jax.config.update('jax_enable_x64', True) before"
                      " load_model keeps float64)", UserWarning, stacklevel=3)
        return jnp.float32
    return jnp.dtype(dtype)


def load_model(path: str | os.PathLike, dtype: Any = None,
               custom_layers: dict | None = None) -> SavedModel:
    """Loads the params of a checkpoint together with its config and architecture.

    The checkpoint's config must hold ``model``, ``loss`` and ``input`` (with the
    input ``width``), as :func:`model_config` and the scripts write it (earlier formats
    are read by :mod:`fnmlp.io.legacy`); the params are read into that architecture
    (optimizer state, if any, is skipped). A checkpoint of a run with early stopping
    holds its last state and, under ``early/best``, the state of the epoch it keeps: those
    params are loaded.
    ``custom_layers`` maps the type names of your own layers to their classes.
    ``dtype`` is the params' dtype; by default the one they were saved in (a float64
    model loads as float64; with float64 off in JAX, as float32 with a warning that
    says how to turn it on).

    Raises:
      ValueError: a ``dtype`` that is not a float dtype (before the file is read), a
        config that lacks them (saying what is missing), an unknown layer type, or a model
        larger than half of this machine's memory (refused unread).
    """
    if dtype is not None:
        dtype = check_float_dtype(dtype)
    meta = read_checkpoint_meta(path)
    config = saved_config(dict(meta.get("config") or {}), path)
    layer = from_config(config["model"], custom_layers)
    d = input_width(layer, config["input"]["width"])  # one width, the model's own agreeing
    check_loss_for_model(config["loss"], layer.outputs)
    # early stopping: the kept epoch's params live under early/best (the checkpoint holds
    # the last state, so a run can resume); without it, the state's own params
    kept = "early/best/params/"
    prefix = kept if any(p.startswith(kept) for p in meta.get("paths", [])) else None
    dtype = _saved_dtype(path, prefix) if dtype is None else dtype
    # shapes only (jax.eval_shape allocates nothing), in the dtype asked for
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), d, dtype)[1])
    template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.dtype(dtype)), shapes)
    need = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(template))
    have = checks.physical_memory()
    if need > have // 2:
        raise ValueError(f"{path}: the checkpoint's config describes a model of"
                         f" {need / 2**30:.1f} GiB of params, more than half of this machine's"
                         f" {have / 2**30:.1f} GiB; refused unread")
    params, _ = load_checkpoint(path, template, prefix)
    return SavedModel(params, config, layer)
