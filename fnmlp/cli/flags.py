"""The scripts' flags: the parser, the optimizer and mesh the flags ask for, and the
helpers every script shares (argument types in :mod:`.types`, the one architecture grammar
in :mod:`.arch`, both re-exported here).

Bad flags or bad data end a script with exit status 2 and a one-line message (no
traceback): argparse errors go through :class:`Parser`, and :func:`main_guard` turns
the library's ``ValueError``/``TypeError``/``FileNotFoundError``/``ImportError`` into one.
The names ``--help`` lists (:mod:`fnmlp._names`, the built-in activations and
optimizers) are the only library import at module level; everything that needs jax is
imported inside the function using it, so ``--help`` and a bad flag answer before jax is
imported (``fnmlp/__init__.py`` imports each name on first use).

**The architecture grammar** is ``--layers dense:N,ACTIVATION,dropout:RATE,layernorm``
(the hidden layers; the output ``Dense(C)`` is added); ``--hidden 256,128 --activation
relu --dropout 0.2`` is sugar for it, and both end in the same model:
``fnmlp.mlp([D, 256, 128, C], "relu", dropout=0.2)`` equals
``serial(Dense(256), Relu(), Dropout(0.2), Dense(128), Relu(), Dropout(0.2), Dense(C),
in_features=D)`` (:func:`build_model`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fnmlp._names import ACTIVATION_NAMES, OPTIMIZER_NAMES
from fnmlp.cli.arch import (  # noqa: F401  (re-exported: the scripts import them from here)
    _check_counts,
    architecture_name,
    build_model,
    hidden_layers,
    network,
    parse_hidden,
    parse_layers,
    parse_names,
    parse_rates,
)
from fnmlp.cli.config import (  # noqa: F401  (re-exported)
    DefaultRate,
    RunConfig,
    check_model_size,
    model_and_config,
)
from fnmlp.cli.types import (  # noqa: F401  (re-exported)
    UsageError,
    fraction,
    non_negative_float,
    parse_int_list,
    positive_float,
    positive_int,
    seed_int,
)

_IMPORTED = time.perf_counter()  # a script imports fnmlp.cli first: its start, near enough

LAYER_SPEC_HELP = (
    "the hidden layers, in order, comma-separated: dense:N, an activation name ("
    + ", ".join(sorted(ACTIVATION_NAMES)) + "), dropout:RATE, layernorm; the output layer"
    " (dense:C) is added. E.g. dense:256,tanh,dropout:0.2,dense:128,relu. Overrides"
    " --hidden, --activation and --dropout")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every option's default once: ``(default: X)`` is added unless the
    help text already says it; flags (store_true) show none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("(default" in text or not action.option_strings or action.nargs == 0
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, every default in ``--help``, and **no
    abbreviations**: ``--n 5000`` is an error, never ``--no-download`` (argparse's
    ``allow_abbrev``, off)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if not action.help and action.option_strings and action.nargs != 0:
            action.help = "(default: %(default)s)"  # argparse prints nothing without help
        return action

    def error(self, message):  # one line and exit 2, without the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, *args, **kwargs):
        """Parses, then checks that the architecture flags fit together (exit 2, one line
        naming the bad item), in plain Python: a mistake is answered before jax is
        imported."""
        ns = super().parse_args(*args, **kwargs)
        if getattr(ns, "patience", None) and not getattr(ns, "val_split", None):
            self.error("--patience monitors the validation set and needs --val-split F"
                       " (e.g. 0.1); early stopping never looks at the test set")
        if getattr(ns, "hidden", None) is not None and hasattr(ns, "activation"):
            try:
                _check_counts(ns)
            except (UsageError, ValueError) as e:
                self.error(str(e))
        return ns



def description(doc: str) -> str:
    """The first paragraph of a module docstring, as one line (for ``--help``)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def parse_class_weight(text: str) -> str | dict:
    """``--class-weight``: ``balanced`` or ``LABEL=WEIGHT,...`` like ``0=1,1=19``."""
    if text.strip().lower() == "balanced":
        return "balanced"
    out: dict[int, float] = {}
    for item in text.split(","):
        label, sep, weight = item.partition("=")
        try:
            key, w = int(label), float(weight)
        except ValueError:
            key, w = -1, float("nan")
        if not sep or key < 0 or not (w >= 0 and w != float("inf")) or key in out:
            raise argparse.ArgumentTypeError(
                f"want 'balanced' or LABEL=WEIGHT pairs like 0=1,1=19 (labels >= 0, each"
                f" once; weights finite, >= 0); got {item.strip()!r} in {text!r}")
        out[key] = w
    return out


