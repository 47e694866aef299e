"""The training step and the epoch as compiled programs, evaluation, the trainer cache.

Shapes: ``N`` examples, ``B`` batch, ``D`` features, ``C`` outputs, ``S = N // B`` steps.

* :func:`make_trainer` builds, for one model / optimizer / loss / gradient path, the
  jitted functions ``step(state, batch[, key]) -> (state, metrics)`` (state donated) and
  ``epoch(state, x, y, key) -> (state, metrics)`` (nothing donated), which shuffles with
  ``fold_in(key, state.epoch)`` and ``lax.scan``s the step over the ``S`` minibatches, so
  Python runs once per epoch. Anything that changes (step, epoch, learning rate) lives in
  arrays in the state: nothing recompiles from one epoch to the next.
* The last partial minibatch of an epoch is **dropped** (``N % B`` examples, a different
  set each epoch since the shuffle changes). Evaluation uses every example (padded and
  masked chunks).
* Sample and class weights become one weight per example that travels with the data: the
  epoch gathers ``w[idx]`` with ``x[idx]`` and ``y[idx]``, and the step's
  ``Batch(x, y, w)`` takes the weighted mean loss ``sum w_i loss_i / sum w_i`` per
  minibatch (:mod:`fnmlp.weights`); the epoch's loss is ``sum(w l) / sum(w)`` over the
  whole epoch, as :func:`fnmlp.evaluate` computes it. ``w=None`` is the unweighted
  program, unchanged.
* Dropout draws its mask at update ``t`` from
  ``fold_in(fold_in(key(seed), DROPOUT_STREAM), t)``: the same mask on both gradient
  paths, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp._checks import check_float_dtype
from fnmlp.grad import Params, value_and_grad_fn, weight_total
from fnmlp.layers import Context, Layer
from fnmlp.losses import Loss, correct, get_loss
from fnmlp.optim import (
    GradientTransformation,
    apply_updates,
    check_optimizer,
    get_learning_rate,
    host_scalar,
)
from fnmlp.parallel import check_divisible, replicated, shard_step

Array = jax.Array
DROPOUT_STREAM = 0x7FFFFFFF  # fold_in tag of the dropout keys (shuffles fold in the epoch)


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree of arrays."""

    params: Params
    opt_state: Any
    step: Array  # shape=(), int32: updates applied
    epoch: Array  # shape=(), int32: epochs completed
    early: Any = None  # EarlyStopping while fit(patience=...) tracks the best epoch; else None


class EarlyStopping(NamedTuple):
    """Early stopping's bookkeeping, carried in :attr:`TrainState.early` (and so in
    checkpoints), so a resumed run keeps exactly what the uninterrupted one keeps."""

    best_value: Array  # shape=(), float: the lowest monitored loss so far
    best_epoch: Array  # shape=(), int32: its 1-based epoch (0: none yet)
    waited: Array  # shape=(), int32: epochs since it
    stopped: Array  # shape=(), bool: the run stopped early (patience ran out)
    best: Any  # the TrainState of best_epoch (its own early is None)
    monitor: Any = None  # shape=(), uint32: monitor_id of the record key it tracks (None:
    # a checkpoint from before it was recorded)


def monitor_id(name: str) -> np.uint32:
    """The number :attr:`EarlyStopping.monitor` records for the record key ``name``
    (``"val_loss"``, ``"train_loss"``): its CRC-32, so that a resumed state tracking one
    loss is never compared with another (:func:`fnmlp.train.loop.track_best`)."""
    import zlib

    return np.uint32(zlib.crc32(name.encode()))


class Batch(NamedTuple):
    x: Array  # [B, D]
    y: Array  # [B] int labels, or [B, C] targets
    w: Array | None = None  # [B] per-example weights; None: all ones (the unweighted program)


def init_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """A fresh state at step 0, for :attr:`Trainer.step`, which donates its state: the
    params are copied (:func:`copy_tree`), so the caller's arrays stay valid. The
    optimizer is checked against the state contract of :mod:`fnmlp.optim` first (a clear
    error, nothing compiled)."""
    check_optimizer(optimizer, params)
    return copy_tree(fresh_state(params, optimizer))


