#!/usr/bin/env python
"""Where the compiled epoch's time goes, op by op: XLA's own profile of one steady epoch
of the lesson's MNIST recipe (784-128-10 ReLU, Adam, batch 128; synthetic digits of
MNIST's shape, 60,000 by default), next to the epoch's GEMM limit measured in the same run.

``jax.profiler.trace`` records every thunk XLA:CPU runs (one event per HLO instruction,
on its worker threads); the events of one epoch are summed per instruction, and each
instruction is named by its kind from the optimized HLO: the matrix products (``dot``,
and fusions that hold one), the per-epoch gather of the shuffled data, the per-step slice
of the minibatch, the permutation's sort, the elementwise fusions (Adam, activations, the
loss), reductions, copies and transposes. The epoch is also timed without the profiler
(median of ``--reps``), and its products' FLOPs at the best float32 GEMM rate of the
machine (``jnp.dot`` and NumPy, 2048^3, all cores, interleaved) give the limit.
"""

from __future__ import annotations

import glob
import re
import tempfile
from collections import defaultdict

import _common as C
import numpy as np

CONTAINERS = ("while", "call", "conditional")  # their events hold their bodies' events


def kinds_from_hlo(text: str) -> dict[str, str]:
    """``{instruction name: kind}`` from the optimized HLO text of the epoch."""
    computations: dict[str, str] = {}  # fused computation name -> its body
    name = None
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if m:
            name, computations[m.group(1)] = m.group(1), ""
        elif name:
            computations[name] += line + "\n"
    kinds = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([\w\-]+)\(", line)
        if not m or m.group(2) in CONTAINERS:
            continue
        inst, op = m.groups()
        if op == "fusion":
            called = re.search(r"calls=%?([\w.\-]+)", line)
            body = computations.get(called.group(1), "") if called else ""
            if " dot(" in body or "convolution(" in body:
                op = "dot"
            elif " gather(" in body:
                op = "gather"
            elif "dynamic-slice(" in body:
                op = "dynamic-slice"
            elif " reduce(" in body:
                op = "reduce fusion"
            else:
                op = "elementwise fusion"
        kinds[inst] = {"custom-call": "dot" if "matmul" in line.lower() else "custom-call",
                       "transpose": "copy/transpose", "copy": "copy/transpose"}.get(op, op)
    return kinds


def profile(run, kinds: dict[str, str]) -> tuple[dict[str, float], dict[str, float], float]:
    """Seconds per kind and per instruction of one call of ``run`` under the profiler,
    and the wall time of that call."""
    import jax
    from jax.profiler import ProfileData

    folder = tempfile.mkdtemp()
    with jax.profiler.trace(folder):
        wall = C.timed(run)
    data = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
    per_inst: dict[str, float] = defaultdict(float)
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLA"):
                continue
            for e in line.events:
                if e.name in kinds:
                    per_inst[e.name] += e.duration_ns * 1e-9
    per_kind: dict[str, float] = defaultdict(float)
    for inst, s in per_inst.items():
        per_kind[kinds[inst]] += s
    return dict(per_kind), dict(per_inst), wall


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--n", type=int, default=60000, help="training examples (synthetic)")
    p.add_argument("--sizes", default="784,128,10")
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    import fnmlp
    from fnmlp.train import cached_trainer, init_state

    sizes = [int(s) for s in args.sizes.split(",")]
    n, batch = (2048, 64) if args.quick else (args.n, args.batch)
    if args.quick:
        args.reps = 1
    info = C.machine()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((n, sizes[0]), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, sizes[-1], n).astype(np.int32))
    model = fnmlp.mlp(sizes, "relu")
    opt = fnmlp.adam(1e-3)
    trainer = cached_trainer(model, opt, batch, "softmax_cross_entropy", "manual")
    state = [init_state(model.init_params(jax.random.key(0)), opt)]
    key = jax.random.key(1)

    def epoch():
        state[0], metrics = trainer.epoch(state[0], x, y, key)
        jax.block_until_ready((state[0], metrics))

    epoch()  # compile
    kinds = kinds_from_hlo(trainer.epoch.lower(state[0], x, y, key).compile().as_text())
    shape = (256, 256, 256) if args.quick else (2048, 2048, 2048)
    peak_run, peak_flops = C.peak_impl(shape)
    a = rng.standard_normal(shape[:2]).astype(np.float32)
    b = rng.standard_normal(shape[1:]).astype(np.float32)
    times = C.interleaved({"epoch": epoch, "jnp_gemm": peak_run,
                           "numpy_gemm": lambda: [a @ b for _ in range(3)]},
                          args.reps, C.settle(args))
    epoch_s = C.median(times["epoch"])
    gemm = max(peak_flops / C.median(times["jnp_gemm"]),
               peak_flops / C.median(times["numpy_gemm"]))  # FLOP/s
    steps = n // batch
    flops = C.epoch_flops(sizes, batch, steps)
    per_kind, per_inst, traced = profile(epoch, kinds)
    total = sum(per_kind.values())
    rows = [{"kind": k, "ms": 1e3 * s, "share": s / total, "per_step_us": 1e6 * s / steps}
            for k, s in sorted(per_kind.items(), key=lambda kv: -kv[1])]
    top = [{"instruction": i, "kind": kinds[i], "ms": 1e3 * s}
           for i, s in sorted(per_inst.items(), key=lambda kv: -kv[1])[:15]]
    limit = flops / gemm
    md = C.table(rows, [("kind", "kind of op", ""), ("ms", "ms per epoch", ".1f"),
                        ("share", "share", ".1%"), ("per_step_us", "us per step", ".1f")])
    md += "\n\n" + C.table(top, [("instruction", "instruction", ""), ("kind", "kind", ""),
                                 ("ms", "ms", ".2f")])
    md += (f"\n\n{n} examples, batch {batch}, {steps} steps, sizes {sizes}."
           f" Epoch (median of {args.reps}, no profiler): {epoch_s:.3f} s;"
           f" under the profiler {traced:.3f} s, of which the ops' events sum to"
           f" {total:.3f} s (both worker threads counted)."
           f" Products: {flops / 1e9:.2f} GFLOP per epoch; best float32 GEMM in this run"
           f" {gemm / 1e9:.1f} GFLOP/s (2048^3, jnp.dot "
           f"{peak_flops / C.median(times['jnp_gemm']) / 1e9:.1f}, NumPy "
           f"{peak_flops / C.median(times['numpy_gemm']) / 1e9:.1f}), so the GEMM limit is"
           f" {limit:.3f} s and the epoch takes {epoch_s / limit:.2f}x the limit.")
    return C.emit(args, "the compiled epoch, op by op", info, rows, md,
                  {"top_instructions": top, "epoch_s": epoch_s, "traced_s": traced,
                   "events_s": total, "epoch_gflop": flops / 1e9, "gemm_gflops": gemm / 1e9,
                   "limit_s": limit, "x_limit": epoch_s / limit, "n": n, "batch": batch,
                   "sizes": sizes})


if __name__ == "__main__":
    main()
