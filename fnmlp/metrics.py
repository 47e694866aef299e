"""Per-class metrics: what accuracy hides on imbalanced data.

Shapes: ``N`` examples, ``C`` classes.

With 95% of the examples in class 0, predicting 0 everywhere scores 0.95 accuracy and 0
recall on class 1. :func:`per_class_metrics` counts the confusion matrix and reads off,
as scikit-learn's ``precision_recall_fscore_support`` and ``balanced_accuracy_score``::

    confusion[t, p] = #{i : y_true_i = t, y_pred_i = p}     # [C, C], rows true
    precision_c = confusion[c, c] / sum_t confusion[t, c]   # of the predicted c, right
    recall_c    = confusion[c, c] / sum_p confusion[c, p]   # of the true c, found
    balanced_accuracy = mean of recall_c over the classes present in y_true

A ratio with a zero denominator (a class never predicted, or absent) is 0, as
scikit-learn's ``zero_division`` default reports it. Counts are unweighted.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp.losses import Loss, positive
from fnmlp.prediction import jitted_apply
from fnmlp.weights import class_of_examples

__all__ = ["classification_report", "confusion_matrix", "per_class_metrics"]


def _labels(a: Any, n_classes: int, name: str) -> np.ndarray:
    checks.refuse_sparse(a, name)
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class labels of shape (N,); got"
                         f" {a.dtype} of shape {a.shape}")
    bad = (a < 0) | (a >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} labels must be in [0, {n_classes}); got {a[i]} at index {i}")
    return a.astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """``[C, C]`` int counts: row ``t`` (true class), column ``p`` (predicted), as
    scikit-learn's ``confusion_matrix(y_true, y_pred, labels=range(C))``."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or (
            n_classes < 1):
        raise ValueError(f"n_classes must be an integer >= 1; got {n_classes!r}")
    t, p = _labels(y_true, n_classes, "y_true"), _labels(y_pred, n_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length; got {len(t)} and"
                         f" {len(p)}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1), 0.0)


def per_class_metrics(y_true: Any, y_pred: Any, n_classes: int) -> dict:
    """Precision, recall and support per class, accuracy and balanced accuracy.

    Args:
      y_true, y_pred: integer labels ``[N]`` in ``[0, C)``.
      n_classes: ``C``.

    Returns:
      ``{"confusion_matrix": [C][C], "precision": [C], "recall": [C], "support": [C],
      "accuracy": float, "balanced_accuracy": float}`` (plain lists and floats: JSON-able).

    Raises:
      ValueError: labels that are not integers ``[N]`` in ``[0, C)``, or lengths that
        differ.

    Examples:
      >>> m = per_class_metrics([0, 0, 0, 1], [0, 0, 1, 0], 2)
      >>> m["recall"], m["balanced_accuracy"]
      ([0.6666666666666666, 0.0], 0.3333333333333333)
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    diag = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)  # [C] true examples per class
    recall = _ratio(diag, support)
    precision = _ratio(diag, cm.sum(axis=0))
    present = support > 0
    n = int(cm.sum())
    return {
        "confusion_matrix": cm.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "support": support.tolist(),
        "accuracy": float(diag.sum() / n) if n else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
    }


def classification_report(model: Any, params: Any, x: Any, y: Any,
                          loss: str | Loss = "softmax_cross_entropy") -> dict:
    """:func:`per_class_metrics` of a model's predictions on ``(x, y)`` (evaluation mode).

    Args:
      model, params, x, y, loss: as :func:`fnmlp.evaluate`. The classes are the labels
        (``C`` outputs) of a multiclass loss, or 0/1 for ``sigmoid_cross_entropy`` with
        one output (predicted 1 where the logit is > 0).

    Returns:
      The dict of :func:`per_class_metrics`.

    Raises:
      ValueError: bad inputs (as :func:`fnmlp.evaluate`), a regression loss, or several
        sigmoid outputs (multi-label).
    """
    model, lossdef = checks.check_config(model, loss)
    if not lossdef.classifies:
        raise ValueError(f"per-class metrics need a classification loss; got"
                         f" loss={lossdef.name!r}")
    x, y, _, n_out = checks.check_data(model, params, x, y, lossdef)
    true = class_of_examples(y, lossdef)
    out = jax.device_get(jitted_apply(model)(params, x))  # [N, C]; x checked above
    if lossdef.kind == "multiclass":
        n_classes = n_out
        pred = np.asarray(jnp.argmax(out, axis=1))
    else:
        n_classes, pred = 2, np.asarray(positive(out[:, :1], model.outputs))[:, 0].astype(
            np.int64)
    return per_class_metrics(true, pred, n_classes)
