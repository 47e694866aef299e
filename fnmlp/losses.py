"""Output heads and losses, each with its hand-derived gradient beside it.

Shapes: ``B`` batch, ``C`` network outputs (classes, or regression targets).

Every loss here takes the network output ``out: [B, C]`` and the targets and returns the
*per-example* loss ``[B]``; the training objective is its mean over the batch. Its
gradient function returns ``d loss_i / d out_i``, shape ``[B, C]`` (the gradient of the
batch mean is that divided by ``B``).

=======================  =====================  =========================================
name                     targets                per-example loss
=======================  =====================  =========================================
softmax_cross_entropy    int labels ``[B]``     ``logsumexp(z) - z[y]``, without cancellation
sigmoid_cross_entropy    0/1 ``[B, C]``         mean over C of ``-t log s(z) - (1-t) log(1-s(z))``
mse                      float ``[B, C]``       mean over C of ``(z - t)^2``
mae                      float ``[B, C]``       mean over C of ``|z - t|``
huber                    float ``[B, C]``       mean over C of Huber(z - t), delta = 1
=======================  =====================  =========================================

``categorical_cross_entropy`` (int labels ``[B]``) is ``-log p[y]`` of probabilities, for a
model that ends in a ``Softmax`` layer (its ``takes`` is ``"probabilities"``).

A loss is a value, :class:`Loss`: its name, kind, what output it takes, its function and
derivative. :data:`LOSSES` is the one registry; a public entry point turns a name into
the value once (:func:`get_loss`) and hands the value down, hashable, so it can key a
compiled program.

The means over C follow PyTorch's ``reduction="mean"`` for the elementwise losses.
All forms are numerically stable: logits of +-1e4 give finite losses and gradients, and
small losses keep their relative precision. At kinks (``mae`` at ``z = t``) both paths
take PyTorch's subgradient (``sign(0) = 0``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

HUBER_DELTA = 1.0


class Loss(NamedTuple):
    """A loss with its gradient. ``kind`` is ``"multiclass"``, ``"binary"`` or
    ``"regression"``: it decides what the targets look like and which metrics apply.
    ``takes`` is what the loss expects of the model's output: ``"logits"`` (raw scores or
    a regression prediction: the model's last layer is not a Softmax) or
    ``"probabilities"`` (a model that ends in ``Softmax``); see
    :attr:`fnmlp.layers.Layer.outputs`. Hashable (a static argument of a compiled
    program); a user's own loss is one more ``Loss(...)``, passed where a name goes."""

    name: str
    fn: Callable[[Array, Array], Array]  # (out [B, C], targets) -> [B]
    deriv: Callable[[Array, Array], Array]  # (out [B, C], targets) -> [B, C]
    kind: str  # "multiclass", "binary" or "regression"
    takes: str = "logits"  # or "probabilities"

    @property
    def classifies(self) -> bool:
        """Whether this is a classification loss (its kind is not ``"regression"``): the
        one place "is this classification?" is decided."""
        return self.kind != "regression"


def _top(logits: Array) -> tuple[Array, Array, Array]:
    """``(k, m, e)``: ``k = onehot(argmax z)`` ``[B, C]``, ``m = z_k`` ``[B, 1]`` and
    ``e = exp(z - m)`` off the argmax (0 at it) ``[B, C]``, so ``sum exp(z - m) = 1 + S``
    with ``S = sum(e)``. ``m`` is taken as ``sum(z k)``: its gradient goes to ``z_k``
    alone (``jnp.max`` would split a tie)."""
    k = jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=logits.dtype)
    m = jnp.sum(logits * k, axis=1, keepdims=True)  # [B, 1]
    e = jnp.exp(logits - m) * (1 - k)  # [B, C]; each in [0, 1]
    return k, m, e


