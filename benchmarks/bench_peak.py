#!/usr/bin/env python
"""The machine's limit: float32 matmul GFLOP/s of jnp.dot and NumPy, the denominator of
"% of peak" in the training benchmark, and the GEMM limit of the lesson's MNIST epoch (its
products, 24.5 GFLOP for 784-128-10 at batch 128 on 60,000 examples, at the best rate)."""

from __future__ import annotations

import _common as C


def main(argv=None):
    args = C.parser(__doc__).parse_args(argv)
    sizes = [(128, 784, 128), (128, 784, 1024), (128, 1024, 1024), *C.big_shapes()]
    if args.quick:
        sizes, args.reps = [(64, 64, 64), (128, 784, 128)], 1
    info = C.machine()
    rows = C.matmul_peak(sizes, args.reps, settle=C.settle(args))
    peak = max(r["jnp_gflops"] for r in rows)
    md = C.table(rows, [("shape", "m x k x n", ""), ("jnp_gflops", "jnp.dot GFLOP/s", ".1f"),
                        ("numpy_gflops", "NumPy GFLOP/s", ".1f")])
    best = max(max(r["jnp_gflops"], r["numpy_gflops"] or 0) for r in rows)
    flops = C.epoch_flops([784, 128, 10], 128, 60000 // 128)
    md += (f"\n\njnp.dot peak (max over shapes): {peak:.1f} GFLOP/s; best of jnp.dot and"
           f" NumPy: {best:.1f} GFLOP/s. The MNIST epoch's GEMM limit (784-128-10, batch 128,"
           f" 60,000 examples: {flops / 1e9:.1f} GFLOP of products) at that rate:"
           f" {flops / best / 1e9:.3f} s.")
    return C.emit(args, "float32 matmul peak", info, rows, md,
                  {"jnp_peak_gflops": peak, "best_gflops": best,
                   "mnist_epoch_limit_s": flops / best / 1e9})


if __name__ == "__main__":
    main()
