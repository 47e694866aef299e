"""A model's forward and loss as checked public functions, and the MLP sugar.

Shapes: ``B`` batch, ``D`` input features, ``H`` hidden width, ``C`` outputs.

The plain MLP's params are a plain pytree, one dict per dense layer::

    params = [{"w": [D, H1], "b": [H1]}, {"w": [H1, H2], "b": [H2]}, ..., {"w": [Hk, C], "b": [C]}]

Every hidden layer is ``h = act(h_prev @ w + b)``; the last layer is linear and its
output (logits, or the regression prediction) goes to the loss. :func:`init_mlp` builds
them for ``layers.mlp(sizes, activation)``, i.e. ``serial(Dense(H1), act, ..., Dense(C))``.

Every function here takes the network in one of two forms:

* ``model=``: any :class:`~fnmlp.layers.Layer`, e.g. ``serial(Dense(64), Tanh(),
  Dense(32), Relu(), Dropout(0.2), Dense(10))``, with params from ``model.init_params``;
* ``activation``: a name (or one name per hidden layer) for the plain MLP, whose depth is
  read from the params list (``fnmlp.loss(params, x, y, "tanh")``). A Layer passed in
  this position is taken as the model.

``activation``, ``loss`` and the model are static, hashable values, never part of the
params pytree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _core
from fnmlp import _validate as checks
from fnmlp.layers import EVAL, MLP, Layer, as_model, mlp
from fnmlp.losses import get_loss
from fnmlp.weights import compute_sample_weight

Array = jax.Array
Params = Any  # list[dict[str, Array]] for the plain MLP
__all__ = ["Params", "batched_forward", "check_batch", "check_model_params", "check_sizes",
           "check_weights", "forward", "forward_with_cache", "init_mlp", "loss",
           "resolve_model"]


def init_mlp(
    key: Array,
    sizes: Sequence[int],
    activation: str | Sequence[str] = "relu",
    init: str | None = None,
    dtype: Any = jnp.float32,
) -> Params:
    """Makes MLP params from a PRNG key, in one compiled program.

    Args:
      key: a ``jax.random.key`` (or legacy ``PRNGKey``).
      sizes: layer widths, input first: ``[D, H1, ..., C]``, at least two, all > 0.
      activation: the hidden activation's name (or one per hidden layer); it picks the
        default initialiser.
      init: an initialiser name (``glorot_uniform``, ``he_normal``, ...); default is
        He for the ReLU family, LeCun for SELU, Glorot otherwise (by the first hidden
        activation).
      dtype: the parameters' float dtype.

    Returns:
      ``[{"w": [sizes[i], sizes[i+1]], "b": [sizes[i+1]]} for each layer]``, biases zero:
      the params of ``layers.mlp(sizes[1:], activation)``.

    Raises:
      ValueError: bad sizes, key, activation, initialiser or dtype.

    Examples:
      >>> import jax, fnmlp
      >>> params = fnmlp.init_mlp(jax.random.key(0), [4, 8, 3])
      >>> [p["w"].shape for p in params]
      [(4, 8), (8, 3)]
    """
    sizes = check_sizes(sizes)
    check_key(key)
    if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        raise ValueError(f"dtype must be a float dtype; got {dtype!r}")
    acts = activation if isinstance(activation, str) else tuple(activation)
    model = mlp(tuple(sizes[1:]), acts, init)
    return model.init_params(key, sizes[0], dtype)


def check_key(key: Any) -> None:
    """A typed key (``jax.random.key``) or a raw ``uint32[2]`` one; ``ValueError`` else."""
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


def resolve_model(activation: Any = "relu", model: Any = None) -> Layer:
    """The model a public function runs: ``model`` if given, else the plain MLP with
    ``activation`` (a Layer given as ``activation`` is the model)."""
    return as_model(model if model is not None else activation)


# ----------------------------------------------------------------------------- checks


def _dtype_of(params) -> Any:
    leaves = jax.tree.leaves(params)
    return leaves[0].dtype if leaves else jnp.float32


def dtype_of(params) -> Any:
    """The params' float dtype (float32 for a model without params)."""
    return _dtype_of(params)


