"""The checks themselves: :func:`check_gradients` (a model, network-wide and layer by
layer) and :func:`check_layer` (one layer on its own). See :mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import contextlib
import functools
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp.grad import Params, loss_delta, manual_value_and_grad_kernel, mean_loss
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
from fnmlp.layers import EVAL, Context, Layer, Serial
from fnmlp.layers.serial import _check_width
from fnmlp.losses import get_loss
from fnmlp.weights import check_weights

dtype_of = checks.dtype_of

Array = jax.Array

# ----------------------------------------------------------------------------- results


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (and NumPy scalar) as JSON holds it: ``inf`` and
    ``nan`` as None, NumPy scalars as Python numbers, recursively through dicts, lists
    and tuples."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class GradCheckResult(NamedTuple):
    """The three-way comparison from :func:`check_gradients` (and :func:`check_layer`),
    with the per-layer report ``layers`` (one row per layer and leaf, ``dx`` included)."""

    manual_vs_autodiff: GradReport
    manual_vs_finite_diff: GradReport | None
    autodiff_vs_finite_diff: GradReport | None
    loss: float
    layers: GradReport | None = None

    def _reports(self) -> list[GradReport]:
        return [r for r in (self.layers, self.manual_vs_autodiff, self.manual_vs_finite_diff,
                            self.autodiff_vs_finite_diff) if r is not None]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self._reports())

    def failing_layers(self) -> list[str]:
        """The layers (``"2:Tanh"``) whose own backward disagrees with ``jax.vjp`` (for
        :func:`check_layer`: the layer checked, when it fails)."""
        report = self.layers if self.layers is not None else self.manual_vs_autodiff
        rows = report.failing()
        if self.layers is None and not self.passed:  # check_layer: one layer, any report
            rows = [r for rep in self._reports() for r in rep.failing()]
        return list(dict.fromkeys(r.layer for r in rows))

    def diagnoses(self) -> list[str]:
        """``"layer leaf: diagnosis"`` for each failing leaf of the most precise report
        that fails (each layer against ``jax.vjp`` first)."""
        for rep in self._reports():
            rows = [r for r in rep.failing() if r.diagnosis]
            if rows:
                return [f"{r.layer} {r.leaf}: {r.diagnosis}" for r in rows]
        return []

    def inconclusive(self) -> list[str]:
        """``"layer leaf: why"`` for each leaf with entries the differences could not
        resolve (never counted as failures)."""
        return [f"{r.layer} {r.leaf}: {r.note}" for rep in self._reports() for r in rep.rows
                if r.inconclusive]

    def to_dict(self) -> dict:
        fd = self.manual_vs_finite_diff
        return {
            "passed": self.passed,
            "loss": self.loss,
            "max_rel_err_manual_vs_autodiff": self.manual_vs_autodiff.max_rel_err,
            "max_rel_err_vs_finite_diff": None if fd is None else max(
                fd.max_rel_err, self.autodiff_vs_finite_diff.max_rel_err),
            "failing_layers": self.failing_layers(),
            "diagnoses": self.diagnoses(),
            "inconclusive": self.inconclusive(),
            "layers": None if self.layers is None else self.layers.to_dict(),
            "manual_vs_autodiff": self.manual_vs_autodiff.to_dict(),
            "manual_vs_finite_diff": None if fd is None else fd.to_dict(),
            "autodiff_vs_finite_diff": None if fd is None
            else self.autodiff_vs_finite_diff.to_dict(),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON (RFC 8259): a non-finite number (an infinite
        relative error where the reference is 0) is written as ``null``, never as
        ``Infinity`` or ``NaN``, which ``jq`` and ``JSON.parse`` refuse."""
        return json.dumps(json_safe(self.to_dict()), indent=2, allow_nan=False)

    def __str__(self) -> str:
        parts = [str(r) for r in self._reports()]
        parts.append(f"overall: {'PASSED' if self.passed else 'FAILED'}")
        return "\n\n".join(parts)


