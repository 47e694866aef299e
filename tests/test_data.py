"""Data: the seeded toy and regression sets and the train/test split (fnmlp.data.toy,
.regression, ._common). MNIST's loaders are in test_mnist.py."""

import numpy as np
import pytest

from fnmlp import data


@pytest.mark.parametrize("name", sorted(data.TOY_SETS))
def test_toy_sets_are_seeded_and_well_formed(name):
    a, b = data.TOY_SETS[name](n=120, seed=3), data.TOY_SETS[name](n=120, seed=3)
    c = data.TOY_SETS[name](n=120, seed=4)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == (120, 2) and a.x.dtype == np.float32
    assert a.y.shape == (120,) and a.y.dtype == np.int32 and a.y.min() == 0
    assert np.isfinite(a.x).all()
    counts = np.bincount(a.y)
    if name == "imbalanced":  # 95:5 by design, exactly
        assert counts.tolist() == [114, 6]
        return
    assert counts.min() >= 120 / len(counts) / 3  # every class present in fair numbers


def test_xor_labels_follow_the_quadrant():
    ds = data.make_xor(400, seed=0)
    assert np.array_equal(ds.y, ((ds.x[:, 0] > 0) != (ds.x[:, 1] > 0)).astype(np.int32))


def test_linear_set_is_separable_with_margin():
    ds = data.make_linear(300, seed=0, margin=0.2)
    s = (ds.x[:, 0] + 2 * ds.x[:, 1] - 0.5) / np.sqrt(5)
    assert np.all((s > 0.2) == (ds.y == 1)) and np.all(np.abs(s) > 0.2 - 1e-6)


@pytest.mark.parametrize("name, width", [("sine", 1), ("surface", 1), ("multi", 3)])
def test_regression_sets(name, width):
    ds = data.REGRESSION_SETS[name](n=200, seed=0)
    assert ds.y.shape == (200, width) and ds.y.dtype == np.float32
    assert np.array_equal(ds.x, data.REGRESSION_SETS[name](n=200, seed=0).x)
    if name == "sine":  # the noise is small: residuals are around 0.1
        assert np.std(ds.y[:, 0] - np.sin(ds.x[:, 0])) == pytest.approx(0.1, rel=0.2)


def test_train_test_split():
    ds = data.make_moons(100)
    tr, te = data.train_test_split(ds.x, ds.y, 0.2, seed=0)
    assert len(tr.x) == 80 and len(te.x) == 20
    joined = np.concatenate([tr.x, te.x])
    assert sorted(map(tuple, joined)) == sorted(map(tuple, ds.x))
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(ds.x, ds.y, 1.5)