def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """``loss(z, y) = logsumexp(z) - z_y = -log softmax(z)_y``; ``logits: [B, C]``,
    integer ``labels: [B]`` in ``[0, C)`` -> ``[B]``.

    Derivative: ``d loss / dz = softmax(z) - onehot(y)``.

    Computed as ``log1p(S) + (m - z_y)`` with ``m = max(z)`` and ``S`` the sum of
    ``exp(z_j - m)`` over every ``j`` but the argmax. Both terms are >= 0, so nothing
    cancels: a loss of 1e-30 in float32 (logits ``[1000, 990, 980]`` give 4.540e-5) is
    as accurate as a loss of 1, where ``logsumexp(z) - z_y`` loses all of it. ``z_y`` is
    ``sum(z * onehot(y))`` rather than a gather, so autodiff's backward is a multiply,
    not a scatter-add. Labels are range-checked on the host by the public functions
    (``one_hot`` zeroes a bad label).
    """
    onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)  # [B, C]
    _, m, e = _top(logits)
    margin = m[:, 0] - jnp.sum(logits * onehot, axis=1)  # m - z_y >= 0
    return jnp.log1p(jnp.sum(e, axis=1)) + margin


def d_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """``d loss / dz = softmax(z) - onehot(y)``, ``[B, C]``.

    With ``p_j = e_j / (1 + S)`` off the argmax ``k`` and ``p_k = 1 / (1 + S)``; when
    ``y = k`` the entry ``p_k - 1`` is computed as ``-S / (1 + S)``, without the
    cancellation of ``1/(1+S) - 1``.
    """
    onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)
    k, _, e = _top(logits)
    s = jnp.sum(e, axis=1, keepdims=True)  # [B, 1]
    y_is_top = jnp.sum(k * onehot, axis=1, keepdims=True)  # [B, 1], 1 where y = argmax
    top = jnp.where(y_is_top > 0, -s, jnp.ones_like(s)) / (1 + s)  # p_k - [y = k]
    return e / (1 + s) - onehot * (1 - k) + k * top


def categorical_cross_entropy(probs: Array, labels: Array) -> Array:
    """``loss(z, y) = -log z_y`` for probabilities ``z = probs: [B, C]`` (the output of a
    ``Softmax`` layer) and integer ``labels: [B]`` -> ``[B]``: the lesson's
    ``CrossEntropyLoss``, Keras's ``sparse_categorical_crossentropy(from_logits=False)``,
    PyTorch's ``NLLLoss`` of ``log(z)``.

    Derivative: ``d loss / dz = -onehot(y) / z_y``.

    Not clipped: a probability that rounds to 0 gives an infinite loss (in float32,
    ``softmax`` of logits ``[0, 104]`` already gives ``p_0 = 0``), where the fused
    ``softmax_cross_entropy`` on the logits returns 104. Prefer that one for training.
    """
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)  # [B, C]
    return -jnp.log(jnp.sum(probs * onehot, axis=1))


def d_categorical_cross_entropy(probs: Array, labels: Array) -> Array:
    """``d loss / dz = -onehot(y) / z_y`` (``z`` the probabilities), ``[B, C]``."""
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return -onehot / jnp.sum(probs * onehot, axis=1, keepdims=True)


def _pos_part(z: Array) -> Array:
    # max(z, 0) with the tie at z = 0 sent to the z branch (see sigmoid_cross_entropy)
    return jnp.where(z >= 0, z, jnp.zeros_like(z))


def _abs(z: Array) -> Array:
    # |z| with the tie at z = 0 sent to the z branch, like _pos_part
    return jnp.where(z >= 0, z, -z)


def sigmoid_cross_entropy(logits: Array, targets: Array) -> Array:
    """``loss(z, t) = mean_c [-t log s(z) - (1 - t) log(1 - s(z))]``, ``s = sigmoid``;
    ``logits: [B, C]``, ``targets: [B, C]`` in [0, 1] -> ``[B]``.

    Derivative: ``d loss / dz = (sigmoid(z) - t) / C``.

    Computed as ``max(z, 0) - z t + log1p(exp(-|z|))`` (as PyTorch's
    ``BCEWithLogitsLoss``): no overflow, and no cancellation when the loss is small.
    ``max`` and ``|.|`` have kinks at ``z = 0`` that cancel in the sum; both send the tie
    to the same branch, so autodiff gives the true derivative ``1/2 - t`` there too.
    """
    t = targets.astype(logits.dtype)
    elem = _pos_part(logits) - logits * t + jnp.log1p(jnp.exp(-_abs(logits)))
    return jnp.mean(elem, axis=1)


