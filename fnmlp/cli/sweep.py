"""Populations from the flags: ``--sweep`` (a grid of learning rates, weight decays,
seeds) and ``--ensemble``, trained in one program (:func:`fnmlp.fit_population`), ranked,
written per member, with the ensemble's accuracy.

Shapes: ``K`` members, ``N`` examples, ``C`` outputs.
"""

from __future__ import annotations

import argparse
import sys
import time

from fnmlp.cli.config import RunConfig, model_and_config
from fnmlp.cli.flags import (
    UsageError,
    architecture_name,
    check_class_weight,
    check_out_dir,
    cosine_factor,
    decay_mask,
    device_description,
    make_mesh_for,
    per_class_scores,
    weight_decay,
    write_json,
)


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
        from fnmlp._names import SEED_LIMIT

        if args.seed + ensemble > SEED_LIMIT:
            raise UsageError(f"--ensemble {ensemble} trains seeds --seed .. --seed +"
                             f" {ensemble - 1}, which must stay below 2**32; got --seed"
                             f" {args.seed}: give --seed {SEED_LIMIT - ensemble} or less")
        return grid([args.lr], [weight_decay(args)],
                    list(range(args.seed, args.seed + ensemble)))
    try:
        return parse_sweep(args.sweep, Member(args.lr, weight_decay(args), args.seed))
    except ValueError as e:
        raise UsageError(str(e)) from None


