#!/usr/bin/env python
"""What the CPU compiler allows: fnmlp's 784-128-10 epoch (both gradient paths) against
the NumPy epoch by hand, once per XLA_FLAGS setting, each setting in a fresh process
(XLA reads its flags once), NumPy timed in the same process as the ratio's denominator.

The settings are XLA:CPU's own switches for the library that runs the products (YNNPACK,
XNNPACK, oneDNN, Eigen's threading) and fast math; a setting XLA does not know fails its
process, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os

import _common as C

SETTINGS = {
    "default": "",
    "YNNPACK dots off (Eigen)": "--xla_cpu_experimental_ynn_fusion_type=-individual_dot",
    "XNNPACK dot fusion": "--xla_cpu_experimental_xnn_fusion_type=dot",
    "oneDNN": "--xla_cpu_use_onednn=true",
    "oneDNN dot fusion": "--xla_cpu_experimental_onednn_fusion_type=dot",
    "Eigen single-threaded": "--xla_cpu_multi_thread_eigen=false",
    "fast math": "--xla_cpu_enable_fast_math=true",
}


def child(batch: int, n: int, reps: int, settle: float) -> dict:
    import bench_train as T

    sizes = [784, 128, 10]
    x, y = T.make_data(n)
    impls = {"manual": T.fnmlp_impl(sizes, x, y, batch, "manual"),
             "autodiff": T.fnmlp_impl(sizes, x, y, batch, "autodiff"),
             "numpy": T.numpy_impl(sizes, x, y, batch)}
    times = C.interleaved(impls, reps, settle)
    times.pop("__warmup__")
    steps = n // batch
    return {k: C.median(v) / steps * 1e6 for k, v in times.items()}


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--examples", type=int, default=16384)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n, names = args.examples, list(SETTINGS)
    if args.quick:
        n, args.reps, names = 1024, 1, names[:1]
    if args.child:
        print(json.dumps(child(args.batch, n, args.reps, C.settle(args))))
        return None
    info = C.machine()
    rows = []
    for name in names:
        env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " "
                                          + SETTINGS[name]).strip())
        cmd = ["--child", "--batch", str(args.batch), "--examples", str(n), "--reps",
               str(args.reps), "--settle", str(args.settle)]
        if args.quick:
            cmd.append("--quick")
        us, err = C.run_child(__file__, cmd, env)
        row = {"setting": name, "flags": SETTINGS[name] or "(none)"}
        if us is None:
            row["error"] = (err.strip().splitlines() or ["failed"])[-1][:120]
        else:
            row.update({f"{k}_us": v for k, v in us.items()})
            row.update({f"{k}_x_numpy": us["numpy"] / us[k] for k in ("manual", "autodiff")})
        rows.append(row)
    md = C.table(rows, [("setting", "setting", ""), ("flags", "XLA_FLAGS", ""),
                        ("manual_us", "manual us/step", ".0f"),
                        ("autodiff_us", "autodiff us/step", ".0f"),
                        ("numpy_us", "NumPy us/step", ".0f"),
                        ("manual_x_numpy", "manual x NumPy", ".2f"),
                        ("autodiff_x_numpy", "autodiff x NumPy", ".2f"),
                        ("error", "error", "")])
    md += (f"\n\n784-128-10, plain SGD, batch {args.batch}, {n} examples per epoch; one fresh"
           f" process per setting; medians of {args.reps} rounds in shuffled order with"
           f" {C.settle(args)} s idle before each timed epoch. 'x NumPy' > 1 is faster than"
           " NumPy measured in the same process.")
    return C.emit(args, "XLA:CPU settings", info, rows, md)


if __name__ == "__main__":
    main()