def _merge(reports: list[GradReport], notes: list[str]) -> GradReport:
    """One report from the same comparison at several points: per leaf the worst row
    (a failure first, then the largest error), its note saying at which point."""
    first = reports[0]
    best: dict = {}
    failed: dict = {}  # leaf -> the points (0: init) where it failed
    for t, rep in enumerate(reports):
        for r in rep.rows:
            k = (r.layer, r.leaf)
            if not r.passed:
                failed.setdefault(k, []).append(t)
            old = best.get(k)
            if r.inconclusive and old is not None:
                old = old._replace(inconclusive=max(old.inconclusive, r.inconclusive))
                best[k] = old
            if old is None or (old.passed and not r.passed) or (
                    old.passed == r.passed and r.max_rel_err > old.max_rel_err):
                best[k] = r
    for k, points in failed.items():
        if points[0] > 0 and notes[points[0]]:  # passes at init: the mistake init hides
            r = best[k]
            best[k] = r._replace(note="; ".join(filter(None, [
                f"fails only {notes[points[0]]}; passes at init", r.note])))
    order = list(dict.fromkeys((r.layer, r.leaf) for rep in reports for r in rep.rows))
    return GradReport(first.title, [best[k] for k in order])


# ----------------------------------------------------------------------------- kernels


@functools.partial(jax.jit, static_argnames=("model", "loss", "train"))
def _manual(model, params, x, y, w, key, *, loss, train):
    ctx = Context(True, key) if train else EVAL
    value, grads, out = manual_value_and_grad_kernel(model, params, x, y, loss, ctx, w=w)
    return value, grads, out, loss_delta(get_loss(loss), out, y, w)  # delta: [B, C]


@functools.partial(jax.jit, static_argnames=("model", "loss", "train"))
def _autodiff(model, params, x, y, w, key, *, loss, train):
    ctx = Context(True, key) if train else EVAL
    return jax.grad(mean_loss, argnums=1)(model, params, x, y, loss, ctx, w=w)


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _layer_forward(layer, p, x, key, *, train):
    return layer.forward(p, x, Context(True, key) if train else EVAL)


@functools.partial(jax.jit, static_argnames=("layer",))
def _layer_backward(layer, p, res, dy):
    return layer.backward(p, res, dy)


def _checked_backward(layer, params, res, x, dy):
    """``layer.backward``'s ``(dparams, dx)``, or a ValueError naming the layer when it
    fails or returns gradients of the wrong shapes (a forgotten transpose, typically)."""
    name = layer.name
    hint = (f"dx must be like x {tuple(x.shape)} and each gradient like its param; a"
            " product with a forgotten transpose (dy @ w instead of dy @ w.T)?")
    try:
        dp, dx = _layer_backward(layer, params, res, dy)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}.backward failed on x {tuple(x.shape)} and dy"
                         f" {tuple(dy.shape)}: {type(e).__name__}: {str(e)[:300]}; {hint}"
                         ) from None
    wrong = [f"dx {tuple(np.shape(dx))}"] if np.shape(dx) != x.shape else []
    try:
        pairs = zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(dp),
                    strict=True)
        wrong += [f"d{jax.tree_util.keystr(path)} {tuple(np.shape(g))} for a param of"
                  f" shape {tuple(np.shape(p))}" for (path, p), g in pairs
                  if np.shape(g) not in (np.shape(p), np.shape(p)[::-1])]  # .T: diagnosed
    except ValueError:
        wrong.append(f"gradients {jax.tree.structure(dp)} for params"
                     f" {jax.tree.structure(params)}")
    if wrong:
        raise ValueError(f"{name}.backward returned gradients of the wrong shape: "
                         f"{', '.join(wrong)}; {hint}")
    return dp, dx


@functools.partial(jax.jit, static_argnames=("layer", "train"))
def _layer_vjp(layer, p, x, key, dy, *, train):
    ctx = Context(True, key) if train else EVAL
    out, vjp = jax.vjp(lambda q, z: layer.forward(q, z, ctx)[0], p, x)
    return vjp(dy.astype(out.dtype))


def _children(model: Layer, params: Params) -> tuple[list, list, Any]:
    """``(layers, per-layer params, serial or None)`` of a model's top level."""
    if isinstance(model, Serial):
        return list(model.layers), model.split_params(params), model
    return [model], [params], None


def _flat(dparams: Any, dx: Array) -> dict:
    """``{"dx": dx, "<param path>": leaf, ...}``: one layer's gradients as a flat dict."""
    out = {"dx": dx}
    for path, leaf in jax.tree_util.tree_leaves_with_path(dparams):
        out[jax.tree_util.keystr(path).strip("[]'\"").replace("']['", "/") or "p"] = leaf
    return out


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
            return {"batch": int(x.shape[0]), "dy": np.asarray(dy), "x": np.asarray(x),
                    "layer": layer}
        return {"batch": int(x.shape[0]), "layer": layer,
                "per_example": _per_example(layer, p, x, key, dy, train, name)}

    return ctx


