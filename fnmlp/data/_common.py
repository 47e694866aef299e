"""What every data source shares: the :class:`Dataset` pair, seeded splits, checks.

Every loader returns numpy arrays on the host: inputs ``x: [N, D]`` float32, and targets
``y`` as int32 labels ``[N]`` (classification) or float32 ``[N, C]`` (regression).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fnmlp import _validate as checks


class Dataset(NamedTuple):
    """A split of a dataset, host numpy arrays."""

    x: np.ndarray  # [N, D] float32
    y: np.ndarray  # [N] int32 labels, or [N, C] float32 targets


# ----------------------------------------------------------------------------- helpers


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_n(n: Any, name: str = "n", minimum: int = 1) -> int:
    return checks.check_positive_int(n, name, minimum)


def split_sizes(n: int, fraction: float) -> tuple[int, int]:
    """``(kept, held out)`` when ``fraction`` of ``n`` examples is held out: the one
    rounding rule, ``held = round(n * fraction)``, used by :func:`train_test_split`, ``fit``'s
    ``validation_split`` and the scripts' ``--val-split``."""
    held = int(round(n * fraction))
    return n - held, held


def train_test_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0,
    name: str = "test_fraction",
) -> tuple[Dataset, Dataset]:
    """Shuffles with ``seed`` and splits off ``test_fraction`` of the examples:
    ``(train, test)``, the test part being the first ``round(N * test_fraction)`` of the
    permutation. ``name`` is the argument's name in error messages."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ValueError(f"{name} must be a float in (0, 1); got {test_fraction!r}")
    n_test = len(x) - split_sizes(len(x), test_fraction)[0]
    if n_test < 1 or n_test >= len(x):
        raise ValueError(
            f"{name}={test_fraction} of {len(x)} examples leaves an empty split")
    perm = rng(seed).permutation(len(x))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr]), Dataset(x[te], y[te])

