"""Shared benchmark plumbing: machine description, interleaved timing, tables, JSON.

Every benchmark warms up (and reports compile time separately), waits for results with
``block_until_ready``, interleaves the repetitions of the implementations it compares,
and quotes medians and ratios, with the machine and library versions beside the numbers.

Interleaving alone is not fair on a small machine: OpenBLAS's and XLA's worker threads
keep spinning for a while after a call returns, and whatever runs next shares the cores
with them. On the 2-core AMD EPYC, a fnmlp epoch timed right after a NumPy epoch took
1.2-1.5x as long as one timed after another JAX epoch. So each timed call waits
``--settle`` seconds first, and the order is shuffled (seeded) every round, so no
implementation always follows the same neighbour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 peers run on JAX, never TensorFlow


def parser(doc: str) -> argparse.ArgumentParser:
    """The shared flags; ``doc`` is the script's module docstring (its first paragraph
    is the description)."""
    from fnmlp.cli import Parser, description

    p = Parser(description=description(doc))
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke test)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per implementation")
    p.add_argument("--settle", type=float, default=0.25, metavar="SECONDS",
                   help="idle time before each timed call, so the threads of the previous"
                        " implementation stop spinning (0 with --quick)")
    p.add_argument("--json", metavar="OUT", default=None, help="write results as JSON here")
    p.add_argument("--markdown", metavar="OUT", default=None, help="write the table here")
    return p


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import jax
    import jaxlib
    import numpy as np

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": f"{jax.devices()[0].platform}:{getattr(jax.devices()[0], 'device_kind', '')}",
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        info["sklearn"] = None
    return info


def machine_line(info: dict) -> str:
    keys = ("cpu", "cores", "device", "jax", "jaxlib", "numpy", "torch", "sklearn")
    return "machine: " + ", ".join(f"{k}={info[k]}" for k in keys if info.get(k) is not None)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(impls: dict[str, Callable[[], object]], reps: int,
                settle: float = 0.0) -> dict[str, list[float]]:
    """Runs each implementation once untimed (warm-up / compile), then ``reps`` rounds,
    each timing every implementation once in an order shuffled per round (seeded by the
    round), after ``settle`` idle seconds. Returns seconds lists and, under key
    ``"__warmup__"``, the warm-up (first call) seconds."""
    warm = {name: timed(fn) for name, fn in impls.items()}
    times: dict[str, list[float]] = {name: [] for name in impls}
    for r in range(reps):
        order = list(impls)
        random.Random(r).shuffle(order)
        for name in order:
            time.sleep(settle)
            times[name].append(timed(impls[name]))
    times["__warmup__"] = warm  # type: ignore[assignment]
    return times


def settle(args) -> float:
    """The ``--settle`` pause, none in ``--quick`` smoke runs."""
    return 0.0 if args.quick else args.settle


def run_child(script: str, args: list[str], env: dict | None = None,
              timeout: float | None = None) -> tuple[dict | None, str]:
    """Runs ``script`` (a benchmark's own file, with its ``--child ...`` arguments) in a
    fresh Python process. Returns the JSON object the child printed on its last stdout
    line, or None if it failed, and its stderr."""
    r = subprocess.run([sys.executable, os.path.abspath(script), *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        return None, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; columns are (key, heading, format)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def emit(args, name: str, info: dict, rows: list[dict], md: str, extra: dict | None = None):
    """Prints the machine and the table; writes JSON / markdown where asked."""
    text = f"## {name}\n\n{machine_line(info)}\n\n{md}\n"
    print(text)
    result = {"benchmark": name, "machine": info, "rows": rows, "quick": args.quick,
              "argv": sys.argv[1:], **(extra or {})}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)
    return result


def peak_impl(shape, dtype="float32", calls: int = 3):
    """A callable running ``calls`` jitted ``jnp.dot`` products of ``shape = (m, k, n)``,
    to interleave with the implementations being timed (the machine's speed drifts, so
    the denominator of "% of peak" is measured in the same rounds); and its FLOPs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    m, k, n = shape
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((m, k)), dtype)
    b = jnp.asarray(rng.standard_normal((k, n)), dtype)
    dot = jax.jit(jnp.dot)

    def run():
        for _ in range(calls):
            out = dot(a, b)
        out.block_until_ready()

    return run, 2.0 * m * k * n * calls


def epoch_flops(sizes: list[int], batch: int, steps: int) -> float:
    """The matrix products of one training epoch of an MLP of ``sizes``: forward
    ``a @ w`` and weight gradient ``a^T @ delta`` for every layer, input gradient
    ``delta @ w^T`` for every layer but the first (2 m k n FLOPs each). For 784-128-10 at
    batch 128: 52.4 MFLOP a step, 24.5 GFLOP an epoch of 60,000 (468 steps)."""
    per_step = sum(2 * batch * a * b * (2 if i == 0 else 3)
                   for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
    return float(per_step * steps)


def gemm_rates(n: int = 2048, calls: int = 3, reps: int = 3) -> dict[str, float]:
    """The machine's float32 GEMM rate now, in GFLOP/s: NumPy (its BLAS, all threads) and
    jitted ``jnp.dot`` on ``n x n x n``, the best of ``reps`` timings of ``calls`` products
    each: the denominator of "x the GEMM limit"."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    dot(ja, jb).block_until_ready()
    a @ b
    flops = 2.0 * n ** 3 * calls
    out = {}
    for name, run in (("numpy", lambda: [a @ b for _ in range(calls)]),
                      ("jnp", lambda: [dot(ja, jb) for _ in range(calls)][-1]
                       .block_until_ready())):
        out[f"{name}_gflops"] = max(flops / timed(run) for _ in range(reps)) / 1e9
    return out


def spread(xs: list[float]) -> float:
    """(max - min) / median of repeated timings: how noisy the machine was."""
    return (max(xs) - min(xs)) / median(xs)


def big_shapes() -> list[tuple[int, int, int]]:
    """Large square products for the peak: bigger on a GPU, which needs them to fill up."""
    import jax

    if jax.default_backend() == "gpu":
        return [(4096, 4096, 4096), (8192, 8192, 8192)]
    return [(1024, 1024, 1024), (2048, 2048, 2048)]


def matmul_peak(sizes, reps: int, dtype="float32", settle: float = 0.0) -> list[dict]:
    """GFLOP/s of ``jnp.dot`` (jitted, :func:`peak_impl`) and NumPy (float32) for each
    (m, k, n), medians of interleaved reps."""
    import numpy as np

    rows = []
    for m, k, n in sizes:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        jnp_dot, flops = peak_impl((m, k, n), dtype, calls=1)
        t = interleaved({"jnp.dot": jnp_dot, "numpy": lambda a=a, b=b: np.dot(a, b)}, reps,
                        settle)
        rows.append({"shape": f"{m}x{k}x{n}", "m": m, "k": k, "n": n,
                     "jnp_gflops": flops / median(t["jnp.dot"]) / 1e9,
                     "numpy_gflops": flops / median(t["numpy"]) / 1e9})
    return rows


def available(name: str) -> bool:
    """Whether the module ``name`` can be imported (a peer that is not installed is
    skipped, and the table says so)."""
    try:
        __import__(name)
        return True
    except ImportError:
        return False
