"""One training run, read from the flags once.

:meth:`RunConfig.from_args` turns the parsed flags into a frozen :class:`RunConfig`; the
network (the hidden layers of the one grammar, :mod:`fnmlp.cli.arch`), the optimizer and
the run's settings are read from it, never from the flags again. :func:`model_and_config`
builds the model once and the config a checkpoint saves of it: ``{model, loss, input}``
(what :func:`fnmlp.load_model` needs) and the run's settings (:meth:`RunConfig.saved`).
Nothing here imports jax at module level.

Shapes: ``N`` examples, ``D`` features, ``C`` outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from fnmlp.cli.arch import hidden_layers, model_of
from fnmlp.cli.types import UsageError


class DefaultRate(float):
    """``--lr``'s default: a float that says it was not given, so ``--resume`` keeps the
    checkpoint's rate (fit's rule: a name alone keeps the state's; a rate asked for is
    applied)."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What one run (or one population) was asked for; every field read once from the
    flags (:meth:`from_args`)."""

    hidden: tuple  # the hidden layers (Layer values); the output Dense(C) is added
    optimizer: str  # a name of fnmlp.optim
    lr: float  # the learning rate (with --resume and no --lr: the checkpoint's)
    lr_given: bool  # --lr on the command line (False: --resume keeps the checkpoint's)
    weight_decay: float  # --weight-decay, or the optimizer's PyTorch default (adamw 0.01)
    schedule: str  # "constant", or "cosine": --lr decays to 0 over the run
    batch_size: int
    epochs: int  # the epoch to train up to
    grad: str  # "manual" (the hand-derived backward) or "autodiff"
    seed: int  # init, shuffles, the validation split, in [0, 2**32)
    val_split: float | None = None  # the share of train held out for validation
    patience: int | None = None  # early stopping on the validation loss
    class_weight: Any = None  # None, "balanced" or {label: weight}
    devices: int = 1  # data-parallel over the first N devices
    out: str = "runs"  # the folder for checkpoint.npz, metrics.json, pictures
    resume: bool = False
    quiet: bool = False
    log_every: int = 1
    checkpoint_seconds: float = 1.0  # the least time between two checkpoint writes

    @classmethod
    def from_args(cls, args: argparse.Namespace | RunConfig) -> RunConfig:
        """The run the parsed flags ask for (a ``RunConfig`` is returned as it is)."""
        if isinstance(args, RunConfig):
            return args
        opt = args.optimizer
        wd = getattr(args, "weight_decay", None)
        return cls(
            hidden=tuple(hidden_layers(args)), optimizer=opt, lr=float(args.lr),
            lr_given=not isinstance(args.lr, DefaultRate),
            weight_decay=(0.01 if opt == "adamw" else 0.0) if wd is None else float(wd),
            schedule=getattr(args, "schedule", "constant"), batch_size=args.batch_size,
            epochs=args.epochs, grad=args.grad, seed=args.seed,
            val_split=getattr(args, "val_split", None),
            patience=getattr(args, "patience", None),
            class_weight=getattr(args, "class_weight", None),
            devices=getattr(args, "devices", 1), out=args.out,
            resume=bool(getattr(args, "resume", False)), quiet=bool(getattr(args, "quiet", False)),
            log_every=getattr(args, "log_every", 1),
            checkpoint_seconds=getattr(args, "checkpoint_seconds", 1.0))

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def model(self, d_in: int, n_out: int):
        """``serial(*hidden, Dense(n_out), in_features=d_in)``."""
        return model_of(list(self.hidden), d_in, n_out)

    def saved(self) -> dict:
        """The settings every checkpoint and metrics.json keep beside ``{model, loss,
        input}``, a population's included."""
        return {"optimizer": self.optimizer, "batch_size": self.batch_size,
                "epochs": self.epochs, "grad": self.grad, "devices": self.devices,
                "dtype": "float32", "schedule": self.schedule}

    def member(self) -> dict:
        """The settings of one model's run (a population's members have their own)."""
        return {"lr": self.lr, "seed": self.seed, "patience": self.patience,
                "class_weight": self.class_weight, "val_split": self.val_split,
                "weight_decay": self.weight_decay}


def check_model_size(model, d_in: int) -> None:
    """Refuses, before anything is allocated, a network whose params would not fit in half
    of this machine's memory (a typo like ``--hidden 100000000``)."""
    import jax
    import numpy as np

    from fnmlp._validate import physical_memory

    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), d_in)[1])
    need = sum(int(np.prod(a.shape)) * 4 for a in jax.tree.leaves(shapes))
    if need > physical_memory() // 2:
        raise UsageError(f"the network's params would take {need / 2**30:.1f} GiB, more than"
                         f" half of this machine's {physical_memory() / 2**30:.1f} GiB; give"
                         " smaller widths")


def n_outputs(y: Any, loss: Any) -> int:
    """``C``: the classes of labels ``y [N]`` for a multiclass loss (a name or a
    :class:`~fnmlp.losses.Loss`: its ``kind`` decides), else the width of the targets (1
    for ``[N]``)."""
    from fnmlp.losses import get_loss

    return int(y.max()) + 1 if get_loss(loss).kind == "multiclass" else (
        1 if y.ndim == 1 else y.shape[1])


def model_and_config(run: RunConfig, x: Any, y: Any, loss: Any, dataset: str,
                     extra_config: dict | None = None) -> tuple[Any, dict]:
    """The model (built once, for inputs ``x [N, D]`` and targets ``y``) and its config:
    ``{model, loss, input}`` (the input record with its ``width`` ``D``;
    ``extra_config["input"]`` gives its kind and scale), the run's settings and
    ``extra_config``. The network is described once, by ``model``.

    Raises:
      UsageError: an empty training set, or params larger than half of the memory.
    """
    if len(x) == 0:
        raise UsageError("the training set is empty")
    d = int(x.shape[1])
    model = run.model(d, n_outputs(y, loss))
    check_model_size(model, d)
    extra = dict(extra_config or {})
    record = {"kind": "features", **extra.pop("input", {}), "width": d}
    config = {"dataset": dataset, "data": data_record(x, y), "model": model.to_config(),
              "loss": getattr(loss, "name", loss), "input": record, **run.saved(), **extra}
    return model, config


def data_record(x: Any, y: Any) -> dict:
    """What ``--resume`` compares to know the training data is the checkpoint's:
    ``{"examples": N, "digest": 16 hex digits}``, a SHA-256 of the labels and of at most
    1,024 evenly spaced rows of ``x [N, D]`` (with their shapes and dtypes): another data
    set, size, split or seed changes it; it costs microseconds, not a pass over x."""
    import hashlib

    import numpy as np

    x, y = np.asarray(x), np.asarray(y)
    rows = np.unique(np.linspace(0, len(x) - 1, min(len(x), 1024)).astype(np.int64))
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(y), np.ascontiguousarray(x[rows])):
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return {"examples": int(len(x)), "digest": h.hexdigest()[:16]}