def fresh_state(params: Params, optimizer: GradientTransformation) -> TrainState:
    """A state at step 0 holding ``params`` themselves (not copied: :attr:`Trainer.epoch`,
    which ``fit`` runs, donates nothing), without the optimizer check, for callers that
    made it once. fnmlp's optimizers make their zero buffers on the host: nothing is
    compiled."""
    zero = host_scalar(0, np.int32)
    return TrainState(params, optimizer.init(params), zero, zero)


def dropout_key(key: Array | None, step: Array) -> Array:
    """The dropout key of update ``step``: ``fold_in(fold_in(key, DROPOUT_STREAM), step)``
    (``key(0)`` when no key is given)."""
    key = jax.random.key(0) if key is None else key
    return jax.random.fold_in(jax.random.fold_in(key, DROPOUT_STREAM), step)


def check_compute_dtype(compute_dtype: Any) -> Any:
    """None, or a float dtype such as ``jnp.bfloat16``, returned as given; checked by the
    one rule for a dtype asked by name (:func:`fnmlp._checks.check_float_dtype`: float64
    with JAX's float64 off is refused, as for ``init_params``; it ran in float32 here).

    Raises:
      ValueError: not a float dtype fnmlp computes in, or float64 with float64 off.
    """
    if compute_dtype is not None:
        check_float_dtype(compute_dtype, "compute_dtype")
    return compute_dtype


def make_train_step(model: Layer, optimizer: GradientTransformation,
                    loss: str | Loss = "softmax_cross_entropy", grad: str = "manual",
                    compute_dtype: Any = None) -> Callable:
    """The pure (un-jitted) step ``(state, batch, key=None) -> (state, metrics)``.

    ``metrics`` holds ``loss`` (the weighted mean when ``batch.w`` is given, and then
    ``weight``, the batch's ``sum(w)``, so an epoch can weigh its batches) and, for
    classification, ``accuracy`` (unweighted; scalars in :func:`metric_dtype`).
    The model runs in training mode; dropout's mask comes from :func:`dropout_key` of
    ``key`` (the run's seed key) and ``state.step``. With ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) every dense product takes its operands in that dtype and accumulates
    in float32; the float32 master params, biases, activations, the loss, the gradients
    and the update stay float32 (mixed precision).
    """
    model, lossdef = checks.check_config(model, loss, grad)
    return train_step(model, optimizer, lossdef, grad, check_compute_dtype(compute_dtype))


