#!/usr/bin/env python
"""Train an MLP on MNIST, read through tensorflow-datasets or from the four IDX files.

Defaults (784-128-10 ReLU, Adam 1e-3, batch 128, 10 epochs) are a good MNIST baseline.
Writes OUT/checkpoint.npz (every epoch) and OUT/metrics.json.
"""

from __future__ import annotations

from fnmlp.cli import base_parser, description, main_guard, run


def main() -> int:
    p = base_parser(description(__doc__), hidden="128", activation="relu",
                    optimizer="adam", lr=1e-3, batch_size=128, epochs=10, out="runs/mnist")
    p.add_argument("--data-dir", default=None,
                   help="tensorflow-datasets data folder (default: $TFDS_DATA_DIR or"
                        " ~/tensorflow_datasets)")
    p.add_argument("--mnist-dir", default=None,
                   help="folder with the four MNIST IDX files (gzipped or raw); skips tfds"
                        " (default: none)")
    p.add_argument("--no-download", action="store_true",
                   help="never try to download; fail at once if the data is missing")
    args = p.parse_args()

    from fnmlp.data import load_mnist

    kw = dict(mnist_dir=args.mnist_dir, data_dir=args.data_dir, download=not args.no_download)
    train, test = load_mnist("train", **kw), load_mnist("test", **kw)
    source = f"idx:{args.mnist_dir}" if args.mnist_dir else "tfds"
    run(args, train=train, test=test, loss="softmax_cross_entropy", dataset="mnist",
        extra_config={"source": source, "n_train": len(train.x), "n_test": len(test.x)})
    return 0


if __name__ == "__main__":
    main_guard(main)
