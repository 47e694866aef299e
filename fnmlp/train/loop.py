"""The epoch loop, and the small pieces around it that ``fit`` and populations share.

Shapes: ``N`` examples, ``D`` features, ``C`` outputs.

The loop is :func:`run_epochs`: for each epoch, ``run_epoch(state, epoch) -> (state,
record)`` (one compiled epoch and its history record), then early stopping, the
callback, the log line. The pieces, each usable alone in a loop of your own:

* :func:`train_epoch`: one compiled epoch of a :class:`~fnmlp.train.Trainer`, timed, its
  record made (:func:`epoch_record`), a non-finite loss raised as :class:`TrainingDiverged`.
* :func:`validate`: the validation scores of params, as ``{"val_loss": ...}``.
* :class:`Patience`: early stopping (``update`` after an epoch, ``stopped``), its
  bookkeeping an :class:`~fnmlp.train.EarlyStopping` carried in ``state.early`` so a
  checkpoint holds it and a resumed run keeps exactly what an uninterrupted one keeps.
* :class:`EpochLog`: one line per epoch (``every``-th), through ``log``.

Written out, the loop of :func:`fnmlp.fit` is (see the README)::

    trainer = make_trainer(model, optimizer, batch_size)
    state, key, stop = init_state(params, optimizer), jax.random.key(0), Patience(5)
    for epoch in range(1, epochs + 1):
        state, record = train_epoch(trainer, state, (x, y), key, epoch)
        record.update(validate(trainer, state.params, (x_val, y_val)))
        state = stop.update(state, record)
        print(format_record(record, epochs))
        if stop.stopped(state):
            break
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from fnmlp._checks import check_positive_int
from fnmlp.compile_cache import CompileTimer
from fnmlp.optim import get_learning_rate, host_scalar
from fnmlp.optim.base import unusable_rate
from fnmlp.train.step import EarlyStopping, Trainer, TrainState, monitor_id

__all__ = ["EpochLog", "Patience", "TrainingDiverged", "epoch_record", "format_record",
           "run_epochs", "track_best", "train_epoch", "validate"]


class TrainingDiverged(FloatingPointError):
    """The loss or the params became non-finite, or a schedule's learning rate negative
    or non-finite. ``state`` is the last good state (the end of the previous epoch);
    ``epoch`` the 1-based epoch that diverged; ``history`` the records of the epochs
    before it."""

    def __init__(self, message: str, epoch: int, state: TrainState, history: list):
        super().__init__(message)
        self.epoch = epoch
        self.state = state
        self.history = history


# ----------------------------------------------------------------------------- the loop


def run_epochs(run_epoch: Callable, state: TrainState, epochs: int, *,
               stopping: Patience | None = None, log: EpochLog | None = None,
               on_epoch_end: Callable | None = None, start: int | None = None
               ) -> tuple[TrainState, list]:
    """The epoch loop: ``run_epoch(state, epoch) -> (state, record)`` for epochs
    ``start + 1 .. epochs`` (1-based; ``start`` defaults to ``state.epoch``), then
    ``stopping.update`` (before the callback, so a checkpoint it writes holds it),
    ``on_epoch_end(state, record)``, ``log``; it ends early when ``stopping`` says so.

    A :class:`TrainingDiverged` that ``run_epoch`` raises leaves with the history so far.

    Returns:
      ``(state, history)``: the final state (its ``early`` updated) and the new records.
    """
    start = int(state.epoch) if start is None else start
    history: list = []
    if stopping is not None and stopping.stopped(state):
        if log is not None:
            log.say(stopping.already_stopped(state))
        return state, history
    for epoch in range(start + 1, epochs + 1):
        try:
            state, record = run_epoch(state, epoch)
        except TrainingDiverged as e:
            e.history = history
            raise
        history.append(record)
        if stopping is not None:
            state = stopping.update(state, record)
        if on_epoch_end is not None:
            on_epoch_end(state, record)
        if log is not None:
            log(epoch, record)
        if stopping is not None and stopping.stopped(state):
            if log is not None:
                log.say(stopping.stopping(state, epoch))
            break
    return state, history


# ----------------------------------------------------------------------------- pieces


def train_epoch(trainer: Trainer, state: TrainState, data: tuple, key: jax.Array,
                epoch: int, rate_before: float | None = None) -> tuple[TrainState, dict]:
    """Trains epoch ``epoch`` (1-based) of ``data = (x, y)`` or ``(x, y, w)`` (``w [N]``
    per-example weights) with ``trainer.epoch``; returns the new state and its record
    (:func:`epoch_record`). The compiled epoch donates nothing, so ``state`` stays valid;
    ``state.early`` (early stopping's record) passes around it, so the program's input
    keeps one structure and nothing recompiles. ``rate_before`` is the rate a schedule's
    lowest rate in the epoch is judged against (:func:`fnmlp.optim.base.unusable_rate`);
    None: ``state``'s own (a resumed run passes the rate its state was trained at).

    Raises:
      TrainingDiverged: a non-finite loss or params, or an unusable rate; ``.state`` is
        ``state`` (without ``early``).
    """
    x, y, w = (*data, None)[:3]
    early, state = state.early, state._replace(early=None)  # the program's input: one structure
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
            f" (end of epoch {epoch - 1}) are kept in .state", epoch, state, [])
    rate = float(m["lowest_learning_rate"])  # the lowest any update of the epoch used
    before = _rate_of(state) if rate_before is None else rate_before
    if not (np.isfinite(rate) and rate >= 0) and unusable_rate(rate, before):
        raise TrainingDiverged(
            f"the learning rate became {rate:g} in epoch {epoch} (the schedule's lowest over"
            f" the epoch's updates, steps {int(state.step)}-{int(new.step) - 1}); a rate must"
            " be finite and >= 0 (a negative rate climbs the loss): the params of the end of"
            f" epoch {epoch - 1} are kept in .state",
            epoch, state, [])
    return new._replace(early=early), record


def _rate_of(state: TrainState) -> float:
    """The learning rate ``state`` was trained at last (the first rate before epoch 1),
    fetched only when an epoch's rate is in doubt."""
    return float(jax.device_get(get_learning_rate(state.opt_state)))


def validate(trainer: Trainer, params: Any, data: tuple | None, prefix: str = "val_") -> dict:
    """``{prefix + name: float}`` of ``trainer.evaluate(params, x, y)`` on ``data = (x,
    y)`` (checked arrays), in evaluation mode; ``{}`` when ``data`` is None."""
    if data is None:
        return {}
    return {f"{prefix}{k}": float(v)
            for k, v in jax.device_get(trainer.evaluate(params, *data)).items()}


@dataclasses.dataclass(frozen=True)
class Patience:
    """Early stopping: stop after ``patience`` epochs without a strictly lower
    ``record[monitor]`` (``mode="max"``: strictly higher, for ``"val_accuracy"``); keep the
    best epoch's state (``state.early.best``). As Keras's ``EarlyStopping(monitor, mode)``,
    without its name-guessing ``"auto"``: an accuracy with ``mode="min"`` (which kept the
    worst epoch) is refused.

    Raises:
      ValueError: ``patience`` not a positive integer, ``mode`` not ``"min"``/``"max"``,
        an accuracy monitored with ``"min"`` or a loss or error with ``"max"``, or (in
        :meth:`update`) a record without ``monitor`` (no validation data was scored that
        epoch) or whose value is not one number.
    """

    patience: int
    monitor: str = "val_loss"
    mode: str = "min"

    def __post_init__(self):
        object.__setattr__(self, "patience", check_positive_int(self.patience, "patience"))
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (a loss) or 'max' (an accuracy); got"
                             f" {self.mode!r}")
        if not isinstance(self.monitor, str):
            raise ValueError(f"monitor must be a record key such as 'val_loss'; got"
                             f" {self.monitor!r}")
        if "accuracy" in self.monitor and self.mode == "min":
            raise ValueError(f"{self.monitor!r} grows as the model learns: give mode='max'"
                             " (mode='min' keeps the epoch with the lowest accuracy)")
        if any(w in self.monitor for w in ("loss", "mse", "mae")) and self.mode == "max":
            raise ValueError(f"{self.monitor!r} falls as the model learns: give mode='min'"
                             " (mode='max' keeps the epoch with the highest loss)")

    @property
    def key(self) -> str:
        """What :attr:`EarlyStopping.monitor` records (:func:`monitor_id`): the monitor,
        with ``":max"`` for ``mode="max"``."""
        return self.monitor if self.mode == "min" else f"{self.monitor}:max"

    def update(self, state: TrainState, record: dict) -> TrainState:
        """``state`` with its bookkeeping (:func:`track_best`) after the epoch of ``record``."""
        if self.monitor not in record:
            raise ValueError(f"Patience monitors {self.monitor!r}, which this epoch's record"
                             f" lacks ({sorted(record)}): score held-out data first"
                             " (record.update(validate(...))), or pass monitor=")
        value = record[self.monitor]
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)):
            raise ValueError(f"Patience monitors {self.monitor!r}, which must be one number"
                             f" per epoch; this record holds {value!r}"[:200])
        self.check_state(state)
        return state._replace(early=track_best(state, float(value), self.patience,
                                               self.key, self.mode))

    def check_state(self, state: TrainState) -> None:
        """``ValueError`` when ``state.early`` tracked another record key than this
        monitor: a state early-stopped on ``train_loss`` (no validation data) resumed with
        validation data compared each ``val_loss`` with the best training loss, and kept
        the old epoch. A state saved before the key was recorded passes."""
        early = state.early
        if early is None or early.monitor is None or int(early.monitor) == monitor_id(
                self.key):
            return
        known = ["train_loss", "val_loss", "loss", "val_accuracy:max", "train_accuracy:max"]
        was = {int(monitor_id(k)): _shown(k) for k in known}.get(int(early.monitor),
                                                                "another record key")
        raise ValueError(
            f"state.early tracked {was} (best {float(early.best_value):.6g} at epoch"
            f" {int(early.best_epoch)}), but this run monitors {_shown(self.key)}"
            " (validation data given or not decides which): resume with the same"
            " validation setup, or drop the old record to start early stopping afresh:"
            " state=state._replace(early=None)")

    def stopped(self, state: TrainState) -> bool:
        """Whether patience has run out (read from ``state.early``)."""
        return state.early is not None and bool(state.early.stopped)

    def best_epoch(self, state: TrainState) -> int:
        """The 1-based epoch kept (0: none yet)."""
        return 0 if state.early is None else int(state.early.best_epoch)

    def stopping(self, state: TrainState, epoch: int) -> str:
        return (f"early stopping after epoch {epoch}: {self.monitor} has not improved for"
                f" {self.patience} epochs; restoring epoch {self.best_epoch(state)}")

    def already_stopped(self, state: TrainState) -> str:
        return (f"this run already stopped early at epoch {int(state.epoch)} ({self.monitor}"
                f" had not improved for {int(state.early.waited)} epochs); keeping epoch"
                f" {self.best_epoch(state)}, training nothing more")


