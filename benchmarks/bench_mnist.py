#!/usr/bin/env python
"""Time to accuracy: every implementation trains the same MNIST recipe in its own fresh
process, timed from process start to the final test accuracy (imports, data, compiling and
training all included).

The recipe: 784-128-10 ReLU, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batch 128, 10
epochs, reshuffled every epoch, float32, no weight decay. Each peer is written the way its
own documentation writes it: fnmlp's fit; Flax NNX with optax (an nnx.jit train step called
per batch); Keras 3 on the JAX backend (model.fit); PyTorch eager and torch.compile; the
lesson's NumPy by hand with Adam; scikit-learn's MLPClassifier. Every process reads the IDX
files with the same small NumPy reader. Without --mnist-dir it trains on a synthetic
stand-in of MNIST's shape, where the accuracy means nothing and only the times count.
"""

from __future__ import annotations

import argparse
import json
import os
import time

T_START = time.perf_counter()  # the child's clock starts with the interpreter
os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 on JAX, never TensorFlow

EPOCHS, BATCH, LR = 10, 128, 1e-3
IMPLS = ["fnmlp", "flax_nnx", "keras_jax", "torch_eager", "torch_compile", "numpy", "sklearn"]
NEEDS = {"flax_nnx": ["flax", "optax"], "keras_jax": ["keras"], "torch_eager": ["torch"],
         "torch_compile": ["torch"], "sklearn": ["sklearn"]}


def load(mnist_dir, n_synthetic):
    import gzip

    import numpy as np

    if not mnist_dir:
        rng = np.random.default_rng(0)
        return (rng.random((n_synthetic, 784), np.float32), rng.integers(0, 10, n_synthetic),
                rng.random((10000, 784), np.float32), rng.integers(0, 10, 10000))

    def read(stem, ndim):
        for name in (stem + ".gz", stem):
            path = os.path.join(mnist_dir, name)
            if os.path.exists(path):
                raw = (gzip.open if name.endswith(".gz") else open)(path, "rb").read()
                dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
                return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
        raise FileNotFoundError(f"{mnist_dir}: no {stem}(.gz)")

    xs = [read(f"{s}-images-idx3-ubyte", 3).reshape(-1, 784).astype(np.float32) / 255
          for s in ("train", "t10k")]
    ys = [read(f"{s}-labels-idx1-ubyte", 1).astype(np.int64) for s in ("train", "t10k")]
    return xs[0], ys[0], xs[1], ys[1]


def run_fnmlp(x, y, xt, yt, epoch_times):
    import jax

    import fnmlp

    params = fnmlp.init_mlp(jax.random.key(0), [784, 128, 10])
    result = fnmlp.fit(params, x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=fnmlp.adam(LR),
                       verbose=False)
    epoch_times += [r["epoch_seconds"] for r in result.history]
    return fnmlp.evaluate(result.params, xt, yt)["accuracy"]


def run_flax_nnx(x, y, xt, yt, epoch_times):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.l1 = nnx.Linear(784, 128, rngs=rngs)
            self.l2 = nnx.Linear(128, 10, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(LR), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, xb, yb):
        def loss_fn(model):
            logits = model(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def predict(model, xb):
        return jnp.argmax(model(xb), axis=1)

    rng = np.random.default_rng(0)
    steps = len(x) // BATCH
    for _ in range(EPOCHS):
        t = time.perf_counter()
        perm = rng.permutation(len(x))
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            loss = train_step(model, optimizer, x[idx], y[idx])
        jax.block_until_ready(loss)
        epoch_times.append(time.perf_counter() - t)
    return float(np.mean(np.asarray(predict(model, xt)) == yt))


def run_keras_jax(x, y, xt, yt, epoch_times):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    class Times(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.t)

    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0,
              callbacks=[Times()])
    return float(model.evaluate(xt, yt, batch_size=1024, verbose=0)[1])


def _torch_run(x, y, xt, yt, epoch_times, compile_):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    if compile_:
        model = torch.compile(model)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    steps = len(x) // BATCH
    for _ in range(EPOCHS):
        t = time.perf_counter()
        perm = torch.randperm(len(x))
        model.train()
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            opt.zero_grad(set_to_none=True)
            lossf(model(xs[idx]), ys[idx]).backward()
            opt.step()
        epoch_times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())


def run_torch_eager(x, y, xt, yt, epoch_times):
    return _torch_run(x, y, xt, yt, epoch_times, False)


def run_torch_compile(x, y, xt, yt, epoch_times):
    return _torch_run(x, y, xt, yt, epoch_times, True)