def d_sigmoid_cross_entropy(logits: Array, targets: Array) -> Array:
    """``d loss / dz = (sigmoid(z) - t) / C``."""
    t = targets.astype(logits.dtype)
    return (jax.nn.sigmoid(logits) - t) / logits.shape[1]


def mse(out: Array, targets: Array) -> Array:
    """``loss(z, t) = mean_c (z - t)^2``; ``out: [B, C]``, ``targets: [B, C]`` -> ``[B]``.

    Derivative: ``d loss / dz = 2 (z - t) / C``.
    """
    d = out - targets.astype(out.dtype)
    return jnp.mean(d * d, axis=1)


def d_mse(out: Array, targets: Array) -> Array:
    """``d loss / dz = 2 (z - t) / C``."""
    return 2 * (out - targets.astype(out.dtype)) / out.shape[1]


def mae(out: Array, targets: Array) -> Array:
    """``loss(z, t) = mean_c |z - t|``; ``out: [B, C]``, ``targets: [B, C]`` -> ``[B]``.

    Derivative: ``d loss / dz = sign(z - t) / C``, 0 where ``z = t`` (PyTorch's
    ``L1Loss`` subgradient). ``|d|`` is computed as ``d sign(d)`` so that autodiff takes
    the same value there (``jax.grad(jnp.abs)(0.)`` is 1).
    """
    d = out - targets.astype(out.dtype)
    return jnp.mean(d * jnp.sign(d), axis=1)


def d_mae(out: Array, targets: Array) -> Array:
    """``d loss / dz = sign(z - t) / C`` (0 at ``z = t``, as PyTorch)."""
    return jnp.sign(out - targets.astype(out.dtype)) / out.shape[1]


def huber(out: Array, targets: Array) -> Array:
    """``loss(z, t) = mean_c h(z - t)``, ``h(d) = d^2 / 2`` if ``|d| <= delta`` else
    ``delta (|d| - delta / 2)``, ``delta = HUBER_DELTA`` (1, as PyTorch's ``HuberLoss``).

    Derivative: ``d loss / dz = clip(d, -delta, delta) / C`` (continuous: no kink).
    """
    d = out - targets.astype(out.dtype)
    a = jnp.abs(d)
    elem = jnp.where(a <= HUBER_DELTA, 0.5 * d * d, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))
    return jnp.mean(elem, axis=1)


def d_huber(out: Array, targets: Array) -> Array:
    """``d loss / dz = clip(z - t, -delta, delta) / C``."""
    d = out - targets.astype(out.dtype)
    return jnp.clip(d, -HUBER_DELTA, HUBER_DELTA) / out.shape[1]


LOSSES: dict[str, Loss] = {
    x.name: x
    for x in [
        Loss("softmax_cross_entropy", softmax_cross_entropy, d_softmax_cross_entropy, "multiclass"),
        Loss("sigmoid_cross_entropy", sigmoid_cross_entropy, d_sigmoid_cross_entropy, "binary"),
        Loss("mse", mse, d_mse, "regression"),
        Loss("mae", mae, d_mae, "regression"),
        Loss("huber", huber, d_huber, "regression"),
        # of probabilities, for a model that ends in a Softmax layer
        Loss("categorical_cross_entropy", categorical_cross_entropy,
             d_categorical_cross_entropy, "multiclass", "probabilities"),
    ]
}  # the one registry: every built-in loss, by name

# Views of LOSSES by what each loss takes (not registries of their own)
LOGIT_LOSSES: dict[str, Loss] = {n: x for n, x in LOSSES.items() if x.takes == "logits"}
PROBABILITY_LOSSES: dict[str, Loss] = {n: x for n, x in LOSSES.items()
                                       if x.takes == "probabilities"}


