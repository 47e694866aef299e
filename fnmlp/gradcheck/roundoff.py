"""Round-off floors: how far a correct backward and its reference may differ from
round-off alone, per entry (:func:`roundoff_floor`, and :func:`_sum_floor` for a batch
sum that cancels). See :mod:`fnmlp.gradcheck` for the rule and why it is sound."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp.gradcheck.compare import HIGH_FACTOR, ROUNDOFF_FACTOR, ROUNDOFF_ULPS, SUM_ULPS
from fnmlp.gradcheck.kernels import _flat, _layer_backward, _layer_forward, _layer_vjp
from fnmlp.layers import EVAL, Context
from fnmlp.losses import get_loss

# ----------------------------------------------------------------------------- round-off


def _below64(tree: Any) -> bool:
    """Whether any float leaf is narrower than float64 (its round-off can be measured
    against a float64 re-run)."""
    return any(jnp.issubdtype(jnp.result_type(a), jnp.floating)
               and jnp.dtype(jnp.result_type(a)).itemsize < 8 for a in jax.tree.leaves(tree))


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def _jiggle(tree: Any, rng: np.random.Generator) -> Any:
    """Each float leaf moved by up to ``ROUNDOFF_ULPS`` ulps of each entry, plus that many
    ulps of a hundredth of the leaf's rms (of all the leaves' for a leaf of zeros, biases
    at init), so that an entry at exactly 0, or at a kink, moves too: the same computation
    with other rounding, its true value moved by ~ulps only. Two user kinks hit at once can
    make a differentiable function whose chain-rule value is not its derivative (a PReLU
    after a PReLU, both inputs exactly 0); moved off them, the value moves, and says so."""
    floats = [np.asarray(a).astype(np.float64) for a in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.result_type(a), jnp.floating)]
    spread = float(np.median([r for r in map(_rms, floats) if r > 0] or [1.0]))

    def one(a):
        if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
            return a
        dtype = jnp.result_type(a)
        h = np.asarray(a).astype(np.float64)
        step = ROUNDOFF_ULPS * float(jnp.finfo(dtype).eps) * (
            np.abs(h) + 0.01 * (_rms(h) or spread))
        return jnp.asarray((h + step * rng.uniform(-1, 1, h.shape)).astype(dtype))

    return jax.tree.map(one, tree)


def _to64(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(np.float64)) if (
        jnp.issubdtype(jnp.result_type(a), jnp.floating)) else a, tree)


def _absdiff(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda u, v: np.abs(np.asarray(u).astype(np.float64)
                                            - np.asarray(v).astype(np.float64)), a, b)


def _tree_max(a: Any, b: Any) -> Any:
    return jax.tree.map(np.maximum, a, b)


def _tree_add(a: Any, b: Any, f: float = 1.0) -> Any:
    return jax.tree.map(lambda u, v: u + f * v, a, b)


def roundoff_floor(run: Any, args: tuple, jiggled: tuple[bool, ...], base: Any,
                   probes: int = 2) -> tuple[Any, Any]:
    """How far ``run(*args)`` (a pair of gradient pytrees ``(checked, reference)``, equal
    to ``base``) can stray from round-off alone, per entry: ``ROUNDOFF_FACTOR`` x how far
    each moves when the arguments flagged in ``jiggled`` move by a few ulps (``probes``
    times; it also moves an input that sits exactly at a kink to one side), plus, when
    they are narrower than float64, ``HIGH_FACTOR`` x how far each is from itself re-run
    in float64 (its actual round-off there: float32's error through a saturated tanh, or a
    LayerNorm over two features). Returns the two floors, pytrees like ``base``.

    Sound for a correct backward: ``|c - r| <= |c - c64| + |c64 - r64| + |r64 - r|``, so
    only a difference that float64 also shows, or one above the ulp-level spread of an
    ill-conditioned computation, can fail."""
    rng = np.random.default_rng(0)
    spread = [jax.tree.map(lambda a: np.zeros(np.shape(a)), b) for b in base]
    for _ in range(probes):
        moved = tuple(_jiggle(a, rng) if j else a for a, j in zip(args, jiggled))
        out = run(*moved)
        spread = [_tree_max(s, _absdiff(o, b)) for s, o, b in zip(spread, out, base)]
    floors = [jax.tree.map(lambda v: ROUNDOFF_FACTOR * v, s) for s in spread]
    if _below64(args):
        try:
            with jax.enable_x64(True):
                out64 = run(*_to64(args))
                floors = [_tree_add(f, _absdiff(b, o), HIGH_FACTOR)
                          for f, b, o in zip(floors, base, out64)]
        except Exception:  # noqa: BLE001  (a layer that cannot run in float64: no re-run)
            pass
    return floors[0], floors[1]


def _lazy(fn):
    """``fn()``, computed on the first call and kept."""
    box: list = []

    def get():
        if not box:
            box.append(fn())
        return box[0]

    return get


def _layer_pair(layer, train, p, x, key, dy):
    """``(backward's, jax.vjp's)`` flat gradients of one layer at ``(p, x, dy)``."""
    _, res = _layer_forward(layer, p, x, key, train=train)
    dp, dx = _layer_backward(layer, p, res, dy)
    rp, rx = _layer_vjp(layer, p, x, key, dy, train=train)
    return _flat(dp, dx), _flat(rp, rx)


def _layer_floor(layer, train, p, x, key, dy, got, ref):
    """The round-off floors of one layer's backward and vjp at ``(p, x, dy)``."""
    return roundoff_floor(functools.partial(_layer_pair, layer, train),
                          (p, x, key, dy), (True, True, False, True), (got, ref))