@functools.lru_cache(maxsize=256)
def _expected(model: Layer, d_in: int, dtype: str):
    shapes = jax.eval_shape(lambda k: model.init(k, d_in, jnp.dtype(dtype))[1],
                            jax.random.key(0))
    return jax.tree_util.tree_flatten_with_path(shapes)


def check_model_params(model: Layer, params: Any, d_in: int | None = None) -> tuple[int, int]:
    """Checks ``params`` against ``model``; returns ``(D, C)``, the input and output widths.

    ``d_in`` (e.g. the data's width) is used when the params do not imply the input width.
    Raises ``ValueError`` naming the first leaf whose place or shape does not fit.
    """
    if isinstance(model, MLP):
        sizes = checks.check_params(params)
        acts = model.activation
        if not isinstance(acts, str) and len(acts) not in (1, len(sizes) - 2):
            raise ValueError(f"activation lists {len(acts)} names for {len(sizes) - 2} hidden"
                             f" layers; give one, or one per hidden layer")
        return sizes[0], sizes[-1]
    try:
        d = model.input_width(params)
    except (KeyError, TypeError, IndexError, AttributeError, StopIteration):
        d = None
    d = d if d is not None else d_in
    if d is None:
        raise ValueError("the model's input width cannot be read from its params; give x")
    flat, treedef = _expected(model, int(d), jnp.dtype(_dtype_of(params)).name)
    got, got_def = jax.tree_util.tree_flatten_with_path(params)
    if got_def != treedef:
        raise ValueError(
            f"params do not fit the model {model.name}: expected the structure of"
            f" model.init_params(key, {d}) ({treedef}); got {got_def}"[:600])
    for (path, want), (_, have) in zip(flat, got):
        if tuple(np.shape(have)) != tuple(want.shape):
            raise ValueError(f"params{jax.tree_util.keystr(path)} must have shape"
                             f" {tuple(want.shape)} for the model; got {tuple(np.shape(have))}")
    out = jax.eval_shape(lambda p: model.apply(p, jnp.zeros((1, d), _dtype_of(params))), params)
    return int(d), int(out.shape[-1])


def _cast(x: Array, params: Params) -> Array:
    """``x`` in the params' dtype; a host array is converted on the host and transferred
    (``jnp.asarray`` of a NumPy array compiles a small program per shape)."""
    dtype = _dtype_of(params)
    if isinstance(x, np.ndarray):
        return jax.device_put(np.asarray(x, dtype=np.dtype(dtype)))
    return jnp.asarray(x, dtype=dtype)


def check_batch(params: Params, x: Any, y: Any, loss: str, names=("x", "y"),
                model: Any = "relu"):
    """Validates ``(x, y)`` against params, model and loss; returns them as arrays."""
    model = as_model(model)
    get_loss(loss)
    x = checks.as_numeric_array(x, names[0])
    d_in, n_out = check_model_params(model, params, x.shape[-1] if x.ndim else None)
    x = checks.check_inputs(x, d_in, names[0])
    y = checks.check_targets(y, x.shape[0], loss, n_out, names[1])
    return _cast(x, params), (jax.device_put(y) if isinstance(y, np.ndarray) else jnp.asarray(y))


def check_weights(params: Params, x: Array, y: Array, loss: str, model: Any = "relu",
                  sample_weight: Any = None, class_weight: Any = None,
                  names=("sample_weight", "class_weight", "y")) -> Array | None:
    """Per-example weights ``[B]`` for a batch already checked by :func:`check_batch`
    (see :func:`fnmlp.weights.compute_sample_weight`), in the params' float dtype; None
    when neither weight is given. On the host: nothing compiles."""
    if sample_weight is None and class_weight is None:
        return None
    _, n_out = check_model_params(as_model(model), params, x.shape[-1])
    w = compute_sample_weight(y, loss, n_out, sample_weight, class_weight, x.shape[0],
                              names[:2], names[2])
    # the weighted mean sum(w l) / sum(w) does not change when w is scaled: scale the
    # largest to 1 on the host (float64), so 1e-46 or 1e39 neither underflow nor overflow
    # in the params' dtype
    w = np.asarray(w, np.float64)
    w = w / np.max(w)
    return jnp.asarray(w, dtype=_dtype_of(params))


