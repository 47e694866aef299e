#!/usr/bin/env python
"""Training throughput: fnmlp (manual and autodiff gradients) against the JAX-tutorial
loop, Flax NNX + optax, Keras 3 on JAX, PyTorch eager and torch.compile, NumPy by hand
and scikit-learn, on MNIST-shaped synthetic data.

Plain SGD, float32, ReLU, softmax cross-entropy; one timed call is one epoch. Reports
examples/s, achieved GFLOP/s and % of the jnp.dot peak measured in the same run.
"""

from __future__ import annotations

import _common as C
import numpy as np

MODELS = {"S": [784, 128, 10], "L": [784, 1024, 1024, 10]}
LR = 0.01


def train_flops_per_example(sizes) -> float:
    """Forward (2 d_in d_out per layer), weight gradients (same), input gradients of
    every layer but the first (same): the multiply-adds of one training step."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    mm = sum(a * b for a, b in pairs)
    return 2.0 * mm + 2.0 * mm + 2.0 * sum(a * b for a, b in pairs[1:])


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return x, y


def relu_mlp(sizes, key):
    """``(model, params)`` of the ReLU MLP ``sizes`` in whichever fnmlp is imported:
    bench_before_after.py runs this file on source trees from before issue 27 too, whose
    fnmlp has ``init_mlp`` and takes the activation by name (model None there)."""
    import fnmlp

    if hasattr(fnmlp, "init_mlp"):  # before issue 27: no model object
        return None, fnmlp.init_mlp(key, sizes)
    model = fnmlp.mlp(sizes, "relu")
    return model, model.init_params(key)


def fnmlp_impl(sizes, x, y, batch, grad, compute_dtype=None):
    import jax
    import jax.numpy as jnp

    import fnmlp

    opt = fnmlp.sgd(LR)
    model, params = relu_mlp(sizes, jax.random.key(0))
    if model is None:  # an old tree (bench_before_after.py): the activation by name
        trainer = fnmlp.train.make_trainer(opt, batch, "relu", "softmax_cross_entropy", grad,
                                     compute_dtype=compute_dtype)
    else:
        trainer = fnmlp.train.make_trainer(model, opt, batch, "softmax_cross_entropy", grad,
                                     compute_dtype=compute_dtype)
    holder = {"s": fnmlp.init_state(params, opt)}
    xd, yd, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(0)

    def epoch():
        holder["s"], m = trainer.epoch(holder["s"], xd, yd, key)
        jax.block_until_ready(holder["s"])

    return epoch


def jax_tutorial_impl(sizes, x, y, batch):
    """jax/examples/mnist_classifier_fromscratch.py style: a jitted update called from a
    Python loop over numpy minibatches."""
    import jax
    import jax.numpy as jnp

    params = [(p["w"], p["b"]) for p in relu_mlp(sizes, jax.random.key(0))[1]]

    def predict(params, inputs):
        activations = inputs
        for w, b in params[:-1]:
            activations = jnp.maximum(jnp.dot(activations, w) + b, 0)
        w, b = params[-1]
        logits = jnp.dot(activations, w) + b
        return logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)

    def loss(params, batch):
        inputs, targets = batch
        return -jnp.mean(jnp.sum(predict(params, inputs) * targets, axis=1))

    @jax.jit
    def update(params, batch):
        grads = jax.grad(loss)(params, batch)
        return [(w - LR * dw, b - LR * db) for (w, b), (dw, db) in zip(params, grads)]

    onehot = np.eye(10, dtype=np.float32)[y]
    rng = np.random.default_rng(0)
    holder = {"p": params}
    steps = len(x) // batch

    def epoch():
        perm = rng.permutation(len(x))
        p = holder["p"]
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            p = update(p, (x[idx], onehot[idx]))
        holder["p"] = jax.block_until_ready(p)

    return epoch


def numpy_impl(sizes, x, y, batch):
    """The lesson's way: forward and backward written by hand in NumPy."""
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    steps = len(x) // batch

    def epoch():
        perm = rng.permutation(len(x))
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            h, yb = x[idx], y[idx]
            acts = [h]
            for w, b in zip(ws[:-1], bs[:-1]):
                h = np.maximum(h @ w + b, 0)
                acts.append(h)
            z = h @ ws[-1] + bs[-1]
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            p[np.arange(batch), yb] -= 1
            delta = p / batch
            for l in range(len(ws) - 1, -1, -1):
                dw, db = acts[l].T @ delta, delta.sum(0)
                if l > 0:
                    delta = (delta @ ws[l].T) * (acts[l] > 0)
                ws[l] -= LR * dw
                bs[l] -= LR * db

    return epoch


