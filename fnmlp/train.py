"""Training: a jitted ``train_step``, an epoch as one compiled program, ``evaluate``, ``fit``.

Shapes: ``N`` examples, ``B`` batch, ``D`` features, ``C`` outputs, ``S = N // B`` steps.

* :func:`make_trainer` builds, for one optimizer / model / loss / gradient path, the
  jitted functions ``step(state, batch[, key]) -> (state, metrics)`` (state donated) and
  ``epoch(state, x, y, key) -> (state, metrics)``, which shuffles with
  ``fold_in(key, state.epoch)`` and ``lax.scan``s the step over the ``S`` minibatches, so
  Python runs once per epoch. Anything that changes (step, epoch, learning rate) lives in
  arrays in the state: nothing recompiles from one epoch to the next.
* The last partial minibatch of an epoch is **dropped** (``N % B`` examples, a different
  set each epoch since the shuffle changes). Evaluation uses every example (padded and
  masked chunks).
* :func:`fit` adds validation, early stopping, history and progress.
* Sample and class weights (``fit(..., sample_weight=, class_weight=)``) become one weight
  per example that travels with the data: the epoch gathers ``w[idx]`` with ``x[idx]`` and
  ``y[idx]``, and the step's ``Batch(x, y, w)`` takes the weighted mean loss
  ``sum w_i loss_i / sum w_i`` per minibatch (:mod:`fnmlp.weights`); ``w=None`` is the
  unweighted program, unchanged.
* The model is any :class:`~fnmlp.layers.Layer` (``model=``), or the plain MLP named by
  ``activation``. Dropout draws its mask at update ``t`` from
  ``fold_in(fold_in(key(seed), DROPOUT_STREAM), t)``: the same mask on both gradient paths,
  and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _core
from fnmlp import _validate as checks
from fnmlp.data import train_test_split
from fnmlp.data.scaling import warn_input_range
from fnmlp.layers import EVAL, Context, Layer, Serial, Softmax
from fnmlp.losses import correct, get_loss
from fnmlp.mlp import Params, check_batch, check_weights, resolve_model
from fnmlp.optim import (
    GradientTransformation,
    apply_updates,
    check_optimizer,
    get_learning_rate,
    get_optimizer,
    host_scalar,
)
from fnmlp.parallel import check_divisible, place_on_mesh, replicated, shard_step

Array = jax.Array
GRAD_PATHS = ("manual", "autodiff")
DROPOUT_STREAM = 0x7FFFFFFF  # fold_in tag of the dropout keys (shuffles fold in the epoch)


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree of arrays."""

    params: Params
    opt_state: Any
    step: Array  # shape=(), int32: updates applied
    epoch: Array  # shape=(), int32: epochs completed


class Batch(NamedTuple):
    x: Array  # [B, D]
    y: Array  # [B] int labels, or [B, C] targets
    w: Array | None = None  # [B] per-example weights; None: all ones (the unweighted program)


def init_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """A fresh state at step 0. The params are copied: the jitted step and epoch donate
    the state, and the caller's arrays must stay valid. The optimizer is checked against
    the state contract of :mod:`fnmlp.optim` first (a clear error, nothing compiled)."""
    check_optimizer(optimizer, params)
    return fresh_state(params, optimizer)


def fresh_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """:func:`init_state` without the optimizer check, for callers that made it once.

    Compiles at most two small programs per params structure, shared by every later call:
    the optimizer's zero buffers and :func:`copy_tree` (the same copy that ``fit`` takes
    of the state before each epoch)."""
    zero = host_scalar(0, np.int32)
    return copy_tree(TrainState(params, optimizer.init(params), zero, zero))


def value_and_grad_fn(grad: str, model: Any = "relu", loss: str = "softmax_cross_entropy",
                      loss_dtype=None) -> Callable:
    """``(params, x, y, ctx=EVAL, w=None) -> (loss, grads, out)`` by the chosen gradient
    path: the model's hand-written backwards, or ``jax.value_and_grad`` of its forward;
    ``w: [B]`` weights give the weighted mean loss."""
    model = resolve_model(model)
    if grad == "manual":
        return lambda p, x, y, ctx=EVAL, w=None: _core.manual_value_and_grad(
            model, p, x, y, loss, ctx, loss_dtype, w)

    def autodiff(p, x, y, ctx=EVAL, w=None):
        (value, out), grads = jax.value_and_grad(
            lambda q: _core.value_and_output(model, q, x, y, loss, ctx, loss_dtype, aux=True,
                                             w=w),
            has_aux=True)(p)
        return value, grads, out

    return autodiff


