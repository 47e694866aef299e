"""The result of a gradient check: :class:`GradCheckResult` (three comparisons and the
per-layer report), strict JSON of it, and the merge of one comparison made at several
points. See :mod:`fnmlp.gradcheck`."""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import numpy as np

from fnmlp.gradcheck.compare import GradReport

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
            new = r if old is None or (old.passed and not r.passed) or (
                old.passed == r.passed and r.max_rel_err > old.max_rel_err) else old
            other = old if new is r else r
            if other is not None and other.inconclusive > new.inconclusive:
                # keep what another point could not resolve, and why
                new = new._replace(inconclusive=other.inconclusive,
                                   kinks=max(new.kinks, other.kinks),
                                   note=new.note or other.note)
            best[k] = new
    for k, points in failed.items():
        if points[0] > 0 and notes[points[0]]:  # passes at init: the mistake init hides
            r = best[k]
            best[k] = r._replace(note="; ".join(filter(None, [
                f"fails only {notes[points[0]]}; passes at init", r.note])))
    order = list(dict.fromkeys((r.layer, r.leaf) for rep in reports for r in rep.rows))
    return GradReport(first.title, [best[k] for k in order])
