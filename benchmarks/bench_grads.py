#!/usr/bin/env python
"""Gradient cost: the hand-derived backward against jax.grad (both jitted) across widths
and depths, and per-example gradients (vmap) against the batch gradient."""

from __future__ import annotations

import _common as C


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import jax

    import fnmlp
    from fnmlp.grad import manual_value_and_grad_kernel, mean_loss

    configs = [(w, d) for w in (64, 256, 1024) for d in (1, 2, 4)]  # 784-(w x d)-10
    batch = args.batch
    if args.quick:
        configs, args.reps, batch = [(32, 1), (64, 2)], 1, 32
    info = C.machine()
    rows = []
    for width, depth in configs:
        sizes = [784] + [width] * depth + [10]
        net = fnmlp.mlp(sizes, "relu")
        params = net.init_params(jax.random.key(0))
        x = jax.random.uniform(jax.random.key(1), (batch, 784))
        y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
        # the unchecked kernels, as the training step calls them
        manual = jax.jit(lambda p, x, y, net=net: manual_value_and_grad_kernel(
            net, p, x, y, "softmax_cross_entropy")[1])
        auto = jax.jit(jax.grad(lambda p, x, y, net=net: mean_loss(net, p, x, y,
                                                                   "softmax_cross_entropy")))
        per_ex = jax.jit(lambda p, x, y, net=net: fnmlp.train.per_example_grads(net, p, x, y))

        # many calls per timing so the ~60 us dispatch does not dominate
        def repeat(f, k=20, params=params, x=x, y=y):
            def g():
                for _ in range(k):
                    out = f(params, x, y)
                jax.block_until_ready(out)
            return g

        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        k = max(2, min(20, int(2e8 / (batch * n_params * 6)))) if not args.quick else 2
        impls = {"manual": repeat(manual, k), "autodiff": repeat(auto, k)}
        # per-example gradients hold batch x n_params floats: only where that fits well
        per_example = batch * n_params * 4 <= 512e6
        if per_example:
            impls["per_example_vmap"] = repeat(per_ex, k)
        times = C.interleaved(impls, args.reps, C.settle(args))
        times.pop("__warmup__")
        med = {n: C.median(t) / k * 1e6 for n, t in times.items()}
        rows.append({"width": width, "depth": depth, "batch": batch, "params": n_params,
                     "manual_us": med["manual"], "autodiff_us": med["autodiff"],
                     "spread": max(C.spread(times["manual"]), C.spread(times["autodiff"])),
                     "manual_over_autodiff": med["manual"] / med["autodiff"],
                     "per_example_us": med.get("per_example_vmap"),
                     "per_example_over_batch": (med["per_example_vmap"] / med["autodiff"]
                                                if per_example else None)})
    md = C.table(rows, [("width", "width", ""), ("depth", "hidden layers", ""),
                        ("params", "params", ","),
                        ("batch", "batch", ""), ("manual_us", "manual us", ".0f"),
                        ("autodiff_us", "jax.grad us", ".0f"),
                        ("manual_over_autodiff", "manual / autodiff", ".2f"),
                        ("spread", "spread", ".2f"),
                        ("per_example_us", "per-example (vmap) us", ".0f"),
                        ("per_example_over_batch", "per-example / batch", ".1f")])
    md += (f"\n\nBoth gradients jitted; medians of {args.reps} interleaved rounds; spread:"
           " (max - min) / median, the larger of the two. Per-example gradients are skipped"
           " where batch x params floats exceed 512 MB.")
    return C.emit(args, "gradient cost", info, rows, md)


if __name__ == "__main__":
    main()