def check_names(model: Any, loss: str, grad: str) -> Layer:
    """The model (see :func:`fnmlp.mlp.resolve_model`), the loss and the gradient path
    checked; returns the model."""
    model = resolve_model(model)
    get_loss(loss)
    if grad not in GRAD_PATHS:
        raise ValueError(f"grad must be one of {list(GRAD_PATHS)}; got {grad!r}")
    return model


def dropout_key(key: Array | None, step: Array) -> Array:
    """The dropout key of update ``step``: ``fold_in(fold_in(key, DROPOUT_STREAM), step)``
    (``key(0)`` when no key is given)."""
    key = jax.random.key(0) if key is None else key
    return jax.random.fold_in(jax.random.fold_in(key, DROPOUT_STREAM), step)


def make_train_step(optimizer: GradientTransformation, activation: Any = "relu",
                    loss: str = "softmax_cross_entropy", grad: str = "manual",
                    compute_dtype: Any = None, *, model: Any = None) -> Callable:
    """The pure (un-jitted) step ``(state, batch, key=None) -> (state, metrics)``.

    ``metrics`` holds ``loss`` (the weighted mean when ``batch.w`` is given) and, for
    classification, ``accuracy`` (unweighted; float32 scalars).
    The model runs in training mode; dropout's mask comes from :func:`dropout_key` of
    ``key`` (the run's seed key) and ``state.step``. With ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) every dense product takes its operands in that dtype and accumulates
    in float32; the float32 master params, biases, activations, the loss, the gradients
    and the update stay float32 (mixed precision).
    """
    model = check_names(model if model is not None else activation, loss, grad)
    if compute_dtype is not None and not jnp.issubdtype(jnp.dtype(compute_dtype), jnp.floating):
        raise ValueError(f"compute_dtype must be a float dtype such as jnp.bfloat16; got"
                         f" {compute_dtype!r}")
    value_and_grad = value_and_grad_fn(grad, model, loss,
                                       None if compute_dtype is None else jnp.float32)
    classify = get_loss(loss).kind != "regression"

    def step(state: TrainState, batch: Batch, key: Array | None = None):
        ctx = Context(True, dropout_key(key, state.step), compute_dtype)
        value, grads, out = value_and_grad(state.params, batch.x, batch.y, ctx, batch.w)
        grads = jax.tree.map(lambda g, m: g.astype(m.dtype), grads, state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        metrics = {"loss": value.astype(jnp.float32)}
        if classify:
            metrics["accuracy"] = jnp.mean(correct(out.astype(jnp.float32), batch.y, loss))
        return TrainState(params, opt_state, state.step + 1, state.epoch), metrics

    return step


def epoch_fn(step: Callable, batch_size: int) -> Callable:
    """The pure epoch ``(state, x [N, D], y, key, w=None) -> (state, metrics)``: shuffle
    with ``fold_in(key, state.epoch)``, then ``lax.scan`` of ``step`` over the minibatches;
    the weights ``w [N]``, when given, are gathered with the same indices as x and y."""

    def epoch(state: TrainState, x: Array, y: Array, key: Array, w: Array | None = None):
        n = x.shape[0]
        steps = n // batch_size
        perm = jax.random.permutation(jax.random.fold_in(key, state.epoch), n)
        idx = perm[: steps * batch_size].reshape(steps, batch_size)  # [S, B]

        def body(s, i):  # gather the minibatch inside the program
            return step(s, Batch(x[i], y[i], None if w is None else w[i]), key)

        state, metrics = jax.lax.scan(body, state, idx)
        state = state._replace(epoch=state.epoch + 1)
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a))
                                      for a in jax.tree.leaves(state.params)]))
        summary = {k: jnp.mean(v) for k, v in metrics.items()}
        summary["params_finite"] = finite
        summary["learning_rate"] = get_learning_rate(state.opt_state)
        summary.update(weight_stats(state.params))  # once per epoch, fetched with the rest
        return state, summary

    return epoch


