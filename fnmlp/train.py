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
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _core
from fnmlp import _validate as checks
from fnmlp.data import train_test_split
from fnmlp.data.scaling import warn_input_range
from fnmlp.layers import EVAL, Context, Layer
from fnmlp.losses import correct, get_loss
from fnmlp.mlp import Params, check_batch, resolve_model
from fnmlp.optim import (
    GradientTransformation,
    apply_updates,
    check_optimizer,
    get_learning_rate,
    get_optimizer,
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


def init_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """A fresh state at step 0. The params are copied: the jitted step and epoch donate
    the state, and the caller's arrays must stay valid. The optimizer is checked against
    the state contract of :mod:`fnmlp.optim` first (a clear error, nothing compiled)."""
    check_optimizer(optimizer, params)
    return fresh_state(params, optimizer)


def fresh_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """:func:`init_state` without the optimizer check, for callers that made it once."""
    params = _copy_tree(params)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32),
                      jnp.zeros((), jnp.int32))


def value_and_grad_fn(grad: str, model: Any = "relu", loss: str = "softmax_cross_entropy",
                      loss_dtype=None) -> Callable:
    """``(params, x, y, ctx=EVAL) -> (loss, grads, out)`` by the chosen gradient path:
    the model's hand-written backwards, or ``jax.value_and_grad`` of its forward."""
    model = resolve_model(model)
    if grad == "manual":
        return lambda p, x, y, ctx=EVAL: _core.manual_value_and_grad(model, p, x, y, loss, ctx,
                                                                     loss_dtype)

    def autodiff(p, x, y, ctx=EVAL):
        (value, out), grads = jax.value_and_grad(
            lambda q: _core.value_and_output(model, q, x, y, loss, ctx, loss_dtype, aux=True),
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

    ``metrics`` holds ``loss`` and, for classification, ``accuracy`` (float32 scalars).
    The model runs in training mode; dropout's mask comes from :func:`dropout_key` of
    ``key`` (the run's seed key) and ``state.step``. With ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) every dense product takes its operands in that dtype and accumulates
    in float32; the float32 master params, biases, activations, the loss, the gradients
    and the update stay float32 (mixed precision).
    """
    model = check_names(model if model is not None else activation, loss, grad)
    value_and_grad = value_and_grad_fn(grad, model, loss,
                                       None if compute_dtype is None else jnp.float32)
    classify = get_loss(loss).kind != "regression"

    def step(state: TrainState, batch: Batch, key: Array | None = None):
        ctx = Context(True, dropout_key(key, state.step), compute_dtype)
        value, grads, out = value_and_grad(state.params, batch.x, batch.y, ctx)
        grads = jax.tree.map(lambda g, m: g.astype(m.dtype), grads, state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        metrics = {"loss": value.astype(jnp.float32)}
        if classify:
            metrics["accuracy"] = jnp.mean(correct(out.astype(jnp.float32), batch.y, loss))
        return TrainState(params, opt_state, state.step + 1, state.epoch), metrics

    return step


def epoch_fn(step: Callable, batch_size: int) -> Callable:
    """The pure epoch ``(state, x [N, D], y, key) -> (state, metrics)``: shuffle with
    ``fold_in(key, state.epoch)``, then ``lax.scan`` of ``step`` over the minibatches."""

    def epoch(state: TrainState, x: Array, y: Array, key: Array):
        n = x.shape[0]
        steps = n // batch_size
        perm = jax.random.permutation(jax.random.fold_in(key, state.epoch), n)
        idx = perm[: steps * batch_size].reshape(steps, batch_size)  # [S, B]

        def body(s, i):
            return step(s, Batch(x[i], y[i]), key)  # gather the minibatch inside the program

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
    """The pure ``(params, x, y) -> {loss, accuracy | mse, mae}`` over padded chunks."""

    model = resolve_model(model)
    lossdef = get_loss(loss)
    classify = lossdef.kind != "regression"

    def evaluate(params: Params, x: Array, y: Array):
        n = x.shape[0]
        pad = (-n) % chunk
        xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        ys = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1))
        mask = (jnp.arange(n + pad) < n).astype(jnp.float32)
        k = (n + pad) // chunk
        xs = xs.reshape(k, chunk, *x.shape[1:])
        ys = ys.reshape(k, chunk, *y.shape[1:])
        mask = mask.reshape(k, chunk)

        def body(acc, c):
            xc, yc, mc = c
            out = model.apply(params, xc).astype(jnp.float32)  # [chunk, C], evaluation mode
            sums = {"loss": jnp.sum(lossdef.fn(out, yc) * mc)}
            if classify:
                sums["accuracy"] = jnp.sum(correct(out, yc, loss) * mc)
            else:
                d = out - yc
                sums["mse"] = jnp.sum(jnp.mean(d * d, axis=1) * mc)
                sums["mae"] = jnp.sum(jnp.mean(jnp.abs(d), axis=1) * mc)
            return jax.tree.map(jnp.add, acc, sums), None

        zero = {k: jnp.zeros((), jnp.float32) for k in
                (["loss", "accuracy"] if classify else ["loss", "mse", "mae"])}
        sums, _ = jax.lax.scan(body, zero, (xs, ys, mask))
        return {k: v / n for k, v in sums.items()}

    return evaluate


class Trainer(NamedTuple):
    """Jitted functions for one configuration (see :func:`make_trainer`)."""

    step: Callable  # (state, batch, key=None) -> (state, metrics); state donated
    epoch: Callable  # (state, x [N, D], y, key) -> (state, metrics); state donated
    evaluate: Callable  # (params, x, y) -> {"loss", "accuracy" | "mse", "mae"}
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
        evaluate=jax.jit(eval_fn(model, loss, eval_batch_size)),
        batch_size=batch_size,
    )


def per_example_grads(params: Params, x: Array, y: Array, activation: Any = "relu",
                      loss: str = "softmax_cross_entropy", grad: str = "autodiff", *,
                      model: Any = None) -> Params:
    """Per-example gradients: ``jax.vmap`` of the gradient of one example's loss
    (evaluation mode: no dropout).

    Returns a pytree like ``params`` whose leaves have a leading batch axis ``[B, ...]``;
    their mean over that axis is the batch gradient. ``grad="manual"`` vmaps the
    hand-derived backward instead of ``jax.grad``.
    """
    model = check_names(model if model is not None else activation, loss, grad)
    x, y = check_batch(params, x, y, loss, model=model)
    vg = value_and_grad_fn(grad, model, loss)
    return jax.vmap(lambda xi, yi: vg(params, xi[None], yi[None])[1])(x, y)


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


def _copy_tree(tree):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


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
      state: a :class:`TrainState` to resume from (e.g. from a checkpoint).
      verbose: print one line per epoch (through ``log``, default stderr), after
        ``on_epoch_end``, so entries it adds are printed too.
      log_every: with ``verbose``, print only epochs 1, every ``log_every``-th and the
        last (the early-stopping message always).
      on_epoch_end: ``callback(state, record)`` after each epoch (e.g. to checkpoint; it
        may add entries to ``record``, which is the history's dict).
      compute_dtype: mixed precision compute dtype (e.g. ``jnp.bfloat16``).
      mesh: a 1-D ``jax.sharding.Mesh`` for data-parallel training (``fnmlp.parallel``).

    Returns:
      :class:`FitResult`. A non-finite loss or params raises :class:`TrainingDiverged`
      carrying the last finite state.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    model = check_names(model if model is not None else activation, loss, grad)
    optimizer, x, y, validation_data = _check_fit_args(
        params, x, y, epochs, batch_size, optimizer, learning_rate, model, loss,
        seed, validation_split, validation_data, patience, log_every)
    warn_input_range(x)  # uint8 or 0..255 inputs: once, pointing at the caller
    state = fresh_state(params, optimizer) if state is None else state  # optimizer checked
    trainer = make_trainer(optimizer, batch_size, model, loss, grad,
                           compute_dtype=compute_dtype, mesh=mesh)
    if mesh is not None:
        x, y, state, validation_data = place_on_mesh((x, y, state, validation_data), mesh)
    key, history = jax.random.key(seed), []
    monitor = "val_loss" if validation_data is not None else "train_loss"
    best = _Best(math.inf, int(state.epoch), None, 0)
    for e in range(int(state.epoch), epochs):
        backup, t0 = _copy_tree(state), time.perf_counter()
        state, m = trainer.epoch(state, x, y, key)
        m, seconds = jax.device_get(m), time.perf_counter() - t0
        record = epoch_record(e + 1, m, seconds, (len(x) // batch_size) * batch_size)
        if not (np.isfinite(record["train_loss"]) and bool(m["params_finite"])):
            raise TrainingDiverged(
                f"training diverged in epoch {e + 1}: train loss {record['train_loss']}"
                f" (learning rate {record['learning_rate']:g}); the last finite params"
                f" (end of epoch {e}) are kept in .state", e + 1, backup, history)
        if validation_data is not None:
            vm = jax.device_get(trainer.evaluate(state.params, *validation_data))
            record.update({f"val_{k}": float(v) for k, v in vm.items()})
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


def _check_fit_args(params, x, y, epochs, batch_size, optimizer, learning_rate, model,
                    loss, seed, validation_split, validation_data, patience, log_every=1):
    """Every check of :func:`fit`, on the host, before anything compiles. Returns the
    optimizer and the data as checked arrays (the validation split taken off)."""
    checks.check_positive_int(epochs, "epochs")
    if isinstance(optimizer, str):
        optimizer = get_optimizer(optimizer, learning_rate)
    check_optimizer(optimizer, params)
    x, y = checks.as_numeric_array(x, "x"), checks.as_numeric_array(y, "y")
    if x.ndim >= 1 and y.ndim >= 1 and len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    x, y = check_batch(params, x, y, loss, model=model)
    if validation_data is not None and validation_split is not None:
        raise ValueError("give validation_split or validation_data, not both")
    if validation_split is not None:
        if not (isinstance(validation_split, float) and 0 < validation_split < 1):
            raise ValueError(
                f"validation_split must be a float in (0, 1); got {validation_split!r}")
        train, val = train_test_split(np.asarray(x), np.asarray(y), validation_split, seed,
                                      name="validation_split")
        (x, y), validation_data = map(jnp.asarray, train), tuple(map(jnp.asarray, val))
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
    return optimizer, x, y, validation_data


class _Best(NamedTuple):
    value: float  # the best monitored loss so far
    epoch: int  # its 1-based epoch
    state: Any  # a copy of its TrainState (kept only with early stopping)
    waited: int  # epochs since it


def _track_best(best: _Best, value: float, epoch: int, state: TrainState, patience) -> _Best:
    """Early stopping's bookkeeping: a new best resets the wait."""
    if value < best.value:
        return _Best(value, epoch, _copy_tree(state) if patience else None, 0)
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
             model: Any = None) -> dict:
    """Mean loss and accuracy (classification) or MSE/MAE (regression) over all of x,
    in evaluation mode (no dropout); ``model`` as for :func:`fit`."""
    model = check_names(model if model is not None else activation, loss, "manual")
    x, y = check_batch(params, x, y, loss, model=model)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    out = jitted_eval(model, loss, batch_size)(params, x, y)
    return {k: float(v) for k, v in out.items()}


@functools.lru_cache(maxsize=64)
def jitted_eval(model: Any, loss: str, batch_size: int) -> Callable:
    """One jitted evaluation per configuration, so repeated calls do not recompile."""
    return jax.jit(eval_fn(resolve_model(model), loss, batch_size))
