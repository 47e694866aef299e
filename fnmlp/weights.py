"""Sample and class weights: checked on the host, turned into one weight per example.

Shapes: ``N`` examples, ``C`` classes.

The weighted loss of a minibatch is the weighted mean, as PyTorch's
``CrossEntropyLoss(weight=w, reduction="mean")``::

    L = sum_i w_i loss_i / sum_i w_i            # w_i = sample_weight_i * class_weight[y_i]

so for class weights alone and ``softmax_cross_entropy`` it is PyTorch's documented
``sum_n w_{y_n} (-log softmax(x_n)[y_n]) / sum_n w_{y_n}``. Both given: the weight is
their product, as Keras multiplies ``sample_weight`` by ``class_weight[y]``.

``class_weight="balanced"`` has scikit-learn's meaning (``compute_class_weight``):
``n_samples / (n_classes * count_c)`` for each class ``c`` present in ``y``; ``n_classes``
counts the classes present. A dict ``{label: weight}`` weighs the listed classes and
leaves the others at 1 (as scikit-learn and Keras).

Class weights need a class per example: integer labels (``softmax_cross_entropy``,
``categorical_cross_entropy``) or a single 0/1 output (``sigmoid_cross_entropy`` with
``C == 1``). Everything here runs on the host, before anything compiles, and raises
``ValueError`` naming the argument, what was expected and what arrived.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp.losses import Loss, get_loss

__all__ = ["class_of_examples", "compute_class_weight", "compute_sample_weight"]


def class_of_examples(y: Any, loss: str | Loss, name: str = "y") -> np.ndarray:
    """The class of each example ``[N]`` int, for class weights and per-class metrics:
    the labels of a multiclass loss, or the 0/1 target of ``sigmoid_cross_entropy`` with
    one output. ``ValueError`` for regression losses, several outputs or soft targets."""
    lossdef = get_loss(loss)
    kind = lossdef.kind
    y = np.asarray(y)
    if kind == "multiclass":
        return y.astype(np.int64).reshape(-1)
    if kind == "binary":
        if y.ndim == 2 and y.shape[1] != 1:
            raise ValueError(f"class weights and per-class metrics need one class per"
                             f" example; {name} has {y.shape[1]} binary outputs per example"
                             f" (multi-label): give sample_weight instead")
        t = y.reshape(-1)
        soft = (t != 0) & (t != 1)
        if soft.any():
            i = int(np.argmax(soft))
            raise ValueError(f"class weights need hard 0/1 targets in {name}; got {t[i]} at"
                             f" index {i}")
        return t.astype(np.int64)
    raise ValueError(f"class_weight needs a classification loss; got loss={lossdef.name!r} (a"
                     f" regression loss: give sample_weight instead)")


def compute_class_weight(class_weight: Any, classes: np.ndarray, n_classes: int
                         ) -> np.ndarray:
    """One weight per class ``[C]`` (float64) from ``"balanced"`` or ``{label: weight}``.

    Args:
      class_weight: ``"balanced"`` (scikit-learn's ``compute_class_weight``:
        ``n_samples / (n_classes_present * count_c)``) or a dict of class label -> weight
        (finite, >= 0); classes not listed weigh 1.
      classes: the class of each example ``[N]`` (see :func:`class_of_examples`).
      n_classes: ``C``, the number of classes the model outputs.

    Raises:
      ValueError: anything else, a label outside ``[0, C)``, a negative or non-finite
        weight.

    Examples:
      >>> compute_class_weight("balanced", np.array([0, 0, 0, 1]), 2).tolist()
      [0.6666666666666666, 2.0]
    """
    classes = np.asarray(classes).astype(np.int64)
    counts = np.bincount(classes, minlength=n_classes).astype(np.float64)  # [C]
    if isinstance(class_weight, str) and class_weight == "balanced":
        present = counts > 0
        out = np.ones(n_classes)
        out[present] = len(classes) / (present.sum() * counts[present])
        return out
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be 'balanced' or a dict {{label: weight}}; got"
                         f" {class_weight!r}"[:200])
    out = np.ones(n_classes)
    for label, w in class_weight.items():
        ok_label = isinstance(label, numbers.Integral) and not isinstance(label, bool)
        if not ok_label or not 0 <= int(label) < n_classes:
            raise ValueError(f"class_weight keys must be class labels in [0, {n_classes});"
                             f" got {label!r}")
        ok = isinstance(w, numbers.Real) and not isinstance(w, bool) and np.isfinite(w)
        if not ok or w < 0:
            raise ValueError(f"class_weight[{label}] must be a finite number >= 0; got {w!r}")
        out[int(label)] = float(w)
    return out


def compute_sample_weight(y: Any, loss: str | Loss, n_classes: int, sample_weight: Any = None,
                          class_weight: Any = None, n: int | None = None,
                          names: tuple[str, str] = ("sample_weight", "class_weight"),
                          y_name: str = "y") -> np.ndarray | None:
    """The weight of each example ``[N]`` (float64), or None when neither is given.

    ``sample_weight`` (``[N]``, finite, >= 0) times ``class_weight[class of example]``
    (:func:`compute_class_weight`). ``y`` are checked targets, ``n_classes`` the model's
    outputs (2 for one sigmoid output). The total weight must be > 0.

    Raises:
      ValueError: a weight of the wrong shape, negative or non-finite; a bad
        ``class_weight``; every weight zero.
    """
    if sample_weight is None and class_weight is None:
        return None
    n = len(np.asarray(y)) if n is None else n
    w = np.ones(n)
    if sample_weight is not None:
        sw = checks.as_numeric_array(sample_weight, names[0])
        if checks.is_traced(sw):
            raise ValueError(f"{names[0]} must be a concrete array (checked on the host);"
                             f" got a traced value")
        sw = np.asarray(sw, np.float64)
        if sw.shape != (n,):
            raise ValueError(f"{names[0]} must have shape ({n},), one weight per example;"
                             f" got shape {sw.shape}")
        checks.check_finite(sw, names[0])
        if (sw < 0).any():
            i = int(np.argmax(sw < 0))
            raise ValueError(f"{names[0]} must be >= 0; got {sw[i]} at index {i}")
        w = w * sw
    if class_weight is not None:
        classes = class_of_examples(y, loss, y_name)
        n_classes = 2 if get_loss(loss).kind == "binary" else n_classes  # one 0/1 output
        w = w * compute_class_weight(class_weight, classes, n_classes)[classes]
    if not w.sum() > 0:
        raise ValueError(f"the weights must not all be zero ({names[0]} times"
                         f" {names[1]}[label]); got a total of {w.sum()} over {n} examples")
    return w


def check_weights(model: Any, params: Any, x: Any, y: Any, loss: str | Loss,
                  sample_weight: Any = None, class_weight: Any = None,
                  names=("sample_weight", "class_weight", "y"), n_out: int | None = None
                  ) -> Any:
    """Per-example weights ``[B]`` for a batch already checked by
    :func:`fnmlp._validate.check_batch` (see :func:`compute_sample_weight`), in the params'
    float dtype; None when neither weight is given. On the host: nothing compiles.

    The weighted mean ``sum(w l) / sum(w)`` does not change when ``w`` is scaled, so the
    largest weight is scaled to 1 on the host (float64): 1e-46 or 1e39 neither underflow
    nor overflow in the params' dtype. ``n_out``: the model's output width when the
    caller checked it already (:func:`fnmlp._validate.check_data` returns it).
    """
    if sample_weight is None and class_weight is None:
        return None
    if n_out is None:
        _, n_out = checks.check_model_params(model, params, x.shape[-1])
    w = compute_sample_weight(y, loss, n_out, sample_weight, class_weight, x.shape[0],
                              names[:2], names[2])
    w = np.asarray(w, np.float64)
    return jnp.asarray(w / np.max(w), dtype=checks.dtype_of(params))
