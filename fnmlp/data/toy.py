"""Toy 2D classification sets, seeded numpy: the lesson's problem and its harder cousins.

Each returns :class:`~fnmlp.data.Dataset` with ``x: [N, 2]`` float32 and ``y: [N]`` int32;
the same ``seed`` gives the same data.
"""

from __future__ import annotations

import numpy as np

from fnmlp.data._common import Dataset, check_n, rng


def make_classification(
    n: int = 400, seed: int = 0, class_sep: float = 1.5, flip_y: float = 0.03
) -> Dataset:
    """The lesson's 2D two-class problem: two Gaussian clusters with some label noise.

    Like scikit-learn's ``make_classification(n_features=2, n_informative=2)``: each
    class is a correlated Gaussian centred ``class_sep`` from the origin; a fraction
    ``flip_y`` of the labels is then reassigned at random.
    """
    n = check_n(n)
    gen = rng(seed)
    y = gen.integers(0, 2, n)
    centres = np.array([[-1.0, -0.5], [1.0, 0.5]]) * class_sep
    cov = np.array([[1.0, 0.4], [0.4, 0.6]])
    x = centres[y] + gen.multivariate_normal(np.zeros(2), cov, n)
    flip = gen.random(n) < flip_y
    y = np.where(flip, gen.integers(0, 2, n), y)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_blobs(n: int = 600, k: int = 3, seed: int = 0, std: float = 0.6) -> Dataset:
    """``k`` isotropic Gaussian blobs in 2D, centres on a circle of radius 3."""
    n, k = check_n(n), check_n(k, "k", 2)
    gen = rng(seed)
    y = gen.integers(0, k, n)
    angles = 2 * np.pi * np.arange(k) / k
    centres = 3 * np.stack([np.cos(angles), np.sin(angles)], 1)
    x = centres[y] + std * gen.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_moons(n: int = 600, seed: int = 0, noise: float = 0.1) -> Dataset:
    """Two interleaving half circles (as scikit-learn's ``make_moons``)."""
    n = check_n(n, minimum=2)
    gen = rng(seed)
    y = np.arange(n) % 2
    t = gen.random(n) * np.pi
    x = np.where(
        (y == 0)[:, None],
        np.stack([np.cos(t), np.sin(t)], 1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1),
    )
    x = x + noise * gen.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_circles(n: int = 600, seed: int = 0, noise: float = 0.05, factor: float = 0.5) -> Dataset:
    """A small circle (label 1) inside a large one (label 0)."""
    n = check_n(n, minimum=2)
    gen = rng(seed)
    y = np.arange(n) % 2
    t = gen.random(n) * 2 * np.pi
    r = np.where(y == 1, factor, 1.0)
    x = r[:, None] * np.stack([np.cos(t), np.sin(t)], 1) + noise * gen.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_spirals(n: int = 600, arms: int = 2, seed: int = 0, noise: float = 0.1) -> Dataset:
    """``arms`` interleaved spirals, one class per arm (CS231n's spiral set)."""
    n, arms = check_n(n), check_n(arms, "arms", 2)
    gen = rng(seed)
    y = np.arange(n) % arms
    r = gen.random(n)  # radius in [0, 1)
    theta = 4 * r + 2 * np.pi * y / arms + noise * gen.standard_normal(n)
    x = np.stack([r * np.sin(theta), r * np.cos(theta)], 1)
    return Dataset(x.astype(np.float32), y.astype(np.int32))


def make_xor(n: int = 400, seed: int = 0, std: float = 0.15) -> Dataset:
    """XOR: clusters at the four corners (+-1, +-1); label 1 where the signs differ."""
    n = check_n(n)
    gen = rng(seed)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    c = np.arange(n) % 4
    x = corners[c] + std * gen.standard_normal((n, 2))
    y = (corners[c, 0] != corners[c, 1]).astype(np.int32)
    return Dataset(x.astype(np.float32), y)


def make_linear(n: int = 400, seed: int = 0, margin: float = 0.2) -> Dataset:
    """A linearly separable 2D set: the label is the side of the line ``x0 + 2 x1 = 0.5``,
    with no point closer than ``margin`` to it."""
    n = check_n(n)
    gen = rng(seed)
    x = gen.uniform(-2, 2, (4 * n, 2))
    s = (x[:, 0] + 2 * x[:, 1] - 0.5) / np.sqrt(5)
    keep = np.abs(s) > margin
    x, s = x[keep][:n], s[keep][:n]
    return Dataset(x.astype(np.float32), (s > 0).astype(np.int32))


def make_imbalanced(n: int = 600, seed: int = 0, minority: float = 0.05,
                    distance: float = 2.5) -> Dataset:
    """Two overlapping Gaussian blobs (std 1), 95:5 by default: exactly
    ``round(n * minority)`` examples of class 1 (centre ``(distance, 0)``), the rest class 0
    (centre ``(0, 0)``), in shuffled order. Accuracy hides a model that ignores class 1:
    see ``class_weight="balanced"`` and :func:`fnmlp.classification_report`."""
    n = check_n(n, minimum=2)
    if not (isinstance(minority, float) and 0 < minority < 1):
        raise ValueError(f"minority must be a float in (0, 1); got {minority!r}")
    gen = rng(seed)
    n1 = min(max(int(round(n * minority)), 1), n - 1)
    y = gen.permutation(np.r_[np.zeros(n - n1, np.int32), np.ones(n1, np.int32)])
    x = gen.standard_normal((n, 2)) + np.array([distance, 0.0]) * y[:, None]
    return Dataset(x.astype(np.float32), y.astype(np.int32))


TOY_SETS = {
    "classification": make_classification,
    "blobs": make_blobs,
    "moons": make_moons,
    "circles": make_circles,
    "spirals": make_spirals,
    "xor": make_xor,
    "linear": make_linear,
    "imbalanced": make_imbalanced,
}

