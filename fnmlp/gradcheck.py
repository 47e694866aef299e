"""Checking gradients: hand-derived vs autodiff vs finite differences, with a verdict you can
trust and the kind of mistake named.

Shapes: ``B`` batch, ``D_in`` / ``D_out`` a layer's input / output width.

* :func:`check_layer` checks one layer's backward on its own; :func:`check_gradients` checks
  a whole model and each of its layers at the inputs and cotangents they really see there
  (:func:`layer_report`), so a wrong backward is named by its layer (``3:Tanh dx``) and
  does not smear into the layers below it.
* Both check at more than one point: at the params given (or ``init``'s), and at params
  *perturbed* away from them (a LayerNorm scale not 1, biases not 0), with fresh random
  inputs and cotangents, so a backward that forgets ``* scale`` is caught even though the
  scale starts at ones. Dropout runs in training mode with a fixed mask when asked.
* Against ``jax.vjp`` (exact up to round-off) the comparison is a plain tolerance. Against
  finite differences it knows its own noise (:func:`finite_difference_estimate`): each
  sampled coordinate is differenced at two steps ``h`` and ``h/2`` (a Richardson estimate,
  error ``O(h^4)``), the error is estimated as ``|d_h - d_{h/2}| + 8 eps |L| / (h/2)``
  (truncation plus round-off), the step is chosen per leaf from ``1e-6, 1e-4, 1e-3`` by the
  smallest median error, and an entry the differences cannot resolve is *inconclusive*,
  never *failed*. A difference that straddles a kink (a ReLU-family input or an ``mae``
  residual that changes sign within the step) is found by running the forward at each
  perturbed point, and reported as a kink with the layer, example and unit.
* A failing leaf gets a ``diagnosis`` (:func:`diagnose`): transposed, sign flipped, off by a
  constant factor (naming the batch size ``B`` or ``1/B``), zero, wrong only in some rows or
  columns, a bias not summed over the batch (equal to one example's gradient), the
  incoming ``dy`` passed through unchanged, each column off by its own factor, or a
  built-in activation's derivative taken at its output; where none fits it says so and
  shows the worst entries side by side.

Error measures, per leaf (``a`` checked, ``b`` reference, over the entries compared):
``max_abs_err = max |a - b|`` and ``max_rel_err = max |a - b| / S`` with
``S = max(max |a|, max |b|, sqrt(tol) * G)``, ``G`` the largest gradient entry of the whole
comparison: the infinity-norm relative error, with a floor so that a leaf whose true
gradient is 0 compares its round-off against the model's gradients, not against itself.

Default tolerances on ``max_rel_err``, by the checked leaf's dtype:

* float64: ``1e-9`` manual vs autodiff (both exact up to ~1e-15 per operation); ``1e-6``
  against finite differences, *plus* each entry's estimated difference noise (times 3).
* float32: ``1e-4``: both paths sum ``B * H`` products in different orders (round-off
  ``~ sqrt(n) 6e-8``); against the float64 differences the float32 gradient's own
  round-off is the error, and 1e-4 of the leaf's largest entry covers it at every depth
  tried (the false-alarm count in ``tests/test_gradcheck.py``), while a real bug (a
  transpose, a wrong derivative) errs by 1e-1 or more.
* bfloat16 / float16: ``5e-2`` (8 and 11 mantissa bits).

Examples:
  A student's Tanh whose backward has lost a minus sign: the check names the mistake;
  the fixed one passes.

  >>> from dataclasses import dataclass
  >>> import jax.numpy as jnp
  >>> import fnmlp
  >>> from fnmlp.layers import Layer
  >>> @dataclass(frozen=True)
  ... class MyTanh(Layer):
  ...     def init(self, key, d, dtype=jnp.float32):
  ...         return d, ()
  ...     def forward(self, params, x, ctx=None):
  ...         return jnp.tanh(x), x                      # residual: the input
  ...     def backward(self, params, x, dy):
  ...         return (), dy * (jnp.tanh(x) ** 2 - 1)     # d tanh/dx = 1 - tanh^2 ... sign?
  >>> result = fnmlp.check_layer(MyTanh(), 4)
  >>> result.passed, result.failing_layers()
  (False, ['MyTanh'])
  >>> print(result.diagnoses()[0])
  MyTanh dx: sign flipped: got = -1 x the reference (a minus sign lost or added)
  >>> @dataclass(frozen=True)
  ... class FixedTanh(MyTanh):
  ...     def backward(self, params, x, dy):
  ...         return (), dy * (1 - jnp.tanh(x) ** 2)
  >>> fnmlp.check_layer(FixedTanh(), 4).passed
  True
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fnmlp import _validate as checks
from fnmlp.activations import get_activation
from fnmlp.grad import Params, loss_delta, manual_value_and_grad_kernel, mean_loss, reduce_mean
from fnmlp.layers import EVAL, Activation, Context, Layer, Serial
from fnmlp.losses import get_loss
from fnmlp.weights import check_weights

dtype_of = checks.dtype_of

Array = jax.Array

TOLERANCES = {"float64": 1e-9, "float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}
FD_TOLERANCES = {"float64": 1e-6, "float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}

FD_STEPS = (1e-6, 1e-4, 1e-3)  # the per-leaf step ladder (float64 differences)
ROUND_ULPS = 8.0  # round-off of one loss evaluation, in ulps of its magnitude
NOISE_FACTOR = 3.0  # an entry fails only beyond tol * S + NOISE_FACTOR * its noise
RESOLVE = 0.1  # noise above this fraction of the leaf's scale cannot vouch for an entry
FIT = 1e-3  # a diagnosis fits when ||got - candidate|| <= FIT * ||candidate||
KINKY = ("relu", "leaky_relu", "selu")  # activations with a kink (at 0)
LOSS_KINKS = ("mae",)  # losses with a kink at out == target


def default_tolerance(dtype: Any, finite_diff: bool = False) -> float:
    """The default ``max_rel_err`` tolerance for gradients of ``dtype``."""
    table = FD_TOLERANCES if finite_diff else TOLERANCES
    return table.get(jnp.dtype(dtype).name, 1e-4)


def _check_tol(value: Any, name: str) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or not 0 < float(value) < 1:
        raise ValueError(f"{name} must be a number in (0, 1) (a relative tolerance) or None"
                         f" for the default; got {value!r}"[:200])
    return float(value)


def _check_eps(value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or not 0 < float(value) < 1:
        raise ValueError("fd_eps (the finite-difference step) must be a number in (0, 1),"
                         f" e.g. 1e-6, or None to choose one per leaf; got {value!r}"[:200])
    return float(value)


def _check_max_evals(value: Any) -> int | None:
    return None if value is None else checks.check_positive_int(value, "max_evals")


# ----------------------------------------------------------------------------- reports


class LeafReport(NamedTuple):
    """One row of a gradient comparison."""

    layer: str  # "0", "1", ... for MLP params (the pytree path), "2:Dense" per layer
    leaf: str  # "w", "b", "dx", ...
    shape: tuple
    max_abs_err: float  # over the entries compared and resolved
    max_rel_err: float
    tol: float
    passed: bool
    checked: int = -1  # entries compared (a sample when finite differences were sampled)
    total: int = -1  # entries in the leaf
    inconclusive: int = 0  # entries the finite differences could not resolve (never failed)
    kinks: int = 0  # of which: the difference straddles a kink
    diagnosis: str = ""  # for a failing leaf: which common mistake fits (diagnose)
    note: str = ""  # why entries are inconclusive; where (which point) it fails

    @property
    def status(self) -> str:
        if not self.passed:
            return "UNCHECKED" if self.checked == 0 else "FAIL"
        return "inconclusive" if self.checked > 0 and self.inconclusive == self.checked \
            else "ok"


class GradReport(NamedTuple):
    """A per-leaf comparison of two gradient pytrees; ``print(report)`` shows a table,
    then the diagnosis of each failing leaf and why entries were inconclusive."""

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

    @property
    def inconclusive(self) -> int:
        return sum(r.inconclusive for r in self.rows)

    def failing(self) -> list[LeafReport]:
        return [r for r in self.rows if not r.passed]

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "passed": self.passed,
            "max_rel_err": self.max_rel_err,
            "max_abs_err": self.max_abs_err,
            "inconclusive": self.inconclusive,
            "leaves": [r._asdict() | {"shape": list(r.shape), "status": r.status}
                       for r in self.rows],
        }

    def __str__(self) -> str:
        head = ("layer", "leaf", "shape", "checked", "max abs err", "max rel err", "tol",
                "result")
        body = []
        for r in self.rows:
            status = r.status
            if r.passed and 0 < r.inconclusive < r.checked:
                status = f"ok ({r.inconclusive} inconclusive)"
            body.append((r.layer, r.leaf, "x".join(map(str, r.shape)) or "()",
                         f"{r.checked}/{r.total}", f"{r.max_abs_err:.2e}",
                         f"{r.max_rel_err:.2e}", f"{r.tol:.0e}", status))
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

        def fmt(row):
            return "  ".join(c.ljust(w) if i < 3 or i == 7 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        unchecked = sum(r.checked == 0 for r in self.rows)
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failing())} leaves" + (
            f", {unchecked} never checked)" if unchecked else ")")
        if self.inconclusive:
            verdict += f" ({self.inconclusive} entries inconclusive)"
        lines = [f"{self.title}: {verdict}", fmt(head), fmt(["-" * w for w in widths])]
        lines += [fmt(row) for row in body]
        for r in self.rows:
            if r.diagnosis:
                lines.append(f"  {r.layer} {r.leaf}: {r.diagnosis}")
            if r.note:
                lines.append(f"  {r.layer} {r.leaf}: {r.note}")
        return "\n".join(lines)


def _path_names(path) -> tuple[str, str]:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    if len(keys) == 2:
        return str(keys[0]), str(keys[1])
    return "/".join(map(str, keys[:-1])) or "-", str(keys[-1]) if keys else "-"


class Noise(NamedTuple):
    """What finite differences know about their own error, one pytree like the params
    each (see :func:`finite_difference_estimate`)."""

    noise: Any  # the estimated absolute error of each difference (0 where not taken)
    kink: Any  # bool: the difference straddles a kink (or its one-sided slopes disagree)
    why: Any  # per leaf (in tree order): a string, where the kinks are ("" for none)
    asym: Any = None  # bool: one-sided slopes that disagree and do not shrink with the step


def compare_grads(
    checked: Any,
    reference: Any,
    rtol: float | None = None,
    title: str = "gradient comparison",
    mask: Any = None,
    *,
    noise: Noise | None = None,
    context: Callable[[int], dict] | None = None,
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
      noise: the reference's own error (finite differences): an entry fails only where
        ``|a - b| > rtol * S + 3 * noise``; one whose noise is too large to decide, or
        whose difference straddles a kink, is counted ``inconclusive``, never failed.
      context: ``leaf name -> dict`` of what :func:`diagnose` may use for that leaf
        (``batch``, ``dy``, ``x``, ``layer``, ``per_example``), asked only when it fails.

    Returns:
      A :class:`GradReport`. Mismatched structures raise ``TypeError``; mismatched
      shapes raise ``ValueError`` naming the leaf.
    """
    s1, s2 = jax.tree.structure(checked), jax.tree.structure(reference)
    if s1 != s2:
        raise TypeError(f"gradient pytrees differ in structure: {s1} vs {s2}")
    leaves_a = jax.tree_util.tree_leaves_with_path(checked)
    leaves_b = jax.tree.leaves(reference)
    n = len(leaves_b)
    masks = jax.tree.leaves(mask) if mask is not None else [None] * n
    if noise is not None:
        noises, kinks, whys = (jax.tree.leaves(noise.noise), jax.tree.leaves(noise.kink),
                               noise.why)
    arrays = []
    for (path, a), b, m in zip(leaves_a, leaves_b, masks):
        layer, leaf = _path_names(path)
        a_np = np.asarray(a).astype(np.float64)
        b_np = np.asarray(b, dtype=np.float64)
        if a_np.shape != b_np.shape:
            raise ValueError(f"gradient leaf layer {layer} {leaf!r}: shapes differ,"
                             f" {a_np.shape} vs {b_np.shape}")
        sel = np.ones(a_np.shape, bool) if m is None else np.asarray(m, dtype=bool)
        arrays.append((layer, leaf, a, a_np, b_np, sel))
    tops = [max(float(np.max(np.abs(x[3][x[5]]), initial=0.0)),
                float(np.max(np.abs(x[4][x[5]]), initial=0.0))) for x in arrays]
    top = max([t for t in tops if math.isfinite(t)], default=0.0)
    rows = []
    for j, (layer, leaf, a, a_np, b_np, sel) in enumerate(arrays):
        tol = rtol if rtol is not None else default_tolerance(np.asarray(a).dtype)
        total = int(np.size(a_np))
        ga, gb = a_np[sel], b_np[sel]
        checked_n = int(ga.size)
        scale = max(tops[j], math.sqrt(tol) * top)
        err = np.abs(ga - gb)
        bad = ~np.isfinite(ga) | ~np.isfinite(gb)
        err = np.where(bad, np.inf, err)
        inconcl = np.zeros(ga.shape, bool)
        kink = np.zeros(ga.shape, bool)
        note = ""
        if noise is not None:
            e = NOISE_FACTOR * np.asarray(noises[j], np.float64)[sel]
            kink = np.asarray(kinks[j], bool)[sel]
            ok = (err <= tol * scale) | ((err <= tol * scale + e) & (e <= RESOLVE * scale))
            within = err <= tol * scale + e
            inconcl = kink | (~ok & within)
            failed = ~ok & ~inconcl
            if inconcl.any():
                n_k, n_n = int(kink.sum()), int((inconcl & ~kink).sum())
                parts = []
                if n_n:
                    worst = float(np.max(e[inconcl & ~kink]))
                    parts.append(f"{n_n} entries inconclusive: the differences' noise (up to"
                                 f" {worst:.1e}) is above {RESOLVE:g} of the leaf's largest"
                                 f" gradient ({scale:.1e}); they agree within it")
                if n_k:
                    where = whys[j] if whys is not None else ""
                    parts.append(f"{n_k} entries straddle a kink (inconclusive, not failed)"
                                 + (f": {where}" if where else ""))
                note = "; ".join(parts)
        else:
            failed = ~(err <= tol * scale)
        resolved = ~inconcl
        if checked_n == 0:
            abs_err, rel_err = 0.0, (0.0 if total == 0 else math.nan)
        elif not resolved.any():
            abs_err = rel_err = 0.0
        else:
            abs_err = float(np.max(err[resolved]))
            rel_err = 0.0 if abs_err == 0 else (abs_err / scale if scale > 0 else math.inf)
        passed = bool((checked_n > 0 or total == 0) and not failed.any())
        diagnosis = ""
        if not passed and checked_n > 0:
            ctx = context(leaf) if context is not None else {}
            if sel.all():
                diagnosis = diagnose(a_np, b_np, leaf=leaf, **ctx)
            else:  # a sample of the entries: only the shapes that need no matrix
                diagnosis = diagnose(ga, gb, leaf=leaf, batch=ctx.get("batch"))
        rows.append(LeafReport(layer, leaf, tuple(np.shape(a_np)), abs_err, rel_err, tol,
                               passed, checked_n, total, int(inconcl.sum()), int(kink.sum()),
                               diagnosis, note))
    return GradReport(title, rows)


