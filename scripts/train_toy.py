#!/usr/bin/env python
"""Train an MLP on a 2D toy problem and draw its decision boundary.

``--dataset imbalanced`` is two blobs 95:5; compare the boundary with and without
``--class-weight balanced`` (metrics.json holds per-class precision and recall).

Writes OUT/decision_boundary.png, OUT/loss_curve.png, OUT/weight_norms.png,
OUT/checkpoint.npz, OUT/metrics.json. Prints epoch 1, every 10th and the last
(--log-every); --val-split F adds a validation set, which --patience watches.
"""

from __future__ import annotations

from fnmlp._names import TOY_SET_NAMES
from fnmlp.cli import (
    UsageError,
    base_parser,
    description,
    enable_compile_cache,
    main_guard,
    members_from_args,
    positive_int,
    run,
)


def main() -> int:
    p = base_parser(description(__doc__), hidden="32", activation="tanh",
                    optimizer="adam", lr=0.01, batch_size=32, epochs=200, out="runs/toy",
                    log_every=10)
    p.add_argument("--dataset", choices=TOY_SET_NAMES, default="classification",
                   help="2D set (fnmlp.data.toy); 'classification' is the lesson's")
    p.add_argument("--n", type=positive_int, default=600, help="number of examples")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="share of the examples held out for the test")
    args = p.parse_args()
    members = members_from_args(args)  # bad --sweep specs fail before any data work
    enable_compile_cache()
    from fnmlp import data

    if not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction must be in (0, 1); got {args.test_fraction}")
    ds = data.TOY_SETS[args.dataset](n=args.n, seed=args.seed)
    train, test = data.train_test_split(ds.x, ds.y, args.test_fraction, seed=args.seed)

    def plots(params, metrics):
        from fnmlp import plot
        from fnmlp.cli import architecture_name, network
        from fnmlp.predict import predict
        from fnmlp.train import weight_matrices

        model = network(metrics)
        title = (f"{args.dataset}: {architecture_name(metrics['config'])},"
                 f" test acc {metrics['test_accuracy']:.3f}")
        if args.class_weight is not None or args.dataset == "imbalanced":
            recall = ", ".join(f"{r:.2f}" for r in metrics["test_recall"])
            title += (f"\nclass_weight {args.class_weight}: test recall [{recall}],"
                      f" bal. acc {metrics['test_balanced_accuracy']:.3f}")
        plot.decision_boundary(lambda g: predict(model, params, g), ds.x, ds.y,
                               f"{args.out}/decision_boundary.png", title)
        plot.loss_curve(metrics["history"], f"{args.out}/loss_curve.png", args.dataset)
        plot.weight_norms(metrics["history"], f"{args.out}/weight_norms.png",
                          f"{args.dataset}: {architecture_name(metrics['config'])}, weight"
                          " magnitudes per weight matrix", metrics["weights_at_init"],
                          shapes=[w.shape for w in weight_matrices(params)])

    run(args, members=members, train=train, test=test, loss="softmax_cross_entropy",
        dataset=args.dataset, after=plots)
    return 0


if __name__ == "__main__":
    main_guard(main)
