"""The checks themselves: :func:`check_gradients` (a model, network-wide and layer by
layer) and :func:`check_layer` (one layer on its own). See :mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp.grad import Params, loss_delta
from fnmlp.gradcheck.compare import (
    GradReport,
    LeafReport,
    Noise,
    _check_eps,
    _check_max_evals,
    _check_tol,
    compare_grads,
    default_tolerance,
)
from fnmlp.gradcheck.differences import (
    _DotFn,
    _LossFn,
    _normal,
    _rng,
    _with_asymmetry,
    finite_difference_estimate,
    perturb,
)
from fnmlp.gradcheck.kernels import (
    _autodiff,
    _checked_backward,
    _children,
    _flat,
    _layer_forward,
    _layer_vjp,
    _manual,
)
from fnmlp.gradcheck.result import GradCheckResult, _merge
from fnmlp.gradcheck.roundoff import (
    _example_terms,
    _layer_floor,
    _layer_sum_floor,
    _lazy,
    _sum_floor,
    _tree_add,
    roundoff_floor,
)
from fnmlp.layers import EVAL, Context, Layer, Serial
from fnmlp.layers.serial import _check_width
from fnmlp.losses import get_loss
from fnmlp.weights import check_weights

dtype_of = checks.dtype_of

Array = jax.Array

def _layer_rows(report: GradReport, name: str) -> list[LeafReport]:
    return [r._replace(layer=name) for r in report.rows]


def _per_example(layer, p, x, key, dy, train, name) -> np.ndarray | None:
    """Each example's own gradient of one parameter leaf (``[B, *shape]``), by vjp with
    the cotangent of that example alone; None for big batches."""
    b = dy.shape[0]
    if b > 64:
        return None
    out = []
    for i in range(b):
        one = jnp.zeros_like(dy).at[i].set(dy[i])
        dp, dx = _layer_vjp(layer, p, x, key, one, train=train)
        out.append(np.asarray(_flat(dp, dx)[name], np.float64))
    return np.stack(out)


def _leaf_context(layer, p, x, key, dy, train):
    """``context`` for :func:`compare_grads` of ``_flat(dp, dx)``, by leaf name."""

    def ctx(name):
        if name == "dx":
            c = Context(True, key) if train else EVAL

            def forward(z):  # the layer's forward in z's dtype (diagnose runs it in float64)
                q = jax.tree.map(lambda a: a.astype(z.dtype) if jnp.issubdtype(
                    a.dtype, jnp.floating) else a, p)
                return layer.forward(q, z, c)[0]

            return {"batch": int(x.shape[0]), "dy": np.asarray(dy), "x": np.asarray(x),
                    "layer": layer, "forward": forward}
        return {"batch": int(x.shape[0]), "layer": layer,
                "per_example": _per_example(layer, p, x, key, dy, train, name)}

    return ctx


def _largest(*trees) -> float:
    """The largest finite ``|entry|`` of the trees (0 when none)."""
    tops = [float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0)) for t in trees
            for v in (np.asarray(a).astype(np.float64) for a in jax.tree.leaves(t))]
    return max(tops, default=0.0)


@functools.partial(jax.jit, static_argnames=("model", "train"))
def _all_layers(model, params, x, delta, key, *, train):
    """Every top-level layer's ``(backward's, vjp's flat gradients, the dy its backward
    gets, its input)``, in one compiled program (one compile per model, not three per
    layer)."""
    ctx = Context(True, key) if train else EVAL
    layers, per, serial = _children(model, params)
    inputs, residuals, ctxs, h = [], [], [], x
    for i, (layer, p) in enumerate(zip(layers, per)):
        c = serial.child_context(ctx, i) if serial is not None else ctx
        inputs.append(h)
        ctxs.append(c)
        h, r = layer.forward(p, h, c)
        residuals.append(r)
    out, dy = [None] * len(layers), delta.astype(h.dtype)
    for i in reversed(range(len(layers))):
        layer, p, c = layers[i], per[i], ctxs[i]
        y, vjp = jax.vjp(lambda q, z, layer=layer, c=c: layer.forward(q, z, c)[0], p,
                         inputs[i])
        dp_ref, dx_ref = vjp(dy.astype(y.dtype))
        dp, dx = layer.backward(p, residuals[i], dy)
        out[i] = (_flat(dp, dx), _flat(dp_ref, dx_ref), dy, inputs[i])
        dy = dx
    return out


def _all_layers_checked(model, params, x, delta, ctx) -> list | None:
    """:func:`_all_layers`, or None when a backward fails or returns gradients of the wrong
    shapes (then :func:`_layer_by_layer` names the layer and says what is wrong)."""
    try:
        out = _all_layers(model, params, x, delta, ctx.key, train=ctx.train)
    except (TypeError, ValueError):
        return None
    for got, ref, _, h in out:
        if got["dx"].shape != h.shape or jax.tree.structure(got) != jax.tree.structure(ref):
            return None
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            if a.shape not in (b.shape, b.shape[::-1]):
                return None
    return out


def _layer_by_layer(layers, per, ctxs, x, delta, raised):
    """The per-layer report's gradients one layer at a time (each layer's programs its
    own), so that a backward that fails is named: ``({i: (got, ref, dy) or None}, inputs)``;
    the messages appended to ``raised``."""
    inputs, residuals, h = [], [], x
    for layer, p, c in zip(layers, per, ctxs):
        inputs.append(h)
        h, r = _layer_forward(layer, p, h, c.key, train=c.train)
        residuals.append(r)
    done, dy = {}, delta.astype(h.dtype)
    for i in reversed(range(len(layers))):
        layer, p, c = layers[i], per[i], ctxs[i]
        dp_ref, dx_ref = _layer_vjp(layer, p, inputs[i], c.key, dy, train=c.train)
        name = f"{i}:{layer.name}"
        try:
            dp, dx = _checked_backward(layer, p, residuals[i], inputs[i], dy, name)
        except ValueError as e:  # a gradient of the wrong structure or shape
            raised.append(f"{name}: {' '.join(str(e).split())}"[:400])
            done[i] = None
            dy = dx_ref  # go on with the right cotangent: the layers below are checked too
            continue
        done[i] = (_flat(dp, dx), _flat(dp_ref, dx_ref), dy)
        dy = dx
    return done, inputs


def layer_report(model: Layer, params: Params, x: Array, delta: Array, ctx: Context = EVAL,
                 rtol: float | None = None) -> GradReport:
    """Each top-level layer's backward against ``jax.vjp`` of its forward, at the input
    it sees in the network and with the cotangent its own backward receives there.

    Each layer's rows are measured against the largest entry of its own gradients and of
    the cotangent ``dy`` it receives (the floor of :func:`compare_grads`' ``scale``: a
    layer whose own gradients are ~0 where ``dy`` is not, a Selu far below 0, compares
    its round-off against ``dy``, not against itself; a layer deep in a net whose ``dy``
    has vanished is still measured against its own size, not the model's largest
    gradient), and an entry beyond the tolerance gets its round-off floor
    (:func:`roundoff_floor`).

    Returns a :class:`GradReport` with one row per layer and leaf: ``dx`` and each of the
    layer's parameters, the layer named ``"index:Name"``; a failing row carries its
    ``diagnosis``.
    """
    layers, per, serial = _children(model, params)
    ctxs = [serial.child_context(ctx, i) if serial is not None else ctx
            for i in range(len(layers))]
    raised: list[str] = []
    done = _all_layers_checked(model, params, x, delta, ctx)  # one program: the fast path
    if done is None:
        done, inputs = _layer_by_layer(layers, per, ctxs, x, delta, raised)
    else:
        inputs = [t[3] for t in done]
        done = {i: t[:3] for i, t in enumerate(done)}
    rows = []
    for i in range(len(layers)):
        layer, p, c, name = layers[i], per[i], ctxs[i], f"{i}:{layers[i].name}"
        if done[i] is None:
            rows.append(LeafReport(name, "(backward)", (), math.inf, math.inf, rtol or 0.0,
                                   False, 0, 0, diagnosis="wrong structure or shape"))
            continue
        got, ref, dy_i = done[i]
        floor = _lazy(functools.partial(_layer_floor, layer, c.train, p, inputs[i], c.key,
                                        dy_i, got, ref))
        sums = _lazy(functools.partial(_layer_sum_floor, layer, c.train, p, inputs[i],
                                       c.key, dy_i, got))
        top = _largest(got, ref, dy_i)  # this layer's own size: its gradients and its dy
        rep = compare_grads(got, ref, rtol, name, scale=top,
                            roundoff=(lambda f=floor: _tree_add(*f()), sums),
                            context=_leaf_context(layer, p, inputs[i], c.key, dy_i, c.train))
        rows += _layer_rows(rep, name)
    title = "each layer's backward vs jax.vjp of its forward"
    return GradReport(title + "".join(f"\n  {r}" for r in raised), rows)


# ----------------------------------------------------------------------------- entry points


def check_gradients(
    model: Layer,
    params: Params,
    x: Array,
    y: Array,
    loss: str = "softmax_cross_entropy",
    finite_diff: bool = True,
    rtol: float | None = None,
    fd_rtol: float | None = None,
    fd_eps: float | None = None,
    max_evals: int | None = 4096,
    precision: str | None = "highest",
    *,
    train: bool = False,
    key: Array | None = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    perturbed: int = 2,
) -> GradCheckResult:
    """Checks the hand-derived gradient against ``jax.grad`` and finite differences,
    network-wide and layer by layer, at the params given and at params perturbed from
    them.

    Manual and autodiff gradients are taken in the params' dtype. The finite-difference
    witness is always taken in float64 (params and data cast up, inside a scoped
    ``jax.enable_x64``), knows its own noise, and calls what it cannot resolve
    inconclusive (module doc).

    Args:
      model, params, x, y, loss: as for :func:`fnmlp.loss`.
      finite_diff: also run the finite-difference witness.
      rtol / fd_rtol: tolerances in (0, 1) (defaults: module doc).
      fd_eps: the difference step in (0, 1); default None chooses one per leaf from
        :data:`FD_STEPS`. max_evals: about this many coordinates get a difference (at
        least 32, or all, in every leaf); None: all.
      precision: ``jax.default_matmul_precision`` for the check. ``"highest"`` by default:
        on a GPU the default float32 matmul uses TF32 (10-bit mantissa), whose rounding
        (measured ~5e-4 relative on an H200) would hide or fake a derivation error;
        ``None`` checks at whatever precision is in force.
      train, key: run the model in training mode with dropout masks from ``key``
        (default ``key(0)``); the same masks on every path.
      sample_weight, class_weight: check the weighted loss ``sum w_i loss_i / sum w_i``
        (as :func:`fnmlp.loss`); every path, finite differences included, uses the same
        weights.
      perturbed: at how many points besides the given params each layer's backward and the
        whole manual gradient are checked against autodiff: params perturbed away from the
        given ones (:func:`perturb`; scales not 1, biases not 0), inputs with noise added,
        a random output cotangent. 0 checks at the given point only.

    Returns:
      :class:`GradCheckResult`. ``.layers`` has one row per layer (``"index:Name"``, the
      index in the model) and leaf (``dx`` and each parameter), the worst over the points;
      ``.failing_layers()`` names the wrong ones and ``.diagnoses()`` what is wrong. The
      network-wide reports have one row per params leaf, its ``layer`` named the same way
      (``"2:Dense"``: the model's layer 2, whose params are ``params[1]`` when layer 1 has
      none).

    Raises:
      ValueError: bad arguments (named), or a backward of the wrong structure (each layer's
        report in the message).
    """
    rtol, fd_rtol = _check_tol(rtol, "rtol"), _check_tol(fd_rtol, "fd_rtol")
    fd_eps, max_evals = _check_eps(fd_eps), _check_max_evals(max_evals)
    perturbed = checks.check_positive_int(perturbed, "perturbed", minimum=0)
    ctx = contextlib.nullcontext() if precision is None else jax.default_matmul_precision(
        precision)
    m = checks.check_model_loss(model, loss)
    run = Context(True, jax.random.key(0) if key is None else key) if train else Context()
    x, y = checks.check_batch(m, params, x, y, loss)
    w = check_weights(m, params, x, y, loss, sample_weight, class_weight)
    with ctx:
        return _check_gradients(m, params, x, y, loss, finite_diff, rtol, fd_rtol,
                                fd_eps, max_evals, run, w, perturbed)


def _grad_pair(model, loss, train, params, x, y, w, key):
    """``(manual, autodiff)`` gradients of the model's loss at ``params``, ``x``."""
    kw = {"loss": loss, "train": train}
    return (_manual(model, params, x, y, w, key, **kw)[1],
            _autodiff(model, params, x, y, w, key, **kw))


