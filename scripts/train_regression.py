#!/usr/bin/env python
"""Train an MLP on a regression set (noisy sine, a 2D surface, or three outputs).

Writes OUT/fit.png, OUT/loss_curve.png, OUT/checkpoint.npz, OUT/metrics.json.
"""

from __future__ import annotations

from fnmlp._names import REGRESSION_SET_NAMES
from fnmlp.cli import (
    base_parser,
    description,
    main_guard,
    members_from_args,
    positive_int,
    run,
    start_run,
)


def main() -> int:
    p = base_parser(description(__doc__), hidden="64,64", activation="tanh",
                    optimizer="adam", lr=0.01, batch_size=32, epochs=200,
                    out="runs/regression", log_every=10)
    p.add_argument("--dataset", choices=REGRESSION_SET_NAMES, default="sine",
                   help="regression set (fnmlp.data.regression)")
    p.add_argument("--loss", choices=["mse", "mae", "huber"], default="mse", help="loss")
    p.add_argument("--n", type=positive_int, default=600, help="number of examples")
    args = p.parse_args()
    members = members_from_args(args)  # bad --sweep specs fail before any data work
    start_run()
    from fnmlp import data

    ds = data.REGRESSION_SETS[args.dataset](n=args.n, seed=args.seed)
    train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=args.seed)

    def plots(params, metrics):
        from fnmlp import plot
        from fnmlp.cli import network
        from fnmlp.prediction import predict

        model = network(metrics)
        plot.regression_fit(ds.x, ds.y, lambda g: predict(model, params, g),
                            f"{args.out}/fit.png",
                            f"{args.dataset}: test MSE {metrics['test_mse']:.4f}")
        plot.loss_curve(metrics["history"], f"{args.out}/loss_curve.png", args.dataset)

    run(args, members=members, train=train, test=test, loss=args.loss, dataset=args.dataset,
        after=plots)
    return 0


if __name__ == "__main__":
    main_guard(main)