@functools.lru_cache(maxsize=64)
def _check_own_loss(loss: Loss) -> None:
    """A user's :class:`Loss` keeps the contract the kernels rely on, checked on shapes
    alone (``jax.eval_shape`` of a batch of 3 with 2 outputs): ``fn`` returns one value
    per example ``[B]`` (not the batch mean: the weighted mean and the padded evaluation
    take it per example), ``deriv`` one per output ``[B, C]``; ``kind`` and ``takes`` are
    known words. ``ValueError`` naming what is wrong."""
    if not isinstance(loss.name, str) or not callable(loss.fn) or not callable(loss.deriv):
        raise ValueError(f"a Loss needs a name (str) and callable fn and deriv; got {loss!r}"
                         [:300])
    if loss.kind not in ("multiclass", "binary", "regression"):
        raise ValueError(f"loss {loss.name!r}: kind must be 'multiclass', 'binary' or"
                         f" 'regression'; got {loss.kind!r}")
    if loss.takes not in ("logits", "probabilities"):
        raise ValueError(f"loss {loss.name!r}: takes must be 'logits' or 'probabilities';"
                         f" got {loss.takes!r}")
    out = jax.ShapeDtypeStruct((3, 2), jnp.float32)
    targets = (jax.ShapeDtypeStruct((3,), jnp.int32) if loss.kind == "multiclass"
               else jax.ShapeDtypeStruct((3, 2), jnp.float32))
    for what, f, want in (("fn", loss.fn, (3,)), ("deriv", loss.deriv, (3, 2))):
        try:
            shape = jax.eval_shape(f, out, targets).shape
        except Exception as e:  # noqa: BLE001  (the user's function: say which failed)
            raise ValueError(f"loss {loss.name!r}: {what}(out [3, 2], targets) failed:"
                             f" {type(e).__name__}: {str(e)[:200]}") from None
        if shape != want:
            expected = ("[B] (one value per example, not the batch mean)" if what == "fn"
                        else "[B, C]")
            raise ValueError(f"loss {loss.name!r}: {what}(out [B, C], targets) must return"
                             f" shape {expected}; got {shape} for B=3, C=2")


def get_loss(loss: str | Loss) -> Loss:
    """The :class:`Loss` called ``loss`` (a name of :data:`LOSSES`), or ``loss`` itself
    when it is a Loss already: what every public entry point does once, at the edge, before
    handing the value down. A ``ValueError`` lists the valid names."""
    if isinstance(loss, Loss):
        if LOSSES.get(loss.name) is not loss:  # a user's own: its contract, checked once
            try:
                _check_own_loss(loss)
            except TypeError:  # lru_cache: an unhashable field
                raise ValueError(f"loss {loss.name!r}: a Loss must be hashable (a static"
                                 " argument of the compiled programs): give fn and deriv as"
                                 " plain functions, not objects holding arrays") from None
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {loss!r}")
    return LOSSES[loss]


def check_loss_for_model(loss: str | Loss, outputs: str) -> Loss:
    """The loss ``loss`` (a name or a :class:`Loss`), checked against what the model
    outputs (``"logits"`` or ``"probabilities"``, :attr:`fnmlp.layers.Layer.outputs`).

    Raises:
      ValueError: an unknown loss, or one that takes the other kind of output, with one
        line that says what to change: a loss on logits after a ``Softmax`` would apply
        softmax twice; a loss of probabilities on logits would take ``log`` of raw scores.
    """
    lossdef = get_loss(loss)
    if lossdef.takes == outputs:
        return lossdef
    name = lossdef.name
    if outputs == "probabilities":
        fix = ("use loss='categorical_cross_entropy' (it takes probabilities)"
               if lossdef.kind == "multiclass" else "drop the final Softmax layer")
        raise ValueError(f"the model ends in a Softmax layer, so it outputs probabilities, and"
                         f" loss {name!r} takes logits (softmax would be applied twice): {fix},"
                         " or drop the final Softmax layer and keep the loss")
    raise ValueError(f"loss {name!r} takes probabilities, and the model outputs logits (its"
                     " last layer is not a Softmax): add Softmax() as the last layer, or use"
                     " loss='softmax_cross_entropy' on the logits (the stable choice)")


