"""The finite-difference witness: sampled central differences at two steps with
their own noise estimate, kinks found, perturbed check points. See :mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnmlp import _validate as checks
from fnmlp.grad import reduce_mean
from fnmlp.gradcheck.compare import (
    FD_STEPS,
    KINKY,
    LOSS_KINKS,
    NOISE_FACTOR,
    ROUND_ULPS,
    Noise,
    _check_eps,
    _check_max_evals,
    default_tolerance,
)
from fnmlp.layers import EVAL, Activation, Context, Layer, Serial
from fnmlp.losses import get_loss

dtype_of = checks.dtype_of

Array = jax.Array

ASYM_RATIO = 0.75  # one-sided gap at h/2 over the gap at h: 1 at a kink, 1/2 when smooth

# ----------------------------------------------------------------------------- differences


def _rng(key: Any) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (or an int): the checker's own draws need no
    compiled threefry program per shape."""
    if key is None:
        return np.random.default_rng(0)
    if isinstance(key, (int, np.integer)):
        return np.random.default_rng(int(key))
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype,
                                                             jax.dtypes.prng_key) else key
    return np.random.default_rng([int(v) for v in np.asarray(data).ravel()])


def _sample(params: Any, n: int, max_evals: int | None, key, min_per_leaf: int) -> np.ndarray:
    """Flat indices (``ravel_pytree`` order): all, or about ``max_evals`` of them drawn
    leaf by leaf, each leaf getting its share by size but at least ``min_per_leaf``."""
    if max_evals is None or n <= max_evals:
        return np.arange(n)
    rng = _rng(key)
    parts, start = [], 0
    for leaf in jax.tree.leaves(params):
        size = int(np.size(leaf))
        quota = min(size, max(min_per_leaf, int(max_evals * size / n)))
        if quota:
            parts.append(start + rng.choice(size, quota, replace=False))
        start += size
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, int)