def check_class_weight(args: argparse.Namespace, loss: str) -> None:
    """``--class-weight`` is for classification losses: a ``UsageError`` otherwise."""
    from fnmlp.losses import get_loss

    if getattr(args, "class_weight", None) is not None and get_loss(loss).kind == "regression":
        raise UsageError(f"--class-weight needs a classification loss; got --loss {loss}"
                         " (a regression loss has no classes)")


def per_class_scores(model, params, x, y, loss: str) -> dict:
    """``test_precision``, ``test_recall`` (per class), ``test_balanced_accuracy`` and
    ``test_confusion_matrix`` for metrics.json; empty for regression and multi-label."""

    from fnmlp.losses import get_loss
    from fnmlp.metrics import classification_report

    kind = get_loss(loss).kind
    if kind == "regression" or (kind == "binary" and np.ndim(y) == 2 and np.shape(y)[1] > 1):
        return {}
    r = classification_report(model, params, x, y, loss=loss)
    return {"test_precision": r["precision"], "test_recall": r["recall"],
            "test_balanced_accuracy": r["balanced_accuracy"],
            "test_confusion_matrix": r["confusion_matrix"]}


def base_parser(description: str, *, hidden: str, activation: str, optimizer: str,
                lr: float, batch_size: int, epochs: int, out: str,
                schedule: str = "constant", log_every: int = 1) -> Parser:
    p = Parser(description=description)
    p.add_argument("--hidden", type=parse_hidden, default=parse_hidden(hidden),
                   help=f"hidden layer widths, comma-separated, e.g. 256,128; 0 for none (one"
                        f" linear layer) (default: {hidden})")
    p.add_argument("--activation", type=parse_names, default=[activation],
                   help=f"hidden activation: one for all, or one per hidden layer, e.g."
                        f" tanh,relu; from {', '.join(sorted(ACTIVATION_NAMES))} (default:"
                        f" {activation})")
    p.add_argument("--dropout", type=parse_rates, default=[0.0],
                   help="dropout after each hidden activation: one drop probability, or one"
                        " per hidden layer (default: 0, none)")
    p.add_argument("--layers", type=parse_layers, default=None, metavar="SPEC",
                   help=LAYER_SPEC_HELP + " (default: none)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZER_NAMES), default=optimizer,
                   help="optimizer (fnmlp.optim)")
    p.add_argument("--lr", type=positive_float, default=DefaultRate(lr),
                   help="learning rate (default: %(default)s; with --resume, the"
                        " checkpoint's)")
    p.add_argument("--weight-decay", type=non_negative_float, default=None, metavar="WD",
                   help="PyTorch's weight_decay, on the weight matrices only (biases and"
                        " LayerNorm scales are not decayed: fnmlp.optim.matrices_only): an L2"
                        " penalty"
                        " added to the gradient (g += WD * w) for sgd, momentum, nesterov, adam"
                        " and rmsprop; decoupled for adamw (w -= lr * WD * w, AdamW) (default:"
                        " 0, and 0.01 for adamw, as in torch.optim)")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="minibatch size")
    p.add_argument("--epochs", type=positive_int, default=epochs,
                   help="epochs to train (with --resume: the epoch to train up to)")
    p.add_argument("--grad", choices=["manual", "autodiff"], default="manual",
                   help="hand-derived backward or jax.grad")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed for init, shuffling and data, in [0, 2**32)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=schedule,
                   help="learning rate: constant, or cosine decay from --lr to 0 over the run")
    p.add_argument("--val-split", type=fraction, default=None, metavar="F",
                   help="hold out this fraction of the training set (shuffled with --seed)"
                        " as a validation set, evaluated every epoch; the test set is never"
                        " used to choose anything (default: none)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping: stop when the validation loss has not improved for"
                        " this many epochs and keep the best epoch (checkpoint, metrics and"
                        " pictures describe it); needs --val-split (default: off)")
    p.add_argument("--devices", type=positive_int, default=1,
                   help="train data-parallel over the first N devices")
    p.add_argument("--out", default=out,
                   help="folder for checkpoint.npz, metrics.json and the run's pictures (.png)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (same config) up to --epochs; with"
                        " no checkpoint there, start fresh (said on stderr)")
    p.add_argument("--checkpoint-seconds", type=non_negative_float, default=1.0,
                   metavar="S",
                   help="write OUT/checkpoint.npz after an epoch when S seconds have passed"
                        " since the last write (0: after every epoch); the last epoch is"
                        " always written, on Ctrl-C, SIGTERM and divergence too; a --sweep"
                        " population writes once, at its end (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--log-every", type=positive_int, default=log_every, metavar="N",
                   help="print epoch 1, every N-th epoch and the last")
    p.add_argument("--sweep", nargs="+", action="extend", metavar="KEY=V1,V2", default=None,
                   help="train a population in one program: lr=, wd=, seed= comma lists; a"
                        " grid when several keys are given (--sweep may be repeated: its"
                        " entries add up) (default: one model)")
    p.add_argument("--class-weight", type=parse_class_weight, default=None,
                   metavar="WEIGHTS",
                   help="weigh the loss by class (classification only): 'balanced' is"
                        " scikit-learn's n_samples / (n_classes * count), or LABEL=WEIGHT"
                        " pairs (unlisted classes weigh 1) (default: none)")
    return p