def train_step(model: Layer, optimizer: GradientTransformation, loss: Loss, grad: str,
               compute_dtype: Any = None) -> Callable:
    """:func:`make_train_step` for arguments already checked (the loss a Loss value)."""
    value_and_grad = value_and_grad_fn(model, loss, grad,
                                       None if compute_dtype is None else jnp.float32)

    def step(state: TrainState, batch: Batch, key: Array | None = None):
        ctx = Context(True, dropout_key(key, state.step), compute_dtype)
        value, grads, out = value_and_grad(state.params, batch.x, batch.y, ctx, batch.w)
        grads = jax.tree.map(lambda g, m: g.astype(m.dtype), grads, state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = apply_updates(state.params, updates)
        md = metric_dtype(state.params)
        metrics = {"loss": value.astype(md)}
        if batch.w is not None:
            metrics["weight"] = jnp.sum(batch.w.astype(md))
        if loss.classifies:
            metrics["accuracy"] = jnp.mean(correct(out.astype(md), batch.y, loss).astype(md))
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return step


def permutation(key: Array, n: int) -> Array:
    """A uniformly random permutation of ``arange(n)``: ``[n]`` int32.

    Each element gets a random key of ``R >= 3 log2(n)`` bits (so a tie anywhere has
    probability about ``n^2 / 2^(R+1) <= 1/n``, the bound ``jax.random.permutation``
    uses); the order is that of the keys. The keys are sorted least significant part
    first, in passes of **single-operand** ``uint32`` sorts: each word holds
    ``32 - b`` random bits above the ``b = ceil(log2 n)`` bits of the element's current
    position, so it is unique, the sort needs no payload, and the previous passes break
    ties. XLA:CPU sorts one ``uint32`` operand with its fast comparator: the shuffle of
    ``n = 60,000`` (3 passes of 16 bits) took 11.5 ms of the epoch against 30.4 ms for
    one sort of ``(uint32, uint32, int32)`` by two keys, on a 2-core Xeon
    (benchmarks/results/cpu-profile-epoch-shuffle-xeon-{before,after}.md). Beyond
    ``n = 2^24`` (fewer than 8 random bits a pass) it sorts by two ``uint32`` keys with
    the positions as payload.

    Raises nothing; ``n`` is a Python int (a static shape)."""
    b = max(1, (n - 1).bit_length())  # bits of a position
    if b > 24:
        bits = jax.random.bits(key, (2, n), jnp.uint32)
        *_, perm = jax.lax.sort((bits[0], bits[1], jnp.arange(n, dtype=jnp.int32)), num_keys=2)
        return perm
    r = 32 - b  # random bits per pass
    passes = -(-3 * b // r)  # ceil(3 b / r): R = passes * r >= 3 log2(n) random bits
    bits = jax.random.bits(key, (passes, n), jnp.uint32) >> b << b
    position = jnp.arange(n, dtype=jnp.uint32)
    mask = jnp.uint32((1 << b) - 1)
    perm = None
    for p in range(passes):
        order = (jax.lax.sort(bits[p] | position) & mask).astype(jnp.int32)
        perm = order if perm is None else perm[order]
    return perm


def epoch_fn(step: Callable, batch_size: int, contiguous: bool = False) -> Callable:
    """The pure epoch ``(state, x [N, D], y, key, w=None) -> (state, metrics)``: shuffle
    with ``fold_in(key, state.epoch)`` (:func:`permutation`), then ``lax.scan`` of ``step``
    over the minibatches; the weights ``w [N]``, when given, are gathered with the same
    indices as x and y.

    Each step gathers its ``B`` rows (``x[idx[s]]``). ``contiguous=True`` gathers the whole
    shuffled epoch once (``[S, B, D]``) and scans over contiguous minibatches instead: the
    same minibatches, so the same numbers, at the price of one copy of the data; measured
    slower on a 2-core Xeon (the epoch-wide gather cost 50 ms of a 0.33 s epoch of 60,000,
    the per-step gathers no more than slicing), so it is not the default."""

    def rated(state: TrainState, metrics: dict):  # each update's rate, beside its metrics
        return state, {**metrics, "learning_rate": get_learning_rate(state.opt_state)}

    def epoch(state: TrainState, x: Array, y: Array, key: Array, w: Array | None = None):
        n = x.shape[0]
        steps = n // batch_size
        perm = permutation(jax.random.fold_in(key, state.epoch), n)
        idx = perm[: steps * batch_size].reshape(steps, batch_size)  # [S, B]
        if contiguous:
            def batches(a):  # [N, ...] -> [S, B, ...], one gather per epoch
                return None if a is None else a[idx]

            def body(s, b):
                return rated(*step(s, Batch(*b), key))

            state, metrics = jax.lax.scan(body, state, (batches(x), batches(y), batches(w)))
        else:
            def body(s, i):  # gather the minibatch inside the step
                return rated(*step(s, Batch(x[i], y[i], None if w is None else w[i]), key))

            state, metrics = jax.lax.scan(body, state, idx)
        state = state._replace(epoch=state.epoch + 1)
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a))
                                      for a in jax.tree.leaves(state.params)]))
        summary = {k: jnp.mean(v) for k, v in metrics.items()
                   if k not in ("weight", "learning_rate")}
        if "weight" in metrics:  # sum(w l) / sum(w) over the epoch, as evaluate
            summary["loss"] = (jnp.sum(metrics["loss"] * metrics["weight"])
                               / weight_total(metrics["weight"]))
        summary["params_finite"] = finite
        summary["learning_rate"] = get_learning_rate(state.opt_state)
        # the lowest rate any update of the epoch used (NaN if any was): a schedule negative
        # inside the epoch and positive at its end is seen (fnmlp.optim.base.unusable_rate)
        summary["lowest_learning_rate"] = (jnp.min(metrics["learning_rate"]) if steps
                                           else summary["learning_rate"])
        summary.update(weight_stats(state.params))  # once per epoch, fetched with the rest
        return state, summary

    return epoch


