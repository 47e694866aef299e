"""Checking gradients: hand-derived vs autodiff vs central finite differences.

:func:`compare_grads` compares two gradient pytrees leaf by leaf and returns a
:class:`GradReport` that prints as a table; :func:`finite_difference_grad` is the
independent witness; :func:`check_gradients` runs all three for one network and batch,
and adds a per-layer report: each layer's backward against ``jax.vjp`` of its forward, at
the inputs and with the cotangent it really sees in that network, so a wrong backward is
named by its layer (``2:Tanh dx FAIL``) and does not smear into the layers below it.
:func:`check_layer` checks one layer on its own (random input and cotangent), against
``jax.vjp`` and float64 finite differences, as CS231n's ``eval_numerical_gradient_array``.

Error measures, per leaf (``a`` checked, ``b`` reference):

* ``max_abs_err = max |a - b|``
* ``max_rel_err = max |a - b| / max(max |a|, max |b|)``, the infinity-norm relative error
  (0 when both leaves are all zero). Elementwise relative error is not used: it blows
  up on entries that are zero up to round-off.

Default tolerances on ``max_rel_err``, by the checked leaf's dtype:

* float64: ``1e-9`` manual vs autodiff (both are exact up to ~1e-15 per operation; the
  measured worst case over the test matrix is ~1e-14), ``1e-6`` against finite
  differences (step ``h = 1e-6``: truncation ``O(h^2)`` ~1e-12 plus round-off
  ``eps |L| / h`` ~1e-10, relative to gradients of order 1e-2..1).
* float32: ``1e-4``. Both paths sum ``B * H`` products in a different order; the
  round-off of such sums grows like ``sqrt(n) * 6e-8`` and about 1e-6 is seen in the
  test matrix; 1e-4 leaves room for deeper and wider nets while any real bug (a missing
  transpose, a wrong derivative) gives errors of order 1e-1 or more.
* bfloat16 / float16: ``5e-2`` (8 and 11 mantissa bits).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnmlp import _validate as checks
from fnmlp.grad import Params, loss_delta, manual_value_and_grad_kernel, mean_loss
from fnmlp.layers import EVAL, Context, Layer, Serial
from fnmlp.losses import get_loss
from fnmlp.weights import check_weights

dtype_of = checks.dtype_of

Array = jax.Array

TOLERANCES = {"float64": 1e-9, "float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}
FD_TOLERANCES = {"float64": 1e-6, "float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}


def default_tolerance(dtype: Any, finite_diff: bool = False) -> float:
    """The default ``max_rel_err`` tolerance for gradients of ``dtype``."""
    table = FD_TOLERANCES if finite_diff else TOLERANCES
    return table.get(jnp.dtype(dtype).name, 1e-4)


class LeafReport(NamedTuple):
    """One row of a gradient comparison."""

    layer: str  # "0", "1", ... for MLP params, else the pytree path
    leaf: str  # "w" or "b"
    shape: tuple
    max_abs_err: float
    max_rel_err: float
    tol: float
    passed: bool
    checked: int = -1  # entries compared (a sample when finite differences were sampled)
    total: int = -1  # entries in the leaf


class GradReport(NamedTuple):
    """A per-leaf comparison of two gradient pytrees; ``print(report)`` shows a table."""

    title: str
    rows: list[LeafReport]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def max_rel_err(self) -> float:
        return max((r.max_rel_err for r in self.rows), default=0.0)

    @property
    def max_abs_err(self) -> float:
        return max((r.max_abs_err for r in self.rows), default=0.0)

    def failing(self) -> list[LeafReport]:
        return [r for r in self.rows if not r.passed]

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "passed": self.passed,
            "max_rel_err": self.max_rel_err,
            "max_abs_err": self.max_abs_err,
            "leaves": [r._asdict() | {"shape": list(r.shape)} for r in self.rows],
        }

    def __str__(self) -> str:
        head = ("layer", "leaf", "shape", "checked", "max abs err", "max rel err", "tol",
                "result")
        body = [
            (r.layer, r.leaf, "x".join(map(str, r.shape)) or "()", f"{r.checked}/{r.total}",
             f"{r.max_abs_err:.2e}", f"{r.max_rel_err:.2e}", f"{r.tol:.0e}",
             "ok" if r.passed else ("UNCHECKED" if r.checked == 0 else "FAIL"))
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

        def fmt(row):
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths)))

        unchecked = sum(r.checked == 0 for r in self.rows)
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failing())} leaves" + (
            f", {unchecked} never checked)" if unchecked else ")")
        lines = [f"{self.title}: {verdict}", fmt(head), fmt(["-" * w for w in widths])]
        return "\n".join(lines + [fmt(row) for row in body])


def _path_names(path) -> tuple[str, str]:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    if len(keys) == 2:
        return str(keys[0]), str(keys[1])
    return "/".join(map(str, keys[:-1])) or "-", str(keys[-1]) if keys else "-"


def compare_grads(
    checked: Any,
    reference: Any,
    rtol: float | None = None,
    title: str = "gradient comparison",
    mask: Any = None,
) -> GradReport:
    """Compares two gradient pytrees leaf by leaf.

    Args:
      checked: the gradients under test (e.g. :func:`fnmlp.manual_grad`).
      reference: the witness (e.g. ``jax.grad(fnmlp.loss)``), same structure and shapes.
      rtol: tolerance on ``max_rel_err``; default by ``checked``'s dtype (module doc).
      title: the report's heading.
      mask: optional pytree of bools; only entries where it is True are compared (used
        when finite differences were taken at a sample of the coordinates). Each row
        says how many entries were compared (``checked`` of ``total``); a leaf with
        entries but none compared fails: it was never checked.

    Returns:
      A :class:`GradReport`. Mismatched structures raise ``TypeError``; mismatched
      shapes raise ``ValueError`` naming the leaf.
    """
    s1, s2 = jax.tree.structure(checked), jax.tree.structure(reference)
    if s1 != s2:
        raise TypeError(f"gradient pytrees differ in structure: {s1} vs {s2}")
    leaves_a = jax.tree_util.tree_leaves_with_path(checked)
    leaves_b = jax.tree.leaves(reference)
    masks = jax.tree.leaves(mask) if mask is not None else [None] * len(leaves_b)
    rows = []
    for (path, a), b, m in zip(leaves_a, leaves_b, masks):
        layer, leaf = _path_names(path)
        a_np = np.asarray(a, dtype=np.float64)
        b_np = np.asarray(b, dtype=np.float64)
        if a_np.shape != b_np.shape:
            raise ValueError(
                f"gradient leaf layer {layer} {leaf!r}: shapes differ, {a_np.shape} vs"
                f" {b_np.shape}"
            )
        if m is not None:
            sel = np.asarray(m, dtype=bool)
            a_np, b_np = a_np[sel], b_np[sel]
        tol = rtol if rtol is not None else default_tolerance(jnp.asarray(a).dtype)
        total = int(np.size(a))
        if a_np.size == 0:
            abs_err, rel_err = 0.0, (0.0 if total == 0 else math.nan)
        else:
            diff = np.abs(a_np - b_np)
            abs_err = float(np.max(diff))
            scale = max(float(np.max(np.abs(a_np))), float(np.max(np.abs(b_np))))
            rel_err = 0.0 if abs_err == 0 else (abs_err / scale if scale > 0 else math.inf)
        ok = bool(np.isfinite(rel_err) and rel_err <= tol)
        rows.append(LeafReport(layer, leaf, tuple(np.shape(a)), abs_err, rel_err, tol, ok,
                               int(a_np.size), total))
    return GradReport(title, rows)


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
      eps: the step ``h``; default ``1e-6`` in float64, ``1e-3`` in float32.
      max_evals: about this many coordinates are perturbed when the params have more
        (so big nets stay cheap); ``None`` means all. The sample is drawn leaf by leaf:
        each leaf gets its share of ``max_evals`` by size, but at least
        ``min(size, min_per_leaf)``, so a small leaf (a bias of 10) is never skipped.
      key: PRNG key for that sample.
      min_per_leaf: the least number of coordinates sampled in each leaf.

    Returns:
      ``(grads, mask)``: two pytrees like ``params``; ``mask`` is True where a
      coordinate was evaluated, and ``grads`` is 0 elsewhere.
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    if n == 0:  # nothing to differentiate (a model without parameters)
        return params, jax.tree.map(lambda a: np.zeros(np.shape(a), bool), params)
    if eps is None:
        eps = 1e-6 if flat.dtype == jnp.float64 else 1e-3
    if max_evals is None or n <= max_evals:
        idx = np.arange(n)
    else:
        key = jax.random.key(0) if key is None else key
        parts, start = [], 0
        for i, leaf in enumerate(jax.tree.leaves(params)):  # ravel_pytree's order
            size = int(np.size(leaf))
            quota = min(size, max(min_per_leaf, int(max_evals * size / n)))
            pick = jax.random.choice(jax.random.fold_in(key, i), size, (quota,), replace=False)
            parts.append(start + np.asarray(pick))
            start += size
        idx = np.sort(np.concatenate(parts))

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
    grads = unravel(jnp.asarray(values))
    mask_tree = jax.tree.map(lambda g: np.zeros(g.shape, bool), params)
    mask_leaves, treedef = jax.tree.flatten(mask_tree)
    out, start = [], 0
    for m in mask_leaves:  # ravel_pytree flattens leaves in tree order
        out.append(chosen[start:start + m.size].reshape(m.shape))
        start += m.size
    return grads, jax.tree.unflatten(treedef, out)


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

    def to_dict(self) -> dict:
        fd = self.manual_vs_finite_diff
        return {
            "passed": self.passed,
            "loss": self.loss,
            "max_rel_err_manual_vs_autodiff": self.manual_vs_autodiff.max_rel_err,
            "max_rel_err_vs_finite_diff": None if fd is None else max(
                fd.max_rel_err, self.autodiff_vs_finite_diff.max_rel_err),
            "failing_layers": self.failing_layers(),
            "layers": None if self.layers is None else self.layers.to_dict(),
            "manual_vs_autodiff": self.manual_vs_autodiff.to_dict(),
            "manual_vs_finite_diff": None if fd is None else fd.to_dict(),
            "autodiff_vs_finite_diff": None if fd is None
            else self.autodiff_vs_finite_diff.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        parts = [str(r) for r in self._reports()]
        parts.append(f"overall: {'PASSED' if self.passed else 'FAILED'}")
        return "\n\n".join(parts)


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
) -> GradCheckResult:
    """Checks the hand-derived gradient against ``jax.grad`` and finite differences,
    network-wide and layer by layer.

    Manual and autodiff gradients are taken in the params' dtype. The finite-difference
    witness is always taken in float64 (params and data cast up, inside a scoped
    ``jax.enable_x64``): in float32 a difference quotient has only ~3 correct digits.

    Args:
      model, params, x, y, loss: as for :func:`fnmlp.loss`.
      finite_diff: also run the finite-difference witness.
      rtol / fd_rtol: tolerances (defaults: module doc).
      fd_eps, max_evals: passed to :func:`finite_difference_grad`.
      precision: ``jax.default_matmul_precision`` for the check. ``"highest"`` by default:
        on a GPU the default float32 matmul uses TF32 (10-bit mantissa), whose rounding
        (measured ~5e-4 relative on an H200) would hide or fake a derivation error;
        ``None`` checks at whatever precision is in force.
      train, key: run the model in training mode with dropout masks from ``key``
        (default ``key(0)``); the same masks on every path.
      sample_weight, class_weight: check the weighted loss ``sum w_i loss_i / sum w_i``
        (as :func:`fnmlp.loss`); every path, finite differences included, uses the same
        weights.

    Returns:
      :class:`GradCheckResult`. ``.layers`` has one row per layer (``"index:Name"``, the
      index in the model) and leaf (``dx`` and each parameter); ``.failing_layers()``
      names the wrong ones. The network-wide reports have one row per params leaf, named
      by its pytree path (``layer`` is the index in the params list).
    """
    ctx = contextlib.nullcontext() if precision is None else jax.default_matmul_precision(
        precision)
    m = checks.check_model_loss(model, loss)
    run = Context(True, jax.random.key(0) if key is None else key) if train else Context()
    x, y = checks.check_batch(m, params, x, y, loss)
    w = check_weights(m, params, x, y, loss, sample_weight, class_weight)
    with ctx:
        return _check_gradients(m, params, x, y, loss, finite_diff, rtol, fd_rtol,
                                fd_eps, max_evals, run, w)


def _check_gradients(model, params, x, y, loss, finite_diff, rtol, fd_rtol, fd_eps,
                     max_evals, ctx, w=None) -> GradCheckResult:
    dtype = dtype_of(params)  # bfloat16 params get bfloat16's tolerance, though their
    rtol = rtol if rtol is not None else default_tolerance(dtype)  # gradients are float32
    g_auto = jax.grad(mean_loss, argnums=1)(model, params, x, y, loss, ctx, w=w)
    try:
        value, g_manual, out = manual_value_and_grad_kernel(model, params, x, y, loss, ctx,
                                                           w=w)
        m_vs_a = compare_grads(g_manual, g_auto, rtol, "manual vs autodiff")
    except (TypeError, ValueError):  # a gradient of the wrong structure or shape
        out = model.forward(params, x, ctx)[0]
        delta = loss_delta(get_loss(loss), out, y, w)
        raise ValueError("the hand-derived backward gives gradients of the wrong structure"
                         " or shape; each layer's backward:\n"
                         + str(layer_report(model, params, x, delta, ctx, rtol))) from None
    delta = loss_delta(get_loss(loss), out, y, w)  # [B, C]
    layers = layer_report(model, params, x, delta, ctx, rtol)
    fd1 = fd2 = None
    if finite_diff:
        with jax.enable_x64(True):
            p64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), params)
            x64 = jnp.asarray(np.asarray(x, np.float64))
            y64 = jnp.asarray(np.asarray(y)) if y.dtype.kind in "iu" else jnp.asarray(
                np.asarray(y, np.float64))
            w64 = None if w is None else jnp.asarray(np.asarray(w, np.float64))
            g_fd, mask = finite_difference_grad(
                lambda p: mean_loss(model, p, x64, y64, loss, ctx, w=w64), p64, fd_eps,
                max_evals)
            g_fd = jax.tree.map(np.asarray, g_fd)
        tol = fd_rtol if fd_rtol is not None else default_tolerance(dtype, finite_diff=True)
        fd1 = compare_grads(g_manual, g_fd, tol, "manual vs finite differences", mask)
        fd2 = compare_grads(g_auto, g_fd, tol, "autodiff vs finite differences", mask)
    checks.check_finite(value, "loss")
    return GradCheckResult(m_vs_a, fd1, fd2, float(value), layers)


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


def layer_report(model: Layer, params: Params, x: Array, delta: Array, ctx: Context = EVAL,
                 rtol: float | None = None) -> GradReport:
    """Each top-level layer's backward against ``jax.vjp`` of its forward, at the input
    it sees in the network and with the cotangent its own backward receives there.

    Returns a :class:`GradReport` with one row per layer and leaf: ``dx`` and each of the
    layer's parameters, the layer named ``"index:Name"``.
    """
    layers, per, serial = _children(model, params)
    inputs, residuals, ctxs, h = [], [], [], x
    for i, (layer, p) in enumerate(zip(layers, per)):
        c = serial.child_context(ctx, i) if serial is not None else ctx
        inputs.append(h)
        ctxs.append(c)
        h, r = layer.forward(p, h, c)
        residuals.append(r)
    rows, dy, raised = [], delta.astype(h.dtype), []
    for i in reversed(range(len(layers))):
        layer, p, c = layers[i], per[i], ctxs[i]
        out, vjp = jax.vjp(lambda q, z, layer=layer, c=c: layer.forward(q, z, c)[0], p,
                           inputs[i])
        dp_ref, dx_ref = vjp(dy.astype(out.dtype))  # the cotangent this backward received
        name = f"{i}:{layer.name}"
        try:
            dp, dx = layer.backward(p, residuals[i], dy)
            rep = compare_grads(_flat(dp, dx), _flat(dp_ref, dx_ref), rtol, name)
        except (TypeError, ValueError) as e:  # a gradient of the wrong structure or shape
            rows = [LeafReport(name, "(backward)", (), math.inf, math.inf, rtol or 0.0, False,
                               0, 0)] + rows
            raised.append(f"{name}: {' '.join(str(e).split())}"[:300])
            dy = dx_ref  # go on with the right cotangent: the layers below are checked too
            continue
        rows = _layer_rows(rep, name) + rows
        dy = dx
    title = "each layer's backward vs jax.vjp of its forward"
    return GradReport(title + "".join(f"\n  {r}" for r in raised), rows)


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
) -> GradCheckResult:
    """Checks one layer's hand-written backward, in float64, on its own.

    At random params (``layer.init``), a random input ``x [batch, in_features]`` and a
    random cotangent ``dy`` like the output, ``layer.backward`` must equal ``jax.vjp`` of
    ``layer.forward`` (for ``dparams`` and ``dx``) and central finite differences of
    ``sum(forward(params, x) * dy)``. ``train=True`` runs training mode (dropout masks from
    ``key``).

    Returns:
      :class:`GradCheckResult` (``loss`` is ``sum(y * dy)``); rows ``dx`` and each param.

    Raises:
      ValueError: ``layer`` is not a Layer, or ``in_features`` / ``batch`` not positive.

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
    key = jax.random.key(0) if key is None else key
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        kp, kx, kd, kc = jax.random.split(key, 4)
        ctx = Context(train, kc) if train else Context()
        _, params = layer.init(kp, in_features, jnp.float64)
        x = jax.random.normal(kx, (batch, in_features), jnp.float64)
        y, res = layer.forward(params, x, ctx)
        dy = jax.random.normal(kd, y.shape, jnp.float64)
        dp, dx = layer.backward(params, res, dy)
        _, vjp = jax.vjp(lambda q, z: layer.forward(q, z, ctx)[0], params, x)
        dp_ref, dx_ref = vjp(dy)
        name = f"{layer.name}"
        m_vs_a = compare_grads(_flat(dp, dx), _flat(dp_ref, dx_ref), rtol,
                               f"{name}: backward vs jax.vjp")
        both = {"p": params, "x": x}

        def f(t):
            return jnp.sum(layer.forward(t["p"], t["x"], ctx)[0] * dy)

        g_fd, mask = finite_difference_grad(f, both, None, max_evals)
        fd_flat, mask_flat = _flat(g_fd["p"], g_fd["x"]), _flat(mask["p"], mask["x"])
        tol = fd_rtol if fd_rtol is not None else default_tolerance(jnp.float64, True)
        fd1 = compare_grads(_flat(dp, dx), fd_flat, tol,
                            f"{name}: backward vs finite differences", mask_flat)
        fd2 = compare_grads(_flat(dp_ref, dx_ref), fd_flat, tol,
                            f"{name}: jax.vjp vs finite differences", mask_flat)
        value = float(jnp.sum(y * dy))
    named = [r._replace(rows=_layer_rows(r, name)) for r in (m_vs_a, fd1, fd2)]
    return GradCheckResult(*named, value)
