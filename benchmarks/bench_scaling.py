#!/usr/bin/env python
"""Scaling: how fnmlp's epoch time grows with batch size, width and depth, and where a
step is bound by per-step overhead rather than by matrix multiplies.

For each configuration: time per step, achieved GFLOP/s, and the fixed cost per step
estimated from the smallest model (a step that does almost no arithmetic). A step is
overhead-bound where the overhead is a large share of its time; matmul-bound where
GFLOP/s approaches the jnp.dot peak measured in the same run.
"""

from __future__ import annotations

import _common as C
from bench_train import make_data, train_flops_per_example


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--plot", default=None,
                   help="write the PNG here (default: benchmarks/results/scaling.png for a full"
                        " run; none with --quick)")
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    import fnmlp

    batches, widths, depths, n = [16, 32, 64, 128, 256, 512, 1024, 2048], [32, 128, 512, 1024,
                                                                        2048], [1, 2, 3, 4], 16384
    if args.quick:
        batches, widths, depths, n, args.reps = [16, 128], [32], [1], 1024, 1
    info = C.machine()
    peak_fn, peak_flops = C.peak_impl(C.big_shapes()[0] if not args.quick else (128, 128, 128))
    x, y = make_data(n)
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    key = jax.random.key(0)

    def measure(sweep, value, sizes, batch):
        opt = fnmlp.sgd(0.01)
        model = fnmlp.mlp(sizes, "relu")
        tr = fnmlp.train.make_trainer(model, opt, batch)
        h = {"s": fnmlp.init_state(model.init_params(key), opt)}

        def epoch():
            h["s"], _ = tr.epoch(h["s"], xd, yd, key)
            jax.block_until_ready(h["s"])

        t = C.interleaved({"e": epoch, "peak": peak_fn}, args.reps, C.settle(args))
        sec = C.median(t["e"])
        steps = n // batch
        eps = steps * batch / sec
        return {"sweep": sweep, "value": value, "sizes": sizes, "batch": batch,
                "step_us": sec / steps * 1e6, "examples_per_s": eps, "spread": C.spread(t["e"]),
                "gflops": eps * train_flops_per_example(sizes) / 1e9,
                "peak_gflops": peak_flops / C.median(t["peak"]) / 1e9}

    rows = [measure("batch", b, [784, 128, 10], b) for b in batches]
    rows += [measure("width", w, [784, w, 10], 128) for w in widths]
    rows += [measure("depth", d, [784] + [512] * d + [10], 128) for d in depths]
    tiny = measure("overhead", 0, [784, 1, 10], 16)  # ~no arithmetic: the fixed step cost
    overhead = tiny["step_us"]
    for r in rows:
        r["pct_peak"] = 100 * r["gflops"] / r["peak_gflops"]
        r["overhead_share"] = min(1.0, overhead / r["step_us"])
        r["bound"] = ("overhead" if r["overhead_share"] > 0.5 else
                      "matmul" if r["pct_peak"] > 50 else "mixed")
    md = C.table(rows, [("sweep", "sweep", ""), ("value", "value", ""), ("batch", "batch", ""),
                        ("step_us", "us / step", ",.0f"), ("examples_per_s", "examples/s", ",.0f"),
                        ("gflops", "GFLOP/s", ".1f"), ("pct_peak", "% peak", ".0f"),
                        ("overhead_share", "overhead share", ".2f"), ("bound", "bound by", "")])
    peak = max(r["peak_gflops"] for r in rows)
    md += (f"\n\nfixed cost per step (784-1-10, batch 16): {overhead:.0f} us; % peak is against"
           f" jnp.dot at {'x'.join(map(str, C.big_shapes()[0]))} timed in the same rounds as"
           f" each row (highest {peak:.1f} GFLOP/s). Sweeps: batch for 784-128-10; width W"
           f" for 784-W-10 at batch 128; depth d for 784-512xd-10 at batch 128; {n} examples"
           " per epoch.")
    plot_path = args.plot or (None if args.quick else str(C.RESULTS / "scaling.png"))
    try:
        if plot_path:
            _plot(rows, plot_path, info)
            print(f"wrote {plot_path}")
    except ImportError as e:  # matplotlib is an optional extra
        print(f"no plot: {e}")
        plot_path = None
    return C.emit(args, "epoch scaling", info, rows, md,
                  {"overhead_us": overhead, "jnp_peak_gflops": peak, "plot": plot_path})


def _plot(rows, path, info):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, sweep, label in zip(axes, ("batch", "width", "depth"),
                                ("batch size (784-128-10)", "hidden width (batch 128)",
                                 "hidden layers of 512 (batch 128)")):
        rs = [r for r in rows if r["sweep"] == sweep]
        xs = [r["value"] for r in rs]
        ax.plot(xs, [r["step_us"] for r in rs], "o-", label="us / step")
        ax.set_xlabel(label)
        ax.set_ylabel("us per step")
        if sweep != "depth":
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.plot(xs, [r["pct_peak"] for r in rs], "s--", color="C1", label="% of matmul peak")
        ax2.set_ylabel("% of jnp.dot peak", color="C1")
        ax2.set_ylim(0, 110)
    fig.suptitle(f"fnmlp epoch scaling on {info['cpu']} ({info['cores']} cores, {info['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
