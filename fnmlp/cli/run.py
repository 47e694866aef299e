"""One training run from the flags: fit with checkpoints every epoch, the test set
reported (never used to choose), metrics.json, and resuming.

Shapes: ``N`` examples, ``D`` features, ``C`` outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from fnmlp.cli.config import RunConfig, model_and_config
from fnmlp.cli.flags import (
    UsageError,
    architecture_name,
    check_class_weight,
    check_out_dir,
    device_description,
    make_mesh_for,
    make_optimizer,
    n_fit,
    per_class_scores,
    wall_seconds,
    write_json,
)


def resume_template(state: Any, paths: list[str]) -> Any:
    """The structure to load a checkpoint into: ``state``, with an
    :class:`~fnmlp.train.EarlyStopping` (holding a state like ``state``) when the
    checkpoint's ``paths`` carry early stopping's bookkeeping (``early/...``)."""
    if not any(p.startswith("early/") for p in paths):
        return state
    import numpy as np

    from fnmlp.train import EarlyStopping

    zero = np.zeros((), np.float32)
    monitor = np.zeros((), np.uint32) if "early/monitor" in paths else None  # older: none
    return state._replace(early=EarlyStopping(zero, np.zeros((), np.int32),
                                              np.zeros((), np.int32), np.zeros((), np.bool_),
                                              state, monitor))


def check_resume_architecture(args: argparse.Namespace, d_in: int, n_out: int) -> None:
    """``--resume`` of a checkpoint made with another architecture, refused (a
    :class:`UsageError`) before any data is read: the network the flags describe for
    ``d_in`` inputs and ``n_out`` outputs against the checkpoint's. :func:`run` checks the
    rest of the configuration once the data is there."""
    from pathlib import Path

    ckpt = Path(args.out) / "checkpoint.npz"
    if not getattr(args, "resume", False) or not ckpt.is_file():
        return
    from fnmlp.io.checkpoint import read_checkpoint_meta
    from fnmlp.io.model_file import saved_config

    old = saved_config(read_checkpoint_meta(ckpt)["config"], ckpt)  # earlier formats too
    model = RunConfig.from_args(args).model(d_in, n_out).to_config()
    if old["model"] != model:
        raise UsageError(
            f"--resume: {ckpt} holds a {architecture_name(old)} network; the flags ask for"
            f" {architecture_name({'model': model, 'input': {'width': d_in}})}: give the"
            " checkpoint's architecture, or another --out to start a new run")


def run(args: argparse.Namespace, *, train: tuple, test: tuple, loss: str,
        dataset: str, extra_config: dict | None = None,
        after: Callable[[Any, dict], None] | None = None, members: list | None = None,
        each_epoch: Callable[[Any, dict], None] | None = None) -> dict:
    """Trains per ``args`` on ``train = (x, y)``; evaluates on ``test``; writes OUT.

    ``--val-split F`` holds out ``F`` of ``train`` (shuffled with ``--seed``) as the
    validation set that ``--patience`` monitors; the test set is evaluated every epoch
    for the history and the pictures, never to choose anything.
    Writes ``OUT/checkpoint.npz`` (atomically; its config holds what
    :func:`fnmlp.load_model` needs) after an epoch at most every ``--checkpoint-seconds``
    (:class:`Checkpointer`) and the last epoch however the run ends, and
    ``OUT/metrics.json`` at the end, whose history holds the test loss (and accuracy) of
    every epoch. With ``--patience`` the checkpoint holds the last state **and** early
    stopping's bookkeeping (``early/``: the best value, its epoch, its whole state, the
    wait, whether the run stopped), so ``--resume`` continues exactly as an uninterrupted
    run would; :func:`fnmlp.load_model` reads the kept epoch's params from ``early/best``,
    and metrics.json's final numbers (``best_epoch``, ``test_*``) are that epoch's; its
    history record has ``"restored": true``. Resuming a run that already stopped early says
    so and trains nothing. With ``args.resume`` it continues from the checkpoint, refusing
    one made with another configuration, and a changed ``--epochs`` under a decaying
    schedule (the schedule's horizon is the run's epochs: continuing past it would restart
    the decay); a changed ``--lr`` is applied (one line says so), as ``fit(state=...,
    learning_rate=...)`` does. Every epoch's record also gets ``grad_norm``: each weight
    matrix's gradient norm on a fixed batch of the training set (:mod:`fnmlp.cli.probe`,
    computed after the epoch, outside ``fit``); ``each_epoch(state, record)`` is then called
    (e.g. to keep snapshots for pictures). ``after(params, metrics)`` may add plots. With
    ``members`` (see :func:`members_from_args`) it trains them as a population instead
    (:func:`run_population`). Returns metrics.
    """
    check_class_weight(args, loss)
    if members:
        from fnmlp.cli.sweep import run_population

        return run_population(args, members, train=train, test=test, loss=loss,
                              dataset=dataset, extra_config=extra_config)
    import jax
    import numpy as np

    from fnmlp._validate import check_batch
    from fnmlp.losses import get_loss
    from fnmlp.train import TrainingDiverged, evaluate, fit, jitted_eval

    loss = get_loss(loss)  # the loss as a value, once: its kind decides the outputs, metrics

    t_start = time.perf_counter()
    cfg = RunConfig.from_args(args)  # the flags, read once
    x, y = np.asarray(train[0]), np.asarray(train[1])
    model, config = model_and_config(cfg, x, y, loss, dataset, extra_config)
    out = check_out_dir(cfg.out)
    ckpt, metrics_path = out / "checkpoint.npz", out / "metrics.json"
    cfg = _resumed_rate(cfg, ckpt)
    config.update(cfg.member())

    if cfg.val_split:  # named as the flag (fit would say validation_split)
        from fnmlp.data._common import check_split

        check_split(len(x), cfg.val_split, "--val-split")
    n_train = n_fit(cfg, len(x))
    if cfg.batch_size > n_train:  # fit would say batch_size, not which flags to change
        raise UsageError(f"--batch-size {cfg.batch_size} is more than the {n_train} training"
                         " examples" + (f" ({len(x)} less --val-split {cfg.val_split:g})"
                                        if cfg.val_split else "")
                         + ": give a smaller --batch-size or more data")
    optimizer = make_optimizer(cfg, n_train)
    params = model.init_params(jax.random.key(cfg.seed), config["input"]["width"])
    state, history, stopped = _resume(cfg, config, ckpt, metrics_path, params, optimizer)

    test_x, test_y = check_batch(model, params, test[0], test[1], loss)  # once, on the host
    test_eval = jitted_eval(model, loss, 1024)

    from fnmlp.cli.probe import fixed_batch, gradient_norms_fn

    probe = fixed_batch(x, y, seed=cfg.seed, val_split=cfg.val_split)
    grad_norms = gradient_norms_fn(model, loss, *check_batch(model, params, *probe, loss))
    config["grad_norm_batch"] = len(probe[0])  # the fixed batch's size (PROBE_BATCH at most)

    records: list[dict] = []  # this run's epochs, as fit records them

    def history_so_far():  # beside each checkpoint: a resume keeps the epochs' history
        write_json(metrics_path, {"config": config, "history": history + records,
                                  "partial": "written with the checkpoint during the run; the"
                                             " run's end replaces it with the full metrics"})

    saver = Checkpointer(ckpt, config, cfg.checkpoint_seconds, history_so_far)

    def on_epoch_end(s, record):  # the test set: reported, never used to choose
        scores = jax.device_get(test_eval(s.params, test_x, test_y))
        record.update({f"test_{k}": float(v) for k, v in scores.items()})
        record["grad_norm"] = grad_norms(s.params)
        records.append(record)
        saver.epoch_done(s)
        if each_epoch is not None:
            each_epoch(s, record)

    best_epoch, trained = None, []
    if not stopped and (state is None or int(state.epoch) < cfg.epochs):
        try:
            with saver:  # the last epoch is written however the run ends
                result = fit(
                    model, params, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size,
                    optimizer=optimizer, loss=loss, grad=cfg.grad, seed=cfg.seed, state=state,
                    validation_split=cfg.val_split, patience=cfg.patience,
                    verbose=not cfg.quiet, on_epoch_end=on_epoch_end, mesh=make_mesh_for(cfg),
                    log=None if not cfg.quiet else (lambda s: None),
                    class_weight=cfg.class_weight, log_every=cfg.log_every)
        except TrainingDiverged as e:
            kept = (f"{ckpt} holds epoch {saver.written}" if saver.written is not None
                    else f"{ckpt} holds the epoch {int(e.state.epoch)} resumed from"
                    if state is not None else "this run wrote no checkpoint"
                    + (f"; {ckpt} is left as it was" if ckpt.exists() else ""))
            raise TrainingDiverged(
                f"training diverged in epoch {e.epoch}; no checkpoint of it was written"
                f" ({kept}); try a smaller --lr", e.epoch, e.state, e.history) from None
        final_params, history, trained = result.params, history + result.history, result.history
        if result.best_state is not None:  # early stopping: keep what is reported
            best_epoch = result.best_epoch
            for r in history:  # one record restored, the kept one (resumed runs included)
                r.pop("restored", None)
                if r["epoch"] == best_epoch:
                    r["restored"] = True
            if best_epoch != int(result.state.epoch):
                print(f"early stopping kept epoch {best_epoch}: metrics.json, the pictures"
                      f" and fnmlp.load_model({str(ckpt)!r}) describe it", file=sys.stderr)
    elif state.early is not None and int(state.early.best_epoch) > 0:
        final_params, best_epoch = state.early.best.params, int(state.early.best_epoch)
    else:
        final_params = state.params
    scores = evaluate(model, final_params, test[0], test[1], loss=loss)
    metrics = _metrics(model, config, history, trained, params, final_params, best_epoch,
                       scores, (test_x, test_y), loss, grad_norms)
    if after is not None:
        try:
            after(final_params, metrics)
        except ImportError as e:  # matplotlib is the 'plot' extra: train, just no pictures
            print(f"no pictures: {e}", file=sys.stderr)
    metrics["run_seconds"] = time.perf_counter() - t_start  # training to pictures
    metrics["wall_seconds"] = wall_seconds()  # since the script started
    write_json(metrics_path, metrics)
    _print_done(metrics, history, best_epoch, out)
    return metrics


class Checkpointer:
    """Writes a run's checkpoint (``save_checkpoint(path, state, config)``): after an epoch
    when at least ``every_seconds`` have passed since the last write, and, on leaving its
    ``with`` block however the run ends (finished, stopped early, diverged, Ctrl-C, SIGTERM
    in the scripts: :func:`fnmlp.cli.start_run`), the latest epoch it was given if that one
    is not on disk yet: then only the epoch in progress is lost, as when every epoch was
    written. A SIGKILL or a power cut loses what came after the last write: at most
    ``every_seconds`` of epochs (all of them in the run's first ``every_seconds``), or 20
    times the last write's own time where that is longer (a long run's growing history),
    so writing costs at most about 5% of the run (``every_seconds=0``: every epoch, as
    asked, whatever it costs): one write (about 1 ms for a small
    network) a second; writing each of the toy run's 200 epochs took 0.2 s of its 2.5 s
    (2-core AMD EPYC), its training 0.1 s.

    ``written``: the epoch last written by this run, or None. ``also``, when given, runs
    before each write (the scripts write the history so far beside it, so a run ended by
    SIGTERM, Ctrl-C or SIGKILL resumes with its epochs' history: written first, it is never
    behind the checkpoint). Not thread-safe; one per run.
    """

    def __init__(self, path, config: dict, every_seconds: float = 1.0,
                 also: Callable[[], None] | None = None):
        self.path, self.config, self.every, self.also = path, config, every_seconds, also
        self.latest, self.last_write, self.written = None, time.perf_counter(), None

    def epoch_done(self, state) -> None:
        """``state``: the TrainState after an epoch (finite: ``fit`` raises before)."""
        self.latest = state
        gap = 0.0 if self.every == 0 else max(self.every, 20 * self.cost)  # 0: every epoch
        if time.perf_counter() - self.last_write >= gap:
            self.write()

    cost = 0.0  # seconds the last write took: writes are spaced 20x that apart at least
    # (at most 5% of the run), as the history written beside them grows with the epochs

    def write(self) -> None:
        if self.latest is not None:
            from fnmlp.io.checkpoint import save_checkpoint

            t = time.perf_counter()
            if self.also is not None:  # first: a kill between the two leaves the history
                self.also()  # ahead of the checkpoint, which a resume cuts back to it
            save_checkpoint(self.path, self.latest, self.config)
            self.written = int(self.latest.epoch)
            self.latest = None
            self.last_write = time.perf_counter()
            self.cost = self.last_write - t

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.write()


def _difference(key: str, saved: Any, now: Any) -> str:
    """One difference between a checkpoint's config and this run's, as ``--resume`` says
    it: ``dataset 'spirals' (now 'moons')``; the training data by its size and digest
    (:func:`fnmlp.cli.config.data_record`)."""
    if key == "model" and isinstance(saved, dict) and isinstance(now, dict):
        return f"model: {_model_difference(saved, now)}"
    if key == "data":
        was = (f"{saved.get('examples')} examples, digest {saved.get('digest')}"
               if isinstance(saved, dict) else repr(saved))
        return (f"its training data ({was}; now {now['examples']}, {now['digest']}: another"
                " data set, size, split, seed or folder)")
    return f"{key} {saved!r} (now {now!r})"


def _model_difference(saved: dict, now: dict) -> str:
    """The first place two model configs differ, said short: ``layer 0 Dense features 32
    (now 16)``, ``3 layers (now 5)``; a new user read two 450-character dicts before."""
    a, b = saved.get("layers"), now.get("layers")
    if not (isinstance(a, list) and isinstance(b, list)):
        return f"{saved!r} (now {now!r})"[:300]
    count = f"{len(a)} layers (now {len(b)})" if len(a) != len(b) else ""
    for i, (la, lb) in enumerate(zip(a, b)):
        if la != lb:
            if la.get("type") != lb.get("type"):
                first = f"layer {i} {la.get('type')} (now {lb.get('type')})"
            else:
                keys = sorted(k for k in {*la, *lb} if la.get(k) != lb.get(k))
                first = f"layer {i} {la.get('type')} " + ", ".join(
                    f"{k} {la.get(k)!r} (now {lb.get(k)!r})" for k in keys)
            return f"{count}; first at {first}" if count else first
    if count:
        return count
    keys = sorted(k for k in {*saved, *now} if k != "layers" and saved.get(k) != now.get(k))
    return ", ".join(f"{k} {saved.get(k)!r} (now {now.get(k)!r})" for k in keys)


def _resumed_rate(cfg: RunConfig, ckpt) -> RunConfig:
    """With ``--resume`` and no ``--lr``: the checkpoint's rate (the state's), as ``fit``
    does with a name alone; else ``cfg`` as it is."""
    if not (cfg.resume and ckpt.exists()) or cfg.lr_given:
        return cfg
    from fnmlp.io.checkpoint import read_checkpoint_meta

    kept = read_checkpoint_meta(ckpt)["config"].get("lr")
    return cfg.replace(lr=float(kept)) if kept is not None else cfg


def _resume(cfg: RunConfig, config: dict, ckpt, metrics_path, params, optimizer):
    """``(state, history, stopped)``: with ``--resume``, the checkpoint's state (refusing
    one made with another config, or past ``--epochs``), its history so far, and whether
    it stopped early; else ``(None, [], False)``."""
    if not cfg.resume:
        return None, [], False
    if not ckpt.exists():
        print(f"--resume: no checkpoint at {ckpt}; starting fresh", file=sys.stderr)
        return None, [], False
    from fnmlp.io.checkpoint import load_checkpoint, read_checkpoint_meta
    from fnmlp.io.model_file import saved_config
    from fnmlp.optim import legacy as optim_legacy
    from fnmlp.train import init_state

    meta = read_checkpoint_meta(ckpt)
    old = saved_config(meta["config"], ckpt)  # an earlier format read as today's
    if old.get("member") is not None:  # its metrics.json is the population's summary
        raise UsageError(f"--resume: {ckpt} is the best member of a population (--sweep or"
                         " --ensemble), whose metrics.json holds every member: --resume"
                         " continues a single run; give another --out (load_model reads"
                         " the member as it is)")
    same = ("dataset", "data", "model", "loss", "optimizer", "batch_size", "grad", "seed",
            "schedule", "class_weight", "val_split", "weight_decay")
    optional = ("dataset", "data", "class_weight", "val_split",  # absent from older ones
                "weight_decay")
    diff = {k: (old.get(k), config[k]) for k in same if old.get(k) != config[k]
            and not (k in optional and k not in old)}
    if diff:
        raise UsageError(f"--resume: {ckpt} was made with another config: "
                         + ", ".join(_difference(k, a, b) for k, (a, b) in diff.items()))
    if config["schedule"] != "constant" and old.get("epochs") != cfg.epochs:
        raise UsageError(
            f"--resume: {ckpt} was made with --epochs {old.get('epochs')} and --schedule"
            f" {config['schedule']}, which decays over those epochs; --epochs"
            f" {cfg.epochs} would restart the decay: resume with --epochs"
            f" {old.get('epochs')}, or train with --schedule constant to extend a run")
    template = resume_template(init_state(params, optimizer), meta["paths"])
    if optim_legacy.is_legacy(meta["paths"]):  # optimizer state laid out before its chains
        old_state, _ = load_checkpoint(ckpt, optim_legacy.to_legacy(template))
        state = optim_legacy.from_legacy(old_state, template)
    else:
        state, _ = load_checkpoint(ckpt, template)
    if old.get("lr") is not None and old.get("lr") != cfg.lr:
        print(f"--resume: learning rate {old['lr']:g} -> {cfg.lr:g}", file=sys.stderr)
    stopped, epoch = state.early is not None and bool(state.early.stopped), int(state.epoch)
    if old.get("patience") is not None and config.get("patience") is None:
        # fit would train on without it: the kept epoch and the record's "restored" mark
        # would no longer be the model the run reports
        raise UsageError(
            f"--resume: {ckpt} was trained with --patience {old['patience']} and stopped early"
            f" at epoch {epoch}, keeping epoch {int(state.early.best_epoch)}: there is nothing"
            " to continue; to train further, start a new run with another --out" if stopped
            else f"--resume: {ckpt} was trained with --patience {old['patience']} (early"
            " stopping on the validation loss): give --patience again to continue it (any"
            " N), or start a new run with another --out")
    if epoch > cfg.epochs:
        raise UsageError(
            f"--resume: {ckpt} is at epoch {epoch}, past --epochs {cfg.epochs}; --epochs is"
            f" the epoch to train up to: give more than {epoch} to continue")
    if stopped:
        print(f"--resume: {ckpt} is a run that stopped early at epoch {epoch}"
              f" (keeping epoch {int(state.early.best_epoch)}); nothing to train,"
              " evaluating the kept epoch", file=sys.stderr)
    elif epoch == cfg.epochs:
        print(f"--resume: {ckpt} is already at epoch {cfg.epochs}; nothing to train,"
              " evaluating it", file=sys.stderr)
    history = []
    if metrics_path.exists():
        history = json.loads(metrics_path.read_text()).get("history", [])
        history = [r for r in history if r["epoch"] <= epoch]
    elif epoch > 0:  # interrupted before metrics.json was written (Ctrl-C, SIGTERM)
        print(f"--resume: {metrics_path} is missing: the history of epochs 1-{epoch} is lost"
              " (metrics.json and the pictures over the epochs hold the epochs trained from"
              " here on)", file=sys.stderr)
    if not stopped and epoch < cfg.epochs:  # else said above
        print(f"resuming from {ckpt} at epoch {epoch}", file=sys.stderr)
    return state, history, stopped


def _metrics(model, config, history, trained, params, final_params, best_epoch, scores,
             test, loss, grad_norms) -> dict:
    """metrics.json: the config, the history, the timings, the weights at init, the kept
    epoch's validation numbers and the test scores (per class for classification)."""
    import jax
    import numpy as np

    from fnmlp.train import weight_stats

    compiling = sum(r.get("compile_seconds", 0.0) for r in trained)
    metrics = {"config": config, "history": history, "device": device_description(),
               "training_seconds": sum(r["epoch_seconds"] for r in trained) - compiling,
               "compile_seconds": compiling,
               "grad_norm_at_init": grad_norms(params),
               "weights_at_init": {k: [float(v) for v in np.asarray(a)] for k, a in
                                   jax.device_get(weight_stats(params)).items()}}
    if best_epoch is not None:
        metrics["best_epoch"] = best_epoch
    if history and "val_loss" in history[-1]:
        kept = next((r for r in history if r["epoch"] == (best_epoch or history[-1]["epoch"])),
                    history[-1])
        metrics.update({k: kept[k] for k in ("val_loss", "val_accuracy", "val_mse")
                        if k in kept})
    if loss.classifies:
        metrics["test_accuracy"] = scores["accuracy"]
        metrics["test_loss"] = scores["loss"]
        metrics.update(per_class_scores(model, final_params, *test, loss))
    else:
        metrics["test_mse"] = scores["mse"]
        metrics["test_mae"] = scores["mae"]
        metrics["test_loss"] = scores["loss"]
    return metrics


def _print_done(metrics: dict, history: list, best_epoch, out) -> None:
    """The run's last line: epochs, the test score, the timings, the kept record."""
    from fnmlp.train import format_record

    shown = next((r for r in history if r.get("restored")), history[-1]) if history else None
    last = format_record(shown) if shown else "no epochs run"
    summary = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("test_accuracy", "test_mse")
                        if k in metrics)
    if best_epoch is not None:
        summary += f" (epoch {best_epoch}, kept by early stopping)"
    print(f"done: {len(history)} epochs, {summary}; training {metrics['training_seconds']:.1f} s"
          f" (+{metrics['compile_seconds']:.1f} s compiling), wall"
          f" {metrics['wall_seconds']:.1f} s (since the script started: imports, data,"
          f" evaluation, pictures) [{last}] -> {out}")