def run_numpy(x, y, xt, yt, epoch_times):
    """The lesson's way: forward, backward and Adam written by hand."""
    import numpy as np

    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((784, 128)) * np.sqrt(2 / 784)).astype(np.float32),
              np.zeros(128, np.float32),
              (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(np.float32),
              np.zeros(10, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t_step, steps = 0, len(x) // BATCH
    for _ in range(EPOCHS):
        t = time.perf_counter()
        perm = rng.permutation(len(x))
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            w1, b1, w2, b2 = params
            h = np.maximum(x[idx] @ w1 + b1, 0)
            z = h @ w2 + b2
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            p[np.arange(BATCH), y[idx]] -= 1
            d2 = p / BATCH
            d1 = (d2 @ w2.T) * (h > 0)
            grads = [x[idx].T @ d1, d1.sum(0), h.T @ d2, d2.sum(0)]
            t_step += 1
            c1, c2 = 1 - 0.9 ** t_step, 1 - 0.999 ** t_step
            for j, g in enumerate(grads):
                m[j] = 0.9 * m[j] + 0.1 * g
                v[j] = 0.999 * v[j] + 0.001 * g * g
                params[j] -= (LR / c1) * m[j] / (np.sqrt(v[j]) / np.sqrt(c2) + 1e-8)
        epoch_times.append(time.perf_counter() - t)
    w1, b1, w2, b2 = params
    return float(((np.maximum(xt @ w1 + b1, 0) @ w2 + b2).argmax(1) == yt).mean())


def run_sklearn(x, y, xt, yt, epoch_times):
    import warnings

    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="adam",
                        learning_rate_init=LR, batch_size=BATCH, alpha=0.0, shuffle=True,
                        random_state=0, max_iter=1)
    import numpy as np

    classes = np.arange(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(EPOCHS):
            t = time.perf_counter()
            clf.partial_fit(x, y, classes=classes)
            epoch_times.append(time.perf_counter() - t)
    return float(clf.score(xt, yt))


def child(impl, mnist_dir, n_synthetic):
    """Runs one implementation in this (fresh) process; prints one JSON line."""
    t_data = time.perf_counter()
    x, y, xt, yt = load(mnist_dir, n_synthetic)
    data_s = time.perf_counter() - t_data
    times: list[float] = []
    acc = globals()[f"run_{impl}"](x, y, xt, yt, times)
    wall = time.perf_counter() - T_START
    steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    print(json.dumps({"impl": impl, "accuracy": acc, "wall_s_in_process": wall,
                      "first_epoch_s": times[0], "steady_epoch_s": steady,
                      "data_s": data_s, "epochs": len(times), "n_train": len(x)}))


def main(argv=None):
    import _common as C

    p = C.parser(__doc__)
    p.add_argument("--mnist-dir", default=None,
                   help="folder with the four MNIST IDX files (default: a synthetic stand-in)")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma list of implementations")
    p.add_argument("--n-synthetic", type=int, default=60000,
                   help="training examples of the synthetic stand-in")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one implementation
    args = p.parse_args(argv)
    if args.child:
        if args.quick:
            global EPOCHS
            EPOCHS = 2
        return child(args.child, args.mnist_dir, args.n_synthetic)
    n_synthetic = args.n_synthetic
    impls = [s for s in args.impls.split(",") if s]
    if args.quick:
        impls, n_synthetic, args.reps = ["fnmlp", "numpy"], 1024, 1
    info = C.machine()
    rows = []
    for impl in impls:
        missing = [m for m in NEEDS.get(impl, []) if not C.available(m)]
        if missing:
            print(f"skipping {impl}: {', '.join(missing)} not installed")
            continue
        runs = []
        for _ in range(max(1, args.reps)):
            cmd = ["--child", impl, "--n-synthetic", str(n_synthetic)]
            if args.mnist_dir:
                cmd += ["--mnist-dir", args.mnist_dir]
            if args.quick:
                cmd += ["--quick"]
            t = time.perf_counter()
            out, err = C.run_child(__file__, cmd, {**os.environ, "PYTHONHASHSEED": "0"}, 3600)
            wall = time.perf_counter() - t
            if out is None:
                print(f"{impl} failed: {err[-800:]}")
                break
            out["wall_s"] = wall
            runs.append(out)
        if runs:
            best = sorted(runs, key=lambda o: o["wall_s"])[len(runs) // 2]
            rows.append({**best, "wall_s_runs": [o["wall_s"] for o in runs]})
    base = next((r for r in rows if r["impl"] == "fnmlp"), None)
    for r in rows:
        r["wall_vs_fnmlp"] = r["wall_s"] / base["wall_s"] if base else None
        r["epoch_vs_fnmlp"] = r["steady_epoch_s"] / base["steady_epoch_s"] if base else None
    md = C.table(rows, [("impl", "implementation", ""), ("accuracy", "test accuracy", ".4f"),
                        ("wall_s", "wall s (process start to accuracy)", ".1f"),
                        ("wall_vs_fnmlp", "x fnmlp's wall", ".2f"),
                        ("steady_epoch_s", "steady epoch s", ".3f"),
                        ("epoch_vs_fnmlp", "x fnmlp's epoch", ".2f"),
                        ("first_epoch_s", "first epoch s", ".2f")])
    data = (f"MNIST IDX files in {args.mnist_dir} ({rows[0]['n_train'] if rows else '?'}"
            " training examples)" if args.mnist_dir else
            f"a synthetic stand-in of {n_synthetic} random images: accuracy means nothing")
    md += (f"\n\nRecipe: 784-128-10 ReLU, Adam 1e-3, batch 128, {EPOCHS} epochs, shuffled;"
           f" data: {data}. Each run is a fresh process; the median of {max(1, args.reps)}"
           " runs by wall time. 'steady epoch' is the median of epochs 2 onwards.")
    return C.emit(args, "time to accuracy", info, rows, md)


if __name__ == "__main__":
    main()