def layer_report(model: Layer, params: Params, x: Array, delta: Array, ctx: Context = EVAL,
                 rtol: float | None = None) -> GradReport:
    """Each top-level layer's backward against ``jax.vjp`` of its forward, at the input
    it sees in the network and with the cotangent its own backward receives there.

    Returns a :class:`GradReport` with one row per layer and leaf: ``dx`` and each of the
    layer's parameters, the layer named ``"index:Name"``; a failing row carries its
    ``diagnosis``.
    """
    layers, per, serial = _children(model, params)
    inputs, residuals, ctxs, h = [], [], [], x
    for i, (layer, p) in enumerate(zip(layers, per)):
        c = serial.child_context(ctx, i) if serial is not None else ctx
        inputs.append(h)
        ctxs.append(c)
        h, r = _layer_forward(layer, p, h, c.key, train=c.train)
        residuals.append(r)
    rows, dy, raised = [], delta.astype(h.dtype), []
    for i in reversed(range(len(layers))):
        layer, p, c = layers[i], per[i], ctxs[i]
        dp_ref, dx_ref = _layer_vjp(layer, p, inputs[i], c.key, dy, train=c.train)
        name = f"{i}:{layer.name}"
        try:
            dp, dx = _layer_backward(layer, p, residuals[i], dy)
            rep = compare_grads(_flat(dp, dx), _flat(dp_ref, dx_ref), rtol, name,
                                context=_leaf_context(layer, p, inputs[i], c.key, dy,
                                                      c.train))
        except (TypeError, ValueError) as e:  # a gradient of the wrong structure or shape
            rows = [LeafReport(name, "(backward)", (), math.inf, math.inf, rtol or 0.0, False,
                               0, 0, diagnosis="wrong structure or shape")] + rows
            raised.append(f"{name}: {' '.join(str(e).split())}"[:300])
            dy = dx_ref  # go on with the right cotangent: the layers below are checked too
            continue
        rows = _layer_rows(rep, name) + rows
        dy = dx
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


def _check_gradients(model, params, x, y, loss, finite_diff, rtol, fd_rtol, fd_eps,
                     max_evals, ctx, w=None, perturbed=2) -> GradCheckResult:
    dtype = dtype_of(params)  # bfloat16 params get bfloat16's tolerance, though their
    rtol = rtol if rtol is not None else default_tolerance(dtype)  # gradients are float32
    kw = {"loss": loss, "train": ctx.train}
    try:
        g_auto = _autodiff(model, params, x, y, w, ctx.key, **kw)
        value, g_manual, out, delta = _manual(model, params, x, y, w, ctx.key, **kw)
        m_vs_a = compare_grads(g_manual, g_auto, rtol, "manual vs autodiff",
                               context=lambda leaf: {"batch": int(x.shape[0])})
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
            g2a = _autodiff(model, p2, x, y, w, ctx.key, **kw)
            g2m = _manual(model, p2, x, y, w, ctx.key, **kw)[1]
            mva_reps.append(compare_grads(g2m, g2a, rtol, "manual vs autodiff",
                                          context=lambda leaf: {"batch": int(x.shape[0])}))
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
                            noise=n1, context=lambda leaf: {"batch": int(x.shape[0])})
        fd2 = compare_grads(g_auto, g_fd, tol, "autodiff vs finite differences", mask,
                            noise=n2, context=lambda leaf: {"batch": int(x.shape[0])})
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
            reps[0].append(compare_grads(_flat(dp, dx), _flat(dp_ref, dx_ref), rtol,
                                         f"{name}: backward vs jax.vjp", context=lctx))
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
                _flat(dp, dx), fd_flat, tol, f"{name}: backward vs finite differences",
                mask_flat, noise=_with_asymmetry(_flat(dp, dx), fd_flat, nz, tol),
                context=lctx))
            reps[2].append(compare_grads(
                _flat(dp_ref, dx_ref), fd_flat, tol, f"{name}: jax.vjp vs finite differences",
                mask_flat, noise=_with_asymmetry(_flat(dp_ref, dx_ref), fd_flat, nz, tol),
                context=lctx))
            where.append("" if t == 0 else f"at params perturbed from init (point {t + 1} of"
                         f" {points}: scales not 1, biases not 0)")
            if value is None:
                value = float(jnp.sum(y * dy))
    merged = [_merge(r, where) for r in reps]
    named = [r._replace(rows=_layer_rows(r, name)) for r in merged]
    return GradCheckResult(*named, value)
