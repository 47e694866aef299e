"""Output heads and losses, each with its hand-derived gradient beside it.

Shapes: ``B`` batch, ``C`` network outputs (classes, or regression targets).

Every loss here takes the network output ``out: [B, C]`` and the targets and returns the
*per-example* loss ``[B]``; the training objective is its mean over the batch. Its
gradient function returns ``d loss_i / d out_i``, shape ``[B, C]`` (the gradient of the
batch mean is that divided by ``B``).

=======================  =====================  =========================================
name                     targets                per-example loss
=======================  =====================  =========================================
softmax_cross_entropy    int labels ``[B]``     ``logsumexp(z) - z[y]``
sigmoid_cross_entropy    0/1 ``[B, C]``         mean over C of ``-t log s(z) - (1-t) log(1-s(z))``
mse                      float ``[B, C]``       mean over C of ``(z - t)^2``
mae                      float ``[B, C]``       mean over C of ``|z - t|``
huber                    float ``[B, C]``       mean over C of Huber(z - t), delta = 1
=======================  =====================  =========================================

The means over C follow PyTorch's ``reduction="mean"`` for the elementwise losses.
All forms are numerically stable: logits of +-1e4 give finite losses and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

HUBER_DELTA = 1.0


class Loss(NamedTuple):
    """A loss with its gradient. ``kind`` is ``"multiclass"``, ``"binary"`` or
    ``"regression"``: it decides what the targets look like and which metrics apply."""

    name: str
    fn: Callable[[Array, Array], Array]  # (out [B, C], targets) -> [B]
    deriv: Callable[[Array, Array], Array]  # (out [B, C], targets) -> [B, C]
    kind: str


# softmax_cross_entropy(z, y) = logsumexp(z) - z[y]
def softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    """``logits: [B, C]``, integer ``labels: [B]`` in ``[0, C)`` -> ``[B]``.

    ``z[y]`` is taken as ``sum(z * onehot(y))`` rather than a gather: its autodiff
    backward is then a multiply instead of a scatter-add (slower on CPU). Labels are
    range-checked on the host by the public functions (one_hot zeroes a bad label).
    """
    onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)  # [B, C]
    return jax.nn.logsumexp(logits, axis=1) - jnp.sum(logits * onehot, axis=1)


# d/dz softmax_cross_entropy = softmax(z) - onehot(y)
def d_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
    onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)
    return jax.nn.softmax(logits, axis=1) - onehot


# sigmoid_cross_entropy(z, t) = mean_c [max(z, 0) - z t + log1p(exp(-|z|))]
def sigmoid_cross_entropy(logits: Array, targets: Array) -> Array:
    """``logits: [B, C]``, ``targets: [B, C]`` in [0, 1] -> ``[B]``."""
    t = targets.astype(logits.dtype)
    elem = jnp.maximum(logits, 0) - logits * t + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.mean(elem, axis=1)


# d/dz sigmoid_cross_entropy = (sigmoid(z) - t) / C
def d_sigmoid_cross_entropy(logits: Array, targets: Array) -> Array:
    t = targets.astype(logits.dtype)
    return (jax.nn.sigmoid(logits) - t) / logits.shape[1]


# mse(z, t) = mean_c (z - t)^2
def mse(out: Array, targets: Array) -> Array:
    """``out: [B, C]``, ``targets: [B, C]`` -> ``[B]``."""
    d = out - targets.astype(out.dtype)
    return jnp.mean(d * d, axis=1)


# d/dz mse = 2 (z - t) / C
def d_mse(out: Array, targets: Array) -> Array:
    return 2 * (out - targets.astype(out.dtype)) / out.shape[1]


# mae(z, t) = mean_c |z - t|
def mae(out: Array, targets: Array) -> Array:
    """``out: [B, C]``, ``targets: [B, C]`` -> ``[B]``."""
    return jnp.mean(jnp.abs(out - targets.astype(out.dtype)), axis=1)


# d/dz mae = sign(z - t) / C   (0 at z == t, as jnp.abs)
def d_mae(out: Array, targets: Array) -> Array:
    return jnp.sign(out - targets.astype(out.dtype)) / out.shape[1]


# huber(d) = d^2 / 2 if |d| <= delta else delta (|d| - delta / 2),  d = z - t
def huber(out: Array, targets: Array) -> Array:
    """``out: [B, C]``, ``targets: [B, C]`` -> ``[B]``."""
    d = out - targets.astype(out.dtype)
    a = jnp.abs(d)
    elem = jnp.where(a <= HUBER_DELTA, 0.5 * d * d, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))
    return jnp.mean(elem, axis=1)


# d/dz huber = clip(d, -delta, delta) / C
def d_huber(out: Array, targets: Array) -> Array:
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
    ]
}


def get_loss(name: str) -> Loss:
    """Returns the loss called ``name``; a ``ValueError`` lists the valid names."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got {name!r}")
    return LOSSES[name]


# ----------------------------------------------------------------------------- metrics


def correct(out: Array, targets: Array, loss: str) -> Array:
    """Per-example correctness ``[B]`` as a float in [0, 1].

    Multiclass: ``argmax(out) == label``. Binary / multi-label: the fraction of the C
    outputs whose sign (``out > 0``, i.e. probability > 0.5) matches the 0/1 target.
    Regression losses have no accuracy: a ``ValueError`` says so.
    """
    kind = get_loss(loss).kind
    if kind == "multiclass":
        return (jnp.argmax(out, axis=1) == targets).astype(jnp.float32)
    if kind == "binary":
        hit = (out > 0) == (targets > 0.5)
        return jnp.mean(hit.astype(jnp.float32), axis=1)
    raise ValueError(f"accuracy is defined for classification losses; got loss={loss!r}")


def accuracy(out: Array, targets: Array, loss: str = "softmax_cross_entropy") -> Array:
    """Mean accuracy over the batch, a scalar in [0, 1] (see :func:`correct`)."""
    return jnp.mean(correct(out, targets, loss))


def zero_one_loss(out: Array, targets: Array, loss: str = "softmax_cross_entropy") -> Array:
    """The 0-1 loss, ``1 - accuracy``: the fraction of examples classified wrongly."""
    return 1 - accuracy(out, targets, loss)
