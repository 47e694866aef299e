#!/usr/bin/env python
"""Check fnmlp's hand-derived gradient against jax.grad and finite differences.

Exit status: 0 when every leaf agrees, 1 when any leaf fails, 2 on bad arguments.

    python scripts/gradcheck.py --sizes 5,16,16,3 --activation tanh,relu \
        --dropout 0.2 --loss softmax_cross_entropy --dtype float64 --json
    python scripts/gradcheck.py --sizes 5,3 --layers dense:16,tanh,layernorm,dense:8,gelu

The first table checks each layer's own backward against jax.vjp of its forward (one row
per layer and leaf, dx included), at the params init gives and at params perturbed from
them; the others compare the whole gradient. A failing leaf is diagnosed (transposed, sign
flipped, off by a factor such as the batch size, zero, wrong in some rows or columns, ...);
entries the finite differences cannot resolve (their own noise, or a kink within the step),
or where round-off decides, are reported inconclusive, never failed; --json is strict JSON
(a non-finite number is null). --sizes is input width, hidden widths, classes
(20,32,32,10); with --hidden or --layers only its first and last entries count.
"""

from __future__ import annotations

import argparse
import json

from fnmlp._names import LOSS_NAMES
from fnmlp.cli import (
    LAYER_SPEC_HELP,
    Parser,
    architecture_name,
    description,
    main_guard,
    parse_hidden,
    parse_layers,
    parse_names,
    parse_rates,
    positive_int,
    seed_int,
    start_run,
)


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


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=description(__doc__))
    p.add_argument("--sizes", type=parse_sizes, default="4,8,3",
                   help="layer sizes, input first, e.g. 5,16,16,3 (with --hidden or --layers"
                        " only the first and last count)")
    p.add_argument("--hidden", type=parse_hidden, default=None,
                   help="hidden widths as in the training scripts, e.g. 16,8 or 0 (default:"
                        " the middle of --sizes)")
    p.add_argument("--activation", type=parse_names, default=["tanh"],
                   help="hidden activation: one for all, or one per hidden layer (default: tanh)")
    p.add_argument("--dropout", type=parse_rates, default=[0.0],
                   help="dropout after each hidden activation, one rate or one per hidden"
                        " layer; checked in training mode with a fixed mask (default: 0)")
    p.add_argument("--layers", type=parse_layers, default=None, metavar="SPEC",
                   help=LAYER_SPEC_HELP + " (default: none)")
    p.add_argument("--loss", choices=LOSS_NAMES, default="softmax_cross_entropy",
                   help="loss; categorical_cross_entropy takes probabilities: the network"
                        " then ends in the lesson's Softmax layer, checked with the rest")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="dtype of params and data (finite differences always use float64)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="examples in the batch")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed for params and data, in [0, 2**32)")
    p.add_argument("--max-evals", type=positive_int, default=4096,
                   help="about this many coordinates get a finite difference, at least 32 (or"
                        " all) in every leaf")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    start_run()
    import jax

    from fnmlp.cli import UsageError, build_model
    from fnmlp.gradcheck import check_gradients, random_batch
    from fnmlp.losses import get_loss

    if args.layers is not None and args.hidden is not None:
        parser.error("give --hidden or --layers, not both")
    if args.hidden is not None:
        args.sizes = [args.sizes[0], *args.hidden, args.sizes[-1]]
    elif args.layers is None:
        args.hidden = args.sizes[1:-1]
    try:
        model = build_model(args, args.sizes[0], args.sizes[-1])
    except UsageError as e:
        parser.error(str(e))
    if get_loss(args.loss).takes == "probabilities":  # the lesson's Softmax, then its loss
        from fnmlp.layers import Softmax, serial

        model = serial(*model.layers, Softmax(), in_features=args.sizes[0])
    dropout = any(c["type"] == "Dropout" for c in model.to_config()["layers"])
    with jax.enable_x64(args.dtype == "float64"):
        key = jax.random.key(args.seed)
        params = model.init_params(key, args.sizes[0], args.dtype)
        x, y = random_batch(jax.random.fold_in(key, 1), args.batch_size, args.sizes,
                            args.loss, args.dtype)
        result = check_gradients(model, params, x, y, loss=args.loss,
                                 max_evals=args.max_evals, train=dropout)
    if args.json:
        from fnmlp.gradcheck import json_safe

        d = result.to_dict()
        d["config"] = {k: getattr(args, k) for k in
                       ("sizes", "activation", "dropout", "loss", "dtype", "batch_size", "seed")}
        d["config"]["model"] = model.to_config()
        print(json.dumps(json_safe(d), indent=2, allow_nan=False))  # strict JSON: inf as null
    else:
        name = architecture_name({"input": {"width": args.sizes[0]},
                                  "model": model.to_config()})
        print(f"model={name}"
              f" loss={args.loss} dtype={args.dtype} batch={args.batch_size}"
              f" seed={args.seed}\n")
        print(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    main_guard(main)
