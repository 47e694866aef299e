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


def check_split(n: int, fraction: float, name: str = "test_fraction") -> int:
    """The held-out count of :func:`split_sizes`; ``ValueError`` naming ``name`` when
    either part would be empty (the scripts name their flag: ``--val-split``)."""
    held = split_sizes(n, fraction)[1]
    if held < 1 or held >= n:
        raise ValueError(f"{name}={fraction} of {n} examples leaves an empty split")
    return held


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
    n_test = check_split(len(x), test_fraction, name)
    perm = rng(seed).permutation(len(x))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr]), Dataset(x[te], y[te])



def stratified_subset(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0,
                      name: str = "n") -> Dataset:
    """``n`` examples of ``(x, y)``, drawn with ``seed`` without replacement, each class
    keeping its share: class ``c`` (``N_c`` of ``N`` examples) gets ``n * N_c / N``
    rounded by largest remainders (so the counts add up to ``n``), at least one example
    for every class when ``n`` is at least the number of classes. The examples keep
    their order in ``x``. ``n == N`` returns everything; ``y`` must be ``[N]`` labels.
    ``name`` is the argument's name in error messages (``--train-size`` for the scripts).

    Examples:
      >>> import numpy as np
      >>> y = np.array([0] * 90 + [1] * 10)
      >>> sub = stratified_subset(np.arange(100.0)[:, None], y, 20, seed=0)
      >>> np.bincount(sub.y).tolist()   # 18:2, as 90:10
      [18, 2]
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    if y.ndim != 1:
        raise ValueError(f"a stratified subset needs labels y [N]; got y of shape {y.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(x):
        raise ValueError(f"{name} must be an integer in [1, {len(x)}] (the training set has"
                         f" {len(x):,} examples); got {n!r}")
    n = int(n)
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    take = np.floor(exact).astype(np.int64)
    if n >= len(classes):  # every class present: one each first, then by share
        take = np.maximum(take, 1)
    order = np.lexsort((classes, -(exact - np.floor(exact))))  # largest remainder first
    for c in order:  # hand out what is left, one each, by largest remainder
        if take.sum() >= n:
            break
        if take[c] < counts[c]:
            take[c] += 1
    while take.sum() > n:  # the at-least-one rule overshot: take from a class kept > 1
        take[np.argmax(np.where(take > 1, take - exact, -np.inf))] -= 1
    r = rng(seed)
    keep = np.concatenate([r.permutation(np.flatnonzero(y == c))[:k]
                           for c, k in zip(classes, take)])
    keep.sort()
    return Dataset(x[keep], y[keep])
