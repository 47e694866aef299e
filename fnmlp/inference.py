"""Using a trained model: outputs, probabilities, classes, and loading a saved model.

Shapes: ``N`` examples, ``D`` input features, ``C`` outputs.

A checkpoint written by the scripts (or by :func:`fnmlp.save_checkpoint` with a
``config`` holding ``sizes``, ``activation`` and ``loss``) carries everything needed to
use its params. :func:`load_model` returns a :class:`Model` (params and config together),
whose methods run the forward with the saved activation, so nothing can be run with the
wrong one::

    model = fnmlp.load_model("runs/mnist/checkpoint.npz")
    model.predict_classes(x)          # [N] int
    model.predict_proba(x)            # [N, C], rows sum to 1
    model.config["input"]             # how raw inputs were scaled for training
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _core
from fnmlp import _validate as checks
from fnmlp.activations import get_activation
from fnmlp.checkpoint import load_checkpoint, read_checkpoint_meta
from fnmlp.data.scaling import raw_input_scale
from fnmlp.losses import get_loss
from fnmlp.mlp import Params, check_sizes

_jit_forward = jax.jit(_core.batched_forward, static_argnums=2)


def predict(params: Params, x: Any, activation: str = "relu") -> jax.Array:
    """Outputs ``[N, C]`` (logits, or the regression prediction) for inputs ``[N, D]``."""
    sizes = checks.check_params(params)
    get_activation(activation)
    x = checks.check_inputs(x, sizes[0], "x")
    return _jit_forward(params, jnp.asarray(x, params[0]["w"].dtype), activation)


def predict_proba(params: Params, x: Any, activation: str = "relu",
                  loss: str = "softmax_cross_entropy") -> jax.Array:
    """Class probabilities ``[N, C]``: ``softmax`` of the logits for
    ``softmax_cross_entropy`` (rows sum to 1), ``sigmoid`` of each output for
    ``sigmoid_cross_entropy`` (independent labels). Regression losses have none."""
    return probabilities(predict(params, x, activation), loss)


def probabilities(out: jax.Array, loss: str) -> jax.Array:
    """Network outputs ``[..., N, C]`` -> probabilities: ``softmax`` over C for
    ``softmax_cross_entropy``, ``sigmoid`` for ``sigmoid_cross_entropy``."""
    kind = get_loss(loss).kind
    if kind == "regression":
        raise ValueError(f"probabilities need a classification loss; got loss={loss!r}")
    return jax.nn.softmax(out, axis=-1) if kind == "multiclass" else jax.nn.sigmoid(out)


def predict_classes(params: Params, x: Any, activation: str = "relu",
                    loss: str = "softmax_cross_entropy") -> jax.Array:
    """Predicted labels: ``argmax`` of the logits ``[N]`` (multiclass), or ``out > 0``
    per output ``[N, C]`` (``sigmoid_cross_entropy``)."""
    kind = get_loss(loss).kind
    if kind == "regression":
        raise ValueError(f"classes need a classification loss; got loss={loss!r}")
    out = predict(params, x, activation)
    return jnp.argmax(out, axis=1) if kind == "multiclass" else (out > 0).astype(jnp.int32)


class Model(NamedTuple):
    """Params with the config they were trained with (``sizes``, ``activation``,
    ``loss``, and for the scripts ``input``: how raw inputs are scaled)."""

    params: Params
    config: dict

    @property
    def activation(self) -> str:
        return self.config["activation"]

    @property
    def loss(self) -> str:
        return self.config["loss"]

    def predict(self, x: Any) -> jax.Array:
        """Outputs ``[N, C]`` for inputs ``[N, D]``."""
        x = raw_input_scale(x, self.config.get("input"))  # raw pixels -> as trained
        return predict(self.params, x, self.activation)

    def predict_proba(self, x: Any) -> jax.Array:
        """Probabilities ``[N, C]`` (see :func:`predict_proba`)."""
        x = raw_input_scale(x, self.config.get("input"))
        return predict_proba(self.params, x, self.activation, self.loss)

    def predict_classes(self, x: Any) -> jax.Array:
        """Labels (see :func:`predict_classes`)."""
        x = raw_input_scale(x, self.config.get("input"))
        return predict_classes(self.params, x, self.activation, self.loss)


def model_config(sizes, activation: str, loss: str, **extra) -> dict:
    """The config :func:`load_model` needs, checked; ``extra`` (e.g. ``input=``) is kept."""
    get_activation(activation)
    get_loss(loss)
    return {"sizes": check_sizes(sizes), "activation": activation, "loss": loss, **extra}


def load_model(path: str | os.PathLike, dtype: Any = jnp.float32) -> Model:
    """Loads the params of a checkpoint together with its config.

    The checkpoint's config must name ``sizes``, ``activation`` and ``loss`` (the scripts'
    checkpoints do); the params are read into that architecture (optimizer state, if
    any, is skipped). A checkpoint without them raises ``ValueError`` saying what is
    missing.
    """
    meta = read_checkpoint_meta(path)
    config = meta.get("config") or {}
    missing = [k for k in ("sizes", "activation", "loss") if k not in config]
    if missing:
        raise ValueError(f"{path}: the checkpoint's config lacks {missing}, so the model"
                         " cannot be rebuilt; save it with save_checkpoint(path, state,"
                         " config=fnmlp.inference.model_config(sizes, activation, loss))")
    config = model_config(config["sizes"], config["activation"], config["loss"],
                          **{k: v for k, v in config.items()
                             if k not in ("sizes", "activation", "loss")})
    sizes = config["sizes"]
    template = [{"w": np.zeros((a, b), dtype), "b": np.zeros((b,), dtype)}
                for a, b in zip(sizes[:-1], sizes[1:])]
    params, _ = load_checkpoint(path, template)
    return Model(params, config)