def start_run() -> None:
    """What a script's process sets once its flags are checked, before its work begins:

    * JAX's persistent compilation cache (a later run of the same configuration loads its
      compiled programs instead of compiling them again); ``FNMLP_COMPILE_CACHE=0`` turns
      it off. See :mod:`fnmlp.compile_cache`.
    * SIGTERM raises :class:`Terminated`, so the checkpoint of the last epoch is written
      as on Ctrl-C (Python's default ends the process at once).
    * jax imported, then ``gc.freeze()``: the ~300,000 objects the imports made live until
      the process ends, and the garbage collector's full passes no longer walk them. In
      ``train_toy.py`` those passes took 0.17 s of a 2.5 s run (four of them, while tracing
      and drawing), and the last one at exit another 0.08 s (2-core AMD EPYC). A script
      owns its process; the library itself never changes the collector.
    """
    import gc

    import jax  # noqa: F401  (imported here so that its objects are frozen below)

    from fnmlp.compile_cache import enable_compile_cache

    enable_compile_cache()
    gc.freeze()
    signal.signal(signal.SIGTERM, _on_sigterm)


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, ``timeout``, a batch system, ``docker stop``): raised in
    the main thread, after the running compiled epoch returns, so the run leaves as on
    Ctrl-C (the checkpoint of the last epoch written) and :func:`main_guard` exits 143.
    A ``BaseException``, as ``KeyboardInterrupt``: code that catches ``Exception`` (JAX's
    compilation-cache reads did, and the run went on to exit 0) lets it through."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated(f"terminated by signal {signum} (SIGTERM)")


def main_guard(main: Callable[[], int]) -> None:
    """Runs ``main``; turns expected errors into exit 2 and a one-line message. Before the
    process exits, every object is frozen (``gc.freeze()``), so the interpreter's last
    collection does not walk them (0.08 s of every run)."""
    import gc

    prog = os.path.basename(sys.argv[0])
    try:
        code = main()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the work is done: no Terminated
        gc.freeze()  # raised inside the interpreter's exit
        sys.exit(code)
    except (UsageError, ValueError, TypeError, OSError, ImportError) as e:
        # OSError: files (missing, unwritable, a file where a folder should be) and
        # MnistUnavailableError, a FileNotFoundError
        msg = " ".join(str(e).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:  # training diverged: a failure, not a usage error
        print(f"{prog}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)
    except Terminated as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


def device_description() -> str:
    import jax

    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    cpu = platform.processor() or platform.machine()
    return f"{d.platform}:{kind} x{jax.device_count()} ({cpu}, {os.cpu_count()} cores)"


def check_out_dir(path: str) -> Path:
    """Makes the output folder and proves it writable, before any training."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {path!r} is a file; give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {path!r} is not a writable folder ({e.strerror or e})") from None
    return out


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically (:mod:`fnmlp.io.atomic`)."""
    from fnmlp.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=2))


def run_config(args: argparse.Namespace | RunConfig, x, y, loss: str, dataset: str,
               extra_config: dict | None = None) -> tuple[list[int], dict]:
    """The layer widths ``[D, ..., C]`` and the config shared by one model and a
    population (:func:`fnmlp.cli.config.model_and_config`): ``{model, loss, input}``, what
    :func:`fnmlp.load_model` needs, and what the run was asked for."""
    model, config = model_and_config(RunConfig.from_args(args), x, y, loss, dataset,
                                     extra_config)
    dense = [c["features"] for c in config["model"]["layers"] if c["type"] == "Dense"]
    return [config["input"]["width"], *dense], config


def weight_decay(args: argparse.Namespace) -> float:
    """``--weight-decay``, or the optimizer's PyTorch default (0.01 for adamw, else 0)."""
    wd = getattr(args, "weight_decay", None)
    if wd is None:
        return 0.01 if args.optimizer == "adamw" else 0.0
    return wd


def n_fit(args: argparse.Namespace, n: int) -> int:
    """Training examples left after ``--val-split`` (:func:`fnmlp.data.split_sizes`)."""
    from fnmlp.data import split_sizes

    split = getattr(args, "val_split", None)
    return split_sizes(n, split)[0] if split else n


