"""The lab's comparisons: several architectures trained one after another on the same
data, the same validation split and the same optimizer, for one chart.

An architecture is written as ``WIDTHS[:ACTIVATIONS[:DROPOUT]]``: ``0`` (no hidden layer:
the lesson's perceptron), ``128``, ``256,128:tanh,relu``, ``512,512:relu:0.2``. The
activations and dropout rates are one for all hidden layers or one per hidden layer. It is
sugar for the one builder, :func:`fnmlp.mlp` (:func:`build`).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from fnmlp.activations import ACTIVATIONS


class Arch(NamedTuple):
    hidden: tuple[int, ...]  # hidden widths; () for none
    activations: tuple[str, ...]  # one, or one per hidden layer
    dropout: tuple[float, ...]  # one, or one per hidden layer

    @property
    def name(self) -> str:
        if not self.hidden:
            return "no hidden layer"
        acts = ",".join(self.activations)
        drop = "" if not any(self.dropout) else " drop " + ",".join(f"{r:g}" for r in
                                                                   self.dropout)
        n, widths = len(self.hidden), "-".join(map(str, self.hidden))
        if n > 2 and len(set(self.hidden)) == 1:
            widths = f"{n}x{self.hidden[0]}"  # 6x128: six hidden layers of 128
        return f"{widths} {acts}{drop}"


def parse_arch(text: str, activation: str = "relu") -> Arch:
    """``"256,128:tanh,relu"`` -> ``Arch((256, 128), ("tanh", "relu"), (0.0,))``. Raises
    ``ValueError`` naming the bad part."""
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(f"--arch {text!r}: want WIDTHS[:ACTIVATIONS[:DROPOUT]]")
    try:
        hidden = () if parts[0].strip().lower() in ("0", "none") else tuple(
            int(w) for w in parts[0].split(","))
    except ValueError:
        hidden = (0,)
    if any(w <= 0 for w in hidden):
        raise ValueError(f"--arch {text!r}: widths must be positive integers like 256,128,"
                         " or 0 for no hidden layer")
    acts = tuple(a.strip() for a in parts[1].split(",")) if len(parts) > 1 else (activation,)
    for a in acts:
        if a not in ACTIVATIONS:
            raise ValueError(f"--arch {text!r}: {a!r} is not an activation; choose from"
                             f" {', '.join(sorted(ACTIVATIONS))}")
    try:
        rates = tuple(float(r) for r in parts[2].split(",")) if len(parts) > 2 else (0.0,)
    except ValueError:
        rates = (-1.0,)
    if any(not 0 <= r < 1 for r in rates):
        raise ValueError(f"--arch {text!r}: dropout rates are drop probabilities in [0, 1)")
    for what, values in (("activations", acts), ("dropout rates", rates)):
        if hidden and len(values) not in (1, len(hidden)):
            raise ValueError(f"--arch {text!r}: {len(values)} {what} for {len(hidden)} hidden"
                             " layers; give one, or one per hidden layer")
    return Arch(hidden, acts, rates)


def build(arch: Arch, d_in: int, n_out: int):
    """``fnmlp.mlp([d_in, *arch.hidden, n_out], arch.activations, dropout=arch.dropout)``:
    the same model ``--hidden/--activation/--dropout`` and ``--layers`` build."""
    from fnmlp.layers import mlp

    return mlp([int(d_in), *arch.hidden, int(n_out)], arch.activations, dropout=arch.dropout)


def compare(archs: list[Arch], x: Any, y: Any, test: tuple[Any, Any], *, epochs: int,
            batch_size: int, optimizer_for: Any, val_split: float, seed: int = 0,
            log: Any = None) -> list[dict]:
    """Trains each architecture in turn with :func:`fnmlp.fit` (the same seed, so the
    same validation split and the same shuffles) and evaluates the test set once at the
    end (reported, never used to choose). ``optimizer_for(n_train)`` builds a fresh
    optimizer. Returns one dict per architecture: ``name``, ``history``, ``val_accuracy``,
    ``test_accuracy``, ``test_loss``, ``seconds``."""
    import jax

    from fnmlp.data import split_sizes
    from fnmlp.train import evaluate, fit

    x, y = np.asarray(x), np.asarray(y)
    n_out = int(y.max()) + 1
    n_train = split_sizes(len(x), val_split)[0]
    runs = []
    for arch in archs:
        model = build(arch, x.shape[1], n_out)
        params = model.init_params(jax.random.key(seed))
        t0 = time.perf_counter()
        res = fit(model, params, x, y, epochs=epochs, batch_size=batch_size,
                  optimizer=optimizer_for(n_train), seed=seed, validation_split=val_split,
                  verbose=False)
        seconds = time.perf_counter() - t0
        scores = evaluate(model, res.params, test[0], test[1])
        last = res.history[-1]
        run = {"name": arch.name, "arch": arch._asdict(), "history": res.history,
               "train_accuracy": last["train_accuracy"], "val_accuracy": last["val_accuracy"],
               "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
               "seconds": seconds}
        runs.append(run)
        if log is not None:
            log(f"{arch.name:>28}: train {run['train_accuracy']:.4f}  val"
                f" {run['val_accuracy']:.4f}  test {run['test_accuracy']:.4f}  {seconds:.1f} s")
    return runs
