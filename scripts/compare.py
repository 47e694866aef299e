#!/usr/bin/env python
"""Train several architectures one after another on the same data and draw their
validation and training accuracy per epoch on one chart.

Each --arch is WIDTHS[:ACTIVATIONS[:DROPOUT]]: 0 (no hidden layer, the lesson's
perceptron), 128, 256,128:tanh,relu, 512,512:relu:0.2. Every run uses the same optimizer,
seed, validation split (--val-split, held out of the training set) and shuffles; the test
set is evaluated once at the end of each run and only reported. Writes OUT/compare.png
and OUT/compare.json, and prints a table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fnmlp._names import OPTIMIZER_NAMES, TOY_SET_NAMES
from fnmlp.cli import (
    Parser,
    UsageError,
    check_out_dir,
    description,
    device_description,
    fraction,
    main_guard,
    make_optimizer,
    non_negative_float,
    positive_float,
    positive_int,
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
    p.add_argument("--seed", type=int, default=0, help="seed for init, split and shuffles")
    p.add_argument("--title", default=None, help="chart title (default: the settings)")
    p.add_argument("--out", default="runs/compare", help="folder for compare.png/.json")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    args = p.parse_args()
    from fnmlp import data
    from fnmlp.cli import compare as lab

    try:
        archs = [lab.parse_arch(a, args.activation) for a in args.arch]
    except ValueError as e:
        p.error(str(e))
    out = check_out_dir(args.out)

    if args.dataset == "mnist":
        from fnmlp.data import load_mnist

        train, test = (load_mnist(s, mnist_dir=args.mnist_dir) for s in ("train", "test"))
    else:
        ds = data.TOY_SETS[args.dataset](n=args.n, seed=args.seed)
        train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=args.seed)
    if args.batch_size > len(train.x) * (1 - args.val_split):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set")

    runs = lab.compare(archs, train.x, train.y, (test.x, test.y), epochs=args.epochs,
                       batch_size=args.batch_size,
                       optimizer_for=lambda n: make_optimizer(args, n),
                       val_split=args.val_split, seed=args.seed,
                       log=None if args.quiet else (lambda s: print(s, file=sys.stderr)))
    settings = (f"{args.optimizer} {args.lr:g}" + (" cosine" if args.schedule == "cosine" else "")
                + f", batch {args.batch_size}, {len(train.x):,} training examples"
                f" ({args.val_split:g} held out for validation)")
    from fnmlp import plot

    plot.compare_curves([(r["name"], r["history"]) for r in runs], str(Path(out, "compare.png")),
                        args.title or f"{args.dataset}: accuracy per epoch (solid: validation,"
                        f" dashed: train)\n{settings}")
    (out / "compare.json").write_text(json.dumps(
        {"config": vars(args) | {"settings": settings}, "runs": runs,
         "device": device_description()}, indent=2))
    print(f"{'architecture':>28}  {'train':>7}  {'val':>7}  {'test':>7}  {'seconds':>7}")
    for r in runs:
        print(f"{r['name']:>28}  {r['train_accuracy']:>7.4f}  {r['val_accuracy']:>7.4f}"
              f"  {r['test_accuracy']:>7.4f}  {r['seconds']:>7.1f}")
    print(f"done: {len(runs)} architectures -> {out}/compare.png")
    return 0


if __name__ == "__main__":
    main_guard(main)