def total_steps(args: argparse.Namespace, n_train: int) -> int:
    """The updates of the whole run: ``epochs * (n_train // batch_size)``."""
    return max(1, args.epochs * (n_train // args.batch_size))


def cosine_factor(args: argparse.Namespace, n_train: int):
    """``--schedule cosine`` for a population: each member's rate times this factor
    decays to 0 over the run; None for a constant rate."""
    from fnmlp.schedules import cosine_warmup

    if getattr(args, "schedule", "constant") != "cosine":
        return None
    return cosine_warmup(1.0, 0, total_steps(args, n_train))


def decay_mask():
    """The leaves the scripts' weight decay touches, for one run (``--weight-decay``) and a
    population (``--sweep wd=``, ``--ensemble`` with adamw) alike: the weight matrices only
    (``fnmlp.optim.matrices_only``: the lesson's, CS231n's and scikit-learn's choice;
    biases and LayerNorm scales keep their values). A sweep decayed the biases too."""
    from fnmlp.optim import matrices_only

    return matrices_only


def make_optimizer(args: argparse.Namespace, n_train: int):
    """The optimizer the flags ask for; ``--schedule cosine`` decays ``--lr`` to 0 over
    :func:`total_steps`; ``--weight-decay`` decays the leaves :func:`decay_mask` names."""
    from fnmlp.optim import get_optimizer
    from fnmlp.schedules import cosine_warmup

    rate = args.lr
    if getattr(args, "schedule", "constant") == "cosine":
        rate = cosine_warmup(args.lr, 0, total_steps(args, n_train))
    return get_optimizer(args.optimizer, rate, weight_decay=weight_decay(args),
                         mask=decay_mask())


def make_mesh_for(args: argparse.Namespace):
    """The mesh over ``--devices`` devices, or None for one device."""
    if args.devices <= 1:
        return None
    from fnmlp.parallel import make_mesh

    return make_mesh(args.devices)


EXEC_GAP = 3.0
"""Seconds: a process that existed this much longer than :mod:`fnmlp.cli` has been
imported ran something else before Python (a shell's last command is exec'd in its own
process: ``pip install ... && python script.py`` counted pip's 12 s): the script's wall
time is then counted from the import. Python's start and its imports up to there take
0.05-0.3 s here."""


def wall_seconds() -> float:
    """Seconds since this script started: from the process's start (``/proc`` on Linux:
    the interpreter's start included), or since :mod:`fnmlp.cli` was imported when the
    process is older than Python in it (:data:`EXEC_GAP`) or there is no ``/proc``."""
    imported = time.perf_counter() - _IMPORTED
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        process = max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return imported
    return imported if process - imported > EXEC_GAP else process


# fnmlp.data.mnist.IDX_FILES, repeated here so that --mnist-dir is checked before jax is
# imported (tests/test_cli.py checks the two agree)
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_mnist_dir(path: str | None) -> None:
    """``--mnist-dir``: a folder holding the four MNIST IDX files (raw or ``.gz``, named
    ``-idx`` or ``.idx``), checked in plain Python before jax is imported or any data is
    read; a :class:`UsageError` naming what is missing. ``None`` (tfds) passes."""
    if path is None:
        return
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UsageError(f"--mnist-dir {path!r} is not a folder"
                         + (" (it is a file)" if folder.exists() else " (it does not exist)")
                         + f"; give the folder that holds the four MNIST files"
                         f" {', '.join(MNIST_FILES)} (gzipped or raw)")
    missing = [stem for stem in MNIST_FILES if not any(
        (folder / n).exists() for n in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                                        stem.replace("-idx", ".idx") + ".gz"))]
    if missing:
        raise UsageError(f"--mnist-dir {path!r} has no {', '.join(missing)} (or .gz); it"
                         f" must hold the four MNIST files {', '.join(MNIST_FILES)} (gzipped"
                         " or raw)")


def add_train_size(p: argparse.ArgumentParser) -> None:
    """``--train-size N``: a seeded, stratified subset of the training set."""
    p.add_argument("--train-size", type=positive_int, default=None, metavar="N",
                   help="train on N examples of the training set, drawn with --seed, each"
                        " digit keeping its share (fnmlp.data.stratified_subset); the test set"
                        " is whole; taken before --val-split (default: all)")


def train_subset(args: argparse.Namespace, train):
    """``train`` cut to ``--train-size`` (:func:`fnmlp.data.stratified_subset`, seeded with
    ``--seed``); larger than the training set is a :class:`UsageError`."""
    n = getattr(args, "train_size", None)
    if n is None:
        return train
    from fnmlp.data import stratified_subset

    if n > len(train.x):
        raise UsageError(f"--train-size {n} is more than the {len(train.x):,} training"
                         " examples there are")
    return stratified_subset(train.x, train.y, n, seed=args.seed, name="--train-size")