# ----------------------------------------------------------------------------- diagnosis


def _norm(a) -> float:
    return float(np.sqrt(np.sum(np.square(a))))


def _fits(got, cand) -> bool:
    n = _norm(cand)
    return n > 0 and got.shape == cand.shape and _norm(got - cand) <= FIT * n


def _factor_text(c: float, batch: int | None) -> str:
    if batch and batch > 1 and abs(c - batch) <= 1e-6 * batch:
        return (f"off by a constant factor {c:.6g} = the batch size B = {batch} (a division"
                " by B missing: the mean loss's 1/B)")
    if batch and batch > 1 and abs(c * batch - 1) <= 1e-6:
        return (f"off by a constant factor {c:.6g} = 1/B, B = {batch} the batch size (a mean"
                " over the batch where the sum is wanted, or 1/B applied twice)")
    return f"off by a constant factor {c:.6g}: got = {c:.6g} x the reference"


def _indices(mask) -> str:
    idx = [int(i) for i in np.flatnonzero(mask)]
    return ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")


def _concentrated(d, r, axis: int) -> np.ndarray | None:
    """The rows (axis 0) or columns (axis 1) that carry the residual ``d``, when the rest
    fits; None when the error is spread over all of them."""
    other = 1 - axis
    energy = np.sum(d * d, axis=other)
    total = float(np.sum(energy))
    if total == 0:
        return None
    bad = energy > (FIT ** 2) * max(float(np.max(energy)), 0.0)
    scale = float(np.sum(r * r))
    # the rest must fit: the residual outside the bad lines is small
    rest = total - float(np.sum(energy[bad]))
    if rest > (FIT ** 2) * scale or bad.all():
        return None
    return bad