def _grad_floor(model, loss, ctx, params, x, y, w, g_manual, g_auto):
    """The round-off floors of the whole manual and autodiff gradients: ``(pair, sums)``,
    both lazy: :func:`roundoff_floor` and :func:`_sum_floor` of each example's term."""
    pair = _lazy(functools.partial(
        roundoff_floor, functools.partial(_grad_pair, model, loss, ctx.train),
        (params, x, y, w, ctx.key), (True, True, False, False, False), (g_manual, g_auto)))
    sums = _lazy(lambda: _sum_floor(_example_terms(model, params, x, y, w, ctx.key,
                                                   loss=loss, train=ctx.train)))
    return pair, sums


def _check_gradients(model, params, x, y, loss, finite_diff, rtol, fd_rtol, fd_eps,
                     max_evals, ctx, w=None, perturbed=2) -> GradCheckResult:
    dtype = dtype_of(params)  # bfloat16 params get bfloat16's tolerance, though their
    rtol = rtol if rtol is not None else default_tolerance(dtype)  # gradients are float32
    kw = {"loss": loss, "train": ctx.train}
    batch = {"batch": int(x.shape[0])}
    try:
        g_auto = _autodiff(model, params, x, y, w, ctx.key, **kw)
        value, g_manual, out, delta = _manual(model, params, x, y, w, ctx.key, **kw)
        floors, sums = _grad_floor(model, loss, ctx, params, x, y, w, g_manual, g_auto)
        m_vs_a = compare_grads(g_manual, g_auto, rtol, "manual vs autodiff",
                               context=lambda leaf: batch,
                               roundoff=(lambda: _tree_add(*floors()), sums))
    except (TypeError, ValueError):  # a gradient of the wrong structure or shape
        out = model.forward(params, x, ctx)[0]
        delta = loss_delta(get_loss(loss), out, y, w)
        raise ValueError("the hand-derived backward gives gradients of the wrong structure"
                         " or shape; each layer's backward:\n"
                         + str(layer_report(model, params, x, delta, ctx, rtol))) from None
    layer_reps = [layer_report(model, params, x, delta, ctx, rtol)]
    mva_reps, where = [m_vs_a], [""]
    rng = np.random.default_rng(1234)
    for k in range(perturbed):
        p2 = perturb(params, 1234 + k)
        xs = float(np.std(np.asarray(x).astype(np.float64)))
        x2 = x + 0.5 * xs * _normal(rng, x.shape, x.dtype) if k else x
        dy = _normal(rng, out.shape, out.dtype) / x.shape[0]
        layer_reps.append(layer_report(model, p2, x2, dy, ctx, rtol))
        where.append(f"at params perturbed from the given ones (point {k + 2} of"
                     f" {perturbed + 1}: scales not 1, biases not 0, a random cotangent)")
        if k == 0:
            g2m, g2a = _grad_pair(model, loss, ctx.train, p2, x, y, w, ctx.key)
            f2, s2 = _grad_floor(model, loss, ctx, p2, x, y, w, g2m, g2a)
            mva_reps.append(compare_grads(g2m, g2a, rtol, "manual vs autodiff",
                                          context=lambda leaf: batch,
                                          roundoff=(lambda f=f2: _tree_add(*f()), s2)))
    layers = _merge(layer_reps, where)
    m_vs_a = _merge(mva_reps, where[:len(mva_reps)])
    fd1 = fd2 = None
    if finite_diff:
        with jax.enable_x64(True):
            p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(
                np.asarray(a, np.float32) if a.dtype == jnp.bfloat16 else a, np.float64)),
                params)
            x64 = jnp.asarray(np.asarray(np.asarray(x, np.float32) if x.dtype == jnp.bfloat16
                                         else x, np.float64))
            y64 = jnp.asarray(np.asarray(y)) if y.dtype.kind in "iu" else jnp.asarray(
                np.asarray(y, np.float64))
            w64 = None if w is None else jnp.asarray(np.asarray(w, np.float64))
            fn = _LossFn(model, loss, ctx.train)
            g_fd, mask, noise = finite_difference_estimate(
                fn, p64, (x64, y64, w64, ctx.key), fd_eps, max_evals)
        tol = fd_rtol if fd_rtol is not None else default_tolerance(dtype, finite_diff=True)
        n1 = _with_asymmetry(g_manual, g_fd, noise, tol)
        n2 = _with_asymmetry(g_auto, g_fd, noise, tol)
        fd1 = compare_grads(g_manual, g_fd, tol, "manual vs finite differences", mask,
                            noise=n1, context=lambda leaf: batch,
                            roundoff=(lambda: floors()[0], sums))
        fd2 = compare_grads(g_auto, g_fd, tol, "autodiff vs finite differences", mask,
                            noise=n2, context=lambda leaf: batch,
                            roundoff=(lambda: floors()[1], sums))
    checks.check_finite(value, "loss")
    named = _by_layer_name(model)
    m_vs_a, fd1, fd2 = (None if r is None else r._replace(rows=[
        row._replace(layer=named.get(row.layer, row.layer)) for row in r.rows])
        for r in (m_vs_a, fd1, fd2))
    return GradCheckResult(m_vs_a, fd1, fd2, float(value), layers)