def _split_flat(values: np.ndarray, params: Any) -> Any:
    """A flat array (ravel order) back into a pytree of numpy arrays like ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    out, start = [], 0
    for leaf in leaves:
        size = int(np.size(leaf))
        out.append(values[start:start + size].reshape(np.shape(leaf)))
        start += size
    return jax.tree.unflatten(treedef, out)


def finite_difference_grad(
    f: Callable[[Any], Array],
    params: Any,
    eps: float | None = None,
    max_evals: int | None = 4096,
    key: Array | None = None,
    min_per_leaf: int = 32,
) -> tuple[Any, Any]:
    """Central finite differences ``(f(p + h e_i) - f(p - h e_i)) / 2h`` per coordinate.

    Args:
      f: a scalar function of the params pytree (forward only: no autodiff is used).
      params: where to differentiate.
      eps: the step ``h``, in (0, 1); default ``1e-6`` in float64, ``1e-3`` in float32.
      max_evals: about this many coordinates are perturbed when the params have more
        (so big nets stay cheap); ``None`` means all. The sample is drawn leaf by leaf:
        each leaf gets its share of ``max_evals`` by size, but at least
        ``min(size, min_per_leaf)``, so a small leaf (a bias of 10) is never skipped.
      key: PRNG key for that sample.
      min_per_leaf: the least number of coordinates sampled in each leaf.

    Returns:
      ``(grads, mask)``: two pytrees like ``params``; ``mask`` is True where a
      coordinate was evaluated, and ``grads`` is 0 elsewhere. (:func:`check_gradients`
      uses :func:`finite_difference_estimate`, which also estimates each entry's error.)
    """
    eps = _check_eps(eps)
    max_evals = _check_max_evals(max_evals)
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    if n == 0:  # nothing to differentiate (a model without parameters)
        return params, jax.tree.map(lambda a: np.zeros(np.shape(a), bool), params)
    if eps is None:
        eps = 1e-6 if flat.dtype == jnp.float64 else 1e-3
    idx = _sample(params, n, max_evals, key, min_per_leaf)
    f_flat = jax.jit(lambda v: f(unravel(v)))

    @jax.jit
    def diffs(ids):
        def one(i):
            e = jnp.zeros_like(flat).at[i].set(eps)
            return (f_flat(flat + e) - f_flat(flat - e)) / (2 * eps)

        return jax.lax.map(one, ids, batch_size=64)

    values = np.zeros(n, dtype=np.asarray(flat).dtype)
    values[idx] = np.asarray(diffs(jnp.asarray(idx)))
    chosen = np.zeros(n, dtype=bool)
    chosen[idx] = True
    return unravel(jnp.asarray(values)), _split_flat(chosen, params)


def _unflatten(spec, flat):
    treedef, shapes = spec
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start:start + size].reshape(shape))
        start += size
    return jax.tree.unflatten(treedef, out)


@functools.partial(jax.jit, static_argnames=("fn", "spec"))
def _fd_kernel(fn, spec, flat, data, ids, offsets):
    """``f(p)``, its magnitude, and ``f(p + s e_i)`` for each pair ``(i, s)``; with, per
    perturbed point, the first kink value whose sign differs from its sign at ``p`` (-1
    when none)."""

    def f(v):
        return fn(_unflatten(spec, v), data)

    v0, m0, k0 = f(flat)
    pos0 = k0 > 0

    def one(args):
        i, s = args
        v, _, k = f(flat.at[i].add(s))
        if not k0.size:
            return v, jnp.asarray(-1)
        changed = (k > 0) != pos0
        return v, jnp.where(jnp.any(changed), jnp.argmax(changed), -1)

    vals, flips = jax.lax.map(one, (ids, offsets))  # a loop: compiles fastest
    return v0, m0, vals, flips


def _forward_kinks(model: Layer, params: Any, x: Array, ctx: Context, path: str = ""):
    """``model.forward``'s output, and ``[(label, array)]``: the inputs of its activation
    layers that have a kink at 0 (nested serials opened, labels ``"2:Relu"``)."""
    if isinstance(model, Serial):
        found = []
        for i, (layer, p) in enumerate(zip(model.layers, model.split_params(params))):
            x, f = _forward_kinks(layer, p, x, model.child_context(ctx, i),
                                  f"{path}.{i}" if path else str(i))
            found += f
        return x, found
    y = model.forward(params, x, ctx)[0]
    if isinstance(model, Activation) and model.fn in KINKY:
        return y, [((f"{path}:" if path else "") + model.name + " input", x)]
    return y, []


def _kink_vector(found: list, out: Array, y: Array | None, loss: str | None) -> Array:
    parts = [a.reshape(-1) for _, a in found]
    if loss in LOSS_KINKS:
        parts.append((out - y).reshape(-1))
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), out.dtype)


class _LossFn(NamedTuple):
    """``params -> (mean loss, mean |loss_i|, kink values)`` of a model; static, hashable."""

    model: Layer
    loss: str
    train: bool

    def run(self, params, data):
        x, y, w, key = data
        ctx = Context(True, key) if self.train else EVAL
        out, found = _forward_kinks(self.model, params, x, ctx)
        per = get_loss(self.loss).fn(out, y)  # [B]
        return reduce_mean(per, w), reduce_mean(jnp.abs(per), w), found, out

    def __call__(self, params, data):
        value, mag, found, out = self.run(params, data)
        return value, mag, _kink_vector(found, out, data[1], self.loss)

    def labels(self, params, data) -> list:
        names = []

        def shapes(p):
            _, _, found, out = self.run(p, data)
            names[:] = [name for name, _ in found]
            return [a for _, a in found], out

        arrays, out = jax.eval_shape(shapes, params)
        out_ = [(name, a.shape) for name, a in zip(names, arrays)]
        if self.loss in LOSS_KINKS:
            out_.append((f"the {self.loss} loss (output - target)", out.shape))
        return out_


class _DotFn(NamedTuple):
    """``{"p": params, "x": x} -> (sum(y * dy), sum |y * dy|, kink values)`` of one layer."""

    layer: Layer
    train: bool

    def run(self, t, data):
        dy, key = data
        ctx = Context(True, key) if self.train else EVAL
        y, found = _forward_kinks(self.layer, t["p"], t["x"], ctx)
        return jnp.sum(y * dy), jnp.sum(jnp.abs(y * dy)), found, y

    def __call__(self, t, data):
        value, mag, found, y = self.run(t, data)
        return value, mag, _kink_vector(found, y, None, None)

    def labels(self, t, data) -> list:
        names = []

        def shapes(q):
            found = self.run(q, data)[2]
            names[:] = [name for name, _ in found]
            return [a for _, a in found]

        return [(name, a.shape) for name, a in zip(names, jax.eval_shape(shapes, t))]


def _kink_label(labels: list, index: int) -> str:
    for name, shape in labels:
        size = math.prod(shape)
        if index < size:
            where = np.unravel_index(index, shape)
            if len(shape) == 2:
                return f"{name}, example {where[0]} unit {where[1]}, is within the step of 0"
            return f"{name} at {tuple(int(i) for i in where)} is within the step of 0"
        index -= size
    return "a kink"


def finite_difference_estimate(
    fn: Any,
    params: Any,
    data: Any,
    eps: float | None = None,
    max_evals: int | None = 4096,
    key: Array | None = None,
    min_per_leaf: int = 32,
) -> tuple[Any, Any, Noise]:
    """Finite differences that estimate their own error, in float64.

    For each sampled coordinate ``i`` and each step ``h`` of :data:`FD_STEPS` (or ``eps``
    alone when given): the central differences ``d_h`` and ``d_{h/2}``, the Richardson
    value ``d_{h/2} + (d_{h/2} - d_h) / 3`` (truncation ``O(h^4)``), and the error estimate
    ``|d_h - d_{h/2}| + ROUND_ULPS eps |f| / (h/2)``, raised to any other step's
    disagreement beyond its own estimate (``|R_h - R_k| - err_k``, steps that straddle no
    kink). Each leaf takes the step with the
    smallest median estimate; an entry whose difference straddles a kink there takes the
    best step that does not, and is flagged a kink when every step does.

    Args:
      fn: a hashable callable ``(params, data) -> (value, magnitude, kink values)``.
      params, data: float64 pytrees.

    Returns:
      ``(grads, mask, Noise)``, pytrees like ``params`` (``Noise.why`` a list per leaf).
    """
    leaves, treedef = jax.tree.flatten(params)
    spec = (treedef, tuple(tuple(np.shape(a)) for a in leaves))
    flat = jnp.concatenate([jnp.ravel(a) for a in leaves]) if leaves else jnp.zeros(0)
    n = int(flat.shape[0])
    sizes = [int(np.size(a)) for a in leaves]
    if n == 0:
        empty = jax.tree.map(lambda a: np.zeros(np.shape(a), bool), params)
        return params, empty, Noise(params, empty, ["" for _ in leaves], empty)
    idx = _sample(params, n, max_evals, key, min_per_leaf)
    steps = np.asarray(FD_STEPS if eps is None else (eps,), np.float64)
    nk = len(steps)
    ids = np.repeat(idx, 4 * nk)  # per coordinate, per step: +h, -h, +h/2, -h/2
    offsets = np.tile((steps[:, None] * np.array([1.0, -1.0, 0.5, -0.5])).ravel(), len(idx))
    v0, m0, vals, flips = _fd_kernel(fn, spec, flat, data, jnp.asarray(ids),
                                     jnp.asarray(offsets))
    v0, m0 = float(v0), float(m0)
    vals = np.asarray(vals, np.float64).reshape(len(idx), nk, 4)
    flips = np.asarray(flips).reshape(len(idx), nk, 4)
    h = steps[None, :]
    d_h = (vals[..., 0] - vals[..., 1]) / (2 * h)
    d_h2 = (vals[..., 2] - vals[..., 3]) / h
    rich = d_h2 + (d_h2 - d_h) / 3
    rnd = ROUND_ULPS * np.finfo(np.float64).eps * max(abs(v0), abs(m0), 1e-300) / (h / 2)
    noise = np.abs(d_h - d_h2) + rnd  # [n, K]
    straddle = (flips >= 0).any(-1)
    asym_h = (vals[..., 0] + vals[..., 1] - 2 * v0) / h  # one-sided slopes' gap
    asym_h2 = (vals[..., 2] + vals[..., 3] - 2 * v0) / (h / 2)
    leaf_of = np.searchsorted(np.cumsum(sizes), idx, side="right")
    labels = None
    chosen = np.zeros(len(idx), int)
    kink = np.zeros(len(idx), bool)
    for j in range(len(leaves)):
        rows = np.flatnonzero(leaf_of == j)
        if rows.size == 0:
            continue
        meds = [np.median(noise[rows, k][~straddle[rows, k]]) if (~straddle[rows, k]).any()
                else np.inf for k in range(nk)]
        kstar = int(np.argmin(meds))
        for r in rows:
            if straddle[r, kstar]:
                free = np.flatnonzero(~straddle[r])
                if free.size:
                    chosen[r] = free[np.argmin(noise[r, free])]
                else:
                    chosen[r], kink[r] = 0, True
            else:
                chosen[r] = kstar
    pick = np.arange(len(idx))
    value = rich[pick, chosen]
    err = noise[pick, chosen]
    # every other step's estimate must agree too, within its own error: a feature narrower
    # than the larger steps (a LayerNorm with eps 1e-12, an example 1e-6 from its steep
    # zone) gives estimates at 1e-4 and 1e-3 that agree with their halves and not with the
    # slope, while 1e-6 resolves it; such an entry is then unresolved, never failed
    gaps = np.abs(value[:, None] - rich) - noise  # [n, K]
    gaps = np.where(straddle | kink[:, None], -np.inf, gaps)
    err = np.maximum(err, gaps.max(axis=1))
    a1, a2 = asym_h[pick, chosen], asym_h2[pick, chosen]
    rnd_c = rnd[0, chosen]
    # one-sided slopes that disagree and do not shrink with the step: an unlisted kink.
    # Smooth, the gap is ~ h f'' and halves with the step (a2 = a1 / 2 + O(h^3)): 0.75
    # keeps a smooth layer from being called kinked; at a kink within the step it stays.
    asym = (np.abs(a2) >= ASYM_RATIO * np.abs(a1)) & (np.abs(a2) > 100 * rnd_c) & ~kink
    why: list[list[str]] = [[] for _ in leaves]
    for r in np.flatnonzero(kink):
        if labels is None:
            labels = fn.labels(params, data)
        k = int(np.max(flips[r, 0]))
        text = _kink_label(labels, k)
        if text not in why[leaf_of[r]]:
            why[leaf_of[r]].append(text)
    why_text = ["; ".join(w[:3]) + ("; ..." if len(w) > 3 else "") for w in why]
    full = np.zeros(n)
    full[idx] = value
    nz = np.zeros(n)
    nz[idx] = err
    kk = np.zeros(n, bool)
    kk[idx] = kink
    ak = np.zeros(n, bool)
    ak[idx] = asym
    chosen_mask = np.zeros(n, bool)
    chosen_mask[idx] = True
    return (_split_flat(full, params), _split_flat(chosen_mask, params),
            Noise(_split_flat(nz, params), _split_flat(kk, params), why_text,
                  _split_flat(ak, params)))


def _with_asymmetry(checked: Any, ref: Any, noise: Noise, rtol: float | None) -> Noise:
    """Entries that would fail and whose one-sided differences disagree (without a listed
    kink) are flagged kinks too: a kink the checker does not know about (a custom layer)."""
    kinks, whys = [], []
    for a, b, nz, k, s, w in zip(jax.tree.leaves(checked), jax.tree.leaves(ref),
                                 jax.tree.leaves(noise.noise), jax.tree.leaves(noise.kink),
                                 jax.tree.leaves(noise.asym), noise.why):
        tol = rtol if rtol is not None else default_tolerance(np.asarray(a).dtype, True)
        a = np.asarray(a).astype(np.float64)
        if a.shape != np.shape(b):  # a transposed leaf: compare_grads diagnoses it
            kinks.append(np.asarray(k))
            whys.append(w)
            continue
        nz = np.asarray(nz, np.float64)
        sampled = nz > 0  # the entries differenced (their noise is never 0): compare_grads'
        scale = max(float(np.max(np.abs(a[sampled]), initial=0)),  # scale is theirs too
                    float(np.max(np.abs(np.asarray(b)[sampled]), initial=0)))
        fails = np.abs(a - b) > tol * scale + NOISE_FACTOR * nz
        extra = fails & s
        kinks.append(np.asarray(k) | extra)
        whys.append("; ".join(filter(None, [w, "one-sided differences disagree and do not"
                                            " shrink with the step (a kink within it)"
                                            if extra.any() else ""])))
    return Noise(noise.noise, jax.tree.unflatten(jax.tree.structure(noise.kink), kinks), whys,
                 noise.asym)


def random_batch(key, n: int, sizes, loss: str, dtype: Any = "float32"):
    """A random batch fitting ``sizes`` and ``loss`` (for gradient checks): ``x: [n, D]``
    standard normal; labels uniform in ``[0, C)``, 0/1 targets, or normal targets."""
    kind = get_loss(loss).kind
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, sizes[0]), dtype)
    if kind == "multiclass":
        y = jax.random.randint(ky, (n,), 0, sizes[-1])
    elif kind == "binary":
        y = jax.random.bernoulli(ky, 0.5, (n, sizes[-1])).astype(dtype)
    else:
        y = jax.random.normal(ky, (n, sizes[-1]), dtype)
    return x, y


def perturb(params: Any, key: Any, rel: float = 0.5) -> Any:
    """Params moved away from their init values, where planted bugs show: each leaf plus
    normal noise of ``rel`` times its standard deviation, or of its mean's size when it is
    constant (a LayerNorm scale of ones becomes ``1 + N(0, 0.5)``), or of ``rel`` times the
    typical spread of the other leaves when it is all zero (biases). ``key``: a JAX key or
    an int seed."""
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:
        return params
    rng = _rng(key)
    host = [np.asarray(a).astype(np.float64) for a in leaves]
    stds = [float(np.std(a)) if a.size else 0.0 for a in host]
    spread = float(np.median([s for s in stds if s > 0])) if any(s > 0 for s in stds) else 0.2
    out = []
    for a, h, s in zip(leaves, host, stds):
        mean = float(np.mean(np.abs(h))) if h.size else 0.0
        sigma = rel * (s if s > 0 else mean if mean > 0 else spread)
        out.append(jnp.asarray((h + sigma * rng.standard_normal(h.shape)).astype(
            np.asarray(a).dtype)))
    return jax.tree.unflatten(treedef, out)


def _normal(rng: np.random.Generator, shape, dtype) -> Array:
    return jnp.asarray(rng.standard_normal(shape).astype(np.dtype(dtype)))
