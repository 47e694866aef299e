"""fnmlp.losses: each loss's hand-derived gradient against jax.grad, closed forms computed
by hand, numerical stability at extreme logits, accuracy, and what each loss takes
(logits or probabilities) checked against what a model outputs."""

import math
from decimal import Decimal, getcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnmlp import losses
from fnmlp.losses import (
    LOGIT_LOSSES,
    LOSSES,
    PROBABILITY_LOSSES,
    accuracy,
    check_loss_for_model,
    get_loss,
    zero_one_loss,
)

EVERY = sorted({**LOSSES, **PROBABILITY_LOSSES})


def _targets(loss, b, c, key):
    kind = get_loss(loss).kind
    if kind == "multiclass":
        return jax.random.randint(key, (b,), 0, c)
    if kind == "binary":
        return jax.random.bernoulli(key, 0.5, (b, c)).astype(jnp.float64)
    return jax.random.normal(key, (b, c), jnp.float64)


def _outputs(loss, key, shape):
    out = 2 * jax.random.normal(key, shape, jnp.float64)
    return jax.nn.softmax(out, axis=-1) if get_loss(loss).takes == "probabilities" else out


@pytest.mark.parametrize("name", EVERY)
def test_loss_gradient_matches_autodiff(x64, name):
    key = jax.random.key(0)
    out = _outputs(name, key, (5, 4))
    y = _targets(name, 5, 4, jax.random.fold_in(key, 1))
    lossdef = get_loss(name)
    auto = jax.grad(lambda o: jnp.sum(lossdef.fn(o, y)))(out)
    np.testing.assert_allclose(np.asarray(lossdef.deriv(out, y)), np.asarray(auto), rtol=1e-12,
                               atol=1e-15)


