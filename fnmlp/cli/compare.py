"""The lab's comparisons: several architectures trained one after another on the same
data, the same validation split and the same optimizer, for one chart.

An architecture is written as ``WIDTHS[:ACTIVATIONS[:DROPOUT]]``: ``0`` (no hidden layer:
the lesson's perceptron), ``128``, ``256,128:tanh,relu``, ``512,512:relu:0.2``. The
activations and dropout rates are one for all hidden layers or one per hidden layer. It is
sugar for the one architecture grammar (:mod:`fnmlp.cli.arch`), read by the parsers of
``--hidden``, ``--activation`` and ``--dropout`` (:func:`parse_arch`, :func:`build`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, NamedTuple

import numpy as np

from fnmlp.cli import arch as grammar  # the one grammar, plain Python: no jax

LOSS = "softmax_cross_entropy"  # the default: compare.py trains classifiers on labels


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
    """``"256,128:tanh,relu"`` -> ``Arch((256, 128), ("tanh", "relu"), (0.0,))``: sugar
    read with ``--hidden``'s, ``--activation``'s and ``--dropout``'s parsers (the one
    grammar, :mod:`fnmlp.cli.arch`). Raises ``ValueError`` naming the bad part."""
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(f"--arch {text!r}: want WIDTHS[:ACTIVATIONS[:DROPOUT]]")
    try:
        hidden = tuple(grammar.parse_hidden(parts[0]))
    except argparse.ArgumentTypeError:
        raise ValueError(f"--arch {text!r}: widths must be positive integers like 256,128,"
                         " or 0 for no hidden layer") from None
    try:
        acts = tuple(grammar.parse_names(parts[1]) if len(parts) > 1 else [activation])
        rates = tuple(grammar.parse_rates(parts[2]) if len(parts) > 2 else [0.0])
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--arch {text!r}: {e}") from None
    for what, values in (("activations", acts), ("dropout rates", rates)):
        if hidden and not grammar.fits(values, hidden):
            raise ValueError(f"--arch {text!r}: {len(values)} {what} for {len(hidden)} hidden"
                             " layers; give one, or one per hidden layer")
    return Arch(hidden, acts, rates)


def build(spec: Arch, d_in: int, n_out: int):
    """The model of ``spec``, through the one grammar: ``fnmlp.mlp([d_in, *spec.hidden,
    n_out], spec.activations, dropout=spec.dropout)``, the same model
    ``--hidden/--activation/--dropout`` and ``--layers`` build."""
    items = grammar.sugar_items(list(spec.hidden), list(spec.activations), list(spec.dropout))
    return grammar.model_of(grammar.layers_of(items), d_in, n_out)


def compare(archs: list[Arch], x: Any, y: Any, test: tuple[Any, Any], *, epochs: int,
            batch_size: int, optimizer_for: Any, val_split: float, seed: int = 0,
            log: Any = None, on_run_end: Any = None, log_every: int = 1) -> list[dict]:
    """Trains each architecture in turn with :func:`fnmlp.fit` (the same seed, so the
    same validation split and the same shuffles) and evaluates the test set once at the
    end (reported, never used to choose). ``optimizer_for(n_train)`` builds a fresh
    optimizer. ``log(line)``, if given, gets one line per epoch of every run (epoch 1,
    every ``log_every``-th and the last; prefixed with the architecture's name) and one
    per finished run. After every epoch each weight
    matrix's gradient norm on a fixed batch of the training part is recorded as
    ``grad_norm`` (:mod:`fnmlp.cli.probe`, outside ``fit``).
    ``on_run_end(arch, model, params, run)``, if given, is called after each run (e.g. to
    draw its decision boundary). Returns one dict per architecture: ``name``, ``history``,
    ``grad_norm_at_init``, ``val_accuracy``, ``test_accuracy``, ``test_loss``,
    ``seconds``."""
    import jax

    from fnmlp.cli.probe import fixed_batch, gradient_norms_fn
    from fnmlp.data import split_sizes
    from fnmlp.train import evaluate, fit

    x, y = np.asarray(x), np.asarray(y)
    n_out = int(y.max()) + 1
    n_train = split_sizes(len(x), val_split)[0]
    probe = fixed_batch(x, y, seed=seed, val_split=val_split)
    runs = []
    for k, arch in enumerate(archs):
        model = build(arch, x.shape[1], n_out)
        params = model.init_params(jax.random.key(seed))
        grad_norms = gradient_norms_fn(model, LOSS, *probe)
        at_init = grad_norms(params)

        def on_epoch_end(state, record, grad_norms=grad_norms):
            record["grad_norm"] = grad_norms(state.params)

        prefix = f"[{k + 1}/{len(archs)}] {arch.name}:"
        t0 = time.perf_counter()
        res = fit(model, params, x, y, epochs=epochs, batch_size=batch_size,
                  optimizer=optimizer_for(n_train), seed=seed, validation_split=val_split,
                  on_epoch_end=on_epoch_end, verbose=log is not None, log_every=log_every,
                  log=None if log is None else (lambda s, p=prefix: log(f"{p} {s}")))
        seconds = time.perf_counter() - t0
        scores = evaluate(model, res.params, test[0], test[1])
        last = res.history[-1]
        compiling = sum(r.get("compile_seconds", 0.0) for r in res.history)
        run = {"name": arch.name, "arch": arch._asdict(), "history": res.history,
               "grad_norm_at_init": at_init,
               "train_accuracy": last["train_accuracy"], "val_accuracy": last["val_accuracy"],
               "test_accuracy": scores["accuracy"], "test_loss": scores["loss"],
               "seconds": seconds, "compile_seconds": compiling}
        runs.append(run)
        if on_run_end is not None:
            on_run_end(arch, model, res.params, run)
        if log is not None:
            log(f"{prefix} done: train {run['train_accuracy']:.4f}  val"
                f" {run['val_accuracy']:.4f}  test {run['test_accuracy']:.4f}"
                f"  {seconds:.1f} s ({compiling:.1f} s of it compiling)")
    return runs
