"""Per-example gradients: ``jax.vmap`` of one example's gradient, chunked to fit memory.

Shapes: ``B`` examples, ``P`` numbers in the params.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import numpy as np

from fnmlp import _validate as checks
from fnmlp.grad import Params, value_and_grad_fn
from fnmlp.layers import Layer
from fnmlp.losses import Loss

Array = jax.Array


def per_example_grads(model: Layer, params: Params, x: Array, y: Array,
                      loss: str | Loss = "softmax_cross_entropy", grad: str = "autodiff", *,
                      chunk_size: int | None = None) -> Params:
    """Per-example gradients: ``jax.vmap`` of the gradient of one example's loss
    (evaluation mode: no dropout), in one compiled program per configuration.

    Args:
      model: a :class:`~fnmlp.layers.Layer`.
      params: the model's params (``P`` numbers in all).
      x: inputs ``[B, D]``; y: labels ``[B]`` or targets ``[B, C]``.
      loss: as for :func:`fnmlp.loss`.
      grad: ``"autodiff"`` (``jax.grad``) or ``"manual"`` (the hand-derived backward).
      chunk_size: compute this many examples at a time (``jax.lax.map`` over chunks of a
        ``vmap``; the last chunk may be smaller): the same result (to float round-off)
        with the working memory of one chunk; default: all at once.

    Returns:
      A pytree like ``params`` whose leaves have a leading batch axis ``[B, ...]``; their
      mean over that axis is the batch gradient.

    Raises:
      ValueError: bad inputs; or, before anything compiles, when the result and working
        memory (:func:`per_example_memory`) exceed 80% of the memory available on the
        device (``fnmlp._validate.device_memory_available``): the
        message gives a ``chunk_size`` that fits, or, when the ``B * P`` numbers of the
        result alone do not fit, the largest ``B`` that does.
    """
    model, lossdef = checks.check_config(model, loss, grad)
    x, y, *_ = checks.check_data(model, params, x, y, lossdef)
    if chunk_size is not None:
        chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
    b = int(x.shape[0])
    chunk = b if chunk_size is None else min(chunk_size, b)
    check_per_example_memory(params, x, grad, chunk)
    return _per_example_program(model, lossdef, grad, None if chunk == b else chunk)(params, x,
                                                                                      y)


# working memory of the vmapped gradient, per example, in units of the params' size, from
# XLA's memory_analysis of 784-1024-1024-10 at B = 256 and 512 (CPU, jax 0.10.2): the
# autodiff path 0.56, the manual one 0.001 (rounded up here)
PER_EXAMPLE_WORK = {"autodiff": 0.6, "manual": 0.1}


def per_example_memory(params: Params, x: Array, grad: str = "autodiff",
                       chunk_size: int | None = None) -> tuple[int, int]:
    """``(result_bytes, working_bytes)`` of :func:`per_example_grads`: the result is ``B``
    copies of the params; the working memory is the inputs plus, per example of a chunk,
    :data:`PER_EXAMPLE_WORK` times the params' bytes. Shapes only: nothing is computed."""
    leaves = jax.tree.leaves(params)
    param_bytes = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in leaves)
    b = int(x.shape[0])
    chunk = b if chunk_size is None else min(int(chunk_size), b)
    x_bytes = int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
    return b * param_bytes, x_bytes + int(math.ceil(chunk * param_bytes * PER_EXAMPLE_WORK[grad]))


def check_per_example_memory(params: Params, x: Array, grad: str, chunk: int) -> None:
    """Raises the ``ValueError`` of :func:`per_example_grads` when it would not fit."""
    result, work = per_example_memory(params, x, grad, chunk)
    have = 0.8 * checks.device_memory_available()
    if result + work <= have:
        return
    b, gib = int(x.shape[0]), 2**30
    per = result / b * PER_EXAMPLE_WORK[grad]  # working bytes per example of a chunk
    fixed = result + work - chunk * per  # the result and the inputs: any chunk needs them
    if fixed + per > have:
        most = int(have / (result / b + per))
        raise ValueError(
            f"per_example_grads of {b} examples needs about {result / gib:.1f} GiB for the"
            f" result alone ({b} copies of the params, {result / b / 2**20:.1f} MiB each);"
            f" {have / gib:.1f} GiB (80% of the available memory) can be used: pass at most"
            f" about {most} examples per call")
    fits = max(min(int((have - fixed) / per), b - 1), 1)
    given = "None (all at once)" if chunk >= b else str(chunk)
    raise ValueError(
        f"per_example_grads of {b} examples with chunk_size={given} needs about"
        f" {(result + work) / gib:.1f} GiB ({result / gib:.1f} GiB result,"
        f" {work / gib:.1f} GiB working memory); {have / gib:.1f} GiB (80% of the available"
        f" memory) can be used: pass chunk_size={fits} or less")


@functools.lru_cache(maxsize=32)
def _per_example_program(model: Layer, loss: Loss, grad: str, chunk: int | None) -> Callable:
    vg = value_and_grad_fn(model, loss, grad)

    def per_example(params, x, y):
        def one(xy):  # one example: [D], [] or [C] -> grads like params
            xi, yi = xy
            return vg(params, xi[None], yi[None])[1]

        if chunk is None:
            return jax.vmap(one)((x, y))
        return jax.lax.map(one, (x, y), batch_size=chunk)  # vmap within chunks of `chunk`

    return jax.jit(per_example)

