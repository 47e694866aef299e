"""``fit`` and ``evaluate``: the epoch loop around the compiled epoch of :mod:`.step`.

Shapes: ``N`` examples, ``D`` features, ``C`` outputs.

:func:`fit` checks every argument on the host, then runs one compiled epoch per
iteration, adds validation, early stopping (its bookkeeping carried in
:attr:`TrainState.early`, so a resumed run keeps exactly what an uninterrupted one keeps),
history and progress. :func:`run_epochs` is that loop alone, shared with
:func:`fnmlp.population.fit_population`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from fnmlp import _validate as checks
from fnmlp.compile_cache import CompileTimer
from fnmlp.data import train_test_split
from fnmlp.data.scaling import warn_input_range
from fnmlp.grad import Params
from fnmlp.layers import Layer
from fnmlp.optim import (
    GradientTransformation,
    check_optimizer,
    get_learning_rate,
    get_optimizer,
    host_scalar,
)
from fnmlp.parallel import place_on_mesh
from fnmlp.train.step import (
    EarlyStopping,
    Trainer,
    TrainState,
    cached_trainer,
    check_config,
    fresh_state,
    jitted_eval,
)
from fnmlp.weights import check_weights

Array = jax.Array


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


def fit(
    model: Layer,
    params: Params,
    x: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str | GradientTransformation = "sgd",
    learning_rate: float | None = None,
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
      model: a :class:`~fnmlp.layers.Layer` (``mlp([D, H, C], "relu")``,
        ``serial(Dense(64), Tanh(), Dropout(0.2), Dense(10))``); dropout is on in
        training only.
      params: initial params (``model.init_params(key)``).
      x: inputs ``[N, D]``; y: labels ``[N]`` or targets ``[N, C]``.
      epochs: the epoch to train up to (a resumed ``state`` continues from its epoch;
        ``epochs`` not above the state's epoch is refused, unless the run stopped early,
        which trains nothing and says so).
      batch_size: minibatch size, 1..N (the partial last batch is dropped each epoch).
      optimizer: a name from :data:`fnmlp.optim.OPTIMIZERS` or a GradientTransformation
        (its state must hold ``learning_rate``: see :mod:`fnmlp.optim`).
      learning_rate: for an optimizer given by name (a number or a schedule). **One
        rule, fresh and resumed** (:func:`choose_optimizer`): a rate asked for is
        applied, ``learning_rate=`` with a name or the rate (or schedule) a
        GradientTransformation was built with, replacing
        a resumed state's, as the scripts' ``--lr`` does. A name alone trains at the
        optimizer's own default (:func:`fnmlp.optim.default_learning_rate`: ``adam`` and
        ``adamw`` 1e-3, ``rmsprop`` 1e-2, ``sgd`` 0.1) when fresh, and keeps the state's
        rate on resume. Both a GradientTransformation and ``learning_rate=`` are two rates
        for one run: refused (``ValueError``).
      loss: a loss name; it must take what the model outputs (logits, or probabilities
        after a final ``Softmax``): a mismatch is refused before anything compiles.
      grad: ``"manual"`` or ``"autodiff"``.
      seed: shuffling and dropout seed; epoch ``e`` shuffles with
        ``fold_in(key(seed), e)``.
      validation_split: hold out this fraction (seeded, before training) for validation.
      validation_data: or an explicit ``(x_val, y_val)``.
      patience: early stopping: stop after this many epochs without improvement of the
        validation loss (training loss when there is no validation) and return the best
        params (``best_state`` holds that epoch's whole state; its history record gets
        ``"restored": True``). The best value, its epoch and state and the wait travel
        in ``state.early``: resuming continues the count, and resuming a run that stopped
        trains nothing (it says so).
      state: a :class:`TrainState` to resume from (e.g. from a checkpoint, or the
        ``.state`` of an earlier FitResult); it is left intact (the compiled epoch donates
        nothing), so a resume loop ``r = fit(..., state=r.state)`` compiles and deletes
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
        ``CrossEntropyLoss``), on both gradient paths, and with ``mesh``; the epoch's
        ``train_loss`` is ``sum(w l) / sum(w)`` over the epoch. The validation loss stays
        unweighted (as Keras's ``class_weight``, "during training only"); with
        ``validation_split`` the held-out examples' weights are dropped.

    Returns:
      :class:`FitResult`. A non-finite loss or params raises :class:`TrainingDiverged`
      carrying the last finite state.

    Raises:
      ValueError: a bad argument, weights included (negative, non-finite, the wrong
        length, an unknown class, all zero), a loss that does not take the model's output,
        two learning rates (a GradientTransformation and ``learning_rate=``), a state that
        does not fit or is already at ``epochs``, before anything compiles.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    model = check_config(model, loss, grad)
    optimizer, asked, x, y, validation_data, w = _check_fit_args(
        model, params, x, y, epochs, batch_size, optimizer, learning_rate, loss,
        seed, validation_split, validation_data, patience, sample_weight, class_weight,
        log_every, state)
    warn_input_range(x)  # uint8 or 0..255 inputs: once, pointing at the caller
    state = (fresh_state(params, optimizer) if state is None  # optimizer checked
             else resumed_state(state, optimizer, asked))
    trainer = cached_trainer(model, optimizer, batch_size, loss, grad,
                             compute_dtype=compute_dtype, mesh=mesh)
    if mesh is not None:
        x, y, w, state, validation_data = place_on_mesh((x, y, w, state, validation_data),
                                                        mesh)
    key = jax.random.key(seed)
    monitor = "val_loss" if validation_data is not None else "train_loss"

    def run_epoch(state, e, history):
        return _one_epoch(trainer, state, (x, y, key, w), e, history, validation_data)

    state, history = run_epochs(run_epoch, state, epochs, monitor=monitor, patience=patience,
                                verbose=verbose, log=log, log_every=log_every,
                                on_epoch_end=on_epoch_end)
    early = state.early
    if patience is not None and early is not None and int(early.best_epoch) > 0:
        best_epoch = int(early.best_epoch)
        for r in history:
            if r["epoch"] == best_epoch:
                r["restored"] = True
        return FitResult(early.best.params, state, history, best_epoch, early.best)
    return FitResult(state.params, state, history, int(state.epoch))


def run_epochs(run_epoch: Callable, state: TrainState, epochs: int, *, monitor: str,
               patience: int | None, verbose: bool, log: Callable, log_every: int = 1,
               on_epoch_end: Callable | None = None,
               fmt: Callable | None = None, start: int | None = None
               ) -> tuple[TrainState, list]:
    """The epoch loop: ``run_epoch(state, epoch, history) -> (state, record)`` for epochs
    ``state.epoch + 1 .. epochs`` (1-based), the callback, the log line, and early
    stopping on ``record[monitor]`` (:func:`track_best`, kept in ``state.early``).
    ``start``: the epochs already done (default ``state.epoch``). Returns the final state
    (its ``early`` updated) and the new history records."""
    fmt = fmt or (lambda r: format_record(r, epochs))
    start = int(state.epoch) if start is None else start
    history: list = []
    if patience is not None and state.early is not None and bool(state.early.stopped):
        if verbose:
            log(f"this run already stopped early at epoch {int(state.epoch)} ({monitor} had"
                f" not improved for {int(state.early.waited)} epochs); keeping epoch"
                f" {int(state.early.best_epoch)}, training nothing more")
        return state, history
    for e in range(start, epochs):
        early = state.early
        new, record = run_epoch(state._replace(early=None), e + 1, history)
        state = new._replace(early=early)
        history.append(record)
        if patience is not None:  # before the callback, so a checkpoint it writes has it
            state = state._replace(early=track_best(state, record[monitor], patience))
        if on_epoch_end is not None:
            on_epoch_end(state, record)
        if verbose and (e == 0 or (e + 1) % log_every == 0 or e + 1 == epochs):
            log(fmt(record))
        if patience is not None and bool(state.early.stopped):
            if verbose:
                log(f"early stopping after epoch {e + 1}: {monitor} has not improved for"
                    f" {patience} epochs; restoring epoch {int(state.early.best_epoch)}")
            break
    return state, history


def track_best(state: TrainState, value: float, patience: int) -> EarlyStopping:
    """Early stopping's bookkeeping after an epoch whose monitored loss is ``value``: a new
    best (strictly lower) keeps ``state`` (its arrays are never changed in place) and resets
    the wait; otherwise the wait grows, and reaching ``patience`` marks the run stopped."""
    early = state.early
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    if early is None or value < float(early.best_value):
        return EarlyStopping(host_scalar(value, dtype), host_scalar(int(state.epoch), np.int32),
                             host_scalar(0, np.int32), host_scalar(False, np.bool_),
                             state._replace(early=None))  # arrays: never changed in place
    waited = int(early.waited) + 1
    return early._replace(waited=host_scalar(waited, np.int32),
                          stopped=host_scalar(waited >= patience, np.bool_))


def _one_epoch(trainer: Trainer, state: TrainState, data: tuple, epoch: int, history: list,
               validation_data) -> tuple[TrainState, dict]:
    """Trains epoch ``epoch`` (1-based) and returns the new state and its history record
    (validation scores added). The compiled epoch donates nothing, so the state it started
    from (kept for :class:`TrainingDiverged`, or a caller's resumed state) stays valid."""
    x, y, key, w = data
    t0 = time.perf_counter()
    with CompileTimer() as compiling:  # epoch 1 of a configuration compiles its program
        new, m = trainer.epoch(state, x, y, key, w)
        m = jax.device_get(m)
    seconds = time.perf_counter() - t0
    record = epoch_record(epoch, m, seconds, (len(x) // trainer.batch_size) * trainer.batch_size,
                          compiling.seconds)
    if not (np.isfinite(record["train_loss"]) and bool(m["params_finite"])):
        raise TrainingDiverged(
            f"training diverged in epoch {epoch}: train loss {record['train_loss']}"
            f" (learning rate {record['learning_rate']:g}); the last finite params"
            f" (end of epoch {epoch - 1}) are kept in .state", epoch, state, history)
    if validation_data is not None:
        vm = jax.device_get(trainer.evaluate(new.params, *validation_data))
        record.update({f"val_{k}": float(v) for k, v in vm.items()})
    return new, record


def choose_optimizer(optimizer: Any, learning_rate: float | None, params: Params
                     ) -> tuple[GradientTransformation, bool]:
    """Which optimizer trains, and whether a rate was asked for: the one rule for the
    learning rate, fresh and resumed, that :func:`fit` and the scripts follow.

    * a name and ``learning_rate``: that optimizer at that rate (asked for);
    * a name alone: the optimizer at its own default rate
      (:func:`fnmlp.optim.default_learning_rate`); nothing asked for, so a resumed state
      keeps its rate;
    * a GradientTransformation: the rate (or schedule) it was built with (asked for);
    * a GradientTransformation and ``learning_rate``: two rates for one run, refused.

    Returns:
      ``(optimizer, asked)``, the optimizer checked against ``params``.

    Raises:
      ValueError: a bad rate or name, a GradientTransformation that breaks the state
        contract, or both rates given.
    """
    if learning_rate is not None and not callable(learning_rate):  # a schedule is callable
        learning_rate = checks.check_positive_float(learning_rate, "learning_rate")
    asked = True
    if isinstance(optimizer, str):
        asked = learning_rate is not None
        optimizer = get_optimizer(optimizer, learning_rate)
    elif learning_rate is not None:
        lr = "a schedule" if callable(learning_rate) else f"{learning_rate:g}"
        raise ValueError(
            f"learning_rate={lr} given with an optimizer object, which has its own rate:"
            " give the rate once, as fnmlp.sgd(lr) (or adam(lr), ...) or as"
            f" optimizer='sgd', learning_rate={lr}")
    check_optimizer(optimizer, params)
    return optimizer, asked


def resumed_state(state: TrainState, optimizer: GradientTransformation, asked: bool
                  ) -> TrainState:
    """The state to resume from, with the learning rate this fit asks for (the rate
    ``optimizer`` starts at, when :func:`choose_optimizer` says one was asked for) in
    place of the state's; the state as it is otherwise. The same rule as the scripts'
    ``--lr`` on ``--resume``. (A schedule then decides each step from the state's count.)"""
    if not asked:
        return state
    rate = get_learning_rate(optimizer.init(state.params))  # may be 0: a warm-up's start
    held = state.opt_state.learning_rate
    return state._replace(opt_state=state.opt_state._replace(
        learning_rate=host_scalar(float(rate), held.dtype)))


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


def _check_fit_args(model, params, x, y, epochs, batch_size, optimizer, learning_rate,
                    loss, seed, validation_split, validation_data, patience,
                    sample_weight=None, class_weight=None, log_every=1, state=None):
    """Every check of :func:`fit`, on the host, before anything compiles. Returns the
    optimizer and whether a rate was asked for (:func:`choose_optimizer`), the data as
    checked arrays (the validation split taken off) and the training examples' weights
    ``[N]`` (None when unweighted)."""
    checks.check_positive_int(epochs, "epochs")
    optimizer, asked = choose_optimizer(optimizer, learning_rate, params)
    if state is not None:
        check_resumed_state(state, params, optimizer)
        stopped = patience is not None and state.early is not None and bool(state.early.stopped)
        if not stopped and int(state.epoch) >= epochs:
            raise ValueError(f"epochs={epochs} but the state is already at epoch"
                             f" {int(state.epoch)}: epochs is the epoch to train up to; give"
                             f" more than {int(state.epoch)} to continue")
    x, y = checks.as_numeric_array(x, "x"), checks.as_numeric_array(y, "y")
    if x.ndim >= 1 and y.ndim >= 1 and len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    x, y = checks.check_batch(model, params, x, y, loss)
    w = check_weights(model, params, x, y, loss, sample_weight, class_weight)  # all of them
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
            w = check_weights(model, params, x, y, loss, sw, class_weight)
    elif validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        validation_data = checks.check_batch(model, params, *validation_data, loss,
                                             ("x_val", "y_val"))
    checks.check_positive_int(batch_size, "batch_size")
    if batch_size > len(x):
        raise ValueError(f"batch_size must be at most the number of training examples"
                         f" ({len(x)}); got {batch_size}")
    if patience is not None:
        checks.check_positive_int(patience, "patience")
    checks.check_positive_int(log_every, "log_every")
    return optimizer, asked, x, y, validation_data, w


def epoch_record(epoch: int, m: dict, seconds: float, examples: int,
                 compile_seconds: float = 0.0) -> dict:
    """One epoch's history entry from its metrics (``loss``, ``accuracy``,
    ``learning_rate``) and time: ``epoch_seconds`` the wall time, ``compile_seconds``
    the part of it JAX spent compiling (:class:`fnmlp.compile_cache.CompileTimer`; 0.0
    but in a configuration's first epoch), ``examples_per_second`` the ``examples``
    trained over the time left, training alone."""
    record = {"epoch": epoch, "train_loss": float(m["loss"])}
    if "accuracy" in m:
        record["train_accuracy"] = float(m["accuracy"])
    compile_seconds = min(float(compile_seconds), seconds)
    record.update(epoch_seconds=seconds, compile_seconds=compile_seconds,
                  examples_per_second=examples / max(seconds - compile_seconds, 1e-9),
                  learning_rate=float(m["learning_rate"]))
    for key in ("weight_max_abs", "weight_norm"):  # one per weight matrix, in layer order
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
    if r.get("compile_seconds", 0) >= 0.01:
        parts.append(f"(+{r['compile_seconds']:.2f} s compiling)")
    return "  ".join(parts)


def evaluate(model: Layer, params: Params, x: Any, y: Any,
             loss: str = "softmax_cross_entropy", batch_size: int = 1024, *,
             sample_weight: Any = None, class_weight: Any = None) -> dict:
    """Mean loss and accuracy (classification) or MSE/MAE (regression) over all of x,
    in evaluation mode (no dropout); ``model`` and ``loss`` as for :func:`fit` (a loss
    that does not take the model's output is refused).

    Returns:
      ``{"loss", "accuracy"}`` or ``{"loss", "mse", "mae"}``, Python floats.

    With ``sample_weight`` / ``class_weight`` (as :func:`fit`) the loss is the weighted
    mean ``sum w_i loss_i / sum w_i``; accuracy, MSE and MAE stay unweighted. For
    per-class precision, recall and balanced accuracy see
    :func:`fnmlp.classification_report`.
    """
    model = check_config(model, loss, "manual")
    x, y = checks.check_batch(model, params, x, y, loss)
    w = check_weights(model, params, x, y, loss, sample_weight, class_weight)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    run = jitted_eval(model, loss, batch_size)
    # unweighted: the same call (and compiled program) as fit's validation
    out = run(params, x, y) if w is None else run(params, x, y, w)
    return {k: float(v) for k, v in out.items()}

