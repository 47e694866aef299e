#!/usr/bin/env python
"""Compile time of one scanned training epoch, manual against autodiff gradients, split
into tracing + lowering and XLA's compile, for 784-128-10 and 784-1024-1024-10 at the
chosen matmul precision. Each (model, path) compiles in a fresh process, so no cache is
shared; extra XLA_FLAGS (e.g. --xla_gpu_autotune_level=0 on a GPU, to see how much of
the time is autotuning) are passed through the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import _common as C

MODELS = {"S": [784, 128, 10], "L": [784, 1024, 1024, 10]}


def child(sizes, grad, batch, n, precision) -> dict:
    import jax
    import jax.numpy as jnp

    import fnmlp

    with jax.default_matmul_precision(precision):
        opt = fnmlp.sgd(0.01)
        model = fnmlp.mlp(sizes, "relu")
        tr = fnmlp.train.make_trainer(model, opt, batch, grad=grad)
        state = fnmlp.init_state(model.init_params(jax.random.key(0)), opt)
        x = jnp.zeros((n, sizes[0]), jnp.float32)
        y = jnp.zeros((n,), jnp.int32)
        t0 = time.perf_counter()
        lowered = tr.epoch.lower(state, x, y, jax.random.key(0))
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        hlo = compiled.as_text()
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "hlo_lines": hlo.count("\n")}


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--models", default="S,L", help="comma list of S, L")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--examples", type=int, default=60000)
    p.add_argument("--precision", choices=["default", "high", "highest"], default="default")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        model, grad = args.child.split(":")
        print(json.dumps(child(MODELS[model], grad, args.batch, args.examples,
                               args.precision)))
        return None
    models = args.models.split(",")
    if args.quick:
        models, args.examples = ["S"], 1024
    info = C.machine()
    info.update(precision=args.precision, xla_flags=os.environ.get("XLA_FLAGS", ""))
    rows = []
    for model in models:
        for grad in ("manual", "autodiff"):
            out, err = C.run_child(__file__, [
                "--child", f"{model}:{grad}", "--batch", str(args.batch),
                "--examples", str(args.examples), "--precision", args.precision])
            if out is None:
                raise SystemExit(f"{model} {grad}: {err.strip().splitlines()[-1]}")
            rows.append({"model": model, "sizes": MODELS[model], "grad": grad, **out})
    md = C.table(rows, [("model", "model", ""), ("grad", "gradients", ""),
                        ("lower_s", "trace + lower s", ".2f"),
                        ("compile_s", "XLA compile s", ".2f"),
                        ("hlo_lines", "optimized HLO lines", ",")])
    md += (f"\n\nOne scanned epoch of {args.examples} examples at batch {args.batch}, precision"
           f" {args.precision}, XLA_FLAGS '{info['xla_flags']}'; one fresh process per row.")
    return C.emit(args, "epoch compile time", info, rows, md)


if __name__ == "__main__":
    main()
