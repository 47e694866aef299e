"""fnmlp.predict (and fnmlp.population.ensemble_predict_proba, evaluate of a probability
model): what
a model outputs decides what a probability is. A model ending in Softmax gives its own
output, never a softmax of it; a model of logits gives softmax (or sigmoid) of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp.layers import Dense, Relu, Softmax, serial

# one feature, logits [0, 200]: softmax underflows to exactly [0, 1] in float32
SURE = serial(Dense(2), Softmax(), in_features=1)
SURE_PARAMS = [{"w": jnp.zeros((1, 2)), "b": jnp.array([0.0, 200.0])}]
X1 = np.ones((3, 1), np.float32)


@pytest.mark.parametrize("loss", [None, "categorical_cross_entropy"])
def test_predict_proba_of_a_model_ending_in_softmax_is_its_output(loss):
    """Its output [0, 1] stays [0, 1]; a second softmax would give [0.269, 0.731]."""
    out = np.asarray(fnmlp.predict(SURE, SURE_PARAMS, X1))
    assert np.array_equal(out, np.tile([0.0, 1.0], (3, 1)).astype(np.float32))
    proba = np.asarray(fnmlp.predict_proba(SURE, SURE_PARAMS, X1, loss))
    assert np.array_equal(proba, out)
    assert np.array_equal(np.asarray(fnmlp.predict_classes(SURE, SURE_PARAMS, X1, loss)),
                          [1, 1, 1])
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), SURE_PARAMS)
    got = fnmlp.population.ensemble_predict_proba(SURE, stacked, X1, loss)
    assert np.array_equal(np.asarray(got), out)


def test_a_nested_softmax_at_the_end_is_the_end():
    model = serial(Dense(4), Relu(), serial(Dense(2), Softmax()), in_features=1)
    params = [{"w": jnp.ones((1, 4)), "b": jnp.zeros(4)},
              [{"w": jnp.zeros((4, 2)), "b": jnp.array([0.0, 200.0])}]]  # the inner serial's
    proba = np.asarray(fnmlp.predict_proba(model, params, X1))
    assert np.array_equal(proba, np.tile([0.0, 1.0], (3, 1)).astype(np.float32))


def test_an_ensemble_of_probability_models_averages_their_outputs():
    rng = np.random.default_rng(0)
    model = serial(Dense(3), Softmax(), in_features=4)
    members = [model.init_params(jax.random.key(k)) for k in range(3)]
    x = rng.normal(size=(5, 4)).astype(np.float32)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
    want = np.mean([np.asarray(fnmlp.predict(model, p, x)) for p in members], axis=0)
    got = np.asarray(fnmlp.population.ensemble_predict_proba(model, stacked, x))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1, rtol=1e-6)


def test_evaluate_of_a_probability_model_is_the_closed_form_loss():
    """categorical_cross_entropy of a Softmax model: -mean log p[y], p from NumPy in float64
    (evaluate sums in float32: 40 terms of ~1, so a relative error of ~1e-6 at most)."""
    rng = np.random.default_rng(1)
    model = serial(Dense(3), Softmax(), in_features=4)
    params = model.init_params(jax.random.key(2))
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    z = x.astype(np.float64) @ np.asarray(params[0]["w"], np.float64) + np.asarray(
        params[0]["b"], np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -np.mean(np.log(p[np.arange(40), y]))
    got = fnmlp.evaluate(model, params, x, y, loss="categorical_cross_entropy")
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)
    assert got["accuracy"] == np.float32(np.mean(p.argmax(1) == y))  # 17/40 in float32
    np.testing.assert_allclose(
        float(fnmlp.loss(model, params, x, y, "categorical_cross_entropy")), want, rtol=1e-5)


def test_predict_proba_of_logits_is_softmax_or_sigmoid_of_them(x64):
    rng = np.random.default_rng(3)
    model = fnmlp.mlp([4, 6, 3], "tanh")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x = rng.normal(size=(7, 4))
    z = np.asarray(fnmlp.predict(model, params, x))
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(fnmlp.predict_proba(model, params, x)), soft,
                               rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fnmlp.predict_proba(model, params, x, "softmax_cross_entropy")), soft,
        rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fnmlp.predict_proba(model, params, x, "sigmoid_cross_entropy")),
        1 / (1 + np.exp(-z)), rtol=1e-12)
    assert np.array_equal(np.asarray(fnmlp.predict_classes(model, params, x)), z.argmax(1))
    assert np.array_equal(
        np.asarray(fnmlp.predict_classes(model, params, x, "sigmoid_cross_entropy")),
        (z > 0).astype(np.int32))


def test_a_regression_loss_has_no_probabilities_or_classes():
    model = fnmlp.mlp([4, 3])
    params = model.init_params(jax.random.key(0))
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="probabilities need a classification loss"):
        fnmlp.predict_proba(model, params, x, "mse")
    with pytest.raises(ValueError, match="classes need a classification loss"):
        fnmlp.predict_classes(model, params, x, "mse")


def test_prediction_runs_in_evaluation_mode():
    model = serial(Dense(8), Relu(), fnmlp.layers.Dropout(0.5), Dense(3), in_features=4)
    plain = serial(Dense(8), Relu(), Dense(3), in_features=4)
    params = model.init_params(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    assert np.array_equal(np.asarray(fnmlp.predict(model, params, x)),
                          np.asarray(fnmlp.predict(plain, params, x)))