def weight_matrices(params: Params) -> list[Array]:
    """Every weight matrix of ``params`` (the leaves with two or more dimensions: one per
    Dense layer, and any matrix of your own layers), in the order of the layers. No
    layer's naming is assumed; biases and norm scales (vectors) are left out."""
    return [leaf for leaf in jax.tree.leaves(params) if np.ndim(leaf) >= 2]


def weight_stats(params: Params) -> dict[str, Array]:
    """``weight_max_abs`` and ``weight_norm`` (Frobenius): ``[L]`` float32 arrays, one
    entry per weight matrix (:func:`weight_matrices`); empty when there is none."""
    ws = weight_matrices(params)
    if not ws:
        return {}
    return {"weight_max_abs": jnp.stack([jnp.max(jnp.abs(w)).astype(jnp.float32) for w in ws]),
            "weight_norm": jnp.stack([jnp.linalg.norm(w.astype(jnp.float32)) for w in ws])}


def metric_dtype(params: Params) -> Any:
    """The dtype of every loss and metric fnmlp reports for ``params``: their float dtype,
    at least float32 (float64 params are trained, validated and evaluated in float64;
    float16 and bfloat16 params report float32). The one dtype policy: the params decide;
    inputs and targets are cast to the params' dtype at the boundary (``check_batch``)."""
    return jnp.promote_types(checks.dtype_of(params), jnp.float32)


def eval_fn(model: Layer, loss: Loss | str, chunk: int) -> Callable:
    """The pure ``(params, x, y, w=None) -> {loss, accuracy | mse, mae}`` over padded
    chunks, in :func:`metric_dtype`. With weights ``w [N]`` the loss is the weighted mean
    ``sum w_i l_i / sum w_i``; accuracy, MSE and MAE count every example once. Unchecked
    (a loss name is taken too)."""

    lossdef = get_loss(loss)  # a Loss as it is
    classify = lossdef.classifies

    def evaluate(params: Params, x: Array, y: Array, w: Array | None = None):
        n = x.shape[0]
        pad = (-n) % chunk
        xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        ys = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1))
        md = metric_dtype(params)
        mask = (jnp.arange(n + pad) < n).astype(md)
        k = (n + pad) // chunk
        xs = xs.reshape(k, chunk, *x.shape[1:])
        ys = ys.reshape(k, chunk, *y.shape[1:])
        mask = mask.reshape(k, chunk)
        # the loss's weight per example: the mask, times w when given
        lw = mask if w is None else mask * jnp.pad(w.astype(md), (0, pad)).reshape(
            k, chunk)

        def body(acc, c):
            xc, yc, mc, wc = c
            out = model.apply(params, xc).astype(md)  # [chunk, C], evaluation mode
            yc = yc if lossdef.kind == "multiclass" else yc.astype(md)
            sums = {"loss": jnp.sum(lossdef.fn(out, yc).astype(md) * wc)}
            if classify:
                sums["accuracy"] = jnp.sum(correct(out, yc, lossdef).astype(md) * mc)
            else:
                d = out - yc
                sums["mse"] = jnp.sum(jnp.mean(d * d, axis=1) * mc)
                sums["mae"] = jnp.sum(jnp.mean(jnp.abs(d), axis=1) * mc)
            return jax.tree.map(jnp.add, acc, sums), None

        zero = {k: jnp.zeros((), md) for k in
                (["loss", "accuracy"] if classify else ["loss", "mse", "mae"])}
        sums, _ = jax.lax.scan(body, zero, (xs, ys, mask, lw))
        out = {k: v / n for k, v in sums.items()}
        if w is not None:
            out["loss"] = sums["loss"] / weight_total(jnp.sum(lw))
        return out

    return evaluate


