#!/usr/bin/env python
"""Classify inputs with a trained model: pictures of digits, .npy arrays or IDX files.

The checkpoint's config says how the model was trained (sizes, activation, loss, input
scaling), so nothing else is needed: `python scripts/predict.py --checkpoint
runs/mnist/checkpoint.npz my_digit.png`. Pictures (PNG, JPEG, ...; any size) are turned
into MNIST's convention first: white digit on black, scaled into a 20x20 box and centred
by mass in 28x28 (fnmlp.data.images). A .npy array holds one input [D] or several [N, D]
(for MNIST also [28, 28] or [N, 28, 28]); uint8 or values above 1 are divided by 255. An
IDX file holds images [N, 28, 28] (read as MNIST's own files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fnmlp.cli import Parser, UsageError, description, main_guard, positive_int

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _inputs(path: Path, width: int, is_mnist: bool):
    """``[(label, x [D])]`` for one input file."""
    import numpy as np

    from fnmlp.data import read_idx
    from fnmlp.data.images import mnist_from_image

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if not is_mnist:
            raise UsageError(f"{path}: pictures are for MNIST models (784 inputs); this model"
                             f" takes {width}")
        return [(str(path), mnist_from_image(path))]
    if suffix == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise UsageError(f"{path}: not a readable .npy array ({e})") from None
    elif suffix in (".gz", "") or "idx" in path.name:
        a = read_idx(path, 3)
    else:
        raise UsageError(f"{path}: unknown kind of input (want a picture, .npy or an IDX"
                         f" file); got suffix {suffix!r}")
    if a.dtype.kind not in "iuf":
        raise UsageError(f"{path}: must hold numbers; got dtype {a.dtype}")
    a = a.astype(np.float32)
    if a.size and (a.max() > 1 or np.asarray(a).dtype == np.uint8):
        a = a / 255.0
    if is_mnist and a.shape[-2:] == (28, 28):
        a = a.reshape(*a.shape[:-2], 784)
    a = a.reshape(1, -1) if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] != width:
        raise UsageError(f"{path}: the model takes inputs of width {width}; got an array of"
                         f" shape {a.shape}")
    many = len(a) > 1
    return [(f"{path}[{i}]" if many else str(path), row) for i, row in enumerate(a)]


def main() -> int:
    p = Parser(description=description(__doc__))
    p.add_argument("--checkpoint", default="runs/mnist/checkpoint.npz",
                   help="a checkpoint written by a training script")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="pictures (.png, .jpg, ...), .npy arrays or IDX files")
    p.add_argument("--top", type=positive_int, default=3, help="how many classes to list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()

    import numpy as np

    from fnmlp.inference import load_model

    if not Path(args.checkpoint).is_file():
        raise UsageError(f"--checkpoint {args.checkpoint!r}: no such file (train first, e.g."
                         " python scripts/train_mnist.py)")
    model = load_model(args.checkpoint)
    if model.loss != "softmax_cross_entropy":
        raise UsageError(f"{args.checkpoint}: a model trained with loss {model.loss!r};"
                         " predict.py classifies with softmax_cross_entropy models")
    width = model.config["sizes"][0]
    is_mnist = model.config.get("input", {}).get("kind") == "mnist"
    items = [item for path in args.inputs for item in _inputs(Path(path), width, is_mnist)]
    probs = np.asarray(model.predict_proba(np.stack([x for _, x in items])))
    results = []
    for (name, _), p_row in zip(items, probs):
        order = np.argsort(-p_row)[: args.top]
        results.append({"input": name, "class": int(order[0]),
                        "top": [[int(c), float(p_row[c])] for c in order]})
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "predictions": results}, indent=2))
    else:
        for r in results:
            top = ", ".join(f"{c}: {q:.3f}" for c, q in r["top"])
            print(f"{r['input']}: {r['class']}   ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main_guard(main))
