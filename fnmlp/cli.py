"""What the training scripts share: flags, the run loop with checkpoints, metrics.json.

The scripts in ``scripts/`` parse their own dataset flags and call :func:`run`. Bad
flags or bad data end the script with exit status 2 and a one-line message (no
traceback): argparse errors go through :class:`Parser`, and :func:`main_guard` turns
the library's ``ValueError``/``TypeError``/``FileNotFoundError``/``ImportError`` into one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fnmlp.activations import ACTIVATIONS
from fnmlp.optim import OPTIMIZERS


class UsageError(Exception):
    """A problem with the command line or the data: exit 2, one line."""


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
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if not action.help and action.option_strings and action.nargs != 0:
            action.help = "(default: %(default)s)"  # argparse prints nothing without help
        return action

    def error(self, message):  # one line and exit 2, without the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def description(doc: str) -> str:
    """The first paragraph of a module docstring, as one line (for ``--help``)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def parse_int_list(text: str) -> list[int]:
    parts = text.split(",")
    if any(s.strip() == "" for s in parts):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 128 or 256,128, with no empty"
            f" entries; got {text!r}")
    try:
        values = [int(s) for s in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 128 or 256,128; got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers; got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return v


def base_parser(description: str, *, hidden: str, activation: str, optimizer: str,
                lr: float, batch_size: int, epochs: int, out: str,
                schedule: str = "constant") -> Parser:
    p = Parser(description=description)
    p.add_argument("--hidden", type=parse_int_list, default=parse_int_list(hidden),
                   help=f"hidden layer widths, comma-separated, e.g. 256,128 (default: {hidden})")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=activation,
                   help="hidden activation")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=optimizer,
                   help="optimizer (fnmlp.optim)")
    p.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="minibatch size")
    p.add_argument("--epochs", type=positive_int, default=epochs,
                   help="epochs to train (with --resume: the epoch to train up to)")
    p.add_argument("--grad", choices=["manual", "autodiff"], default="manual",
                   help="hand-derived backward or jax.grad")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and data")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=schedule,
                   help="learning rate: constant, or cosine decay from --lr to 0 over the run")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping patience in epochs (default: off)")
    p.add_argument("--devices", type=positive_int, default=1,
                   help="train data-parallel over the first N devices")
    p.add_argument("--out", default=out, help="folder for checkpoint.npz and metrics.json")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.npz (same config) up to --epochs")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--sweep", nargs="+", metavar="KEY=V1,V2", default=None,
                   help="train a population in one program: lr=, wd=, seed= comma lists; a"
                        " grid when several keys are given (default: one model)")
    return p


def enable_compile_cache() -> None:
    """Turns on JAX's persistent compilation cache for a script run (a later run of the
    same configuration loads its compiled programs instead of compiling them again);
    ``FNMLP_COMPILE_CACHE=0`` turns it off. See :mod:`fnmlp.compile_cache`."""
    from fnmlp.compile_cache import enable_compile_cache as enable

    enable()


