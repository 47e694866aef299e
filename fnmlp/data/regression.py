"""Regression sets, seeded numpy: ``x: [N, D]`` float32, ``y: [N, C]`` float32."""

from __future__ import annotations

import numpy as np

from fnmlp.data._common import Dataset, check_n, rng


def make_sine(n: int = 400, seed: int = 0, noise: float = 0.1) -> Dataset:
    """Noisy ``y = sin(x)``, ``x`` uniform in [-pi, pi]: ``x: [N, 1]``, ``y: [N, 1]``."""
    n = check_n(n)
    gen = rng(seed)
    x = gen.uniform(-np.pi, np.pi, (n, 1))
    y = np.sin(x) + noise * gen.standard_normal((n, 1))
    return Dataset(x.astype(np.float32), y.astype(np.float32))


def make_surface(n: int = 800, seed: int = 0, noise: float = 0.05) -> Dataset:
    """A 2D function ``y = sin(x0) cos(x1)`` on [-2, 2]^2 plus noise: ``y: [N, 1]``."""
    n = check_n(n)
    gen = rng(seed)
    x = gen.uniform(-2, 2, (n, 2))
    y = (np.sin(x[:, 0]) * np.cos(x[:, 1]))[:, None] + noise * gen.standard_normal((n, 1))
    return Dataset(x.astype(np.float32), y.astype(np.float32))


def make_multi_output(n: int = 600, seed: int = 0, noise: float = 0.05) -> Dataset:
    """Three targets from two inputs: ``[sin(x0), cos(x1), x0 x1 / 2]``, ``y: [N, 3]``."""
    n = check_n(n)
    gen = rng(seed)
    x = gen.uniform(-2, 2, (n, 2))
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1]), x[:, 0] * x[:, 1] / 2], 1)
    y = y + noise * gen.standard_normal(y.shape)
    return Dataset(x.astype(np.float32), y.astype(np.float32))


REGRESSION_SETS = {"sine": make_sine, "surface": make_surface, "multi": make_multi_output}
