"""Raw inputs versus the scaled inputs a model was trained on.

Shapes: ``N`` examples, ``D`` features. A model trained on MNIST sees pixels divided by
255 (``[0, 1]``); given raw pixels (uint8, or values up to 255) it answers with
confident nonsense. The training scripts record the scaling in the checkpoint's config
(``config["input"]["scale"] == "pixel / 255"``), and two small functions use it:

* :func:`raw_input_scale` applies that scaling to raw inputs where the checkpoint
  records one (``SavedModel.predict*`` and ``scripts/predict.py`` call it: one rule for
  both, decided by the dtype and a range that is clearly one or the other, never by one
  stray value), or refuses inputs it cannot place, with one line saying how to scale them;
* :func:`input_range_warning` is the message ``fit`` warns with when its inputs look
  unscaled (uint8, or far outside the usual range of scaled features).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

PIXEL_SCALE = "pixel / 255"  # the config value the MNIST scripts write
FAR = 20.0  # |x| above this is far outside the range of scaled or standardised features


def _as_numbers(x: Any) -> np.ndarray:
    """``x`` as a NumPy array whose dtype kind says it holds numbers: ml_dtypes' floats
    (bfloat16, float8_*), whose kind is ``"V"``, as float32; anything else as it is."""
    a = np.asarray(x)
    if a.dtype.kind == "V" and "float" in a.dtype.name:
        a = a.astype(np.float32)
    return a


def _range(x: np.ndarray) -> tuple[float, float]:
    return (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)


SCALED = (-0.5, 1.5)  # floats here are scaled pixels: [0, 1] with an interpolation's overshoot
RAW_MIN_PEAK = 16.0  # floats reaching this (up to 255 x SCALED) are raw pixels 0..255


def raw_input_scale(x: Any, input_config: dict | None, dtype: Any = np.float32) -> Any:
    """Inputs ``[N, D]`` (or ``[D]``) scaled the way the checkpoint's model was trained.

    ``input_config`` is a checkpoint's ``config["input"]`` (``None`` or without a
    ``"scale"`` entry: ``x`` is returned as it is). With ``"scale": "pixel / 255"`` the
    rule, the same for a whole array whatever else is in it, is:

    * **integer dtypes** (uint8, as pictures and IDX files hold them) are raw pixels
      0..255: returned as ``x / 255`` in ``dtype`` (integers that only reach 1 to 15
      are divided too, with a ``UserWarning``: 0/1 pixels are nearly black as raw
      pixels; multiply binary pixels by 255);
    * **floats within [-0.5, 1.5]** are pixels already scaled (``[0, 1]``, with room for a
      resampling's overshoot, e.g. bicubic's 1.02): returned as they are;
    * **floats within [-127.5, 382.5]** (255 times that range) that reach 16 or more are
      raw pixels stored as floats: returned as ``x / 255`` in ``dtype`` (or float64
      for float64 ``x``).

    ``dtype`` is the model's float dtype (float32 by default): a float64 model's raw
    pixels are divided in float64, not rounded to float32 first.

    A batch is never judged by one stray value: a scaled batch with one 1.02 stays
    scaled. Anything else (floats whose largest value lies between 1.5 and 16, which
    could be either; values beyond the raw range) is refused.

    Raises:
      ValueError: an array that fits neither rule, or integers outside 0..255; or a
        ``"scale"`` this version does not know, for raw-looking inputs (integers, or
        floats outside [-0.5, 1.5]). The message gives the range seen and how to scale.
    """
    scale = (input_config or {}).get("scale")
    if scale is None:
        return x
    a = _as_numbers(x)
    if a.dtype.kind not in "iuf":
        return x  # not numbers: the model's own checks say so
    lo, hi = _range(a)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = ~np.isfinite(a)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
        raise ValueError(f"x must be finite; got {a[idx]} at index {idx}")
    integer = a.dtype.kind in "iu"
    scaled = not integer and SCALED[0] <= lo and hi <= SCALED[1]
    if scale != PIXEL_SCALE:
        if not scaled:
            raise ValueError(f"x: the model was trained on inputs scaled as {scale!r};"
                             f" got {a.dtype} values in [{lo:g}, {hi:g}]: scale them that"
                             " way first")
        return x
    if integer:
        if lo < 0 or hi > 255:
            raise ValueError(f"x: integer inputs are raw pixels 0..255 (divided by 255"
                             f" here); got {a.dtype} values in [{lo:g}, {hi:g}]")
        if 0 < hi < RAW_MIN_PEAK:
            warnings.warn(f"x: integer inputs are raw pixels 0..255, divided by 255; these"
                          f" only reach {hi:g} (nearly black): if they are 0/1 pixels,"
                          " pass x * 255", UserWarning, stacklevel=2)
        return a.astype(_result_dtype(a, dtype)) / 255.0
    if scaled:
        return x
    if 255 * SCALED[0] <= lo and hi <= 255 * SCALED[1] and hi >= RAW_MIN_PEAK:
        return a.astype(_result_dtype(a, dtype)) / 255.0
    raise ValueError(f"x: the model takes pixels / 255 (floats in [0, 1], up to"
                     f" [{SCALED[0]:g}, {SCALED[1]:g}]) or raw pixels 0..255 (uint8, or"
                     f" floats reaching at least {RAW_MIN_PEAK:g}); got {a.dtype} values in"
                     f" [{lo:g}, {hi:g}], which is neither: scale them to [0, 1] yourself")


def _result_dtype(a: np.ndarray, dtype: Any) -> np.dtype:
    """The dtype raw pixels are divided in: float64 when the model or ``a`` is float64,
    else float32 (a float16 model's inputs are cast at its own checks)."""
    wide = np.dtype(a.dtype) == np.float64 or np.dtype(dtype) == np.float64
    return np.dtype(np.float64 if wide else np.float32)


def input_record(config: dict) -> dict | None:
    """How a checkpoint's model takes raw inputs: ``config["input"]``; for an MNIST
    checkpoint that records no scale (written before the scale was recorded),
    ``"pixel / 255"``, which every MNIST run used. ``SavedModel.predict*`` and
    ``scripts/predict.py`` both read it here, so they scale alike."""
    record = config.get("input")
    if isinstance(record, dict) and record.get("kind") == "mnist" and "scale" not in record:
        return {**record, "scale": PIXEL_SCALE}
    return record


def input_range_warning(x: Any) -> str | None:
    """What ``fit`` warns about inputs ``[N, D]`` that look unscaled, or ``None``.

    uint8 inputs, or values whose magnitude exceeds 20 (scaled pixels lie in [0, 1],
    standardised features mostly within +-5): the message names the range seen and
    the usual fix (``divide by 255`` for 0..255 pixels, else standardise).
    """
    a = _as_numbers(x)
    if a.dtype.kind not in "iuf" or a.size == 0:
        return None
    lo, hi = _range(a)
    if a.dtype != np.uint8 and max(abs(lo), abs(hi)) <= FAR:
        return None
    if a.dtype == np.uint8 and hi <= 1:
        return None  # 0/1 features stored as bytes
    if lo >= 0 and hi <= 255:
        return (f"inputs range {lo:g}..{hi:g} (dtype {a.dtype}): they look like raw pixels;"
                " divide by 255 (x / 255.0), as the model's later inputs must be too")
    return (f"inputs range {lo:g}..{hi:g}: far outside the usual range of scaled features;"
            " standardise them ((x - mean) / std over the training set)")


def warn_input_range(x: Any, stacklevel: int = 3) -> None:
    """``warnings.warn`` (``UserWarning``) with :func:`input_range_warning`'s message, if
    any; ``stacklevel=3`` points at the caller of the function that calls this one."""
    message = input_range_warning(x)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=stacklevel)