def flax_impl(sizes, x, y, batch):
    """Flax NNX + optax as the Flax MNIST tutorial writes it: an nnx.jit train step called
    per minibatch from Python, the model and optimizer updated in place."""
    import jax
    import optax
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, sizes, rngs):
            self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                    for a, b in zip(sizes[:-1], sizes[1:])])

        def __call__(self, h):
            for layer in self.layers[:-1]:
                h = nnx.relu(layer(h))
            return self.layers[-1](h)

    model = MLP(sizes, nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, xb, yb):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(0)
    steps = len(x) // batch

    def epoch():
        perm = rng.permutation(len(x))
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            loss = train_step(model, optimizer, x[idx], y[idx])
        jax.block_until_ready(loss)

    return epoch


def keras_impl(sizes, x, y, batch):
    """Keras 3 on the JAX backend: model.fit for one epoch (Keras compiles its own
    jitted train step)."""
    import os

    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input((sizes[0],))]
    layers += [keras.layers.Dense(b, activation="relu") for b in sizes[1:-1]]
    model = keras.Sequential(layers + [keras.layers.Dense(sizes[-1])])
    model.compile(optimizer=keras.optimizers.SGD(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = (len(x) // batch) * batch  # the same whole batches as the others

    def epoch():
        model.fit(x[:n], y[:n], batch_size=batch, epochs=1, shuffle=True, verbose=0)

    return epoch


def torch_impl(sizes, x, y, batch, device="cpu", compile_mode=None):
    """PyTorch eager, or with ``compile_mode`` the model under torch.compile (``"default"``,
    or ``"reduce-overhead"`` for CUDA graphs on a GPU)."""
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    if compile_mode:
        model = torch.compile(model, mode=compile_mode)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    steps = len(x) // batch

    def epoch():
        perm = torch.randperm(len(x), device=device)
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            opt.zero_grad(set_to_none=True)
            lossf(model(xt[idx]), yt[idx]).backward()
            opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return epoch


def sklearn_impl(sizes, x, y, batch):
    import warnings

    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu",
                        solver="sgd", learning_rate_init=LR, momentum=0.0, alpha=0.0,
                        batch_size=batch, shuffle=True, random_state=0)
    classes = np.arange(10)

    def epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(x, y, classes=classes)

    return epoch


def main(argv=None):
    p = C.parser(__doc__)
    p.add_argument("--models", default="S,L", help="comma list of S, L")
    p.add_argument("--batches", default="128,1024", help="comma list of batch sizes")
    p.add_argument("--examples-s", type=int, default=60000, help="epoch size for S")
    p.add_argument("--examples-l", type=int, default=15360, help="epoch size for L")
    p.add_argument("--no-peers", action="store_true", help="fnmlp and the JAX loop only")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile peers")
    p.add_argument("--no-cpu-peers", action="store_true",
                   help="skip NumPy and scikit-learn (for a GPU run)")
    p.add_argument("--precision", choices=["default", "high", "highest"], default=None,
                   help="jax.default_matmul_precision for the JAX rows and the peak"
                        " (on GPU 'default' allows TF32) (default: JAX's own)")
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: fnmlp mixed precision (float32 master params)")
    args = p.parse_args(argv)
    import contextlib

    import jax

    ctx = (jax.default_matmul_precision(args.precision) if args.precision
           else contextlib.nullcontext())
    with ctx:
        return _main(args)


def _main(args):
    import jax
    import jax.numpy as jnp

    gpu = jax.default_backend() == "gpu"
    compute_dtype = jnp.bfloat16 if args.compute_dtype == "bfloat16" else None
    models = {k: MODELS[k] for k in args.models.split(",")}
    batches = [int(b) for b in args.batches.split(",")]
    n_s, n_l = args.examples_s, args.examples_l
    if args.quick:
        args.no_compile = True  # torch.compile takes tens of seconds to compile
        models = {"S": MODELS["S"]}
        batches, n_s, args.reps = [128], 2048, 1

    import torch_threads  # noqa: F401  (sets torch to the machine's cores, if present)

    info = C.machine()
    info.update(precision=args.precision or "default", compute_dtype=args.compute_dtype)
    peak_shapes = [(128, 784, 1024), (128, 1024, 1024), *C.big_shapes()[:1]]
    if gpu:
        peak_shapes = C.big_shapes()
    if args.quick:
        peak_shapes = [(128, 784, 128)]
    rows = []
    for model, sizes in models.items():
        flops = train_flops_per_example(sizes)
        n = n_s if model == "S" else n_l
        x, y = make_data(n)
        for batch in batches:
            impls = {
                "fnmlp autodiff (scan)": fnmlp_impl(sizes, x, y, batch, "autodiff",
                                                    compute_dtype),
                "fnmlp manual (scan)": fnmlp_impl(sizes, x, y, batch, "manual", compute_dtype),
                "JAX tutorial loop": jax_tutorial_impl(sizes, x, y, batch),
            }
            if not args.no_peers:
                if not args.no_cpu_peers:
                    impls["NumPy by hand"] = numpy_impl(sizes, x, y, batch)
                if C.available("torch"):
                    import torch

                    dev = "cuda" if gpu and torch.cuda.is_available() else "cpu"
                    impls[f"PyTorch eager ({dev})"] = torch_impl(sizes, x, y, batch, dev)
                    if not args.no_compile:
                        impls[f"torch.compile ({dev})"] = torch_impl(sizes, x, y, batch, dev,
                                                                     "default")
                        if dev == "cuda":
                            impls["torch.compile reduce-overhead (cuda)"] = torch_impl(
                                sizes, x, y, batch, dev, "reduce-overhead")
                if C.available("flax") and C.available("optax"):
                    impls["Flax NNX + optax"] = flax_impl(sizes, x, y, batch)
                if C.available("keras"):
                    impls["Keras 3 (JAX backend)"] = keras_impl(sizes, x, y, batch)
                if C.available("sklearn") and model == "S" and not args.no_cpu_peers:
                    impls["scikit-learn MLP"] = sklearn_impl(sizes, x, y, batch)
            peak_fns = {f"peak {m_}x{k_}x{n_}": C.peak_impl((m_, k_, n_), args.compute_dtype)
                        for (m_, k_, n_) in peak_shapes}
            impls.update({name: fn for name, (fn, _) in peak_fns.items()})
            times = C.interleaved(impls, args.reps, C.settle(args))
            warm = times.pop("__warmup__")
            # the denominator: the best jnp.dot rate measured in these same rounds
            group_peak = max(fl / C.median(times.pop(name)) / 1e9
                             for name, (_, fl) in peak_fns.items())
            steps = n // batch
            group = []
            for name, ts in times.items():
                sec = C.median(ts)
                eps = steps * batch / sec
                group.append({"model": model, "sizes": sizes, "batch": batch, "impl": name,
                              "epoch_s": sec, "examples_per_s": eps, "spread": C.spread(ts),
                              "gflops": eps * flops / 1e9, "peak_gflops": group_peak,
                              "pct_peak": 100 * eps * flops / 1e9 / group_peak,
                              "first_call_s": warm[name], "compile_s": max(warm[name] - sec, 0.0),
                              "reps": len(ts), "n": n})
            peers = [r for r in group if not r["impl"].startswith("fnmlp")]
            best_peer = max(peers, key=lambda r: r["examples_per_s"]) if peers else None
            fn = {r["impl"]: r for r in group if r["impl"].startswith("fnmlp")}
            for r in group:
                if best_peer is not None:
                    r["vs_fastest_peer"] = r["examples_per_s"] / best_peer["examples_per_s"]
                    r["fastest_peer"] = best_peer["impl"]
            ratio = (fn["fnmlp manual (scan)"]["examples_per_s"]
                     / fn["fnmlp autodiff (scan)"]["examples_per_s"])
            for r in fn.values():
                r["manual_over_autodiff"] = ratio
            rows += group
    md = C.table(rows, [("model", "model", ""), ("batch", "batch", ""),
                        ("impl", "implementation", ""),
                        ("examples_per_s", "examples/s", ",.0f"), ("gflops", "GFLOP/s", ".1f"),
                        ("pct_peak", "% of jnp.dot peak", ".0f"),
                        ("spread", "spread", ".2f"),
                        ("vs_fastest_peer", "x fastest peer", ".2f"),
                        ("compile_s", "compile s", ".2f")])
    peak = max(r["peak_gflops"] for r in rows)
    md += (f"\n\n% of peak: against the best {args.compute_dtype} jnp.dot rate over "
           + ", ".join("x".join(map(str, s_)) for s_ in peak_shapes)
           + " measured in the same interleaved rounds as each group (highest seen: "
           f"{peak:.1f} GFLOP/s). spread: (max - min) / median of the {args.reps} timed epochs."
           f" Medians of {args.reps} interleaved repetitions after one warm-up epoch, the"
           f" order shuffled every round, {C.settle(args)} s idle before each timed epoch;"
           f" torch threads: {info.get('torch_threads')}.")
    return C.emit(args, "training throughput", info, rows, md, {"jnp_peak_gflops": peak})


if __name__ == "__main__":
    main()
