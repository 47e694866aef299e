#!/usr/bin/env python
"""Train several architectures one after another on the same data and draw their
validation and training accuracy per epoch on one chart.

Each --arch is WIDTHS[:ACTIVATIONS[:DROPOUT]]: 0 (no hidden layer, the lesson's
perceptron), 128, 256,128:tanh,relu, 512,512:relu:0.2. Every run uses the same optimizer,
seed, validation split (--val-split, held out of the training set) and shuffles; the test
set is evaluated once at the end of each run and only reported. Prints one line per epoch
of every run, then a table. Writes OUT/compare.png (accuracy per epoch), OUT/gradients.png
(each weight matrix's gradient norm per epoch, on a fixed batch of the training part),
OUT/boundaries.png for a 2D toy set (each architecture's decision boundary) and
OUT/compare.json. --train-size N trains on N digits of MNIST's training set (seeded,
stratified), as the lab in scripts/README.md does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fnmlp._names import OPTIMIZER_NAMES, TOY_SET_NAMES
from fnmlp.cli import (
    Parser,
    UsageError,
    add_train_size,
    check_mnist_dir,
    check_out_dir,
    description,
    device_description,
    fraction,
    main_guard,
    make_optimizer,
    non_negative_float,
    positive_float,
    positive_int,
    seed_int,
    start_run,
    train_subset,
    wall_seconds,
    write_json,
)


def main() -> int:
    p = Parser(description=description(__doc__))
    p.add_argument("--arch", action="append", required=True, metavar="SPEC",
                   help="an architecture, WIDTHS[:ACTIVATIONS[:DROPOUT]]; give it once per"
                        " architecture to compare (default: none)")
    p.add_argument("--dataset", choices=["mnist", *TOY_SET_NAMES], default="mnist",
                   help="mnist (from --mnist-dir or tfds) or a 2D toy set")
    p.add_argument("--mnist-dir", default=None,
                   help="folder with the four MNIST IDX files (default: tfds)")
    p.add_argument("--n", type=positive_int, default=600, help="examples of a toy set")
    p.add_argument("--activation", default="relu",
                   help="activation of an --arch that names none")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adam", help="optimizer")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    p.add_argument("--weight-decay", type=non_negative_float, default=None, metavar="WD",
                   help="as train_mnist.py's (default: 0, and 0.01 for adamw)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="learning rate schedule")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per architecture")
    p.add_argument("--batch-size", type=positive_int, default=128, help="minibatch size")
    p.add_argument("--val-split", type=fraction, default=0.1, metavar="F",
                   help="share of the training set held out for validation")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed for init, split and shuffles, in [0, 2**32)")
    p.add_argument("--title", default=None, help="chart title (default: the settings)")
    p.add_argument("--out", default="runs/compare", help="folder for compare.png/.json")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.add_argument("--log-every", type=positive_int, default=1, metavar="N",
                   help="print each run's epoch 1, every N-th epoch and the last")
    add_train_size(p)
    args = p.parse_args()
    # mistakes in the flags and files, before jax is imported and any data is read
    from fnmlp.cli import compare as lab

    try:
        archs = [lab.parse_arch(a, args.activation) for a in args.arch]
    except ValueError as e:
        p.error(str(e))
    if args.dataset != "mnist":
        for flag, given in (("--mnist-dir", args.mnist_dir), ("--train-size", args.train_size)):
            if given is not None:
                p.error(f"{flag} is for --dataset mnist; a toy set has --n examples")
    check_mnist_dir(args.mnist_dir)
    out = check_out_dir(args.out)
    start_run()
    from fnmlp import data

    if args.dataset == "mnist":
        from fnmlp.data import load_mnist

        train, test = (load_mnist(s, mnist_dir=args.mnist_dir) for s in ("train", "test"))
        train = train_subset(args, train)  # --train-size N: seeded, stratified
    else:
        ds = data.TOY_SETS[args.dataset](n=args.n, seed=args.seed)
        train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=args.seed)
    if args.batch_size > len(train.x) * (1 - args.val_split):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set")

    predictors = []  # toy sets: each architecture's boundary

    def keep(arch, model, params, run):
        if args.dataset != "mnist":
            from fnmlp.prediction import predict

            predictors.append((f"{arch.name}\ntest acc {run['test_accuracy']:.3f}",
                               lambda g, m=model, p=params: predict(m, p, g)))

    runs = lab.compare(archs, train.x, train.y, (test.x, test.y), epochs=args.epochs,
                       batch_size=args.batch_size,
                       optimizer_for=lambda n: make_optimizer(args, n),
                       val_split=args.val_split, seed=args.seed, on_run_end=keep,
                       log_every=args.log_every,
                       log=None if args.quiet else (lambda s: print(s, file=sys.stderr)))
    settings = (f"{args.optimizer} {args.lr:g}" + (" cosine" if args.schedule == "cosine" else "")
                + f", batch {args.batch_size}, {len(train.x):,} training examples"
                f" ({args.val_split:g} held out for validation)")
    t_pictures = time.perf_counter()
    from fnmlp import plot
    from fnmlp.cli.probe import PROBE_BATCH

    plot.compare_curves([(r["name"], r["history"]) for r in runs], str(Path(out, "compare.png")),
                        args.title or f"{args.dataset}: accuracy per epoch (solid: validation,"
                        f" dashed: train)\n{settings}")
    n_probe = min(PROBE_BATCH, data.split_sizes(len(train.x), args.val_split)[0])
    plot.gradient_norms([(r["name"], r["history"], r["grad_norm_at_init"]) for r in runs],
                        str(Path(out, "gradients.png")), f"{args.dataset}: {settings}",
                        grad_batch=n_probe)
    if predictors:
        plot.decision_boundaries(predictors, ds.x, ds.y, str(Path(out, "boundaries.png")),
                                 f"{args.dataset}: each architecture's decision boundary after"
                                 f" {args.epochs} epochs ({settings})")
    pictures = time.perf_counter() - t_pictures
    training = sum(h["epoch_seconds"] - h["compile_seconds"] for r in runs for h in r["history"])
    compiling = sum(r["compile_seconds"] for r in runs)
    write_json(out / "compare.json",
               {"config": vars(args) | {"settings": settings, "n_train": len(train.x)},
                "runs": runs, "device": device_description(), "wall_seconds": wall_seconds()})
    print(f"{'architecture':>28}  {'train':>7}  {'val':>7}  {'test':>7}  {'seconds':>7}")
    for r in runs:
        print(f"{r['name']:>28}  {r['train_accuracy']:>7.4f}  {r['val_accuracy']:>7.4f}"
              f"  {r['test_accuracy']:>7.4f}  {r['seconds']:>7.1f}")
    drawn = "compare.png, gradients.png" + (", boundaries.png" if predictors else "")
    print(f"done: {len(runs)} architectures; training {training:.1f} s (+{compiling:.1f} s"
          f" compiling, {pictures:.1f} s pictures), wall {wall_seconds():.1f} s (since the"
          f" script started) -> {out}/ {drawn}")
    return 0


if __name__ == "__main__":
    main_guard(main)
