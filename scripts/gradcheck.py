#!/usr/bin/env python
"""Check fnmlp's hand-derived gradient against jax.grad and finite differences.

Exit status: 0 when every leaf agrees, 1 when any leaf fails, 2 on bad arguments.

    python scripts/gradcheck.py --sizes 5,16,16,3 --activation tanh \
        --loss softmax_cross_entropy --dtype float64 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from fnmlp.activations import ACTIVATIONS
from fnmlp.cli import Parser, description, enable_compile_cache
from fnmlp.losses import LOSSES


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers like 4,8,3; got {text!r}") from None
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"must list at least two positive layer sizes (input first); got {text!r}")
    return sizes


def parse_positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=description(__doc__))
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("4,8,3"),
                   help="layer sizes, input first, e.g. 5,16,16,3")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh",
                   help="hidden activation")
    p.add_argument("--loss", choices=sorted(LOSSES), default="softmax_cross_entropy",
                   help="loss")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="dtype of params and data (finite differences always use float64)")
    p.add_argument("--batch-size", type=parse_positive, default=8, help="examples in the batch")
    p.add_argument("--seed", type=int, default=0, help="seed for params and data")
    p.add_argument("--max-evals", type=parse_positive, default=4096,
                   help="about this many coordinates get a finite difference, at least 32 (or"
                        " all) in every leaf")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compile_cache()
    import jax

    from fnmlp.gradcheck import check_gradients, random_batch
    from fnmlp.mlp import init_mlp

    with jax.enable_x64(args.dtype == "float64"):
        key = jax.random.key(args.seed)
        params = init_mlp(key, args.sizes, args.activation, dtype=args.dtype)
        x, y = random_batch(jax.random.fold_in(key, 1), args.batch_size, args.sizes,
                            args.loss, args.dtype)
        result = check_gradients(params, x, y, args.activation, args.loss,
                                 max_evals=args.max_evals)
    if args.json:
        d = result.to_dict()
        d["config"] = {k: getattr(args, k) for k in
                       ("sizes", "activation", "loss", "dtype", "batch_size", "seed")}
        print(json.dumps(d, indent=2))
    else:
        print(f"sizes={args.sizes} activation={args.activation} loss={args.loss} "
              f"dtype={args.dtype} batch={args.batch_size} seed={args.seed}\n")
        print(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
