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

from fnmlp.gradcheck import check, compare, differences

# re-exports: every name of the three rooms, as the single module had them
for _room in (compare, differences, check):
    globals().update({k: v for k, v in vars(_room).items()
                      if not k.startswith("__") and k not in ("annotations",)})
del _room

__all__ = ["FD_TOLERANCES", "GradCheckResult", "GradReport", "LeafReport", "TOLERANCES",
           "check_gradients", "check_layer", "compare_grads", "default_tolerance",
           "diagnose", "finite_difference_estimate", "finite_difference_grad",
           "layer_report", "perturb", "random_batch"]