def _by_layer_name(model: Layer) -> dict[str, str]:
    """``{"1": "2:Dense", ...}``: a Serial's params-list index -> the layer's ``index:Name``
    in the model, so every table names a layer the same way ("1" would be the second layer
    with params; "2:Dense" is the model's third layer)."""
    if not isinstance(model, Serial):
        return {}
    with_params = [f"{i}:{layer.name}" for i, layer in enumerate(model.layers)
                   if layer.has_params]
    return {str(j): name for j, name in enumerate(with_params)}


def check_layer(
    layer: Layer,
    in_features: int,
    *,
    batch: int = 8,
    key: Array | None = None,
    train: bool = False,
    rtol: float | None = None,
    fd_rtol: float | None = None,
    max_evals: int | None = 4096,
    points: int = 3,
    fd_eps: float | None = None,
) -> GradCheckResult:
    """Checks one layer's hand-written backward, in float64, on its own.

    At ``points`` points -- ``layer.init``'s params, then params perturbed away from them
    (:func:`perturb`: a scale not 1, a bias not 0) -- each with its own random input
    ``x [batch, in_features]`` and cotangent ``dy`` like the output, ``layer.backward`` must
    equal ``jax.vjp`` of ``layer.forward`` (for ``dparams`` and ``dx``) and the finite
    differences of ``sum(forward(params, x) * dy)`` (noise-aware, as
    :func:`check_gradients`). ``train=True`` runs training mode (dropout masks from
    ``key``, the same at every point). Each row is the worst over the points and a failing
    one carries its ``diagnosis``.

    Returns:
      :class:`GradCheckResult` (``loss`` is ``sum(y * dy)`` at the first point); rows
      ``dx`` and each param.

    Raises:
      ValueError: ``layer`` is not a Layer, or ``in_features`` / ``batch`` / ``points``
        not positive, or a bad tolerance or step.

    Examples:
      >>> import fnmlp
      >>> from fnmlp.layers import LayerNorm
      >>> fnmlp.check_layer(LayerNorm(), 5).passed
      True
    """
    if not isinstance(layer, Layer):
        raise ValueError(f"layer must be a fnmlp Layer; got {layer!r}"[:200])
    in_features = checks.check_positive_int(in_features, "in_features")
    batch = checks.check_positive_int(batch, "batch")
    points = checks.check_positive_int(points, "points")
    rtol, fd_rtol = _check_tol(rtol, "rtol"), _check_tol(fd_rtol, "fd_rtol")
    fd_eps, max_evals = _check_eps(fd_eps), _check_max_evals(max_evals)
    key = jax.random.key(0) if key is None else key
    name = f"{layer.name}"
    reps: list[list[GradReport]] = [[], [], []]
    where, value = [], None
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        kp, kc = jax.random.split(key)
        ckey = kc if train else None
        said, params0 = layer.init(kp, in_features, jnp.float64)
        _check_width(0, layer, params0, in_features, said, jnp.float64)  # named, not JAX's
        rng = _rng(key)
        for t in range(points):
            params = params0 if t == 0 else perturb(params0, int(rng.integers(2**31)))
            x = _normal(rng, (batch, in_features), jnp.float64)
            y, res = _layer_forward(layer, params, x, ckey, train=train)
            dy = _normal(rng, y.shape, jnp.float64)
            dp, dx = _checked_backward(layer, params, res, x, dy)
            dp_ref, dx_ref = _layer_vjp(layer, params, x, ckey, dy, train=train)
            lctx = _leaf_context(layer, params, x, ckey, dy, train)
            got, ref = _flat(dp, dx), _flat(dp_ref, dx_ref)
            floor = _lazy(functools.partial(_layer_floor, layer, train, params, x, ckey, dy,
                                            got, ref))
            sums = _lazy(functools.partial(_layer_sum_floor, layer, train, params, x, ckey,
                                           dy, got))
            reps[0].append(compare_grads(got, ref, rtol, f"{name}: backward vs jax.vjp",
                                         context=lctx, roundoff=(
                                             lambda f=floor: _tree_add(*f()), sums)))
            fn = _DotFn(layer, train)
            g_fd, mask, noise = finite_difference_estimate(
                fn, {"p": params, "x": x}, (dy, ckey), fd_eps, max_evals)
            # _flat puts dx first: reorder the noise the same way
            order = lambda tree: _flat(tree["p"], tree["x"])  # noqa: E731
            why = jax.tree.leaves(order(jax.tree.unflatten(jax.tree.structure(noise.kink),
                                                           noise.why)))
            nz = Noise(order(noise.noise), order(noise.kink), why, order(noise.asym))
            fd_flat, mask_flat = order(g_fd), order(mask)
            tol = fd_rtol if fd_rtol is not None else default_tolerance(jnp.float64, True)
            reps[1].append(compare_grads(
                got, fd_flat, tol, f"{name}: backward vs finite differences", mask_flat,
                noise=_with_asymmetry(got, fd_flat, nz, tol), context=lctx,
                roundoff=(lambda f=floor: f()[0], sums)))
            reps[2].append(compare_grads(
                ref, fd_flat, tol, f"{name}: jax.vjp vs finite differences", mask_flat,
                noise=_with_asymmetry(ref, fd_flat, nz, tol), context=lctx,
                roundoff=(lambda f=floor: f()[1], sums)))
            where.append("" if t == 0 else f"at params perturbed from init (point {t + 1} of"
                         f" {points}: scales not 1, biases not 0)")
            if value is None:
                value = float(jnp.sum(y * dy))
    merged = [_merge(r, where) for r in reps]
    named = [r._replace(rows=_layer_rows(r, name)) for r in merged]
    return GradCheckResult(*named, value)