def diagnose(got: Any, ref: Any, *, leaf: str = "", batch: int | None = None,
             dy: Any = None, x: Any = None, layer: Layer | None = None,
             per_example: Any = None) -> str:
    """Which common shape of a wrong backward fits ``got`` against the reference ``ref``.

    Tried in order: non-finite entries; zero; sign flipped; a constant factor (the batch
    size ``B`` or ``1/B`` named); transposed (and reshaped); ``dy`` passed through
    (``dx = dy``) or ``dy`` missing; a built-in activation's derivative taken at its output;
    a parameter gradient equal to one example's alone (not summed over the batch); wrong
    only in some rows or columns (named); each column off by its own factor. Otherwise it
    says that none fits and shows the worst entries side by side.

    Args:
      got, ref: arrays of one shape (``ref`` the right gradient).
      leaf: the leaf's name (``"dx"``, ``"w"``, ``"b"``...), for the wording.
      batch: the batch size ``B``.
      dy, x: the cotangent the layer's backward received ``[B, D_out]`` and its input
        ``[B, D_in]``.
      layer: the layer checked (for the activation test).
      per_example: ``[B, *ref.shape]``, each example's own parameter gradient.

    Returns:
      One line; ``""`` when got equals ref.
    """
    g = np.asarray(got, np.float64)
    r = np.asarray(ref, np.float64)
    if not np.all(np.isfinite(g)):
        bad = ~np.isfinite(g)
        return (f"not finite: {int(bad.sum())} of {g.size} entries are NaN or inf (first at"
                f" {np.unravel_index(int(np.argmax(bad)), g.shape)})")
    ng, nr = _norm(g), _norm(r)
    if nr == 0:
        return "" if ng == 0 else (f"the reference is zero here but got is not (largest"
                                   f" |got| = {float(np.max(np.abs(g))):.3g})")
    close = _norm(g - r) / nr
    if close == 0:
        return ""
    if close <= FIT:
        return (f"close: got matches the reference to {close:.1e} (relative, in norm), above"
                " the tolerance: round-off, or a small term missing")
    if ng <= 1e-6 * nr:
        return ("zero: got is (nearly) all zeros where the reference is not (a gradient never"
                " computed, or a mask that keeps nothing)")
    if _fits(g, -r):
        return "sign flipped: got = -1 x the reference (a minus sign lost or added)"
    c = float(np.sum(g * r) / np.sum(r * r))
    if abs(c - 1) > FIT and _fits(g, c * r):
        return _factor_text(c, batch)
    if r.ndim == 2:
        if r.shape[0] == r.shape[1] and r.shape[0] > 1 and _fits(g, r.T):
            return ("transposed: got = reference.T (the product's operands in the wrong"
                    " order, e.g. dy.T @ x for x.T @ dy)")
        if r.shape[0] != r.shape[1] and _fits(g, r.T.reshape(r.shape)):
            return ("transposed and reshaped: got = reference.T.reshape(reference.shape)"
                    " (e.g. (dy.T @ x).reshape(w.shape) for x.T @ dy)")
    if dy is not None:
        d = np.asarray(dy, np.float64)
        if d.shape == g.shape and _fits(g, d):
            return ("got equals the incoming dy: the layer's own factor is missing"
                    " (dx = dy, as if the layer were the identity)")
        if (isinstance(layer, Activation) and x is not None and d.shape == g.shape):
            act = get_activation(layer.fn)
            xi = jnp.asarray(np.asarray(x, np.float64))
            with jax.enable_x64(True):
                at_out = np.asarray(d * np.asarray(act.deriv(act.fn(xi)), np.float64))
                no_dy = np.asarray(act.deriv(xi), np.float64)
            if _fits(g, at_out):
                return (f"the {layer.fn} derivative is taken at the output: got = dy *"
                        f" f'(y) with y = f(x); the backward needs f'(x), at the input that"
                        " forward keeps")
            if _fits(g, no_dy):
                return "dy is not multiplied in: got = f'(x) alone (dx = dy * f'(x))"
    if per_example is not None:
        pe = np.asarray(per_example, np.float64)
        for i in range(pe.shape[0]):
            if _fits(g, pe[i]):
                return (f"not summed over the batch: got equals example {i}'s gradient"
                        f" alone (sum over all B = {pe.shape[0]} examples, e.g."
                        " jnp.sum(dy, axis=0))")
    d = g - r
    names = (("examples", "features") if leaf == "dx" else ("input rows", "columns (units)"))
    if r.ndim == 1:
        bad = _concentrated(d[:, None], r[:, None], 0)
        if bad is not None:
            return f"wrong only in entries {_indices(bad)} (of {r.size}); the others are right"
    if r.ndim == 2:
        for axis in (0, 1):
            bad = _concentrated(d, r, axis)
            if bad is not None:
                return (f"wrong only in {names[axis]} {_indices(bad)} (of {r.shape[axis]});"
                        " the rest is right")
        rr = np.sum(r * r, axis=0)
        cj = np.where(rr > 0, np.sum(g * r, axis=0) / np.where(rr > 0, rr, 1), 1.0)
        if np.ptp(cj) > FIT * max(1.0, float(np.max(np.abs(cj)))) and _fits(g, r * cj):
            shown = ", ".join(f"{v:.3g}" for v in cj[:6]) + (", ..." if cj.size > 6 else "")
            return (f"each column j off by its own factor c_j (c = [{shown}]): a per-feature"
                    " factor (a scale parameter?) missing or extra")
    flat = np.argsort(-np.abs(d).ravel())[:3]
    worst = "; ".join(
        f"{tuple(int(i) for i in np.unravel_index(k, r.shape))}: got {g.ravel()[k]:.4g},"
        f" want {r.ravel()[k]:.4g}" for k in flat)
    return (f"no common mistake fits (not transposed, sign, constant factor, zero, rows or"
            f" columns); worst entries: {worst}")


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
    ``|d_h - d_{h/2}| + ROUND_ULPS eps |f| / (h/2)``. Each leaf takes the step with the
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
    a1, a2 = asym_h[pick, chosen], asym_h2[pick, chosen]
    rnd_c = rnd[0, chosen]
    # one-sided slopes that disagree and do not shrink with the step: an unlisted kink
    asym = (np.abs(a2) >= 0.5 * np.abs(a1)) & (np.abs(a2) > 100 * rnd_c) & ~kink
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
        scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(b), initial=0)))
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


