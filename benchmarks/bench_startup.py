#!/usr/bin/env python
"""What a fresh process pays before it trains (issue 41): each measure in its own fresh
processes, in interleaved rounds (every measure once per round, shuffled), medians.

The measures:

* ``import jax``: the interpreter's own clock around the import; with ``--ml-dtypes DIR``
  also with the ml_dtypes installed in ``DIR`` put first on the path (e.g.
  ``pip install --no-deps --target DIR ml_dtypes==0.7.0``), to compare two releases in
  the same rounds.
* ``init_params``: ``model.init_params(key)`` of 784-128-10 after ``import jax, fnmlp``
  and ``jax.random.key(0)``: its compile included, without the compile cache, and with
  JAX's persistent cache filled by an earlier process (``fnmlp.enable_compile_cache``).
* the toy script, ``scripts/train_toy.py --dataset moons --quiet``: the whole process,
  wall clock from outside, with the scripts' compile cache filled by an earlier run
  (warm) and with ``FNMLP_COMPILE_CACHE=0`` (no cache).

Bytecode is written and read as on a user's machine (``PYTHONDONTWRITEBYTECODE`` is
dropped from the children's environment, after an untimed run of each measure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def child(what: str) -> dict:
    """One measure in this fresh process; returns its seconds."""
    if what == "import":
        t = time.perf_counter()
        import jax  # noqa: F401
        import ml_dtypes

        return {"seconds": time.perf_counter() - t, "ml_dtypes": ml_dtypes.__version__}
    import jax

    import fnmlp

    if what == "init_cached":
        fnmlp.enable_compile_cache()  # FNMLP_COMPILE_CACHE names the folder
    model = fnmlp.mlp([784, 128, 10], "relu")
    key = jax.random.key(0)
    jax.block_until_ready(key)
    t = time.perf_counter()
    params = model.init_params(key)
    jax.block_until_ready(params)
    return {"seconds": time.perf_counter() - t}


def _env(extra: dict | None = None, path_first: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    if path_first:
        env["PYTHONPATH"] = os.pathsep.join([path_first, env.get("PYTHONPATH", "")]).strip(
            os.pathsep)
    return env


def measures(args, cache: str, out: str) -> dict:
    """name -> (command, environment, how the seconds are read: 'child' or 'wall')."""
    me = [sys.executable, os.path.abspath(__file__), "--child"]
    off = {"FNMLP_COMPILE_CACHE": "0"}
    toy = [sys.executable, os.path.join(REPO, "scripts", "train_toy.py"), "--dataset", "moons",
           "--quiet", "--out", out] + (["--epochs", "5"] if args.quick else [])
    m = {
        "import jax": (me + ["import"], _env(off), "child"),
        "init_params, no cache": (me + ["init"], _env(off), "child"),
        "init_params, cache warm": (me + ["init_cached"], _env({"FNMLP_COMPILE_CACHE": cache}),
                                    "child"),
        "toy script, cache warm": (toy, _env({"FNMLP_COMPILE_CACHE": cache}), "wall"),
        "toy script, no cache": (toy, _env(off), "wall"),
    }
    if args.ml_dtypes:
        m["import jax, ml_dtypes from --ml-dtypes"] = (me + ["import"],
                                                       _env(off, args.ml_dtypes), "child")
    return m


def run_one(cmd, env) -> tuple[float, dict]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-800:]}")
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}"
    try:
        return wall, json.loads(last)
    except json.JSONDecodeError:
        return wall, {}


def main(argv=None):
    import random

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(argv[1])))
        return
    import _common as C

    p = C.parser(__doc__)
    p.add_argument("--ml-dtypes", default=None, metavar="DIR",
                   help="a folder holding another ml_dtypes release, timed beside the installed")
    args = p.parse_args(argv)
    reps = 1 if args.quick else max(1, args.reps)
    info = C.machine()
    info["load_average_before"] = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="fnmlp-bench-startup-") as tmp:
        m = measures(args, os.path.join(tmp, "cache"), os.path.join(tmp, "toy"))
        for cmd, env, _ in m.values():  # untimed: bytecode written, the cache filled
            run_one(cmd, env)
        runs: dict[str, list[float]] = {name: [] for name in m}
        seen: dict[str, dict] = {}
        for rep in range(reps):
            order = list(m)
            random.Random(rep).shuffle(order)
            for name in order:
                time.sleep(C.settle(args))
                cmd, env, read = m[name]
                wall, out = run_one(cmd, env)
                runs[name].append(out["seconds"] if read == "child" else wall)
                seen[name] = out
    info["load_average_after"] = list(os.getloadavg())
    rows = [{"measure": name, "seconds": C.median(ts), "runs": ts,
             "min_s": min(ts), "max_s": max(ts),
             "ml_dtypes": seen.get(name, {}).get("ml_dtypes")} for name, ts in runs.items()]
    md = C.table(rows, [("measure", "measure", ""), ("seconds", "median s", ".3f"),
                        ("min_s", "fastest s", ".3f"), ("max_s", "slowest s", ".3f"),
                        ("ml_dtypes", "ml_dtypes", "")])
    md += (f"\n\n{reps} interleaved rounds, each measure a fresh process (the toy script's"
           " wall from outside, the others the process's own clock around the call)."
           f" Load average before {info['load_average_before']}, after"
           f" {info['load_average_after']}.")
    C.emit(args, "start-up", info, rows, md)


if __name__ == "__main__":
    main()
