"""PENDING (for the lead to merge into tests/test_gradcheck.py): the gradient checker's
own coverage, moved from test_trust.py with the model first. Every leaf gets
finite-difference coordinates; a leaf with nothing checked is never ok; a wrong small leaf
is caught on a big net."""

import jax
import jax.numpy as jnp
import numpy as np

import fnmlp
from fnmlp.gradcheck import compare_grads, finite_difference_grad, random_batch


def test_every_leaf_gets_finite_difference_coordinates():
    """784-256-10 with the default 4,096 samples left the 10 biases of layer 1 with none
    (they hold 1/20,000 of the coordinates) and still printed 'ok'; 784-64-10 with 512
    samples is the same case at a tenth of the cost."""
    sizes = [784, 64, 10]
    model = fnmlp.mlp(sizes)
    params = model.init_params(jax.random.key(0))
    x, y = random_batch(jax.random.key(1), 8, sizes, "softmax_cross_entropy")
    result = fnmlp.check_gradients(model, params, x, y, max_evals=512)
    rows = {(r.layer, r.leaf): r for r in result.manual_vs_finite_diff.rows}
    assert rows[("1", "b")].checked == 10 and rows[("1", "b")].total == 10
    assert rows[("1", "w")].checked >= 32 and rows[("0", "b")].checked >= 32
    assert sum(r.checked for r in rows.values()) <= 512 + 4 * 32
    assert "10/10" in str(result.manual_vs_finite_diff)
    leaf = result.to_dict()["manual_vs_finite_diff"]["leaves"][2]
    assert (leaf["layer"], leaf["leaf"], leaf["checked"], leaf["total"]) == ("1", "b", 10, 10)
    assert result.passed


def test_a_leaf_with_nothing_checked_is_never_ok():
    g = [{"w": jnp.ones((3, 2)), "b": jnp.ones(2)}]
    mask = [{"w": np.ones((3, 2), bool), "b": np.zeros(2, bool)}]
    report = compare_grads(g, g, mask=mask)
    row = [r for r in report.rows if r.leaf == "b"][0]
    assert row.checked == 0 and row.total == 2 and not row.passed
    assert not report.passed
    assert "UNCHECKED" in str(report) and "0/2" in str(report)


def test_a_wrong_small_leaf_is_caught_on_a_big_net(x64):
    """A bug confined to the last layer's 10 biases must show in the finite-difference
    comparison even when the 200k weights dominate the sample."""
    sizes = [784, 64, 10]
    model = fnmlp.mlp(sizes)
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x, y = random_batch(jax.random.key(1), 4, sizes, "softmax_cross_entropy", jnp.float64)
    good = fnmlp.manual_grad(model, params, x, y)
    wrong = [good[0], {"w": good[1]["w"], "b": good[1]["b"] * 1.5}]
    fd, mask = finite_difference_grad(lambda p: fnmlp.loss(model, p, x, y), params,
                                      max_evals=256)
    report = compare_grads(wrong, fd, 1e-6, mask=mask)
    assert [(r.layer, r.leaf) for r in report.failing()] == [("1", "b")]
