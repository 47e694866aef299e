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
ROUNDOFF_ULPS = 4.0  # the round-off probe moves every input by up to this many ulps
ROUNDOFF_FACTOR = 4.0  # an entry is beyond round-off past this many probe spreads
HIGH_FACTOR = 2.0  # ... plus this many times its distance to a float64 re-run (below float64)
SUM_ULPS = 16  # a batch sum of B terms t_i errs by up to (B + SUM_ULPS) eps sum |t_i|, each side
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
        n = len(self.failing())
        verdict = "PASSED" if self.passed else f"FAILED ({n} {'leaf' if n == 1 else 'leaves'}" + (
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
    context: Callable[[str], dict] | None = None,
    scale: float | None = None,
    roundoff: Callable[[], Any] | tuple[Callable[[], Any], ...] | None = None,
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
        (``batch``, ``dy``, ``x``, ``layer``, ``forward``, ``per_example``), asked only
        when it fails.
      scale: the largest gradient entry ``G`` of the whole comparison when it spans more
        than these two pytrees (:func:`layer_report`: every layer's gradients); default:
        the largest entry here.
      roundoff: ``() -> pytree like checked``: each entry's round-off floor, how far apart
        the two may be from round-off alone (:func:`fnmlp.gradcheck.check.roundoff_floor`),
        asked only when some entry is beyond the tolerance; or a tuple of them, each added
        only while entries are beyond the floors so far (the costlier last). An entry within
        ``rtol * S + floor`` (plus the noise) is not failed: ok where that floor is below
        ``RESOLVE`` of ``S``, else inconclusive: round-off, not a mistake, decides there.

    Returns:
      A :class:`GradReport`. Mismatched structures raise ``TypeError``; mismatched
      shapes raise ``ValueError`` naming the leaf, except a 2-D leaf whose shape is the
      reference's reversed: a failing row, diagnosed (transposed).
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
        if a_np.shape != b_np.shape and not (a_np.ndim == 2 and a_np.shape == b_np.shape[::-1]):
            raise ValueError(f"gradient leaf of layer {layer} {leaf!r}: shapes differ, got"
                             f" {a_np.shape} where the reference has {b_np.shape}")
        sel = np.ones(b_np.shape, bool) if m is None else np.asarray(m, dtype=bool)
        arrays.append((layer, leaf, a, a_np, b_np, sel))
    tops = [max(float(np.max(np.abs(x[3]), initial=0.0)) if x[3].shape != x[4].shape else
                float(np.max(np.abs(x[3][x[5]]), initial=0.0)),
                float(np.max(np.abs(x[4][x[5]]), initial=0.0))) for x in arrays]
    top = max([t for t in tops if math.isfinite(t)] + [scale or 0.0], default=0.0)
    tiers = () if roundoff is None else tuple(roundoff) if isinstance(
        roundoff, (tuple, list)) else (roundoff,)
    floors: dict = {}

    def floor_of(t: int, j: int) -> np.ndarray:
        if t not in floors:
            floors[t] = [np.asarray(f, np.float64) for f in jax.tree.leaves(tiers[t]())]
        return floors[t][j]

    rows = []
    for j, (layer, leaf, a, a_np, b_np, sel) in enumerate(arrays):
        tol = rtol if rtol is not None else default_tolerance(np.asarray(a).dtype)
        total = int(np.size(b_np))
        if a_np.shape != b_np.shape:  # a 2-D gradient of the reversed shape
            ctx = context(leaf) if context is not None else {}
            rows.append(LeafReport(layer, leaf, tuple(b_np.shape), math.inf, math.inf, tol,
                                   False, int(sel.sum()), total,
                                   diagnosis=_reversed_shape(a_np, b_np, ctx.get("batch"))))
            continue
        ga, gb = a_np[sel], b_np[sel]
        checked_n = int(ga.size)
        lscale = max(tops[j], math.sqrt(tol) * top)
        err = np.abs(ga - gb)
        bad = ~np.isfinite(ga) | ~np.isfinite(gb)
        err = np.where(bad, np.inf, err)
        base = tol * lscale
        e_fd = np.zeros(ga.shape)
        kink = np.zeros(ga.shape, bool)
        if noise is not None:
            e_fd = NOISE_FACTOR * np.asarray(noises[j], np.float64)[sel]
            kink = np.asarray(kinks[j], bool)[sel]
        e_ro = np.zeros(ga.shape)
        for t in range(len(tiers)):
            if not np.any((err > base + e_fd + e_ro) & ~kink & ~bad):
                break
            e_ro = e_ro + np.nan_to_num(floor_of(t, j)[sel], nan=0.0, posinf=0.0)
        e = e_fd + e_ro
        ok = (err <= base) | ((err <= base + e) & (e <= RESOLVE * lscale))
        within = err <= base + e
        inconcl = kink | (~ok & within)
        failed = ~ok & ~inconcl
        note = _note(inconcl, kink, ok & (err > base + e_fd) & ~kink, e_fd, e_ro, lscale,
                     whys[j] if noise is not None and whys is not None else "")
        resolved = ~inconcl
        if checked_n == 0:
            abs_err, rel_err = 0.0, (0.0 if total == 0 else math.nan)
        elif not resolved.any():
            abs_err = rel_err = 0.0
        else:
            abs_err = float(np.max(err[resolved]))
            rel_err = 0.0 if abs_err == 0 else (abs_err / lscale if lscale > 0 else math.inf)
        passed = bool((checked_n > 0 or total == 0) and not failed.any())
        diagnosis = ""
        if not passed and checked_n > 0:
            ctx = context(leaf) if context is not None else {}
            # entries within their floors (noise, round-off, a kink) count as agreeing: the
            # diagnosis describes the disagreements that failed, not the round-off
            covered = ~failed & (err > base)
            seen = np.where(covered, gb, ga)
            if sel.all():
                diagnosis = diagnose(seen.reshape(a_np.shape), b_np, leaf=leaf, **ctx)
            else:  # a sample of the entries: only the shapes that need no matrix
                diagnosis = diagnose(seen, gb, leaf=leaf, batch=ctx.get("batch"))
        rows.append(LeafReport(layer, leaf, tuple(np.shape(a_np)), abs_err, rel_err, tol,
                               passed, checked_n, total, int(inconcl.sum()), int(kink.sum()),
                               diagnosis, note))
    return GradReport(title, rows)


def _note(inconcl, kink, by_floor, e_fd, e_ro, scale, where) -> str:
    """Why entries are inconclusive (the differences' noise, round-off, a kink), and how
    many agree only within their round-off floor."""
    parts = []
    rest = inconcl & ~kink
    by_ro = rest & (e_ro >= e_fd)
    if (rest & ~by_ro).any():
        worst = float(np.max(e_fd[rest & ~by_ro]))
        parts.append(f"{int((rest & ~by_ro).sum())} entries inconclusive: the differences'"
                     f" noise (up to {worst:.1e}) is above {RESOLVE:g} of the leaf's largest"
                     f" gradient ({scale:.1e}); they agree within it")
    if by_ro.any():
        worst = float(np.max(e_ro[by_ro]))
        parts.append(f"{int(by_ro.sum())} entries inconclusive: round-off decides, not a"
                     f" mistake (their round-off, up to {worst:.1e}, is above {RESOLVE:g} of"
                     f" the leaf's largest gradient {scale:.1e}: an ill-conditioned"
                     " computation, or an input exactly at a kink); they agree within it")
    if kink.any():
        parts.append(f"{int(kink.sum())} entries straddle a kink (inconclusive, not failed)"
                     + (f": {where}" if where else ""))
    if by_floor.any() and e_ro[by_floor].max() > 0:
        parts.append(f"{int(by_floor.sum())} entries agree only within their estimated"
                     f" round-off (up to {float(np.max(e_ro[by_floor])):.1e}), not within"
                     " the tolerance alone")
    return "; ".join(parts)


def _reversed_shape(g, r, batch) -> str:
    if _fits(g.T, r):
        return (f"transposed: got has shape {g.shape} where the param has {r.shape}, and"
                " got.T = the reference (the product's operands in the wrong order, e.g."
                " dy.T @ x for x.T @ dy)")
    return (f"transposed shape: got has shape {g.shape} where the param has {r.shape} (the"
            " product's operands in the wrong order?), and got.T is not the reference"
            " either")


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
    fits and they are at most half of them; None when the error is spread wider (wrong in
    15 columns of 16 is not "wrong only in" those)."""
    other = 1 - axis
    energy = np.sum(d * d, axis=other)
    total = float(np.sum(energy))
    if total == 0:
        return None
    bad = energy > (FIT ** 2) * max(float(np.max(energy)), 0.0)
    scale = float(np.sum(r * r))
    # the rest must fit: the residual outside the bad lines is small
    rest = total - float(np.sum(energy[bad]))
    if rest > (FIT ** 2) * scale or 2 * int(bad.sum()) > bad.size:
        return None
    return bad


def _scattered(g, r) -> str:
    """Got right in some entries and wrong in others, neither whole rows nor columns: the
    count, and whether one side is zero at every wrong entry (a mask that differs)."""
    tiny = FIT * max(float(np.max(np.abs(r))), float(np.max(np.abs(g))))
    wrong = np.abs(g - r) > tiny
    n_wrong, n = int(wrong.sum()), wrong.size
    right = ~wrong & (np.abs(r) > tiny)  # matches that are not two zeros
    if n_wrong == 0 or n < 4 or int(right.sum()) < max(2, n // 10):
        return ""
    text = f"wrong in {n_wrong} of {n} entries, scattered; the other {n - n_wrong} match"
    zero_g, zero_r = np.abs(g) <= tiny, np.abs(r) <= tiny
    if np.all(zero_g[wrong] ^ zero_r[wrong]):
        text += (": at each wrong entry one of got and the reference is 0 and the other is"
                 " not (a mask or a branch that differs from the forward's, e.g. a dropout"
                 " mask drawn again)")
    return text


def _elementwise(forward: Callable, x: np.ndarray, dy: np.ndarray, name: str) -> list:
    """``[(candidate dx, what it means)]`` for a layer that is elementwise at ``x`` (its
    Jacobian diagonal, as ``jax.vjp`` of ``forward`` shows): the derivative taken at the
    output, ``dy`` left out, the output in place of the derivative. ``[]`` otherwise."""
    try:
        with jax.enable_x64(True):
            xi = jnp.asarray(x, jnp.float64)
            y, vjp = jax.vjp(forward, xi)
            if y.shape != xi.shape:
                return []
            fx = np.asarray(vjp(jnp.ones_like(y))[0], np.float64)  # f'(x), if elementwise
            v = np.random.default_rng(0).standard_normal(x.shape)
            jv = np.asarray(vjp(jnp.asarray(v, y.dtype))[0], np.float64)
            if _norm(jv - v * fx) > 1e-6 * max(_norm(jv), 1e-300):
                return []  # not elementwise: the Jacobian is not diagonal
            y_np = np.asarray(y, np.float64)
            _, vjp_y = jax.vjp(forward, y)
            fy = np.asarray(vjp_y(jnp.ones_like(y))[0], np.float64)  # f'(y)
    except Exception:  # noqa: BLE001  (a user forward that cannot run in float64: say less)
        return []
    return [
        (dy * fy, f"the {name} derivative is taken at the output: got = dy * f'(y) with y ="
                  " f(x); the backward needs f'(x), at the input that forward keeps"),
        (fx, "dy is not multiplied in: got = f'(x) alone (dx = dy * f'(x))"),
        (dy * y_np, "got = dy * y, the layer's output in place of its derivative (a factor"
                    " of f'(x) missing: sigmoid' = s (1 - s), tanh' = 1 - y^2)"),
    ]


def diagnose(got: Any, ref: Any, *, leaf: str = "", batch: int | None = None,
             dy: Any = None, x: Any = None, layer: Layer | None = None,
             forward: Callable | None = None, per_example: Any = None) -> str:
    """Which common shape of a wrong backward fits ``got`` against the reference ``ref``.

    Tried in order: non-finite entries; zero; sign flipped; ``dy`` passed through
    (``dx = dy``), a skip connection's ``dy`` missing (``dx = ref - dy``); for an
    elementwise layer, the derivative taken at its output, ``dy`` missing, or the output in
    place of the derivative (before a constant factor: a Tanh fed only +-1 takes it at its
    output by a constant factor); a constant factor (the batch size ``B`` or ``1/B``
    named); transposed (and reshaped); a parameter gradient equal to one example's alone (not summed
    over the batch); wrong only in some rows or columns (at most half of them, named); each
    column off by its own factor; wrong in scattered entries (a mask that differs).
    Otherwise it says that none fits and shows the worst entries side by side: where it is
    not sure, it says less rather than name a wrong kind.

    Args:
      got, ref: arrays of one shape (``ref`` the right gradient).
      leaf: the leaf's name (``"dx"``, ``"w"``, ``"b"``...), for the wording.
      batch: the batch size ``B``.
      dy, x: the cotangent the layer's backward received ``[B, D_out]`` and its input
        ``[B, D_in]``.
      layer: the layer checked (its name in the wording).
      forward: ``x -> y``, the layer's forward with its params (the elementwise tests).
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
    if dy is not None:
        d = np.asarray(dy, np.float64)
        if d.shape == g.shape and _fits(g, d):
            return ("got equals the incoming dy: the layer's own factor is missing"
                    " (dx = dy, as if the layer were the identity)")
        if d.shape == g.shape and _fits(g, r - d):
            return ("got = reference - dy: the identity path's dy is missing (a residual"
                    " y = x + f(x) needs dx = dy + the part through f)")
        if forward is None and isinstance(layer, Activation):
            act = get_activation(layer.fn)
            forward = act.fn
        if forward is not None and x is not None and d.shape == g.shape:
            name = layer.fn if isinstance(layer, Activation) else (
                layer.name if layer is not None else "layer's")
            for cand, text in _elementwise(forward, np.asarray(x, np.float64), d, name):
                if _fits(g, cand):
                    return text
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
    scattered = _scattered(g, r)
    if scattered:
        return scattered
    flat = np.argsort(-np.abs(d).ravel())[:3]
    worst = "; ".join(
        f"{tuple(int(i) for i in np.unravel_index(k, r.shape))}: got {g.ravel()[k]:.4g},"
        f" want {r.ravel()[k]:.4g}" for k in flat)
    return (f"none of the common mistakes fits (checked: transposed, sign, constant factor,"
            f" zero, rows or columns); worst entries: {worst}")
