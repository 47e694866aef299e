#!/usr/bin/env python
"""The machine's limit: float32 matmul GFLOP/s of jnp.dot and NumPy, the denominator of
"% of peak" in the training benchmark."""

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
    md += f"\n\njnp.dot peak (max over shapes): {peak:.1f} GFLOP/s"
    return C.emit(args, "float32 matmul peak", info, rows, md, {"jnp_peak_gflops": peak})


if __name__ == "__main__":
    main()
