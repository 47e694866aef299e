#!/usr/bin/env python
"""Train an MLP on a 2D toy problem and draw its decision boundary.

``--dataset imbalanced`` is two blobs 95:5; compare the boundary with and without
``--class-weight balanced`` (metrics.json holds per-class precision and recall).

Writes OUT/decision_boundary.png, OUT/boundary_epochs.png (the boundary over the epochs,
from the initialisation on), OUT/hidden_units.png (what each hidden unit computes on the
plane), OUT/loss_curve.png (loss and accuracy), OUT/weight_norms.png (with each weight
matrix's gradient norm), OUT/checkpoint.npz, OUT/metrics.json. Prints epoch 1, every 10th
and the last (--log-every); --val-split F adds a validation set, which --patience watches.
"""

from __future__ import annotations

from fnmlp._names import TOY_SET_NAMES
from fnmlp.cli import (
    UsageError,
    base_parser,
    description,
    main_guard,
    members_from_args,
    positive_int,
    run,
    start_run,
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
    start_run()
    from fnmlp import data

    if not 0 < args.test_fraction < 1:
        raise UsageError(f"--test-fraction must be in (0, 1); got {args.test_fraction}")
    ds = data.TOY_SETS[args.dataset](n=args.n, seed=args.seed)
    train, test = data.train_test_split(ds.x, ds.y, args.test_fraction, seed=args.seed)

    from fnmlp.cli.probe import snapshot_epochs

    wanted = snapshot_epochs(args.epochs)
    snapshots = {}  # epoch -> params, for the boundary over the epochs

    def keep(state, record):
        if record["epoch"] in wanted:
            import jax

            snapshots[record["epoch"]] = (jax.device_get(state.params),
                                          record.get("train_accuracy"))

    def plots(params, metrics):
        import jax

        from fnmlp import plot
        from fnmlp.cli import architecture_name, network
        from fnmlp.cli.probe import hidden_activations, unit_importance
        from fnmlp.prediction import predict
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
        name = f"{args.dataset}: {architecture_name(metrics['config'])}"
        if 0 in wanted:
            snapshots[0] = (network(metrics).init_params(jax.random.key(args.seed), 2), None)
        panels = [(f"epoch {e}" + (" (init)" if e == 0 else "")
                   + (f"\ntrain acc {acc:.3f}" if acc is not None else "\n"),
                   lambda g, p=p: predict(model, p, g))
                  for e, (p, acc) in sorted(snapshots.items())]
        plot.decision_boundaries(panels, ds.x, ds.y, f"{args.out}/boundary_epochs.png",
                                 f"{name}: the decision boundary as it learns"
                                 " (train acc: the epoch's mean, as trained)",
                                 cols=min(4, len(panels)))
        layers = [n for n, _ in hidden_activations(model, params, ds.x[:1])]
        if layers:  # --hidden 0 has no hidden unit to draw
            plot.hidden_units([(n, lambda g, k=k: hidden_activations(model, params, g)[k][1])
                               for k, n in enumerate(layers)],
                              ds.x, ds.y, f"{args.out}/hidden_units.png",
                              f"{name}, after epoch {metrics['history'][-1]['epoch']}"
                              if metrics["history"] else name,
                              importance=unit_importance(model, params))
        if not metrics["history"]:  # resumed at its end, metrics.json lost: run() says so
            return
        plot.loss_curve(metrics["history"], f"{args.out}/loss_curve.png", args.dataset)
        plot.weight_norms(metrics["history"], f"{args.out}/weight_norms.png",
                          f"{name}, weight magnitudes and gradient norms per weight matrix",
                          metrics["weights_at_init"],
                          shapes=[w.shape for w in weight_matrices(params)],
                          grad_at_init=metrics.get("grad_norm_at_init"),
                          grad_batch=metrics["config"].get("grad_norm_batch"))

    run(args, members=members, train=train, test=test, loss="softmax_cross_entropy",
        dataset=args.dataset, after=plots, each_epoch=keep)
    return 0


if __name__ == "__main__":
    main_guard(main)