def compiler_options() -> dict[str, Any] | None:
    """XLA options fnmlp compiles its training programs with: on the CPU,
    ``xla_cpu_prefer_vector_width=512`` (XLA:CPU's default is 256 bits).

    Measured on the lesson's 784-128-10 epoch on a 2-core AMD EPYC (Zen 5, AVX-512;
    ``benchmarks/README.md``), new / old examples/s in four interleaved before/after runs:
    manual backward 1.143, 0.966, 1.043, 1.007 (0.966 inside the noise), autodiff 1.052,
    1.015, 1.062, 1.063; on 784-1024-1024-10 1.04-1.14x in two runs of each. Mostly the
    Adam update of the first layer's weights (8.1 -> 4.5 ms an epoch in XLA's profile).
    On a CPU without AVX-512 the preference cannot be met and LLVM uses the widest vectors
    it has (not measured here).

    Returns ``None`` (XLA's defaults) on other backends, and when ``XLA_FLAGS`` already
    sets ``--xla_cpu_prefer_vector_width`` (the user's choice wins), given inline or in
    the file of flags XLA reads when ``XLA_FLAGS`` does not start with ``-``. XLA reads
    ``XLA_FLAGS`` once, when its backend starts, and fnmlp reads it when each program is
    built: set it before JAX starts. The options are part of JAX's compilation-cache key,
    so cached programs never mix the two.
    """
    if _xla_flags_set(os.environ.get("XLA_FLAGS", ""), "xla_cpu_prefer_vector_width"):
        return None
    return {"xla_cpu_prefer_vector_width": 512} if jax.default_backend() == "cpu" else None