def test_loss_values_by_hand(x64):
    logits = jnp.array([[1.0, 2.0, 3.0]])
    ce = get_loss("softmax_cross_entropy").fn(logits, jnp.array([0]))
    assert abs(float(ce[0]) - (math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 1)) < 1e-12
    bce = get_loss("sigmoid_cross_entropy").fn(jnp.array([[0.0, 2.0]]), jnp.array([[1.0, 0.0]]))
    assert abs(float(bce[0]) - (math.log(2) + math.log(1 + math.exp(2))) / 2) < 1e-12
    out, t = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, 0.5]])
    assert abs(float(get_loss("mse").fn(out, t)[0]) - (1 + 6.25) / 2) < 1e-12
    assert abs(float(get_loss("mae").fn(out, t)[0]) - (1 + 2.5) / 2) < 1e-12
    # huber, delta 1: |d| = 1 -> 0.5; |d| = 2.5 -> 2.5 - 0.5 = 2
    assert abs(float(get_loss("huber").fn(out, t)[0]) - (0.5 + 2.0) / 2) < 1e-12
    # categorical cross-entropy of probabilities: -log p[y]
    p = jnp.array([[0.2, 0.5, 0.3]])
    cce = get_loss("categorical_cross_entropy").fn(p, jnp.array([2]))
    assert abs(float(cce[0]) + math.log(0.3)) < 1e-12


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_losses_stable_at_extreme_logits(name):
    out = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], jnp.float32)
    lossdef = get_loss(name)
    y = jnp.array([1, 0]) if lossdef.kind == "multiclass" else jnp.array(
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    val, grad = lossdef.fn(out, y), lossdef.deriv(out, y)
    assert bool(jnp.all(jnp.isfinite(val))) and bool(jnp.all(jnp.isfinite(grad)))
    if lossdef.kind != "regression":  # the wrong answer at 1e4 costs about 2e4
        assert 1e4 <= float(val[0]) * (1 if lossdef.kind == "multiclass" else 3) <= 3e4


def test_accuracy_and_zero_one_loss():
    out = jnp.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    y = jnp.array([0, 1, 1])
    assert abs(float(accuracy(out, y)) - 2 / 3) < 1e-6
    assert abs(float(zero_one_loss(out, y)) - 1 / 3) < 1e-6
    bin_out, bin_y = jnp.array([[1.0], [-1.0], [2.0], [-3.0]]), jnp.array([[1.0], [0], [0], [0]])
    assert abs(float(accuracy(bin_out, bin_y, "sigmoid_cross_entropy")) - 0.75) < 1e-6
    with pytest.raises(ValueError, match="classification"):
        accuracy(out, y, "mse")


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        get_loss("crossentropy")
    with pytest.raises(ValueError, match="categorical_cross_entropy"):
        get_loss("nll")


# ----------------------------------------------------------------------------- what it takes


def test_every_loss_says_what_it_takes():
    assert {n: get_loss(n).takes for n in EVERY} == {
        "categorical_cross_entropy": "probabilities", "huber": "logits", "mae": "logits",
        "mse": "logits", "sigmoid_cross_entropy": "logits", "softmax_cross_entropy": "logits"}


@pytest.mark.parametrize("name", EVERY)
def test_a_loss_is_accepted_for_the_output_it_takes_and_refused_for_the_other(name):
    lossdef = get_loss(name)
    other = "logits" if lossdef.takes == "probabilities" else "probabilities"
    assert check_loss_for_model(name, lossdef.takes) is lossdef
    with pytest.raises(ValueError) as e:
        check_loss_for_model(name, other)
    msg = str(e.value)
    assert "\n" not in msg and repr(name) in msg
    if other == "probabilities":  # softmax twice
        assert "softmax would be applied twice" in msg
        fix = ("use loss='categorical_cross_entropy'" if lossdef.kind == "multiclass"
               else "drop the final Softmax layer")
        assert fix in msg
    else:  # log of raw scores
        assert "add Softmax() as the last layer" in msg
        assert "loss='softmax_cross_entropy'" in msg


# subgradients at kinks, small-loss precision (an outside oracle)

KINKS = [  # (loss, out, target, PyTorch's d loss / d out)
    ("mae", 0.5, 0.5, 0.0),  # sign(0) = 0
    ("mae", 0.0, 0.0, 0.0),
    ("huber", 1.0, 0.0, 1.0),  # |d| = delta: both branches meet
    ("huber", -1.0, 0.0, -1.0),
    ("huber", 0.0, 0.0, 0.0),
    ("sigmoid_cross_entropy", 0.0, 0.0, 0.5),  # max and |.| kinks at z = 0 cancel
    ("sigmoid_cross_entropy", 0.0, 0.3, 0.2),
    ("sigmoid_cross_entropy", 0.0, 1.0, -0.5),
    ("mse", 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("loss, out, target, want", KINKS)
def test_loss_derivatives_agree_at_their_kinks(loss, out, target, want, x64):
    lossdef = losses.get_loss(loss)
    o, t = jnp.full((1, 1), out), jnp.full((1, 1), target)
    hand = float(lossdef.deriv(o, t)[0, 0])
    auto = float(jax.grad(lambda o: lossdef.fn(o, t)[0])(o)[0, 0])
    assert hand == pytest.approx(want, abs=1e-15)
    assert auto == pytest.approx(want, abs=1e-15)


def _exact_ce(z, y) -> float:
    getcontext().prec = 60
    zs = [Decimal(float(v)) for v in z]
    return float(sum((v - zs[y]).exp() for v in zs).ln())


CE_CASES = [(s * np.array([1.0, 0.99, 0.98]), y) for s in (1, 10, 100, 1000, 3000, 1e4)
            for y in (0, 2)] + [(np.array([5.0, 5.0, -3.0]), 0), (np.array([0.0, 0.0]), 1)]


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-14), ("float32", 2e-6)])
@pytest.mark.parametrize("z, y", CE_CASES)
def test_softmax_cross_entropy_keeps_its_precision_when_small(z, y, dtype, rtol):
    """[1000, 990, 980] with label 0 is 4.540e-5 exactly; logsumexp(z) - z_y gave 6.10e-5
    in float32 (and 0 at scale 1e4)."""
    with jax.enable_x64(dtype == "float64"):
        got = float(losses.softmax_cross_entropy(jnp.asarray(z[None], dtype),
                                                 jnp.array([y]))[0])
    exact = _exact_ce(np.asarray(z, dtype), y)  # the logits as rounded to dtype
    tiny = np.finfo(dtype).tiny
    if exact > tiny:
        assert got == pytest.approx(exact, rel=rtol), (got, exact)
    else:  # below the normal range: at most a subnormal's worth off
        assert abs(got - exact) <= tiny


def test_cross_entropy_gradient_keeps_its_precision_when_small():
    z = jnp.array([[1000.0, 990.0, 980.0]], jnp.float32)
    g = np.asarray(losses.d_softmax_cross_entropy(z, jnp.array([0])))[0]
    getcontext().prec = 60
    e = [Decimal(-10).exp(), Decimal(-20).exp()]
    s = e[0] + e[1]
    want = [float(-s / (1 + s)), float(e[0] / (1 + s)), float(e[1] / (1 + s))]
    np.testing.assert_allclose(g, want, rtol=2e-6)  # softmax - 1 would be -4.5776e-5
