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
* Against ``jax.vjp`` (exact up to round-off) the comparison is a tolerance plus each
  entry's *round-off floor* (:func:`roundoff_floor`), estimated only for an entry beyond
  the tolerance: 4 x how far the backward and the vjp each move when their inputs move by
  4 ulps (twice; an entry at 0 by 4 ulps of 1/100 of its leaf's rms), plus, below
  float64, 2 x how far each is from itself re-run in float64. For a correct backward
  ``|c - r| <= |c - c64| + |c64 - r64| + |r64 - r|``, so only a difference float64 shows
  too, or one beyond an ill-conditioned computation's ulp-level spread, fails. An entry
  still beyond it gets ``(B + 16) eps sum_i |t_i|`` more, ``t_i`` each example's term of
  the batch sum (a gradient ~0 by cancellation: a mean absolute error whose signs
  balance, where moving the inputs by ulps moves nothing). An entry within its floor is
  ok when the floor is below 0.1 of the leaf's scale, else *inconclusive*: round-off, not
  a mistake, decides there. So it is for a LayerNorm over two features, whose Jacobian
  ~eps/var is a small difference of O(1) terms, and for an input exactly at a user
  layer's kink, which an ulp moves to one side: two PReLUs whose inputs are exactly 0
  make a loss smooth along a bias, slope 1/4 either side, where the chain rule, by hand
  or by autodiff, gives 1/16.
* Against finite differences it knows its own noise (:func:`finite_difference_estimate`):
  each sampled coordinate is differenced at two steps ``h`` and ``h/2`` (a Richardson
  estimate, error ``O(h^4)``), the error is estimated as ``|d_h - d_{h/2}| + 8 eps |L| /
  (h/2)`` (truncation plus round-off), the step is chosen per leaf from ``1e-6, 1e-4,
  1e-3`` by the smallest median error, and an entry the differences cannot resolve is
  *inconclusive*, never *failed*; the checked gradient's own round-off floor is added (a
  float32 gradient through a saturated tanh is 4e-4 off the float64 witness, and so is
  its float64 re-run's distance). A difference that straddles a kink (a ReLU-family input
  or an ``mae`` residual that changes sign within the step) is found by running the
  forward at each perturbed point, and reported as a kink with the layer, example and
  unit; one-sided slopes whose gap does not halve with the step flag a kink the checker
  does not know (a user layer's).
* Before any gradient, the width each layer's ``init`` reports is checked against its
  forward's output (``Serial.init``'s check, shapes only): a layer that says ``d`` and
  returns ``2d`` is named in a ``ValueError``, not left to fail inside JAX.
* A failing leaf gets a ``diagnosis`` (:func:`diagnose`): transposed (also with a
  non-square weight, whose gradient then has the reversed shape), sign flipped, off by a
  constant factor (naming the batch size ``B`` or ``1/B``), zero, wrong only in some rows
  or columns (at most half of them), a bias not summed over the batch (equal to one
  example's gradient; with a ``[B, ...]`` shape, a ``ValueError`` that says so), the
  incoming ``dy`` passed through unchanged, a skip connection's ``dy`` missing, for an
  elementwise layer (built-in or yours) the derivative taken at its output or its output
  in place of the derivative, each column off by its own factor, or wrong in scattered
  entries (a mask that differs); where none fits it says so and shows the worst entries
  side by side, rather than name a wrong kind.

Error measures, per leaf (``a`` checked, ``b`` reference, over the entries compared):
``max_abs_err = max |a - b|`` and ``max_rel_err = max |a - b| / S`` with
``S = max(max |a|, max |b|, sqrt(tol) * G)``, ``G`` the largest gradient entry of the whole
comparison (for each layer's rows: of that layer's own gradients and the cotangent ``dy``
it receives): the infinity-norm relative error, with a floor so that a leaf whose true
gradient is ~0 (a Selu whose inputs are all far below 0: 3e-22 x dy by hand, exactly 0 by
``jax.vjp``, whose expm1' is ``ans + 1``) compares its round-off against its ``dy``, not
against itself; and a wrong layer deep in a net whose gradients have vanished (1e-8 of the
model's largest) is measured against its own size, so it is still caught.

Default tolerances on ``max_rel_err``, by the checked leaf's dtype, each plus the entry's
round-off floor:

* float64: ``1e-9`` manual vs autodiff (both exact up to ~1e-15 per operation); ``1e-6``
  against finite differences, *plus* each entry's estimated difference noise (times 3).
* float32: ``1e-4``: both paths sum ``B * H`` products in different orders (round-off
  ``~ sqrt(n) 6e-8``), while a real bug (a transpose, a wrong derivative) errs by 1e-1 or
  more. The tolerance alone does not cover float32's round-off at every input scale and
  depth (unnormalised inputs through a saturated tanh put both paths 4e-4 off the float64
  witness); the floor does: 0 false alarms over 600 random correct nets
  (``count_false_alarms_at_random`` in ``tests/test_gradcheck.py``: widths 1 to 16, 1 to
  20 Dense layers, inputs x 1e-3 to x 1e3, float32 and float64, LayerNorms over 1 feature
  and up, user layers with kinks), where the fixed tolerances alone gave 7 in 300.
* bfloat16 / float16: ``5e-2`` (8 and 11 mantissa bits).
* ``to_json()`` is strict JSON: a number that is not finite is written ``null``.

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

from fnmlp.gradcheck.check import check_gradients, check_layer, layer_report
from fnmlp.gradcheck.compare import (
    FD_TOLERANCES,
    TOLERANCES,
    GradReport,
    LeafReport,
    compare_grads,
    default_tolerance,
    diagnose,
)
from fnmlp.gradcheck.differences import (
    finite_difference_estimate,
    finite_difference_grad,
    perturb,
    random_batch,
)
from fnmlp.gradcheck.result import GradCheckResult, json_safe
from fnmlp.gradcheck.roundoff import roundoff_floor

__all__ = ["FD_TOLERANCES", "GradCheckResult", "GradReport", "LeafReport", "TOLERANCES",
           "check_gradients", "check_layer", "compare_grads",
           "default_tolerance", "diagnose", "finite_difference_estimate",
           "finite_difference_grad", "json_safe", "layer_report", "perturb", "random_batch",
           "roundoff_floor"]