def check_x(params: Params, x: Any, model: Layer, batched: bool = True) -> Array:
    """Validates inputs ``x`` (``[B, D]``, or ``[D]`` when not batched) for the model."""
    x = checks.as_numeric_array(x, "x")
    d_in, _ = check_model_params(model, params, x.shape[-1] if x.ndim else None)
    return _cast(checks.check_inputs(x, d_in, "x", batched=batched), params)


# ----------------------------------------------------------------------------- public


def _one(model: Layer, params: Params, x: Array) -> Array:
    return model.apply(params, x[None])[0]  # [D] -> [C], evaluation mode


def forward(params: Params, x: Array, activation: Any = "relu", *, model: Any = None) -> Array:
    """The per-example forward pass: ``x: [D]`` -> output ``[C]`` (logits or prediction),
    in evaluation mode (no dropout).

    A pure function; ``jax.vmap`` it (or call :func:`batched_forward`) for a batch.
    """
    m = resolve_model(activation, model)
    return _one(m, params, check_x(params, x, m, batched=False))


def batched_forward(params: Params, x: Array, activation: Any = "relu", *,
                    model: Any = None) -> Array:
    """``x: [B, D]`` -> ``[B, C]``, made from :func:`forward` with ``jax.vmap``."""
    m = resolve_model(activation, model)
    return jax.vmap(_one, in_axes=(None, None, 0))(m, params, check_x(params, x, m))


def forward_with_cache(params: Params, x: Array, activation: Any = "relu", *,
                       model: Any = None) -> tuple[Array, Any]:
    """Batched forward ``x: [B, D]`` -> ``([B, C], residuals)`` keeping what backprop needs
    (evaluation mode). For a Serial (and the plain MLP) ``residuals[i]`` is layer ``i``'s:
    a Dense keeps its input ``[B, D_in]``, an activation its pre-activation."""
    m = resolve_model(activation, model)
    return m.forward(params, check_x(params, x, m), EVAL)


def loss(
    params: Params,
    x: Array,
    y: Array,
    activation: Any = "relu",
    loss: str = "softmax_cross_entropy",
    *,
    model: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> Array:
    """The mean loss over the batch, a scalar: ``jax.grad(fnmlp.loss)`` is autodiff.

    With weights it is the weighted mean ``sum_i w_i loss_i / sum_i w_i``, ``w_i =
    sample_weight_i * class_weight[y_i]``: for ``softmax_cross_entropy`` and class
    weights, PyTorch's ``CrossEntropyLoss(weight=...)`` (``sum_n w_{y_n} l_n /
    sum_n w_{y_n}``); see :mod:`fnmlp.weights`.

    Args:
      params: the model's params.
      x: inputs ``[B, D]``.
      y: targets: integer labels ``[B]`` for ``softmax_cross_entropy``; ``[B, C]`` (or
        ``[B]`` when C == 1) for the other losses.
      activation: hidden activation name for the plain MLP.
      loss: loss name (see :mod:`fnmlp.losses`).
      model: a :class:`~fnmlp.layers.Layer` instead of the plain MLP (evaluation mode).
      sample_weight: optional ``[B]`` weights, finite and >= 0.
      class_weight: optional ``"balanced"`` (scikit-learn's ``n_samples / (n_classes *
        count)``) or ``{label: weight}`` (classification losses only); both given, the
        weight of an example is their product (as Keras).

    Raises:
      ValueError: params that do not fit the model, bad x / y, or bad weights (names the
        argument).
    """
    m = resolve_model(activation, model)
    x, y = check_batch(params, x, y, loss, model=m)
    w = check_weights(params, x, y, loss, m, sample_weight, class_weight)
    return _core.mean_loss(m, params, x, y, loss, w=w)