def main_guard(main: Callable[[], int]) -> None:
    """Runs ``main``; turns expected errors into exit 2 and a one-line message."""
    prog = os.path.basename(sys.argv[0])
    try:
        sys.exit(main())
    except (UsageError, ValueError, TypeError, OSError, ImportError) as e:
        # OSError: files (missing, unwritable, a file where a folder should be) and
        # MnistUnavailableError, a FileNotFoundError
        msg = " ".join(str(e).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:  # training diverged: a failure, not a usage error
        print(f"{prog}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)


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


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def model_config(args: argparse.Namespace, x, y, loss: str, dataset: str,
                 extra_config: dict | None = None) -> tuple[list[int], dict]:
    """The layer sizes and the config shared by one model and a population: what
    :func:`fnmlp.load_model` needs, and what the run was asked for."""
    if len(x) == 0:
        raise UsageError("the training set is empty")
    n_out = int(y.max()) + 1 if loss == "softmax_cross_entropy" else (
        1 if y.ndim == 1 else y.shape[1])
    sizes = [x.shape[1], *args.hidden, n_out]
    config = {"dataset": dataset, "sizes": sizes, "activation": args.activation, "loss": loss,
              "optimizer": args.optimizer, "batch_size": args.batch_size,
              "epochs": args.epochs, "grad": args.grad, "devices": args.devices,
              "dtype": "float32", "schedule": getattr(args, "schedule", "constant"),
              "input": {"kind": "features", "width": int(x.shape[1])},
              **(extra_config or {})}
    return sizes, config


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


def make_optimizer(args: argparse.Namespace, n_train: int):
    """The optimizer the flags ask for; ``--schedule cosine`` decays ``--lr`` to 0 over
    :func:`total_steps`."""
    from fnmlp.optim import get_optimizer
    from fnmlp.schedules import cosine_warmup

    rate = args.lr
    if getattr(args, "schedule", "constant") == "cosine":
        rate = cosine_warmup(args.lr, 0, total_steps(args, n_train))
    return get_optimizer(args.optimizer, rate)


def make_mesh_for(args: argparse.Namespace):
    """The mesh over ``--devices`` devices, or None for one device."""
    if args.devices <= 1:
        return None
    from fnmlp.parallel import make_mesh

    return make_mesh(args.devices)


def run(args: argparse.Namespace, *, train: tuple, test: tuple, loss: str,
        dataset: str, extra_config: dict | None = None,
        after: Callable[[Any, dict], None] | None = None, members: list | None = None) -> dict:
    """Trains per ``args`` on ``train = (x, y)``; evaluates on ``test``; writes OUT.

    Writes ``OUT/checkpoint.npz`` after every epoch (atomically; its config holds what
    :func:`fnmlp.load_model` needs) and ``OUT/metrics.json`` at the end, whose history
    holds the test loss (and accuracy) of every epoch. With ``args.resume`` it continues
    from the checkpoint, refusing one made with another configuration.
    ``after(params, metrics)`` may add plots. With ``members`` (see
    :func:`members_from_args`) it trains them as a population instead
    (:func:`run_population`). Returns metrics.
    """
    if members:
        return run_population(args, members, train=train, test=test, loss=loss,
                              dataset=dataset, extra_config=extra_config)
    import jax
    import numpy as np

    from fnmlp.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
    from fnmlp.mlp import check_batch, init_mlp
    from fnmlp.train import TrainingDiverged, evaluate, fit, format_record, init_state, jitted_eval

    t_start = time.perf_counter()
    x, y = np.asarray(train[0]), np.asarray(train[1])
    sizes, config = model_config(args, x, y, loss, dataset, extra_config)
    config.update(lr=args.lr, seed=args.seed, patience=args.patience)
    out = check_out_dir(args.out)
    ckpt, metrics_path = out / "checkpoint.npz", out / "metrics.json"

    optimizer = make_optimizer(args, len(x))
    params = init_mlp(jax.random.key(args.seed), sizes, args.activation)
    state, history = None, []
    if args.resume and ckpt.exists():
        old = read_checkpoint_meta(ckpt)["config"]
        same = ("sizes", "activation", "loss", "optimizer", "lr", "batch_size", "grad", "seed",
                "schedule")
        diff = {k: (old.get(k), config[k]) for k in same if old.get(k) != config[k]}
        if diff:
            raise UsageError(f"--resume: {ckpt} was made with another config: "
                             + ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in diff.items()))
        state, _ = load_checkpoint(ckpt, init_state(params, optimizer))
        if int(state.epoch) > args.epochs:
            raise UsageError(
                f"--resume: {ckpt} is at epoch {int(state.epoch)}, past --epochs"
                f" {args.epochs}; --epochs is the epoch to train up to: give more than"
                f" {int(state.epoch)} to continue")
        if int(state.epoch) == args.epochs:
            print(f"--resume: {ckpt} is already at epoch {args.epochs}; nothing to train,"
                  " evaluating it", file=sys.stderr)
        if metrics_path.exists():
            history = json.loads(metrics_path.read_text()).get("history", [])
            history = [r for r in history if r["epoch"] <= int(state.epoch)]
        print(f"resuming from {ckpt} at epoch {int(state.epoch)}", file=sys.stderr)
    elif args.resume:
        print(f"--resume: no checkpoint at {ckpt}; starting fresh", file=sys.stderr)

    mesh = make_mesh_for(args)
    test_x, test_y = check_batch(params, test[0], test[1], loss)  # checked once, on the host
    test_eval = jitted_eval(args.activation, loss, 1024)

    def on_epoch_end(s, record):
        if args.patience:  # fit evaluated the test set as its validation data already
            scores = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
        else:
            scores = {k: float(v) for k, v in
                      jax.device_get(test_eval(s.params, test_x, test_y)).items()}
        record.update({f"test_{k}": v for k, v in scores.items()})
        save_checkpoint(ckpt, s, config)

    if state is None or int(state.epoch) < args.epochs:
        try:
            result = fit(params, x, y, epochs=args.epochs, batch_size=args.batch_size,
                         optimizer=optimizer, activation=args.activation, loss=loss,
                         grad=args.grad, seed=args.seed, state=state,
                         validation_data=test if args.patience else None,
                         patience=args.patience, verbose=not args.quiet,
                         on_epoch_end=on_epoch_end, mesh=mesh,
                         log=None if not args.quiet else (lambda s: None))
        except TrainingDiverged as e:
            kept = (f"{ckpt} holds epoch {int(e.state.epoch)}" if e.epoch > 1 or ckpt.exists()
                    else "no checkpoint exists")
            raise TrainingDiverged(
                f"training diverged in epoch {e.epoch}; no checkpoint of it was written"
                f" ({kept}); try a smaller --lr", e.epoch, e.state, e.history) from None
        final_params, history = result.params, history + result.history
    else:
        final_params = state.params
    scores = evaluate(final_params, test[0], test[1], args.activation, loss)
    metrics = {"config": config, "history": history, "device": device_description(),
               "wall_seconds": time.perf_counter() - t_start}
    if loss == "softmax_cross_entropy" or loss == "sigmoid_cross_entropy":
        metrics["test_accuracy"] = scores["accuracy"]
        metrics["test_loss"] = scores["loss"]
    else:
        metrics["test_mse"] = scores["mse"]
        metrics["test_mae"] = scores["mae"]
        metrics["test_loss"] = scores["loss"]
    if after is not None:
        try:
            after(final_params, metrics)
        except ImportError as e:  # matplotlib is the 'plot' extra: train, just no pictures
            print(f"no pictures: {e}", file=sys.stderr)
    _write_json(metrics_path, metrics)
    last = format_record(history[-1]) if history else "no epochs run"
    summary = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("test_accuracy", "test_mse")
                        if k in metrics)
    print(f"done: {len(history)} epochs, {summary}, {metrics['wall_seconds']:.1f} s"
          f" [{last}] -> {out}")
    return metrics


