#!/usr/bin/env python
"""fnmlp's epoch before and after a change: bench_train.py run on two source trees in
alternating fresh processes (old, new, new, old, ...), the ratio of their medians.

    git archive 51ece88 fnmlp | tar -x -C /tmp/old      # the tree before
    python benchmarks/bench_before_after.py --old /tmp/old --new . --rounds 3

Each child runs this checkout's bench_train.py (``--no-peers --no-cpu-peers``) with the
tree's ``fnmlp`` first on ``PYTHONPATH``, so only the library differs. Prefix the command
with ``taskset -c 0,1`` to measure on two cores of a bigger machine. Reports, per model,
batch and gradient path, the median examples/s of each tree and new / old.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C

from fnmlp.cli import Parser, description, positive_int

HERE = Path(__file__).resolve().parent


def one_run(tree: str, args) -> list[dict]:
    """bench_train.py's fnmlp rows, run in a fresh process on ``tree``'s fnmlp."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
        cmd = [sys.executable, str(HERE / "bench_train.py"), "--no-peers", "--no-cpu-peers",
               "--models", args.models, "--batches", args.batches, "--reps", str(args.reps),
               "--examples-s", str(args.examples_s), "--examples-l", str(args.examples_l),
               "--json", str(out)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit(f"bench_train.py failed on {tree}: {r.stderr[-2000:]}")
        rows = json.loads(out.read_text())["rows"]
    return [row for row in rows if row["impl"].startswith("fnmlp")]


def main() -> int:
    p = Parser(description=description(__doc__))
    p.add_argument("--old", required=True, help="the source tree before (holds fnmlp/)")
    p.add_argument("--new", default=str(HERE.parent), help="the source tree after")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="alternating pairs of fresh processes")
    p.add_argument("--reps", type=positive_int, default=3, help="timed epochs per process")
    p.add_argument("--models", default="S,L", help="comma list of S, L")
    p.add_argument("--batches", default="128", help="comma list of batch sizes")
    p.add_argument("--examples-s", type=positive_int, default=60000, help="epoch size for S")
    p.add_argument("--examples-l", type=positive_int, default=15360, help="epoch size for L")
    p.add_argument("--json", default=None, help="write the results here (default: none)")
    p.add_argument("--markdown", default=None, help="write the table here (default: none)")
    args = p.parse_args()
    runs: dict[tuple, dict[str, list[float]]] = {}
    pair = [("old", args.old), ("new", args.new)]
    for r in range(args.rounds):
        for label, tree in (pair if r % 2 == 0 else pair[::-1]):  # ABBA: no order bias
            for row in one_run(tree, args):
                key = (row["model"], row["batch"], row["impl"])
                runs.setdefault(key, {"old": [], "new": []})[label].append(
                    row["examples_per_s"])
    rows = []
    for (model, batch, impl), v in sorted(runs.items()):
        old, new = statistics.median(v["old"]), statistics.median(v["new"])
        rows.append({"model": model, "batch": batch, "impl": impl, "old_examples_per_s": old,
                     "new_examples_per_s": new, "new_over_old": new / old,
                     "old_all": v["old"], "new_all": v["new"]})
    info = C.machine()
    lines = [f"# fnmlp epoch before and after ({args.rounds} rounds, order old-new then"
             " new-old)", "",
             C.machine_line(info), "",
             "| model | batch | path | old ex/s | new ex/s | new / old | old range | new range |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['impl']} | {r['old_examples_per_s']:,.0f} |"
            f" {r['new_examples_per_s']:,.0f} | {r['new_over_old']:.3f} |"
            f" {min(r['old_all']):,.0f}-{max(r['old_all']):,.0f} |"
            f" {min(r['new_all']):,.0f}-{max(r['new_all']):,.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows,
                                               "argv": sys.argv}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