def task_of(loss: str | Loss | None, outputs: str, n_out: int) -> str:
    """What a model predicts, decided here for every entry point: ``"multiclass"`` (one
    label of ``C``), ``"binary"`` (independent sigmoid labels) or ``"regression"``.

    Args:
      loss: the loss the model was trained with (a name or a :class:`Loss`), or None.
      outputs: what the model outputs, ``"logits"`` or ``"probabilities"``.
      n_out: its output width ``C`` (0 when not known yet: only the loss is checked).

    Returns:
      The loss's kind when given; else ``"binary"`` for one output of logits (the only
      classifier one logit makes: ``sigmoid``, class ``logit > 0``) and ``"multiclass"``
      otherwise.

    Raises:
      ValueError: a loss that does not take the model's output, or a multiclass task with
        one output (softmax of one output is 1 whatever it is: every answer constant).
    """
    if loss is None:
        kind = "binary" if n_out == 1 and outputs == "logits" else "multiclass"
    else:
        kind = check_loss_for_model(loss, outputs).kind
    return check_outputs(kind, n_out)


def check_outputs(kind: str, n_out: int) -> str:
    """``kind`` when a model with ``n_out`` outputs can do it; ``ValueError`` for a
    multiclass task with one output (softmax of one output is 1 whatever it is)."""
    if kind == "multiclass" and n_out == 1:
        raise ValueError(
            "a model with one output cannot pick one label of C (softmax of one output is"
            " 1 whatever it is): for two classes use loss='sigmoid_cross_entropy' on one"
            " logit (and no final Softmax), or give the model 2 outputs")
    return kind


# ----------------------------------------------------------------------------- metrics


def positive(out: Array, takes: str = "logits") -> Array:
    """A binary output's class, ``[B, C]`` booleans: ``out > 0`` for logits, ``out > 0.5``
    for probabilities (``sigmoid(z) > 0.5`` exactly when ``z > 0``): the one place a
    binary output becomes a label (accuracy, ``predict_classes``, the class report)."""
    return out > (0.5 if takes == "probabilities" else 0)


def correct(out: Array, targets: Array, loss: str | Loss | None) -> Array:
    """Per-example correctness ``[B]`` as a float in [0, 1], for outputs ``out [B, C]``.

    Multiclass: ``argmax(out) == label`` (labels ``[B]``). Binary / multi-label: the
    fraction of the C outputs whose sign (``out > 0``, i.e. probability > 0.5) matches the
    0/1 target ``[B, C]`` (``[B]`` when ``C = 1``). ``loss=None`` reads the task off ``C``
    (:func:`task_of`: one output is binary). Regression losses have no accuracy.

    Raises:
      ValueError: a regression loss, or targets whose shape does not fit ``out`` (they
        would broadcast to ``[B, B]``).
    """
    kind = task_of(None, "logits", out.shape[1]) if loss is None else get_loss(loss).kind
    if kind == "multiclass":
        if targets.shape != out.shape[:1]:
            raise ValueError(f"targets must be labels of shape {out.shape[:1]}; got shape"
                             f" {targets.shape}")
        return (jnp.argmax(out, axis=1) == targets).astype(jnp.float32)
    if kind == "binary":
        if targets.ndim == 1 and out.shape[1] == 1:
            targets = targets[:, None]  # [B] -> [B, 1]
        if targets.shape != out.shape:
            raise ValueError(f"targets must have shape {out.shape} (or ({out.shape[0]},) for"
                             f" one output); got shape {targets.shape}")
        hit = positive(out, "logits" if loss is None else get_loss(loss).takes) == (
            targets > 0.5)
        return jnp.mean(hit.astype(jnp.float32), axis=1)
    raise ValueError(f"accuracy is defined for classification losses; got"
                     f" loss={get_loss(loss).name!r}")


def accuracy(out: Array, targets: Array, loss: str | Loss | None = None) -> Array:
    """Mean accuracy over the batch, a scalar in [0, 1] (see :func:`correct`; ``loss``
    None: a one-output model is binary, more outputs multiclass)."""
    return jnp.mean(correct(out, targets, loss))


def zero_one_loss(out: Array, targets: Array, loss: str | Loss | None = None) -> Array:
    """The 0-1 loss, ``1 - accuracy``: the fraction of examples classified wrongly."""
    return 1 - accuracy(out, targets, loss)
