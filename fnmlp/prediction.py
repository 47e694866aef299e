"""Using a trained model: outputs, probabilities, classes.

Shapes: ``N`` examples, ``D`` input features, ``C`` outputs.

The model says what it outputs (:attr:`fnmlp.layers.Layer.outputs`): a model that ends in
``Softmax`` outputs probabilities, which :func:`predict_proba` returns as they are; any
other model outputs logits, turned into probabilities by ``softmax`` (one label per
example) or, with ``loss="sigmoid_cross_entropy"``, ``sigmoid`` per output (independent
labels). Softmax is never applied twice: a loss that does not take the model's output is
refused.

What a model predicts is decided in one place, :func:`task`, from the loss when given and
otherwise from the model itself: a model with **one output** is a binary classifier
(``sigmoid`` of its logit, class ``logit > 0``: the softmax of one logit is 1 whatever
it is), a model with more outputs a multiclass one. Every entry point asks it
(:func:`predict_proba`, :func:`predict_classes`, :func:`fnmlp.population.ensemble_predict_proba`,
``SavedModel``, ``scripts/predict.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from fnmlp import _validate as checks
from fnmlp.grad import Params
from fnmlp.layers import Layer, check_model
from fnmlp.losses import Loss, check_loss_for_model, check_outputs, positive, task_of

__all__ = ["predict", "predict_classes", "predict_proba", "probabilities", "task"]


@functools.lru_cache(maxsize=64)
def jitted_apply(model: Layer):
    return jax.jit(lambda p, x: model.apply(p, x))


def predict(model: Layer, params: Params, x: Any) -> jax.Array:
    """Outputs ``[N, C]`` for inputs ``[N, D]``, in evaluation mode (no dropout): logits,
    probabilities (a model ending in ``Softmax``) or the regression prediction.

    Raises:
      ValueError: ``model`` is not a Layer, params that do not fit it, or bad ``x``.
    """
    model = check_model(model)
    return jitted_apply(model)(params, checks.check_x(model, params, x, checked=True))


def task(model: Layer, loss: str | Loss | None, n_out: int) -> str:
    """What the model predicts: ``"multiclass"`` (one label of ``C``), ``"binary"``
    (independent sigmoid labels) or ``"regression"``.

    Args:
      model: the Layer.
      loss: the loss it was trained with (a name or a Loss), or None.
      n_out: its output width ``C``.

    Returns:
      The loss's kind when given (checked against the model's output); else ``"binary"``
      for a one-output model ending in logits (``C = 1``: the only classifier one logit
      makes) and ``"multiclass"`` otherwise.

    Raises:
      ValueError: a loss that does not take the model's output, or a multiclass task
        with one output (:func:`fnmlp.losses.task_of`, where this is decided).
    """
    return task_of(loss, check_model(model).outputs, n_out)


def probabilities(out: jax.Array, outputs: str, kind: str) -> jax.Array:
    """Network outputs ``[..., N, C]`` -> probabilities: ``out`` itself when the model
    outputs probabilities, else ``softmax`` (multiclass) or ``sigmoid`` (binary)."""
    if kind == "regression":
        raise ValueError("probabilities need a classification loss; got a regression loss")
    if outputs == "probabilities":
        return out
    return jax.nn.softmax(out, axis=-1) if kind == "multiclass" else jax.nn.sigmoid(out)


def model_and_loss(model: Any, loss: str | Loss | None) -> tuple[Layer, Loss | None]:
    """The boundary check of :func:`predict_proba` and :func:`predict_classes`: the model,
    and the loss (resolved once, checked against the model's output) or None."""
    model = check_model(model)
    return model, None if loss is None else check_loss_for_model(loss, model.outputs)


def kind_of(model: Layer, loss: Loss | None, n_out: int) -> str:
    """:func:`task` for a model and loss already checked together."""
    return task_of(None, model.outputs, n_out) if loss is None else check_outputs(loss.kind,
                                                                                  n_out)


def predict_proba(model: Layer, params: Params, x: Any, loss: str | Loss | None = None
                  ) -> jax.Array:
    """Class probabilities ``[N, C]``.

    Args:
      model, params, x: as :func:`predict`.
      loss: the loss the model was trained with (a name or a Loss); None reads the task
        off the model (:func:`task`: one output, a binary classifier; more, one label per
        example). ``"sigmoid_cross_entropy"``: independent labels, ``sigmoid`` of each
        logit.

    Returns:
      A model ending in ``Softmax``: its output, unchanged. Otherwise ``softmax`` of the
      logits (rows sum to 1), or ``sigmoid`` per output (``[N, 1]`` for one output: the
      probability of class 1).

    Raises:
      ValueError: a regression loss, or a loss that does not take the model's output.
    """
    model, lossdef = model_and_loss(model, loss)  # before any work
    out = jitted_apply(model)(params, checks.check_x(model, params, x, checked=True))
    return probabilities(out, model.outputs, kind_of(model, lossdef, out.shape[-1]))


def predict_classes(model: Layer, params: Params, x: Any, loss: str | Loss | None = None
                    ) -> jax.Array:
    """Predicted labels: ``argmax`` of the outputs ``[N]`` (one label per example), or
    ``logit > 0`` per output ``[N, C]`` (``loss="sigmoid_cross_entropy"``); a one-output
    model's labels are ``[N]`` of 0/1 (:func:`task`), comparable with ``y [N]``.

    Raises:
      ValueError: as :func:`predict_proba`.
    """
    model, lossdef = model_and_loss(model, loss)
    if lossdef is not None and not lossdef.classifies:
        raise ValueError(f"classes need a classification loss; got loss={lossdef.name!r}")
    out = jitted_apply(model)(params, checks.check_x(model, params, x, checked=True))
    if kind_of(model, lossdef, out.shape[-1]) == "multiclass":
        return jnp.argmax(out, axis=1)
    labels = positive(out, model.outputs).astype(jnp.int32)  # [N, C]
    return labels[:, 0] if out.shape[-1] == 1 else labels