def dense_weights(params: Params) -> list[Array]:
    """Every weight matrix of ``params`` (the leaves named ``w``: one per Dense layer),
    in the order of the layers."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return [leaf for path, leaf in leaves
            if path and getattr(path[-1], "key", None) == "w"]


def weight_stats(params: Params) -> dict[str, Array]:
    """``weight_max_abs`` and ``weight_norm`` (Frobenius): ``[L]`` float32 arrays, one
    entry per Dense weight (:func:`dense_weights`); empty when there is none."""
    ws = dense_weights(params)
    if not ws:
        return {}
    return {"weight_max_abs": jnp.stack([jnp.max(jnp.abs(w)).astype(jnp.float32) for w in ws]),
            "weight_norm": jnp.stack([jnp.linalg.norm(w.astype(jnp.float32)) for w in ws])}


def eval_fn(model: Any, loss: str, chunk: int) -> Callable:
    """The pure ``(params, x, y, w=None) -> {loss, accuracy | mse, mae}`` over padded
    chunks. With weights ``w [N]`` the loss is the weighted mean ``sum w_i l_i / sum w_i``;
    accuracy, MSE and MAE count every example once."""

    model = resolve_model(model)
    lossdef = get_loss(loss)
    classify = lossdef.kind != "regression"

    def evaluate(params: Params, x: Array, y: Array, w: Array | None = None):
        n = x.shape[0]
        pad = (-n) % chunk
        xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        ys = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1))
        mask = (jnp.arange(n + pad) < n).astype(jnp.float32)
        k = (n + pad) // chunk
        xs = xs.reshape(k, chunk, *x.shape[1:])
        ys = ys.reshape(k, chunk, *y.shape[1:])
        mask = mask.reshape(k, chunk)
        # the loss's weight per example: the mask, times w when given
        lw = mask if w is None else mask * jnp.pad(w.astype(jnp.float32), (0, pad)).reshape(
            k, chunk)

        def body(acc, c):
            xc, yc, mc, wc = c
            out = model.apply(params, xc).astype(jnp.float32)  # [chunk, C], evaluation mode
            sums = {"loss": jnp.sum(lossdef.fn(out, yc) * wc)}
            if classify:
                sums["accuracy"] = jnp.sum(correct(out, yc, loss) * mc)
            else:
                d = out - yc
                sums["mse"] = jnp.sum(jnp.mean(d * d, axis=1) * mc)
                sums["mae"] = jnp.sum(jnp.mean(jnp.abs(d), axis=1) * mc)
            return jax.tree.map(jnp.add, acc, sums), None

        zero = {k: jnp.zeros((), jnp.float32) for k in
                (["loss", "accuracy"] if classify else ["loss", "mse", "mae"])}
        sums, _ = jax.lax.scan(body, zero, (xs, ys, mask, lw))
        out = {k: v / n for k, v in sums.items()}
        if w is not None:
            out["loss"] = sums["loss"] / _core.weight_total(jnp.sum(lw))
        return out

    return evaluate


class Trainer(NamedTuple):
    """Jitted functions for one configuration (see :func:`make_trainer`)."""

    step: Callable  # (state, batch, key=None) -> (state, metrics); state donated
    epoch: Callable  # (state, x [N, D], y, key, w=None) -> (state, metrics); state donated
    evaluate: Callable  # (params, x, y, w=None) -> {"loss", "accuracy" | "mse", "mae"}
    batch_size: int


def make_trainer(
    optimizer: GradientTransformation,
    batch_size: int,
    activation: Any = "relu",
    loss: str = "softmax_cross_entropy",
    grad: str = "manual",
    eval_batch_size: int = 1024,
    compute_dtype: Any = None,
    mesh: Any = None,
    *,
    model: Any = None,
) -> Trainer:
    """Compiles (lazily) the step, the epoch and the evaluation for one configuration.

    Args:
      optimizer: a :class:`~fnmlp.optim.GradientTransformation`.
      batch_size: minibatch size ``B`` (static: the epoch's shape depends on it).
      activation, loss: names (``activation`` for the plain MLP).
      grad: ``"manual"`` (the hand-derived backward) or ``"autodiff"`` (``jax.grad``).
      model: a :class:`~fnmlp.layers.Layer` instead of the plain MLP.
      eval_batch_size: chunk size for :attr:`Trainer.evaluate`.
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision (see make_train_step).
      mesh: a 1-D ``jax.sharding.Mesh``: train data-parallel over it (minibatches
        sharded along the batch axis, state replicated; see :mod:`fnmlp.parallel`).
    """
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    eval_batch_size = checks.check_positive_int(eval_batch_size, "eval_batch_size")
    model = check_names(model if model is not None else activation, loss, grad)
    step = make_train_step(optimizer, model, loss, grad, compute_dtype)
    placement = {}
    if mesh is not None:
        check_divisible(batch_size, mesh)
        step = shard_step(step, mesh)
        placement = {"out_shardings": (replicated(mesh), replicated(mesh))}
    return Trainer(
        step=jax.jit(step, donate_argnums=0, **placement),
        epoch=jax.jit(epoch_fn(step, batch_size), donate_argnums=0, **placement),
        evaluate=jitted_eval(model, loss, eval_batch_size),
        batch_size=batch_size,
    )


def cached_trainer(optimizer: GradientTransformation, batch_size: int, model: Layer,
                   loss: str, grad: str, eval_batch_size: int = 1024,
                   compute_dtype: Any = None, mesh: Any = None) -> Trainer:
    """:func:`make_trainer`, one per configuration for the life of the process.

    The key is what the compiled program depends on: ``optimizer.update`` (fnmlp's
    builders share one per static configuration, see :mod:`fnmlp.optim`; a user's
    GradientTransformation is keyed by the identity of its ``update``), batch size, model,
    loss, gradient path, evaluation chunk, compute dtype and mesh. Learning rate, weight
    decay and seed are arrays, not part of the key: a learning-rate sweep or a resume loop
    of :func:`fit` compiles nothing after its first call. Unhashable parts (a mesh or an
    ``update`` that cannot be hashed) get a fresh, uncached trainer.
    """
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype).name
    key = (optimizer.update, batch_size, model, loss, grad, eval_batch_size, dtype, mesh)
    try:
        trainer = _TRAINERS.get(key)
    except TypeError:
        return make_trainer(optimizer, batch_size, model, loss, grad, eval_batch_size,
                            compute_dtype, mesh)
    if trainer is None:
        trainer = make_trainer(optimizer, batch_size, model, loss, grad, eval_batch_size,
                               compute_dtype, mesh)
        if len(_TRAINERS) >= MAX_CACHED_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))  # the oldest
    _TRAINERS[key] = _TRAINERS.pop(key, trainer)  # most recently used last
    return trainer


MAX_CACHED_TRAINERS = 32
_TRAINERS: dict[tuple, Trainer] = {}  # cached_trainer's cache (least recently used first)


def per_example_grads(params: Params, x: Array, y: Array, activation: Any = "relu",
                      loss: str = "softmax_cross_entropy", grad: str = "autodiff", *,
                      model: Any = None, chunk_size: int | None = None) -> Params:
    """Per-example gradients: ``jax.vmap`` of the gradient of one example's loss
    (evaluation mode: no dropout), in one compiled program per configuration.

    Args:
      params: the model's params (``P`` numbers in all).
      x: inputs ``[B, D]``; y: labels ``[B]`` or targets ``[B, C]``.
      activation, loss, model: as for :func:`fnmlp.loss`.
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
    model = check_names(model if model is not None else activation, loss, grad)
    x, y = check_batch(params, x, y, loss, model=model)
    if chunk_size is not None:
        chunk_size = checks.check_positive_int(chunk_size, "chunk_size")
    b = int(x.shape[0])
    chunk = b if chunk_size is None else min(chunk_size, b)
    check_per_example_memory(params, x, grad, chunk)
    return _per_example_program(model, loss, grad, None if chunk == b else chunk)(params, x, y)


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
def _per_example_program(model: Layer, loss: str, grad: str, chunk: int | None) -> Callable:
    vg = value_and_grad_fn(grad, model, loss)

    def per_example(params, x, y):
        def one(xy):  # one example: [D], [] or [C] -> grads like params
            xi, yi = xy
            return vg(params, xi[None], yi[None])[1]

        if chunk is None:
            return jax.vmap(one)((x, y))
        return jax.lax.map(one, (x, y), batch_size=chunk)  # vmap within chunks of `chunk`

    return jax.jit(per_example)


# ----------------------------------------------------------------------------- fit


class TrainingDiverged(FloatingPointError):
    """The loss or the params became non-finite. ``state`` is the last finite state
    (the end of the previous epoch); ``epoch`` the 1-based epoch that diverged."""

    def __init__(self, message: str, epoch: int, state: TrainState, history: list):
        super().__init__(message)
        self.epoch = epoch
        self.state = state
        self.history = history


class FitResult(NamedTuple):
    params: Params  # the best params when early stopping restored them, else the last
    state: TrainState  # the final training state (resume from it)
    history: list  # one dict per epoch; early stopping marks the restored one "restored"
    best_epoch: int  # 1-based epoch whose params were returned
    best_state: TrainState | None = None  # with early stopping: the state of best_epoch


@jax.jit
def copy_tree(tree: Any) -> Any:
    """A copy of every array leaf of ``tree`` (new buffers), in one compiled program per
    tree structure; eager per-leaf copies would compile one program per leaf shape."""
    return jax.tree.map(jnp.copy, tree)




def fit(
    params: Params,
    x: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str | GradientTransformation = "sgd",
    learning_rate: float = 0.1,
    activation: Any = "relu",
    model: Any = None,
    loss: str = "softmax_cross_entropy",
    grad: str = "manual",
    seed: int = 0,
    validation_split: float | None = None,
    validation_data: tuple[Any, Any] | None = None,
    patience: int | None = None,
    state: TrainState | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[TrainState, dict], None] | None = None,
    compute_dtype: Any = None,
    mesh: Any = None,
    log: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    log_every: int = 1,
) -> FitResult:
    """Trains a model with minibatch gradient descent; every input is checked first.

    Args:
      params: initial params (:func:`fnmlp.init_mlp`, or ``model.init_params``).
      x: inputs ``[N, D]``; y: labels ``[N]`` or targets ``[N, C]``.
      epochs: the epoch to train up to (a resumed ``state`` continues from its epoch).
      batch_size: minibatch size, 1..N (the partial last batch is dropped each epoch).
      optimizer: a name from :data:`fnmlp.optim.OPTIMIZERS` or a GradientTransformation
        (its state must hold ``learning_rate``: see :mod:`fnmlp.optim`).
      learning_rate: used when ``optimizer`` is a name.
      activation: the hidden activation of the plain MLP (one name, or one per layer).
      model: a :class:`~fnmlp.layers.Layer` to train instead (e.g. ``serial(Dense(64),
        Tanh(), Dropout(0.2), Dense(10))``); dropout is on in training only.
      loss: a loss name.
      grad: ``"manual"`` or ``"autodiff"``.
      seed: shuffling and dropout seed; epoch ``e`` shuffles with
        ``fold_in(key(seed), e)``.
      validation_split: hold out this fraction (seeded, before training) for validation.
      validation_data: or an explicit ``(x_val, y_val)``.
      patience: early stopping: stop after this many epochs without improvement of the
        validation loss (training loss when there is no validation) and return the best
        params (``best_state`` holds that epoch's whole state; its history record gets
        ``"restored": True``).
      state: a :class:`TrainState` to resume from (e.g. from a checkpoint, or the
        ``.state`` of an earlier FitResult); it is left intact (the compiled epoch donates
        a copy), so a resume loop ``r = fit(..., state=r.state)`` compiles and deletes
        nothing.
      verbose: print one line per epoch (through ``log``, default stderr), after
        ``on_epoch_end``, so entries it adds are printed too.
      log_every: with ``verbose``, print only epochs 1, every ``log_every``-th and the
        last (the early-stopping message always).
      on_epoch_end: ``callback(state, record)`` after each epoch (e.g. to checkpoint; it
        may add entries to ``record``, which is the history's dict).
      compute_dtype: mixed precision compute dtype (e.g. ``jnp.bfloat16``).
      mesh: a 1-D ``jax.sharding.Mesh`` for data-parallel training (``fnmlp.parallel``).
      sample_weight: ``[N]`` weights of the training examples, finite and >= 0 (Keras's
        and scikit-learn's name).
      class_weight: ``"balanced"`` (scikit-learn's ``n_samples / (n_classes * count)``,
        counted on the training part) or ``{label: weight}`` (unlisted classes weigh 1);
        classification losses only. Both given: an example weighs
        ``sample_weight_i * class_weight[y_i]``, as Keras. Each minibatch's loss is then
        the weighted mean ``sum w_i loss_i / sum w_i`` (PyTorch's weighted
        ``CrossEntropyLoss``), on both gradient paths, and with ``mesh``. The validation
        loss stays unweighted (as Keras's ``class_weight``, "during training only");
        with ``validation_split`` the held-out examples' weights are dropped.

    Returns:
      :class:`FitResult`. A non-finite loss or params raises :class:`TrainingDiverged`
      carrying the last finite state.

    Raises:
      ValueError: a bad argument, weights included (negative, non-finite, the wrong
        length, an unknown class, all zero), before anything compiles.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    model = check_names(model if model is not None else activation, loss, grad)
    warn_softmax_twice(model, loss)
    optimizer, x, y, validation_data, w = _check_fit_args(
        params, x, y, epochs, batch_size, optimizer, learning_rate, model, loss,
        seed, validation_split, validation_data, patience, sample_weight, class_weight,
        log_every)
    warn_input_range(x)  # uint8 or 0..255 inputs: once, pointing at the caller
    if state is not None:
        check_resumed_state(state, params, optimizer)
    state = fresh_state(params, optimizer) if state is None else state  # optimizer checked
    trainer = cached_trainer(optimizer, batch_size, model, loss, grad,
                             compute_dtype=compute_dtype, mesh=mesh)
    if mesh is not None:
        x, y, w, state, validation_data = place_on_mesh((x, y, w, state, validation_data),
                                                        mesh)
    key, history = jax.random.key(seed), []
    monitor = "val_loss" if validation_data is not None else "train_loss"
    best = _Best(math.inf, int(state.epoch), None, 0)
    for e in range(int(state.epoch), epochs):
        state, record = _one_epoch(trainer, state, (x, y, key, w), e + 1, history,
                                   validation_data)
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(state, record)
        if verbose and (e == 0 or (e + 1) % log_every == 0 or e + 1 == epochs):
            log(format_record(record, epochs))
        best = _track_best(best, record[monitor], e + 1, state, patience)
        if patience is not None and best.waited >= patience:
            if verbose:
                log(f"early stopping after epoch {e + 1}: {monitor} has not improved for"
                    f" {patience} epochs; restoring epoch {best.epoch}")
            break
    if patience is not None and best.state is not None:
        for r in history:
            if r["epoch"] == best.epoch:
                r["restored"] = True
        return FitResult(best.state.params, state, history, best.epoch, best.state)
    return FitResult(state.params, state, history, int(state.epoch))


def _one_epoch(trainer: Trainer, state: TrainState, data: tuple, epoch: int, history: list,
               validation_data) -> tuple[TrainState, dict]:
    """Trains epoch ``epoch`` (1-based) and returns the new state and its history record
    (validation scores added). The compiled epoch donates a copy, so the state it started
    from (kept for :class:`TrainingDiverged`, or a caller's resumed state) stays valid."""
    x, y, key, w = data
    t0 = time.perf_counter()
    new, m = trainer.epoch(copy_tree(state), x, y, key, w)
    m, seconds = jax.device_get(m), time.perf_counter() - t0
    record = epoch_record(epoch, m, seconds, (len(x) // trainer.batch_size) * trainer.batch_size)
    if not (np.isfinite(record["train_loss"]) and bool(m["params_finite"])):
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: train loss {record['train_loss']}"
            f" (learning rate {record['learning_rate']:g}); the last finite params"
            f" (end of epoch {epoch - 1}) are kept in .state", epoch, state, history)
    if validation_data is not None:
        vm = jax.device_get(trainer.evaluate(new.params, *validation_data))
        record.update({f"val_{k}": float(v) for k, v in vm.items()})
    return new, record


def warn_softmax_twice(model: Layer, loss: str) -> None:
    """A model that ends in ``Softmax`` outputs probabilities; a loss on logits
    (``softmax_cross_entropy``, ``sigmoid_cross_entropy``) would squash them again."""
    if (isinstance(model, Serial) and isinstance(model.layers[-1], Softmax)
            and loss in ("softmax_cross_entropy", "sigmoid_cross_entropy")):
        warnings.warn(f"the model ends in a Softmax layer, and loss {loss!r} takes logits, so"
                      " softmax is applied twice: use loss='categorical_cross_entropy' (which"
                      " takes probabilities) or drop the Softmax layer", UserWarning,
                      stacklevel=3)


def check_resumed_state(state: Any, params: Params, optimizer: GradientTransformation) -> None:
    """A state to resume from must be a :class:`TrainState` whose params have the
    structure and shapes of ``params`` and whose optimizer state is the one ``optimizer``
    makes; ``ValueError`` naming the first difference, before anything compiles."""
    if not isinstance(state, TrainState):
        raise ValueError(f"state must be a TrainState (e.g. a FitResult's .state or a loaded"
                         f" checkpoint); got {type(state).__name__}")
    for what, have, want in (("state.params", state.params, params),
                             ("state.opt_state", state.opt_state,
                              jax.eval_shape(optimizer.init, params))):
        if jax.tree.structure(have) != jax.tree.structure(want):
            raise ValueError(f"{what} does not fit the model and optimizer of this fit (it was"
                             " made for another architecture or optimizer): expected"
                             f" {jax.tree.structure(want)}; got {jax.tree.structure(have)}"
                             [:500])
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(have),
                                jax.tree.leaves(want)):
            if tuple(np.shape(a)) != tuple(np.shape(b)):
                raise ValueError(f"{what}{jax.tree_util.keystr(path)} has shape"
                                 f" {tuple(np.shape(a))}; this fit's model needs"
                                 f" {tuple(np.shape(b))}")


def _check_fit_args(params, x, y, epochs, batch_size, optimizer, learning_rate, model,
                    loss, seed, validation_split, validation_data, patience,
                    sample_weight=None, class_weight=None, log_every=1):
    """Every check of :func:`fit`, on the host, before anything compiles. Returns the
    optimizer, the data as checked arrays (the validation split taken off) and the
    training examples' weights ``[N]`` (None when unweighted)."""
    checks.check_positive_int(epochs, "epochs")
    if isinstance(optimizer, str):
        optimizer = get_optimizer(optimizer, learning_rate)
    check_optimizer(optimizer, params)
    x, y = checks.as_numeric_array(x, "x"), checks.as_numeric_array(y, "y")
    if x.ndim >= 1 and y.ndim >= 1 and len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    x, y = check_batch(params, x, y, loss, model=model)
    w = check_weights(params, x, y, loss, model, sample_weight, class_weight)  # all of them
    if validation_data is not None and validation_split is not None:
        raise ValueError("give validation_split or validation_data, not both")
    if validation_split is not None:
        if not (isinstance(validation_split, float) and 0 < validation_split < 1):
            raise ValueError(
                f"validation_split must be a float in (0, 1); got {validation_split!r}")
        idx = np.arange(len(x))
        tr, va = (part.x for part in train_test_split(idx, idx, validation_split, seed,
                                                      name="validation_split"))
        xn, yn = np.asarray(x), np.asarray(y)
        x, y, validation_data = jax.device_put(xn[tr]), jax.device_put(yn[tr]), (
            jax.device_put(xn[va]), jax.device_put(yn[va]))
        if w is not None:  # weights of the training part ("balanced" counts it alone)
            sw = None if sample_weight is None else np.asarray(sample_weight)[tr]
            w = check_weights(params, x, y, loss, model, sw, class_weight)
    elif validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        validation_data = check_batch(params, *validation_data, loss, ("x_val", "y_val"),
                                      model)
    checks.check_positive_int(batch_size, "batch_size")
    if batch_size > len(x):
        raise ValueError(f"batch_size must be at most the number of training examples"
                         f" ({len(x)}); got {batch_size}")
    if patience is not None:
        checks.check_positive_int(patience, "patience")
    checks.check_positive_int(log_every, "log_every")
    return optimizer, x, y, validation_data, w


class _Best(NamedTuple):
    value: float  # the best monitored loss so far
    epoch: int  # its 1-based epoch
    state: Any  # a copy of its TrainState (kept only with early stopping)
    waited: int  # epochs since it


def _track_best(best: _Best, value: float, epoch: int, state: TrainState, patience) -> _Best:
    """Early stopping's bookkeeping: a new best resets the wait."""
    if value < best.value:
        return _Best(value, epoch, copy_tree(state) if patience else None, 0)
    return best._replace(waited=best.waited + 1)


def epoch_record(epoch: int, m: dict, seconds: float, examples: int) -> dict:
    """One epoch's history entry from its metrics (``loss``, ``accuracy``,
    ``learning_rate``) and time; ``examples`` trained in the epoch."""
    record = {"epoch": epoch, "train_loss": float(m["loss"])}
    if "accuracy" in m:
        record["train_accuracy"] = float(m["accuracy"])
    record.update(epoch_seconds=seconds, examples_per_second=examples / seconds,
                  learning_rate=float(m["learning_rate"]))
    for key in ("weight_max_abs", "weight_norm"):  # one per Dense weight, in layer order
        if key in m:
            record[key] = [float(v) for v in np.asarray(m[key]).reshape(-1)]
    return record


def format_record(r: dict, epochs: int | None = None) -> str:
    parts = [f"epoch {r['epoch']}" + (f"/{epochs}" if epochs else ""),
             f"train_loss {r['train_loss']:.4f}"]
    if "train_accuracy" in r:
        parts.append(f"train_acc {r['train_accuracy']:.4f}")
    for key, name, fmt in (("val_loss", "val_loss", ".4f"), ("val_accuracy", "val_acc", ".4f"),
                           ("val_mse", "val_mse", ".4g"), ("test_loss", "test_loss", ".4f"),
                           ("test_accuracy", "test_acc", ".4f")):
        if key in r:
            parts.append(f"{name} {r[key]:{fmt}}")
    parts.append(f"{r['examples_per_second']:,.0f} ex/s")
    return "  ".join(parts)


def evaluate(params: Params, x: Any, y: Any, activation: Any = "relu",
             loss: str = "softmax_cross_entropy", batch_size: int = 1024, *,
             model: Any = None, sample_weight: Any = None, class_weight: Any = None) -> dict:
    """Mean loss and accuracy (classification) or MSE/MAE (regression) over all of x,
    in evaluation mode (no dropout); ``model`` as for :func:`fit`.

    With ``sample_weight`` / ``class_weight`` (as :func:`fit`) the loss is the weighted
    mean ``sum w_i loss_i / sum w_i``; accuracy, MSE and MAE stay unweighted. For
    per-class precision, recall and balanced accuracy see
    :func:`fnmlp.classification_report`.
    """
    model = check_names(model if model is not None else activation, loss, "manual")
    x, y = check_batch(params, x, y, loss, model=model)
    w = check_weights(params, x, y, loss, model, sample_weight, class_weight)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    run = jitted_eval(model, loss, batch_size)
    # unweighted: the same call (and compiled program) as fit's validation
    out = run(params, x, y) if w is None else run(params, x, y, w)
    return {k: float(v) for k, v in out.items()}


@functools.lru_cache(maxsize=64)
def jitted_eval(model: Any, loss: str, batch_size: int) -> Callable:
    """One jitted evaluation per configuration, so repeated calls do not recompile."""
    return jax.jit(eval_fn(resolve_model(model), loss, batch_size))
