"""The scripts' argument types and their error: each turns a flag's text into a value
or raises :class:`UsageError` (exit 2, one line). Plain Python: no jax."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """A problem with the command line or the data: exit 2, one line."""


def parse_int_list(text: str) -> list[int]:
    parts = text.split(",")
    if any(s.strip() == "" for s in parts):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 128 or 256,128, with no empty"
            f" entries; got {text!r}")
    try:
        values = [int(s) for s in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers like 128 or 256,128; got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers; got {text!r}")
    return values


def seed_int(text: str) -> int:
    """A seed in ``[0, 2**32)`` (:data:`fnmlp._names.SEED_LIMIT`, the rule of
    :func:`fnmlp._checks.check_seed` too)."""
    from fnmlp._names import SEED_LIMIT

    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32); got {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return v


def fraction(text: str) -> float:
    """``--val-split``: a float strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), e.g. 0.1; got {text!r}")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text!r}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return v
