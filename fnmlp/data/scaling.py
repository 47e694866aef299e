"""Kept importable: the input scaling moved to :mod:`fnmlp.scaling` (a floor below both
``data`` and ``io``, which reads it for saved models). Re-exports only."""

from fnmlp.scaling import (
    PIXEL_SCALE,
    input_range_warning,
    input_record,
    raw_input_scale,
    warn_input_range,
)

__all__ = ["PIXEL_SCALE", "input_range_warning", "input_record", "raw_input_scale",
           "warn_input_range"]
