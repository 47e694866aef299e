#!/usr/bin/env python
"""Classify inputs with a trained model: pictures of digits, .npy arrays or IDX files.

The checkpoint's config says how the model was trained (the model, its loss, the input
width and scaling), so nothing else is needed: `python scripts/predict.py --checkpoint
runs/mnist/checkpoint.npz my_digit.png` (or `--checkpoint runs/mnist`, the run's folder).
Pictures (PNG, JPEG, ...; any size) are turned into MNIST's convention first: white digit
on black, scaled into a 20x20 box and centred by mass in 28x28 (fnmlp.data.images). A
.npy array holds one input [D] or several [N, D] (for MNIST also [28, 28] or [N, 28, 28]);
scaled as the checkpoint records (fnmlp.scaling, the rule SavedModel uses: integers
are raw pixels, divided by 255; floats in [-0.5, 1.5] are scaled already; floats reaching
16 are raw; anything else is refused). An IDX file holds images [N, 28, 28] (read as
MNIST's own files).

Doubts about a picture (no clear digit, ink covering the whole picture, several large
components) are printed on stderr and carried by --json; --save-input DIR writes the 28x28
input the model sees for each picture, enlarged to 280x280, to look at. A file that cannot
be read is reported on its own line and the others still get their answers; the exit
status is then 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fnmlp.cli import (
    Parser,
    UsageError,
    description,
    main_guard,
    positive_int,
    start_run,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _inputs(path: Path, width: int, input_config: dict):
    """``[(label, x [D], warnings)]`` for one input file."""
    import numpy as np

    from fnmlp.data import read_idx
    from fnmlp.data.images import preprocess_digit
    from fnmlp.scaling import raw_input_scale

    is_mnist = input_config.get("kind") == "mnist"

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if not is_mnist:
            raise UsageError(f"{path}: pictures are for MNIST models (784 inputs); this model"
                             f" takes {width}")
        try:
            digit = preprocess_digit(path)
        except ValueError as e:
            raise UsageError(str(e)) from None
        return [(str(path), digit.x, list(digit.warnings))]
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UsageError(f"{path}: not a readable .npy array ({e})") from None
    elif suffix in (".gz", "") or "idx" in path.name:
        try:
            a = read_idx(path, 3)
        except (ValueError, OSError, EOFError) as e:  # one bad file: its own line
            raise UsageError(f"{path}: not a readable IDX file ({e})") from None
    else:
        raise UsageError(f"{path}: unknown kind of input (want a picture, .npy or an IDX"
                         f" file); got suffix {suffix!r}")
    if a.dtype.kind not in "iuf":
        raise UsageError(f"{path}: must hold numbers; got dtype {a.dtype}")
    try:
        a = np.asarray(raw_input_scale(a, input_config), np.float32)
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from None
    if is_mnist and a.shape[-2:] == (28, 28):
        a = a.reshape(*a.shape[:-2], 784)
    a = a.reshape(1, -1) if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] != width:
        raise UsageError(f"{path}: the model takes inputs of width {width}; got an array of"
                         f" shape {a.shape}")
    many = len(a) > 1
    return [(f"{path}[{i}]" if many else str(path), row, []) for i, row in enumerate(a)]


def _save_input(folder: Path, name: str, x) -> None:
    """The 28x28 input ``x [784]`` as a 280x280 PNG (nearest: each pixel a 10x10 block)."""
    import numpy as np
    from PIL import Image

    from fnmlp.io import write_atomic

    stem = Path(name.replace("[", "_").replace("]", "")).name
    img = Image.fromarray((np.clip(x, 0, 1).reshape(28, 28) * 255).round().astype(np.uint8))
    big = img.resize((280, 280), Image.NEAREST)
    write_atomic(folder / f"{stem}.input.png", lambda f: big.save(f, format="PNG"))


def main() -> int:
    p = Parser(description=description(__doc__))
    p.add_argument("--checkpoint", default="runs/mnist/checkpoint.npz",
                   help="a checkpoint written by a training script, or the run's folder"
                        " (--out DIR: DIR/checkpoint.npz is read)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="pictures (.png, .jpg, ...), .npy arrays or IDX files")
    p.add_argument("--top", type=positive_int, default=3, help="how many classes to list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save-input", metavar="DIR", default=None,
                   help="write the 28x28 input of each picture there, enlarged to 280x280")
    args = p.parse_args()
    if Path(args.checkpoint).is_dir():  # a run's --out folder: its checkpoint
        folder = args.checkpoint
        args.checkpoint = str(Path(folder) / "checkpoint.npz")
        if not Path(args.checkpoint).is_file():
            raise UsageError(f"--checkpoint {folder!r} is a folder without checkpoint.npz"
                             " (give a training run's --out folder, or the .npz itself)")
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"--checkpoint {args.checkpoint!r}: no such file (train first, e.g."
                         " python scripts/train_mnist.py)")
    start_run()

    import numpy as np

    from fnmlp.io import load_model
    from fnmlp.scaling import input_record

    model = load_model(args.checkpoint)
    if model.loss != "softmax_cross_entropy":
        raise UsageError(f"{args.checkpoint}: a model trained with loss {model.loss!r};"
                         " predict.py classifies with softmax_cross_entropy models")
    width = model.input_width
    input_config = input_record(model.config) or {}  # as SavedModel reads it
    items, failed = [], []
    for path in args.inputs:
        try:
            items += _inputs(Path(path), width, input_config)
        except UsageError as e:
            failed.append({"input": path, "error": str(e)})
    if not items and not failed:
        raise UsageError("the inputs hold no examples (an empty array?)")
    if not items:
        raise UsageError(failed[0]["error"] if len(failed) == 1 else
                         f"none of the {len(failed)} inputs could be read; the first:"
                         f" {failed[0]['error']}")
    for f in failed:  # one line each; the others still get their answers
        print(f"{f['error']}", file=sys.stderr)
    if args.save_input and input_config.get("kind") == "mnist":
        for name, x, _ in items:
            _save_input(Path(args.save_input), name, x)
    probs = np.asarray(model.predict_proba(np.stack([x for _, x, _ in items])))
    results = []
    for (name, _, doubts), p_row in zip(items, probs):
        order = np.argsort(-p_row)[: args.top]
        results.append({"input": name, "class": int(order[0]),
                        "top": [[int(c), float(p_row[c])] for c in order],
                        "warnings": doubts})
        for doubt in doubts:
            print(f"{name}: warning: {doubt}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "predictions": results,
                          "failed": failed}, indent=2))
    else:
        for r in results:
            top = ", ".join(f"{c}: {q:.3f}" for c, q in r["top"])
            print(f"{r['input']}: {r['class']}   ({top})")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
