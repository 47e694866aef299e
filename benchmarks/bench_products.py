#!/usr/bin/env python
"""The epoch's matrix products at their own shapes, on one core and on all: how fast the
products of the lesson's MNIST step (784-128-10, batch 128) run under XLA:CPU and NumPy,
next to the square GEMM that defines "the GEMM limit", in the same run.

Each product of one training step (:func:`products`: the forward ``a @ w`` of every layer,
the weight gradient ``a^T @ delta``, the input gradient ``delta @ w^T`` of every layer
but the first) runs ``--steps`` times in one jitted ``lax.fori_loop``, as inside the
epoch; each iteration writes the last result's corner into one entry of ``a`` (an
in-place update of one element), so no product can be hoisted out of the loop. NumPy runs
the same products in a Python loop (its BLAS, all its threads). The square ``--n``^3 GEMM
(jnp.dot and NumPy) is measured beside them.

Every measurement runs in a fresh child process pinned to the first ``c`` cores
(``os.sched_setaffinity`` before jax is imported), for ``c`` = 1 and every core,
alternating over ``--rounds`` rounds; medians. "x one core" above 1 is what the second
core adds. The sum over the step's products at the best measured rate of their shapes is
the epoch's product time: a floor for the compiled epoch that XLA's kernels set, against
the GEMM limit (the epoch's FLOPs at the square GEMM's rate on all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import _common as C

from fnmlp.cli import positive_int


def products(sizes: list[int], batch: int) -> list[dict]:
    """The matrix products of one training step of an MLP of ``sizes`` at ``batch``:
    ``{"product", "m", "k", "n", "contract"}`` with ``contract`` the dot_general
    contracting dims (lhs, rhs) as XLA gets them from ``a @ w``, ``a.T @ d``, ``d @ w.T``.
    Their 2 m k n FLOPs sum to :func:`_common.epoch_flops` for one step."""
    out = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        out.append({"product": f"layer {i + 1} forward a @ w", "m": batch, "k": fan_in,
                    "n": fan_out, "contract": (1, 0)})
        out.append({"product": f"layer {i + 1} weight gradient a^T @ delta", "m": fan_in,
                    "k": batch, "n": fan_out, "contract": (0, 0)})
        if i > 0:
            out.append({"product": f"layer {i + 1} input gradient delta @ w^T", "m": batch,
                        "k": fan_out, "n": fan_in, "contract": (1, 1)})
    return out


def _operands(p: dict):
    """lhs, rhs float32 arrays laid out as the epoch holds them for product ``p``."""
    import numpy as np

    rng = np.random.default_rng(0)
    m, k, n = p["m"], p["k"], p["n"]
    lhs = (k, m) if p["contract"][0] == 0 else (m, k)
    rhs = (n, k) if p["contract"][1] == 1 else (k, n)
    return (rng.standard_normal(lhs).astype(np.float32),
            rng.standard_normal(rhs).astype(np.float32))


def child(args) -> dict:
    """Runs in the pinned process: GFLOP/s of every product (jnp in a loop, NumPy in a
    loop) and of the square GEMM, best of ``args.reps``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {"cores": sorted(os.sched_getaffinity(0)), "products": []}
    for p in products(args.sizes, args.batch):
        a, b = _operands(p)
        dims = (((p["contract"][0],), (p["contract"][1],)), ((), ()))

        @jax.jit
        def loop(a, b, dims=dims):
            def body(_, a):
                r = jax.lax.dot_general(a, b, dims)
                return a.at[0, 0].set(a[0, 0] + 1e-30 * r[0, 0])

            return jax.lax.fori_loop(0, args.steps, body, a)

        ja, jb = jnp.asarray(a), jnp.asarray(b)
        loop(ja, jb).block_until_ready()
        at, bt = (a.T if p["contract"][0] == 0 else a), (b.T if p["contract"][1] == 1 else b)

        def numpy_loop(at=at, bt=bt):
            for _ in range(args.steps):
                np.dot(at, bt)

        def jnp_loop(ja=ja, jb=jb, loop=loop):
            loop(ja, jb).block_until_ready()

        flops = 2.0 * p["m"] * p["k"] * p["n"] * args.steps
        jnp_s = min(C.timed(jnp_loop) for _ in range(args.reps))
        numpy_s = min(C.timed(numpy_loop) for _ in range(args.reps))
        out["products"].append({**p, "contract": list(p["contract"]),
                                "jnp_gflops": flops / jnp_s / 1e9,
                                "numpy_gflops": flops / numpy_s / 1e9})
    out.update(C.gemm_rates(args.n, reps=args.reps))
    return out


