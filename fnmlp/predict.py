"""Using a trained model: outputs, probabilities, classes.

Shapes: ``N`` examples, ``D`` input features, ``C`` outputs.

The model says what it outputs (:attr:`fnmlp.layers.Layer.outputs`): a model that ends in
``Softmax`` outputs probabilities, which :func:`predict_proba` returns as they are; any
other model outputs logits, turned into probabilities by ``softmax`` (one label per
example) or, with ``loss="sigmoid_cross_entropy"``, ``sigmoid`` per output (independent
labels). Softmax is never applied twice: a loss that does not take the model's output is
refused.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from fnmlp import _validate as checks
from fnmlp.grad import Params
from fnmlp.layers import Layer, check_model
from fnmlp.losses import check_loss_for_model

__all__ = ["predict", "predict_classes", "predict_proba", "probabilities", "task"]


@functools.lru_cache(maxsize=64)
def _jit_apply(model: Layer):
    return jax.jit(lambda p, x: model.apply(p, x))


def predict(model: Layer, params: Params, x: Any) -> jax.Array:
    """Outputs ``[N, C]`` for inputs ``[N, D]``, in evaluation mode (no dropout): logits,
    probabilities (a model ending in ``Softmax``) or the regression prediction.

    Raises:
      ValueError: ``model`` is not a Layer, params that do not fit it, or bad ``x``.
    """
    model = check_model(model)
    return _jit_apply(model)(params, checks.check_x(model, params, x))


def task(model: Layer, loss: str | None) -> str:
    """``"multiclass"``, ``"binary"`` (independent sigmoid labels) or ``"regression"``:
    the loss's kind when given (checked against the model's output), else multiclass."""
    model = check_model(model)
    if loss is None:
        return "multiclass"
    return check_loss_for_model(loss, model.outputs).kind


def probabilities(out: jax.Array, outputs: str, kind: str) -> jax.Array:
    """Network outputs ``[..., N, C]`` -> probabilities: ``out`` itself when the model
    outputs probabilities, else ``softmax`` (multiclass) or ``sigmoid`` (binary)."""
    if kind == "regression":
        raise ValueError("probabilities need a classification loss; got a regression loss")
    if outputs == "probabilities":
        return out
    return jax.nn.softmax(out, axis=-1) if kind == "multiclass" else jax.nn.sigmoid(out)


def predict_proba(model: Layer, params: Params, x: Any, loss: str | None = None) -> jax.Array:
    """Class probabilities ``[N, C]``.

    Args:
      model, params, x: as :func:`predict`.
      loss: the loss the model was trained with; None reads the task off the model (one
        label per example). ``"sigmoid_cross_entropy"``: independent labels, ``sigmoid``
        of each logit.

    Returns:
      A model ending in ``Softmax``: its output, unchanged. Otherwise ``softmax`` of the
      logits (rows sum to 1), or ``sigmoid`` per output.

    Raises:
      ValueError: a regression loss, or a loss that does not take the model's output.
    """
    kind = task(model, loss)
    return probabilities(predict(model, params, x), model.outputs, kind)


def predict_classes(model: Layer, params: Params, x: Any, loss: str | None = None
                    ) -> jax.Array:
    """Predicted labels: ``argmax`` of the outputs ``[N]`` (one label per example), or
    ``logit > 0`` per output ``[N, C]`` (``loss="sigmoid_cross_entropy"``).

    Raises:
      ValueError: as :func:`predict_proba`.
    """
    kind = task(model, loss)
    if kind == "regression":
        raise ValueError(f"classes need a classification loss; got loss={loss!r}")
    out = predict(model, params, x)
    return jnp.argmax(out, axis=1) if kind == "multiclass" else (out > 0).astype(jnp.int32)
