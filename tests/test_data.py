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


def test_stratified_subset_keeps_each_class_share_and_is_seeded():
    y = np.repeat(np.arange(10), [600, 700, 500, 800, 400, 600, 500, 700, 600, 600])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    sub = data.stratified_subset(x, y, 400, seed=0)
    assert len(sub.y) == 400
    assert np.abs(np.bincount(sub.y) - 400 * np.bincount(y) / len(y)).max() < 1  # rounded
    assert np.array_equal(sub.y, y[sub.x[:, 0].astype(int)])  # rows stay paired
    assert np.all(np.diff(sub.x[:, 0]) > 0)  # drawn without replacement, order kept
    again, other = (data.stratified_subset(x, y, 400, seed=s) for s in (0, 1))
    assert np.array_equal(again.x, sub.x) and not np.array_equal(other.x, sub.x)
    everything = data.stratified_subset(x, y, len(y), seed=5)
    assert np.array_equal(everything.x, x)


def test_stratified_subset_keeps_every_class_and_names_a_bad_size():
    y = np.array([0] * 997 + [1] * 2 + [2])
    x = np.zeros((1000, 1), np.float32)
    assert np.bincount(data.stratified_subset(x, y, 10).y).tolist() == [8, 1, 1]
    with pytest.raises(ValueError, match=r"--train-size must be an integer in \[1, 1000\]"):
        data.stratified_subset(x, y, 1001, name="--train-size")
    with pytest.raises(ValueError, match="labels"):
        data.stratified_subset(x, np.zeros((1000, 2)), 10)
