"""What the lab's pictures need from a run beyond ``fit``'s history, computed beside the
training and never inside it (``fnmlp.train`` is not touched): each weight matrix's
gradient norm on a fixed batch of the training set, once per epoch (vanishing gradients,
seen), and what each hidden unit computes (the toy problem's units over the plane).

Shapes: ``B`` the fixed batch, ``M`` points, ``D`` features, ``H`` hidden units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

PROBE_BATCH = 1024  # examples in the fixed batch the gradient norms are measured on


def fixed_batch(x: Any, y: Any, *, seed: int, val_split: float | None = None,
                n: int = PROBE_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples of the part of ``(x, y)`` that ``fit`` trains on (with
    ``val_split``, the same seeded split ``fit`` makes: the validation examples are left
    out), picked with ``seed``, the same every epoch: ``(x [B, D], y [B])``."""
    from fnmlp.data import train_test_split

    x, y = np.asarray(x), np.asarray(y)
    idx = np.arange(len(x))
    if val_split:
        idx = train_test_split(idx, idx, val_split, seed, name="validation_split")[0].x
    else:
        idx = np.random.default_rng(seed).permutation(idx)
    idx = idx[:n]
    return x[idx], y[idx]


def gradient_norms_fn(model, loss: str, x: Any, y: Any) -> Callable[[Any], list[float]]:
    """``norms(params) -> [||dL/dW||]``, one Frobenius norm per weight matrix (in layer
    order, :func:`fnmlp.train.weight_matrices`), of the hand-derived gradient
    (:func:`fnmlp.manual_grad`, evaluation mode: no dropout) of the mean, unweighted
    ``loss`` on the fixed batch ``(x [B, D], y [B])``. Compiled once."""
    import jax
    import jax.numpy as jnp

    from fnmlp.grad import manual_grad
    from fnmlp.train import weight_matrices

    xb, yb = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def norms(params):
        g = manual_grad(model, params, xb, yb, loss)
        return [jnp.linalg.norm(w.astype(jnp.float32)) for w in weight_matrices(g)]

    return lambda params: [float(v) for v in jax.device_get(norms(params))]


def hidden_activations(model, params, x: Any) -> list[tuple[str, np.ndarray]]:
    """The output of every activation layer of a :class:`~fnmlp.layers.Serial` model on
    ``x [M, D]`` (evaluation mode): ``[(name, [M, H])]``, in order, named like
    ``"layer 1 (tanh)"`` (the hidden layer's number, counted from the input)."""
    from fnmlp.layers import Serial
    from fnmlp.layers.basic import ACTIVATION_LAYERS

    if not isinstance(model, Serial):
        raise ValueError(f"hidden_activations needs a serial model; got {type(model).__name__}")
    kinds = {cls: name for name, cls in ACTIVATION_LAYERS.items()}
    out, h = [], np.asarray(x, np.float32)
    for layer, p in zip(model.layers, model.split_params(params)):
        h = layer.apply(p, h)
        if type(layer) in kinds:
            out.append((f"layer {len(out) + 1} ({kinds[type(layer)]})", np.asarray(h)))
    return out


def unit_importance(model, params) -> list[np.ndarray]:
    """For every activation layer of a serial ``model``, each unit's outgoing weight
    norm: the row norms ``[H]`` of the next weight matrix (how much the rest of the
    network listens to the unit), in the order of :func:`hidden_activations`."""
    from fnmlp.layers.basic import ACTIVATION_LAYERS

    kinds = set(ACTIVATION_LAYERS.values())
    per_layer = list(zip(model.layers, model.split_params(params)))
    out = []
    for i, (layer, _) in enumerate(per_layer):
        if type(layer) not in kinds:
            continue
        nxt = next((p for _, p in per_layer[i + 1:]
                    if isinstance(p, dict) and np.ndim(p.get("w")) == 2), None)
        out.append(None if nxt is None else np.linalg.norm(np.asarray(nxt["w"]), axis=1))
    return out


def snapshot_epochs(epochs: int, n: int = 8) -> list[int]:
    """About ``n`` epochs spread on a log scale from 0 (the initialisation) to
    ``epochs``, for a strip of pictures of a run: ``snapshot_epochs(200)`` is
    ``[0, 1, 2, 6, 14, 34, 83, 200]``."""
    steps = max(1, n - 2)
    return sorted({0, *(int(round(epochs ** (k / steps))) for k in range(steps + 1))})