def run_population(args: argparse.Namespace, members: list, *, train: tuple, test: tuple,
                   loss: str, dataset: str, extra_config: dict | None = None) -> dict:
    """Trains ``members`` as one population on ``train``, each evaluated on ``test``
    every epoch (with ``--val-split``: on the validation set every epoch, ranked by it,
    and on ``test`` once at the end); writes ``OUT/members/K/metrics.json`` per member,
    ``OUT/metrics.json``
    (the ranking, the best member, the ensemble's test accuracy for classification),
    ``OUT/checkpoint.npz`` (the best member, loadable by ``fnmlp.load_model``) and
    ``OUT/sweep.png``. Prints the ranking."""
    import jax
    import numpy as np

    from fnmlp.data import train_test_split
    from fnmlp.io.checkpoint import save_checkpoint
    from fnmlp.losses import get_loss
    from fnmlp.population import (
        ensemble_predict_proba,
        fit_population,
        member_hyperparameters,
        take,
    )
    from fnmlp.train import evaluate

    check_class_weight(args, loss)
    lossdef = get_loss(loss)  # the loss as a value, once; its kind decides what is reported
    t_start = time.perf_counter()
    x, y = np.asarray(train[0]), np.asarray(train[1])
    model, base = model_and_config(RunConfig.from_args(args), x, y, lossdef, dataset,
                                   extra_config)  # the model built once, as run() does
    base["class_weight"] = getattr(args, "class_weight", None)
    val_split = getattr(args, "val_split", None)
    base["val_split"] = val_split
    held = test
    if val_split:  # the members are ranked on validation; the test set only reported
        (x, y), held = train_test_split(x, y, val_split, args.seed, name="--val-split")
    out = check_out_dir(args.out)

    result = fit_population(
        model, x, y, members, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, loss=lossdef, grad=args.grad,
        validation_data=held, lr_factor=cosine_factor(args, len(x)), mesh=make_mesh_for(args),
        verbose=not args.quiet, class_weight=base["class_weight"],
        weight_decay_mask=decay_mask(), validation_name="val" if val_split else "test")
    classify = lossdef.classifies
    rows, trained = [], member_hyperparameters(result)  # read from the state that trained
    for k, (m, hist) in enumerate(zip(members, result.history)):
        config = {**base, **trained[k], "seed": m.seed, "member": k}
        final = dict(hist[-1])
        if val_split:
            final.update({f"test_{key}": v for key, v in evaluate(
                model, result.member_params(k), test[0], test[1], loss=lossdef).items()})
        metrics = {"config": config, "history": hist, "test_loss": final["test_loss"],
                   "diverged": final["diverged"], "device": device_description()}
        if val_split:
            metrics["val_loss"] = final["val_loss"]
        if classify:
            metrics["test_accuracy"] = final["test_accuracy"]
            metrics.update(per_class_scores(model, result.member_params(k), test[0], test[1],
                                            lossdef))
        else:
            metrics.update(test_mse=final["test_mse"], test_mae=final["test_mae"])
        (out / "members" / str(k)).mkdir(parents=True, exist_ok=True)
        write_json(out / "members" / str(k) / "metrics.json", metrics)
        rows.append({"member": k, "lr": config["lr"], "wd": config["weight_decay"], "seed": m.seed,
                     "test_loss": final["test_loss"], "diverged": final["diverged"],
                     **({"val_loss": final["val_loss"]} if val_split else {}),
                     **({"test_accuracy": final["test_accuracy"]} if classify else
                        {"test_mse": final["test_mse"]}),
                     **({"test_balanced_accuracy": metrics["test_balanced_accuracy"]}
                        if "test_balanced_accuracy" in metrics else {})})
    rank_by = "val_loss" if val_split else "test_loss"
    ranking = sorted(rows, key=lambda r: (r["diverged"], r[rank_by]
                                          if np.isfinite(r[rank_by]) else np.inf))
    best = ranking[0]["member"]
    summary = {"config": base, "members": rows, "ranking": [r["member"] for r in ranking],
               "ranked_by": rank_by, "best": best, "device": device_description(),
               "run_seconds": time.perf_counter() - t_start}  # training and evaluation
    if all(r["diverged"] for r in rows):  # nothing to keep, rank or ensemble
        write_json(out / "metrics.json", {**summary, "best": None})
        raise FloatingPointError(
            f"every member diverged (learning rates {', '.join(f'{m.lr:g}' for m in members)}):"
            f" nothing to keep; each member's history is in {out}/members/K/metrics.json:"
            " lower the learning rates")
    if lossdef.kind == "multiclass":
        finite = [r["member"] for r in rows if not r["diverged"]]
        proba = ensemble_predict_proba(model, result.params, test[0], loss=lossdef,
                                       members=finite)
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
                               f" {architecture_name(base)} trained in one program",
                               best=best, held="validation" if val_split else "test")
        if "ensemble_test_accuracy" in summary:
            varies = [k for k in ("lr", "wd", "seed") if len({r[k] for r in rows}) > 1]
            plot.ensemble_bars([r["test_accuracy"] for r in rows],
                               summary["ensemble_test_accuracy"], str(out / "ensemble.png"),
                               f"{dataset}: {architecture_name(base)}, {len(members)} members",
                               ["\n".join(f"{k} {r[k]}" if k == "seed" else f"{k} {r[k]:g}"
                                          for k in varies) or f"#{r['member']}" for r in rows])
    except ImportError as e:
        print(f"no pictures: {e}", file=sys.stderr)
    key = "test_accuracy" if classify else "test_mse"
    vcol = f"  {'val_loss':>9}" if val_split else ""
    print(f"{'rank':>4}  {'member':>6}  {'lr':>8}  {'wd':>8}  {'seed':>4}{vcol}  {'test_loss':>9}"
          f"  {key:>13}")
    for i, r in enumerate(ranking):
        flag = "  diverged" if r["diverged"] else ""
        v = f"  {r['val_loss']:>9.4f}" if val_split else ""
        print(f"{i + 1:>4}  {r['member']:>6}  {r['lr']:>8g}  {r['wd']:>8g}  {r['seed']:>4}{v}"
              f"  {r['test_loss']:>9.4f}  {r[key]:>13.4f}{flag}")
    if "ensemble_test_accuracy" in summary:
        print(f"ensemble of {len(summary['ensemble_members'])} members (mean probability):"
              f" test_accuracy {summary['ensemble_test_accuracy']:.4f}")
    from fnmlp.cli.flags import wall_seconds

    summary["wall_seconds"] = wall_seconds()  # since the script started, as one run's
    write_json(out / "metrics.json", summary)
    print(f"done: {len(members)} members, best #{best} (by {rank_by}); training and evaluation"
          f" {summary['run_seconds']:.1f} s, wall {summary['wall_seconds']:.1f} s"
          f" (since the script started) -> {out}")
    return summary
