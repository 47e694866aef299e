#!/usr/bin/env python
"""Train an MLP on MNIST: downloaded through tensorflow-datasets (no TensorFlow), or read
from the four IDX files.

Defaults: 784-256-10 ReLU, Adam 2e-3 with cosine decay to 0, batch 128, 10 epochs. The
architecture comes from --hidden / --activation / --dropout (one per hidden layer, or one
for all; --hidden 0 is the lesson's single linear layer) or from a --layers spec.
--val-split F holds out a validation set (what --patience watches; the test set is only
reported). --train-size N trains on N digits of the training set, drawn with --seed and
stratified (each digit keeps its share), as the lab in scripts/README.md does.
--recipe strong is the recipe meant for >= 98.5% on full MNIST (see RECIPES).
Writes OUT/checkpoint.npz (every epoch; `python scripts/predict.py --checkpoint` uses it),
OUT/metrics.json (test loss and accuracy of every epoch), and the pictures
curves.png, confusion_matrix.png, predictions.png, weights.png and weight_norms.png (each
weight matrix's size and its gradient's norm per epoch, on a fixed batch of 1,024
training digits).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fnmlp.cli import (
    add_train_size,
    base_parser,
    check_mnist_dir,
    check_resume_architecture,
    description,
    main_guard,
    members_from_args,
    positive_int,
    run,
    start_run,
    train_subset,
)

# --recipe NAME: defaults for the flags; a flag given on the command line still wins.
RECIPES = {
    # 784-1024-1024-10 ReLU with dropout 0.2 after each hidden layer, Adam 1e-3 with a
    # cosine decay to 0 over 20 epochs, batch 128: meant for >= 98.5% on full MNIST in
    # under 10 minutes on 2 CPU cores (scripts/README.md section 4 says what was measured).
    "strong": {"hidden": [1024, 1024], "activation": ["relu"], "dropout": [0.2],
               "optimizer": "adam", "lr": 1e-3, "schedule": "cosine", "epochs": 20,
               "batch_size": 128},
}

MNIST_INPUT = {
    "kind": "mnist",
    "width": 784,
    "image": [28, 28],
    "scale": "pixel / 255",
    "convention": "white digit on black, size-normalised to 20x20 and centred by mass in 28x28",
}


def main() -> int:
    p = base_parser(description(__doc__), hidden="256", activation="relu",
                    optimizer="adam", lr=2e-3, batch_size=128, epochs=10, out="runs/mnist",
                    schedule="cosine")
    p.add_argument("--data-dir", default=None,
                   help="tensorflow-datasets data folder (default: $TFDS_DATA_DIR or"
                        " ~/tensorflow_datasets)")
    p.add_argument("--mnist-dir", default=None,
                   help="folder with the four MNIST IDX files (gzipped or raw); skips tfds"
                        " (default: none)")
    p.add_argument("--no-download", action="store_true",
                   help="never try to download; fail at once if the data is missing")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="a documented recipe: strong = 784-1024-1024-10 relu, dropout 0.2,"
                        " Adam 1e-3 + cosine, 20 epochs, batch 128; flags given still win"
                        " (default: none)")
    p.add_argument("--ensemble", type=positive_int, default=None, metavar="K",
                   help="train K models (seeds SEED..SEED+K-1) in one program and report the"
                        " ensemble's test accuracy beside theirs (default: one model)")
    add_train_size(p)
    known, _ = p.parse_known_args()
    if known.recipe:
        p.set_defaults(**RECIPES[known.recipe])
    args = p.parse_args()
    check_mnist_dir(args.mnist_dir)  # plain Python: before jax is imported
    members = members_from_args(args)  # bad --sweep specs fail before any data work
    check_resume_architecture(args, 784, 10)  # before the data is read
    start_run()

    from fnmlp.data import load_mnist

    kw = dict(mnist_dir=args.mnist_dir, data_dir=args.data_dir, download=not args.no_download)
    train, test = load_mnist("train", **kw), load_mnist("test", **kw)
    n_all = len(train.x)
    train = train_subset(args, train)  # --train-size N: seeded, stratified
    source = f"idx:{args.mnist_dir}" if args.mnist_dir else "tfds"

    def pictures(params, metrics):
        import jax
        import numpy as np

        from fnmlp import plot
        from fnmlp.cli import architecture_name, network
        from fnmlp.prediction import predict_classes
        from fnmlp.train import weight_matrices

        out = Path(args.out)
        model = network(metrics)
        pred = np.asarray(predict_classes(model, params, test.x))
        acc = metrics["test_accuracy"]
        name = f"MNIST {architecture_name(metrics['config'])}"
        kept = metrics.get("best_epoch")
        which = (f"epoch {kept}, kept by early stopping" if kept else
                 f"after epoch {metrics['history'][-1]['epoch']}" if metrics["history"] else "")
        if metrics["history"]:  # else resumed at its end, metrics.json lost: run() says so
            plot.learning_curves(metrics["history"], str(out / "curves.png"),
                                 f"{name}: test accuracy {acc:.4f} ({which})")
            plot.weight_norms(metrics["history"], str(out / "weight_norms.png"),
                              f"{name}: weight magnitudes and gradient norms per weight matrix",
                              metrics["weights_at_init"],
                              shapes=[w.shape for w in weight_matrices(params)],
                              grad_at_init=metrics.get("grad_norm_at_init"),
                              grad_batch=metrics["config"].get("grad_norm_batch"))
        plot.confusion_heatmap(test.y, pred, str(out / "confusion_matrix.png"),
                              f"{name}\nconfusion matrix on {len(test.y):,} test digits"
                              f" ({int((pred != test.y).sum())} errors)", n_classes=10)
        plot.prediction_grid(test.x.reshape(-1, 28, 28), test.y, pred,
                             str(out / "predictions.png"))
        # the first weight matrix that reads the 784 pixels, whatever layer holds it (a
        # network may start with LayerNorm, or a layer of your own)
        start = model.init_params(jax.random.key(args.seed), 784)
        first = [i for i, w in enumerate(weight_matrices(params)) if w.shape[0] == 784]
        if first:
            plot.weight_images(np.asarray(weight_matrices(params)[first[0]]),
                               str(out / "weights.png"),
                               w_init=np.asarray(weight_matrices(start)[first[0]]))
        else:
            print("no weights.png: no weight matrix of the network reads the 784 pixels",
                  file=sys.stderr)

    extra = {"source": source, "n_train": len(train.x), "n_test": len(test.x),
             "train_size": args.train_size, "n_train_available": n_all, "input": MNIST_INPUT}
    run(args, members=members, train=train, test=test, loss="softmax_cross_entropy",
        dataset="mnist", extra_config=extra, after=pictures)
    return 0


if __name__ == "__main__":
    main_guard(main)