def _sum_floor(terms: Any) -> Any:
    """``(B + SUM_ULPS) eps sum_i |t_i|`` per entry, from each example's term ``t_i``
    (``[B, *leaf]`` per leaf): how far two batch sums of the same terms (the last reduction
    of every parameter gradient) may differ from round-off alone. It covers a gradient that
    is ~0 by cancellation (a mean absolute error whose signs balance), where moving the
    inputs by ulps moves nothing."""

    def one(t):
        t = np.asarray(t)
        eps = float(jnp.finfo(t.dtype).eps) if jnp.issubdtype(t.dtype, jnp.floating) else 0.0
        return (t.shape[0] + SUM_ULPS) * eps * np.sum(np.abs(t.astype(np.float64)), axis=0)

    return jax.tree.map(one, terms)


@functools.partial(jax.jit, static_argnames=("model", "loss", "train"))
def _example_terms(model, params, x, y, w, key, *, loss, train):
    """Each example's term of the loss gradient, ``[B, *leaf]`` per leaf: the gradient of
    its share of the weighted mean, with the whole batch's forward (the same masks)."""
    ctx = Context(True, key) if train else EVAL
    weights = jnp.ones(x.shape[:1], x.dtype) if w is None else w.astype(x.dtype)
    share = weights / jnp.sum(weights)  # [B]

    def one(e):
        return jax.grad(lambda p: jnp.sum(
            e * get_loss(loss).fn(model.forward(p, x, ctx)[0], y)))(params)

    return jax.vmap(one)(jnp.diag(share))


def _layer_sum_floor(layer, train, p, x, key, dy, got):
    """:func:`_sum_floor` of one layer's parameter gradients (each example's by
    ``jax.vjp`` with its own cotangent alone); 0 for ``dx``, which sums no batch."""
    rows = []
    for i in range(dy.shape[0]):
        one = jnp.zeros_like(dy).at[i].set(dy[i])
        rows.append(_flat(*_layer_vjp(layer, p, x, key, one, train=train)))
    floor = _sum_floor(jax.tree.map(lambda *r: np.stack([np.asarray(a) for a in r]), *rows))
    floor["dx"] = np.zeros(np.shape(got["dx"]))
    return floor