# ----------------------------------------------------------------------------- results


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
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        parts = [str(r) for r in self._reports()]
        parts.append(f"overall: {'PASSED' if self.passed else 'FAILED'}")
        return "\n\n".join(parts)


def _merge(reports: list[GradReport], notes: list[str]) -> GradReport:
    """One report from the same comparison at several points: per leaf the worst row
    (a failure first, then the largest error), its note saying at which point."""
    first = reports[0]
    best: dict = {}
    for rep, where in zip(reports, notes):
        for r in rep.rows:
            k = (r.layer, r.leaf)
            old = best.get(k)
            if r.inconclusive and old is not None:
                old = old._replace(inconclusive=max(old.inconclusive, r.inconclusive))
                best[k] = old
            if old is None or (old.passed and not r.passed) or (
                    old.passed == r.passed and r.max_rel_err > old.max_rel_err):
                if not r.passed and where:
                    r = r._replace(note="; ".join(filter(None, [f"fails {where}", r.note])))
                best[k] = r
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
      network-wide reports have one row per params leaf, named by its pytree path
      (``layer`` is the index in the params list).

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
    return GradCheckResult(m_vs_a, fd1, fd2, float(value), layers)


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
        _, params0 = layer.init(kp, in_features, jnp.float64)
        rng = _rng(key)
        for t in range(points):
            params = params0 if t == 0 else perturb(params0, int(rng.integers(2**31)))
            x = _normal(rng, (batch, in_features), jnp.float64)
            y, res = _layer_forward(layer, params, x, ckey, train=train)
            dy = _normal(rng, y.shape, jnp.float64)
            dp, dx = _layer_backward(layer, params, res, dy)
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