def _shown(key: str) -> str:
    """A :attr:`Patience.key` as messages name it: ``'val_accuracy' (mode='max')``."""
    name, _, mode = key.partition(":")
    return f"{name!r}" + (f" (mode={mode!r})" if mode else "")


def track_best(state: TrainState, value: float, patience: int,
               monitor: str = "val_loss", mode: str = "min") -> EarlyStopping:
    """Early stopping's bookkeeping after an epoch whose monitored value (``monitor``, as
    :attr:`Patience.key` names it) is ``value``: a new best (strictly lower; ``mode="max"``:
    strictly higher) keeps ``state`` (its arrays are never changed in place) and resets the
    wait; otherwise the wait grows, and reaching ``patience`` marks the run stopped. The
    key is recorded (:func:`monitor_id`)."""
    early = state.early
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    better = early is None or (value < float(early.best_value) if mode == "min"
                               else value > float(early.best_value))
    if better:
        return EarlyStopping(host_scalar(value, dtype), host_scalar(int(state.epoch), np.int32),
                             host_scalar(0, np.int32), host_scalar(False, np.bool_),
                             state._replace(early=None),  # arrays: never changed in place
                             host_scalar(monitor_id(monitor), np.uint32))
    waited = int(early.waited) + 1
    return early._replace(monitor=host_scalar(monitor_id(monitor), np.uint32),
                          waited=host_scalar(waited, np.int32),
                          stopped=host_scalar(waited >= patience, np.bool_))


class EpochLog(NamedTuple):
    """Prints ``fmt(record)`` after epochs 1, every ``every``-th and ``epochs`` (the last),
    through ``log`` (default: a line to stderr)."""

    epochs: int
    every: int = 1
    log: Callable[[str], None] | None = None
    fmt: Callable[[Any], str] | None = None

    def say(self, line: str) -> None:
        (self.log or _stderr)(line)

    def __call__(self, epoch: int, record: Any) -> None:
        if epoch == 1 or epoch % self.every == 0 or epoch == self.epochs:
            self.say(self.fmt(record) if self.fmt else format_record(record, self.epochs))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    """One log line of a history record."""
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