def _xla_flags_set(xla_flags: str, name: str) -> bool:
    """Whether the ``XLA_FLAGS`` value ``xla_flags`` sets the flag ``name``, read as XLA
    reads it: flags (``--name=value`` or ``--name``, whitespace-separated, shell quoting)
    when it starts with ``-``, else the name of a file of such flags. An unreadable file
    counts as not setting it (XLA itself refuses to start then)."""
    text = xla_flags.strip()
    if text and not text.startswith("-"):
        try:
            with open(text, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return False
    try:
        tokens = shlex.split(text)
    except ValueError:  # an unbalanced quote
        tokens = text.split()
    return any(t.startswith("-") and t.lstrip("-").split("=", 1)[0] == name for t in tokens)


class Trainer(NamedTuple):
    """Jitted functions for one configuration (see :func:`make_trainer`)."""

    step: Callable  # (state, batch, key=None) -> (state, metrics); state donated
    epoch: Callable  # (state, x [N, D], y, key, w=None) -> (state, metrics); not donated
    evaluate: Callable  # (params, x, y, w=None) -> {"loss", "accuracy" | "mse", "mae"}
    batch_size: int


def make_trainer(
    model: Layer,
    optimizer: GradientTransformation,
    batch_size: int,
    loss: str | Loss = "softmax_cross_entropy",
    grad: str = "manual",
    eval_batch_size: int = 1024,
    compute_dtype: Any = None,
    mesh: Any = None,
) -> Trainer:
    """Compiles (lazily) the step, the epoch and the evaluation for one configuration.

    Args:
      model: a :class:`~fnmlp.layers.Layer` (``mlp([D, H, C], "relu")``, ``serial(...)``).
      optimizer: a :class:`~fnmlp.optim.GradientTransformation`.
      batch_size: minibatch size ``B`` (static: the epoch's shape depends on it).
      loss: a loss name (or a :class:`~fnmlp.losses.Loss`) that takes what the model
        outputs.
      grad: ``"manual"`` (the hand-derived backward) or ``"autodiff"`` (``jax.grad``).
      eval_batch_size: chunk size for :attr:`Trainer.evaluate`.
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision (see make_train_step).
      mesh: a 1-D ``jax.sharding.Mesh``: train data-parallel over it (minibatches
        sharded along the batch axis, state replicated; see :mod:`fnmlp.parallel`).
    """
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    eval_batch_size = checks.check_positive_int(eval_batch_size, "eval_batch_size")
    model, lossdef = checks.check_config(model, loss, grad)
    return build_trainer(model, optimizer, batch_size, lossdef, grad, eval_batch_size,
                         check_compute_dtype(compute_dtype), mesh)


def build_trainer(model: Layer, optimizer: GradientTransformation, batch_size: int,
                  loss: Loss, grad: str, eval_batch_size: int = 1024,
                  compute_dtype: Any = None, mesh: Any = None) -> Trainer:
    """:func:`make_trainer` for arguments already checked (the loss a Loss value)."""
    step = train_step(model, optimizer, loss, grad, compute_dtype)
    placement = {}
    if mesh is not None:
        check_divisible(batch_size, mesh)
        step = shard_step(step, mesh)
        placement = {"out_shardings": (replicated(mesh), replicated(mesh))}
    options = compiler_options()
    return Trainer(
        step=jax.jit(step, donate_argnums=0, compiler_options=options, **placement),
        # not donated: the state fit resumes from stays valid without a copy (a copy is one
        # more program to compile; one epoch's new buffers cost nothing measurable)
        epoch=jax.jit(epoch_fn(step, batch_size), compiler_options=options, **placement),
        evaluate=_jitted_eval(model, loss, eval_batch_size),
        batch_size=batch_size,
    )


def cached_trainer(model: Layer, optimizer: GradientTransformation, batch_size: int,
                   loss: Loss | str, grad: str, eval_batch_size: int = 1024,
                   compute_dtype: Any = None, mesh: Any = None) -> Trainer:
    """:func:`build_trainer` (arguments already checked), one per configuration for the
    life of the process.

    The key is what the compiled program depends on: ``optimizer.update`` (fnmlp's
    builders share one per static configuration, see :mod:`fnmlp.optim`; a user's
    GradientTransformation is keyed by the identity of its ``update``), batch size, model,
    loss, gradient path, evaluation chunk, compute dtype and mesh. Learning rate, weight
    decay and seed are arrays, not part of the key: a learning-rate sweep or a resume loop
    of :func:`fit` compiles nothing after its first call. Unhashable parts (a mesh or an
    ``update`` that cannot be hashed) get a fresh, uncached trainer.
    """
    loss = get_loss(loss)  # a Loss as it is: the key is the value, named or not
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype).name
    key = (optimizer.update, batch_size, model, loss, grad, eval_batch_size, dtype, mesh)
    try:
        trainer = _TRAINERS.get(key)
    except TypeError:
        return build_trainer(model, optimizer, batch_size, loss, grad, eval_batch_size,
                             compute_dtype, mesh)
    if trainer is None:
        trainer = build_trainer(model, optimizer, batch_size, loss, grad, eval_batch_size,
                                compute_dtype, mesh)
        if len(_TRAINERS) >= MAX_CACHED_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))  # the oldest
    _TRAINERS[key] = _TRAINERS.pop(key, trainer)  # most recently used last
    return trainer


MAX_CACHED_TRAINERS = 32
_TRAINERS: dict[tuple, Trainer] = {}  # cached_trainer's cache (least recently used first)


@jax.jit
def copy_tree(tree: Any) -> Any:
    """A copy of every array leaf of ``tree`` (new buffers), in one compiled program per
    tree structure; eager per-leaf copies would compile one program per leaf shape."""
    return jax.tree.map(jnp.copy, tree)




def jitted_eval(model: Layer, loss: Loss | str, batch_size: int) -> Callable:
    """One jitted evaluation per configuration, so repeated calls do not recompile: a
    loss name and its Loss value share it."""
    return _jitted_eval(model, get_loss(loss), batch_size)


@functools.lru_cache(maxsize=64)
def _jitted_eval(model: Layer, loss: Loss, batch_size: int) -> Callable:
    return jax.jit(eval_fn(model, loss, batch_size), compiler_options=compiler_options())


jitted_eval.cache_clear = _jitted_eval.cache_clear  # as when it was the lru_cache itself
