"""The multilayer perceptron: init, per-example forward, batched forward, loss.

Shapes: ``B`` batch, ``D`` input features, ``H`` hidden width, ``C`` outputs.

Parameters are a plain pytree, one dict per dense layer::

    params = [{"w": [D, H1], "b": [H1]}, {"w": [H1, H2], "b": [H2]}, ..., {"w": [Hk, C], "b": [C]}]

Every hidden layer is ``h = act(h_prev @ w + b)``; the last layer is linear and its
output (logits, or the regression prediction) goes to the loss. ``activation`` and
``loss`` are names (static strings), never part of the params pytree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _core
from fnmlp import _validate as checks
from fnmlp._core import LayerCache
from fnmlp.activations import get_activation
from fnmlp.initializers import DEFAULT_INIT, get_initializer
from fnmlp.losses import get_loss

Array = jax.Array
Params = list  # list[dict[str, Array]]
__all__ = ["LayerCache", "Params", "batched_forward", "check_batch", "check_sizes",
           "forward", "forward_with_cache", "init_mlp", "loss"]


def init_mlp(
    key: Array,
    sizes: Sequence[int],
    activation: str = "relu",
    init: str | None = None,
    dtype: Any = jnp.float32,
) -> Params:
    """Makes MLP params from a PRNG key.

    Args:
      key: a ``jax.random.key`` (or legacy ``PRNGKey``).
      sizes: layer widths, input first: ``[D, H1, ..., C]``, at least two, all > 0.
      activation: the hidden activation's name; it picks the default initialiser.
      init: an initialiser name (``glorot_uniform``, ``he_normal``, ...); default is
        He for the ReLU family, LeCun for SELU, Glorot otherwise.
      dtype: the parameters' float dtype.

    Returns:
      ``[{"w": [sizes[i], sizes[i+1]], "b": [sizes[i+1]]} for each layer]``, biases zero.

    Examples:
      >>> import jax, fnmlp
      >>> params = fnmlp.init_mlp(jax.random.key(0), [4, 8, 3])
      >>> [p["w"].shape for p in params]
      [(4, 8), (8, 3)]
    """
    sizes = check_sizes(sizes)
    _check_key(key)
    get_activation(activation)
    initializer = get_initializer(init if init is not None else DEFAULT_INIT[activation])
    if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        raise ValueError(f"dtype must be a float dtype; got {dtype!r}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": initializer(k, d_in, d_out, dtype), "b": jnp.zeros((d_out,), dtype)}
        for k, d_in, d_out in zip(keys, sizes[:-1], sizes[1:])
    ]


def _check_key(key: Any) -> None:
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = (isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,)
           and key.dtype == np.uint32)
    if not (typed or raw):
        raise ValueError(f"key must be a PRNG key such as jax.random.key(0); got {key!r}"[:160])


def check_sizes(sizes: Any) -> list[int]:
    """Validates a list of layer sizes (input first, at least two, each > 0)."""
    if isinstance(sizes, (str, bytes)):
        raise ValueError(f"sizes must be a list of positive integers; got {sizes!r}")
    try:
        sizes = list(sizes)
    except TypeError:
        raise ValueError(f"sizes must be a list of layer widths; got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least two layer widths [D, ..., C]; got {sizes}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
            raise ValueError(f"sizes must be positive integers; got {s!r} at index {i}")
    return [int(s) for s in sizes]


# ----------------------------------------------------------------------------- public


def _cast(x: Array, params: Params) -> Array:
    return jnp.asarray(x, dtype=params[0]["w"].dtype)


def forward(params: Params, x: Array, activation: str = "relu") -> Array:
    """The per-example forward pass: ``x: [D]`` -> output ``[C]`` (logits or prediction).

    A pure function; ``jax.vmap`` it (or call :func:`batched_forward`) for a batch.
    """
    sizes = checks.check_params(params)
    get_activation(activation)
    x = checks.check_inputs(x, sizes[0], "x", batched=False)
    return _core.forward(params, _cast(x, params), activation)


def batched_forward(params: Params, x: Array, activation: str = "relu") -> Array:
    """``x: [B, D]`` -> ``[B, C]``, made from :func:`forward` with ``jax.vmap``."""
    sizes = checks.check_params(params)
    get_activation(activation)
    x = checks.check_inputs(x, sizes[0], "x")
    return _core.batched_forward(params, _cast(x, params), activation)


def forward_with_cache(
    params: Params, x: Array, activation: str = "relu"
) -> tuple[Array, list[LayerCache]]:
    """Batched forward ``x: [B, D]`` -> ``([B, C], cache)`` keeping what backprop needs.

    ``cache[l]`` is a :class:`LayerCache` ``(inputs [B, D_l], z [B, D_{l+1}])`` for layer l.
    """
    sizes = checks.check_params(params)
    get_activation(activation)
    x = checks.check_inputs(x, sizes[0], "x")
    return _core.forward_with_cache(params, _cast(x, params), activation)


def loss(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "softmax_cross_entropy",
) -> Array:
    """The mean loss over the batch, a scalar: ``jax.grad(fnmlp.loss)`` is autodiff.

    Args:
      params: the MLP params.
      x: inputs ``[B, D]``.
      y: targets: integer labels ``[B]`` for ``softmax_cross_entropy``; ``[B, C]`` (or
        ``[B]`` when C == 1) for the other losses.
      activation: hidden activation name.
      loss: loss name (see :mod:`fnmlp.losses`).
    """
    x, y = check_batch(params, x, y, loss)
    return _core.mean_loss(params, x, y, activation, loss)


def check_batch(params: Params, x: Any, y: Any, loss: str, names=("x", "y")):
    """Validates ``(x, y)`` against params and loss; returns them as arrays."""
    sizes = checks.check_params(params)
    get_loss(loss)
    x = checks.check_inputs(x, sizes[0], names[0])
    y = checks.check_targets(y, x.shape[0], loss, sizes[-1], names[1])
    return _cast(x, params), jnp.asarray(y)
