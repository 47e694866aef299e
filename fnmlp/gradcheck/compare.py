"""Comparing gradients: tolerances, the leaf-by-leaf report, and the diagnosis of a
wrong backward (transposed, sign, factor, zero, rows or columns, ...). See
:mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnmlp import _validate as checks
from fnmlp.activations import get_activation
from fnmlp.layers import Activation, Layer

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
    return (f"none of the common mistakes fits (checked: transposed, sign, constant factor,"
            f" zero, rows or columns); worst entries: {worst}")
