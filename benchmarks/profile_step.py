#!/usr/bin/env python
"""Where one training step's time goes: the step of 784-128-10 (or any --sizes) at a
batch size, taken apart into its matrix products, each timed alone (jitted jnp.dot and
NumPy), next to the whole scanned step; plus the ops of the compiled step for both
gradient paths (from the optimized HLO), to explain manual vs autodiff differences."""

from __future__ import annotations

import re
from collections import Counter

import _common as C
import numpy as np


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--sizes", default="784,128,10")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    import fnmlp

    sizes = [int(s) for s in args.sizes.split(",")]
    B, n, k = args.batch, 16384, 50
    if args.quick:
        n, k, args.reps = 1024, 5, 1
    info = C.machine()
    rng = np.random.default_rng(0)
    x = rng.random((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    xd, yd, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(0)

    # the matrix products of one step: forward z_l = a_{l-1} @ w_l, weight gradients
    # a_{l-1}^T @ delta_l, input gradients delta_l @ w_l^T (not for the first layer)
    products = []
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        products.append((f"forward L{l} [B,{a}]@[{a},{b}]", (B, a), (a, b), False))
        products.append((f"dW L{l} [{a},B]@[B,{b}]", (B, a), (B, b), True))
        if l > 0:
            products.append((f"dX L{l} [B,{b}]@[{b},{a}]", (B, b), (a, b), "nt"))
    dot_nn = jax.jit(lambda a, b: a @ b)
    dot_tn = jax.jit(lambda a, b: a.T @ b)
    dot_nt = jax.jit(lambda a, b: a @ b.T)
    rows, impls = [], {}
    for name, sa, sb, kind in products:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        f = dot_tn if kind is True else dot_nt if kind == "nt" else dot_nn
        g = ((lambda a, b: a.T @ b) if kind is True else (lambda a, b: a @ b.T) if kind == "nt"
             else (lambda a, b: a @ b))

        def jrun(f=f, ja=ja, jb=jb):
            for _ in range(k):
                out = f(ja, jb)
            out.block_until_ready()

        def nrun(g=g, a=a, b=b):
            for _ in range(k):
                g(a, b)

        impls[f"jnp {name}"] = jrun
        impls[f"numpy {name}"] = nrun
    opt = fnmlp.sgd(0.01)
    model = fnmlp.mlp(sizes, "relu")
    trainers = {g: fnmlp.train.make_trainer(model, opt, B, grad=g) for g in ("manual", "autodiff")}
    for grad, tr in trainers.items():
        h = {"s": fnmlp.init_state(model.init_params(key), opt)}

        def epoch(tr=tr, h=h):
            h["s"], _ = tr.epoch(h["s"], xd, yd, key)
            jax.block_until_ready(h["s"])

        impls[f"step {grad}"] = epoch
    times = C.interleaved(impls, args.reps, C.settle(args))
    times.pop("__warmup__")
    steps = n // B
    step_us = {g: C.median(times[f"step {g}"]) / steps * 1e6 for g in ("manual", "autodiff")}
    total = {"jnp": 0.0, "numpy": 0.0}
    for name, sa, sb, kind in products:
        jt = C.median(times[f"jnp {name}"]) / k * 1e6
        nt = C.median(times[f"numpy {name}"]) / k * 1e6
        flops = _flops(sa, sb, kind)
        total["jnp"] += jt
        total["numpy"] += nt
        rows.append({"part": name, "jnp_us": jt, "numpy_us": nt,
                     "jnp_gflops": flops / jt / 1e3, "numpy_gflops": flops / nt / 1e3})
    rows.append({"part": "sum of the products alone", "jnp_us": total["jnp"],
                 "numpy_us": total["numpy"]})
    for g in ("manual", "autodiff"):
        rows.append({"part": f"whole scanned step, {g} gradients", "jnp_us": step_us[g]})

    # what the compiled steps contain
    ops = {}
    for grad, tr in trainers.items():
        st = fnmlp.init_state(model.init_params(key), opt)
        hlo = tr.step.lower(st, fnmlp.train.Batch(xd[:B], yd[:B])).compile().as_text()
        names = re.findall(r"=\s*[\w\[\]{},. ]*?\s(\w[\w-]*)\(", hlo)
        counted = Counter(n for n in names if n in {
            "dot", "custom-call", "scatter", "gather", "transpose", "fusion", "copy",
            "reduce", "select", "convolution"})
        ops[grad] = dict(counted)
    md = C.table(rows, [("part", "part of one step", ""), ("jnp_us", "jnp us", ".1f"),
                        ("numpy_us", "NumPy us", ".1f"), ("jnp_gflops", "jnp GFLOP/s", ".1f"),
                        ("numpy_gflops", "NumPy GFLOP/s", ".1f")])
    md += f"\n\nsizes {sizes}, batch {B}. Ops in the compiled step (optimized HLO): "
    md += "; ".join(f"{g}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                    for g, c in ops.items())
    return C.emit(args, "one training step, taken apart", info, rows, md, {"hlo_ops": ops})


def _flops(sa, sb, kind):
    if kind is True:  # a^T @ b: [k, m]^T [m, n]
        return 2.0 * sa[0] * sa[1] * sb[1]
    if kind == "nt":  # a @ b^T: [m, k] [n, k]^T
        return 2.0 * sa[0] * sa[1] * sb[0]
    return 2.0 * sa[0] * sa[1] * sb[1]


if __name__ == "__main__":
    main()