def main() -> int:
    p = C.parser(__doc__)
    p.add_argument("--sizes", type=lambda t: [int(s) for s in t.split(",")],
                   default=[784, 128, 10], help="layer sizes, comma-separated")
    p.add_argument("--batch", type=positive_int, default=128, help="minibatch rows")
    p.add_argument("--steps", type=positive_int, default=468,
                   help="products per timing (468: one epoch of 60,000)")
    p.add_argument("--n", type=positive_int, default=2048, help="the square GEMM's size")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="alternating pairs of child processes (one core, all cores)")
    p.add_argument("--child", type=positive_int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.steps, args.n, args.rounds, args.reps = 20, 256, 1, 2
    if args.child is not None:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.child])
        print(json.dumps(child(args)))
        return 0

    every = len(os.sched_getaffinity(0))
    counts = [1] if every == 1 else [1, every]
    runs: dict[int, list[dict]] = {c: [] for c in counts}
    for r in range(args.rounds):
        for c in (counts if r % 2 == 0 else counts[::-1]):
            got, err = C.run_child(__file__, [*child_args(args), "--child", str(c)],
                                   timeout=1800)
            if got is None:
                raise SystemExit(f"bench_products.py: the {c}-core child failed: {err[-2000:]}")
            runs[c].append(got)

    def med(c, key, i=None):
        return C.median([(g["products"][i] if i is not None else g)[key] for g in runs[c]])

    rows = []
    for i, s in enumerate(products(args.sizes, args.batch)):
        row = {"product": s["product"], "shape": f"{s['m']}x{s['k']}x{s['n']}",
               "mflop_step": 2 * s["m"] * s["k"] * s["n"] / 1e6}
        for c in counts:
            tag = "1" if c == 1 else "all"
            row[f"jnp_{tag}"] = med(c, "jnp_gflops", i)
            row[f"numpy_{tag}"] = med(c, "numpy_gflops", i)
        best = max(v for k, v in row.items() if k.startswith(("jnp_", "numpy_")))
        row["jnp_all_x_1"] = row.get("jnp_all", row["jnp_1"]) / row["jnp_1"]
        # MFLOP / (GFLOP/s) = ms
        row["jnp_ms_epoch"] = row["mflop_step"] * args.steps / max(row["jnp_1"],
                                                                   row.get("jnp_all", 0))
        row["best_ms_epoch"] = row["mflop_step"] * args.steps / best
        rows.append(row)
    gemm = {c: max(med(c, "numpy_gflops"), med(c, "jnp_gflops")) for c in counts}
    epoch_gflop = C.epoch_flops(args.sizes, args.batch, args.steps) / 1e9
    limit_s = epoch_gflop / gemm[counts[-1]]
    jnp_s = sum(r["jnp_ms_epoch"] for r in rows) / 1e3
    best_s = sum(r["best_ms_epoch"] for r in rows) / 1e3
    cols = [("product", "product", ""), ("shape", "m x k x n", ""),
            ("mflop_step", "MFLOP a step", ".1f"), ("jnp_1", "jnp GFLOP/s, 1 core", ".1f")]
    if every > 1:
        cols += [("jnp_all", f"jnp, {every} cores", ".1f"), ("jnp_all_x_1", "x one core", ".2f")]
    cols += [("numpy_1", "NumPy, 1 core", ".1f")]
    if every > 1:
        cols += [("numpy_all", f"NumPy, {every} cores", ".1f")]
    cols += [("jnp_ms_epoch", "jnp ms an epoch", ".1f")]
    gemm_line = ", ".join(f"{'1 core' if c == 1 else f'{c} cores'} {gemm[c]:.1f}"
                          for c in counts)
    md = (C.table(rows, cols) + "\n\n"
          f"The square GEMM ({args.n}^3 float32, the best of jnp.dot and NumPy): {gemm_line} "
          f"GFLOP/s. The epoch's products ({epoch_gflop:.2f} GFLOP, {args.steps} steps) at "
          f"that rate on all cores: {limit_s:.3f} s (the GEMM limit). At jnp's best rate of "
          f"their own shapes: {jnp_s:.3f} s ({jnp_s / limit_s:.2f}x the limit); at the best "
          f"rate any row reached: {best_s:.3f} s ({best_s / limit_s:.2f}x). Medians of "
          f"{args.rounds} alternating rounds of child processes, best of {args.reps} "
          "timings each.")
    C.emit(args, "the epoch's products at their own shapes", C.machine(), rows, md,
           {"gemm_gflops": {str(c): gemm[c] for c in counts}, "epoch_gflop": epoch_gflop,
            "limit_s": limit_s, "products_s_jnp": jnp_s, "products_s_best": best_s,
            "runs": {str(c): runs[c] for c in counts}})
    return 0


def child_args(args) -> list[str]:
    """The measurement's own arguments, passed on to each child."""
    return ["--sizes", ",".join(map(str, args.sizes)), "--batch", str(args.batch),
            "--steps", str(args.steps), "--n", str(args.n), "--reps", str(args.reps)]


if __name__ == "__main__":
    sys.exit(main())