# ----------------------------------------------------------------------------- populations


def members_from_args(args: argparse.Namespace) -> list | None:
    """The population the flags ask for (``--sweep``, ``--ensemble``), or None."""
    from fnmlp.population import Member, grid, parse_sweep

    ensemble = getattr(args, "ensemble", None)
    if args.sweep and ensemble:
        raise UsageError("give --sweep or --ensemble, not both")
    if not args.sweep and not ensemble:
        return None
    for flag, bad in (("--resume", args.resume), ("--patience", args.patience)):
        if bad:
            raise UsageError(f"{flag} is not available with --sweep/--ensemble (a population"
                             " trains from scratch for --epochs)")
    if ensemble:
        return grid([args.lr], [0.0], list(range(args.seed, args.seed + ensemble)))
    try:
        return parse_sweep(args.sweep, Member(args.lr, 0.0, args.seed))
    except ValueError as e:
        raise UsageError(str(e)) from None


def run_population(args: argparse.Namespace, members: list, *, train: tuple, test: tuple,
                   loss: str, dataset: str, extra_config: dict | None = None) -> dict:
    """Trains ``members`` as one population on ``train``, each evaluated on ``test``
    every epoch; writes ``OUT/members/K/metrics.json`` per member, ``OUT/metrics.json``
    (the ranking, the best member, the ensemble's test accuracy for classification),
    ``OUT/checkpoint.npz`` (the best member, loadable by ``fnmlp.load_model``) and
    ``OUT/sweep.png``. Prints the ranking."""
    import jax
    import numpy as np

    from fnmlp.checkpoint import save_checkpoint
    from fnmlp.population import (
        ensemble_predict_proba,
        fit_population,
        member_hyperparameters,
        take,
    )

    t_start = time.perf_counter()
    x, y = np.asarray(train[0]), np.asarray(train[1])
    sizes, base = model_config(args, x, y, loss, dataset, extra_config)
    out = check_out_dir(args.out)
    result = fit_population(
        sizes, x, y, members, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, activation=args.activation, loss=loss, grad=args.grad,
        validation_data=test, lr_factor=cosine_factor(args, len(x)), mesh=make_mesh_for(args),
        verbose=not args.quiet)
    classify = loss in ("softmax_cross_entropy", "sigmoid_cross_entropy")
    rows, trained = [], member_hyperparameters(result)  # read from the state that trained
    for k, (m, hist) in enumerate(zip(members, result.history)):
        hist = [{("test" + key[3:] if key.startswith("val_") else key): v
                 for key, v in r.items()} for r in hist]
        config = {**base, **trained[k], "seed": m.seed, "member": k}
        final = hist[-1]
        metrics = {"config": config, "history": hist, "test_loss": final["test_loss"],
                   "diverged": final["diverged"], "device": device_description()}
        if classify:
            metrics["test_accuracy"] = final["test_accuracy"]
        else:
            metrics.update(test_mse=final["test_mse"], test_mae=final["test_mae"])
        (out / "members" / str(k)).mkdir(parents=True, exist_ok=True)
        _write_json(out / "members" / str(k) / "metrics.json", metrics)
        rows.append({"member": k, "lr": config["lr"], "wd": config["weight_decay"], "seed": m.seed,
                     "test_loss": final["test_loss"], "diverged": final["diverged"],
                     **({"test_accuracy": final["test_accuracy"]} if classify else
                        {"test_mse": final["test_mse"]})})
    ranking = sorted(rows, key=lambda r: (r["diverged"], r["test_loss"]
                                          if np.isfinite(r["test_loss"]) else np.inf))
    best = ranking[0]["member"]
    summary = {"config": base, "members": rows, "ranking": [r["member"] for r in ranking],
               "best": best, "device": device_description(),
               "wall_seconds": time.perf_counter() - t_start}
    if classify and loss == "softmax_cross_entropy":
        finite = [r["member"] for r in rows if not r["diverged"]]
        proba = ensemble_predict_proba(result.params, test[0], args.activation, loss, finite)
        summary["ensemble_test_accuracy"] = float(
            np.mean(np.asarray(proba).argmax(1) == np.asarray(test[1])))
        summary["ensemble_members"] = finite
    best_state = take(result.state, best)
    save_checkpoint(out / "checkpoint.npz", jax.device_get(best_state),
                    {**base, **trained[best], "seed": members[best].seed, "member": best})
    try:
        from fnmlp import plot

        labels = [f"#{k} lr {m.lr:g}" + (f" wd {m.wd:g}" if m.wd else "") + f" seed {m.seed}"
                  for k, m in enumerate(members)]
        plot.population_curves(result.history, labels, str(out / "sweep.png"),
                               f"{dataset}: {len(members)} members of"
                               f" {'-'.join(map(str, sizes))} trained in one program",
                               best=best)
    except ImportError as e:
        print(f"no pictures: {e}", file=sys.stderr)
    _write_json(out / "metrics.json", summary)
    key = "test_accuracy" if classify else "test_mse"
    print(f"{'rank':>4}  {'member':>6}  {'lr':>8}  {'wd':>8}  {'seed':>4}  {'test_loss':>9}"
          f"  {key:>13}")
    for i, r in enumerate(ranking):
        flag = "  diverged" if r["diverged"] else ""
        print(f"{i + 1:>4}  {r['member']:>6}  {r['lr']:>8g}  {r['wd']:>8g}  {r['seed']:>4}"
              f"  {r['test_loss']:>9.4f}  {r[key]:>13.4f}{flag}")
    if "ensemble_test_accuracy" in summary:
        print(f"ensemble of {len(summary['ensemble_members'])} members (mean probability):"
              f" test_accuracy {summary['ensemble_test_accuracy']:.4f}")
    print(f"done: {len(members)} members, best #{best}, {summary['wall_seconds']:.1f} s"
          f" -> {out}")
    return summary
