"""Per-class metrics (fnmlp.metrics): what accuracy hides on imbalanced data. The
confusion matrix, precision, recall and balanced accuracy against hand-counted cases, and
classification_report against the model's own predictions."""

import jax
import numpy as np
import pytest
from conftest import count_compiles

import fnmlp
from fnmlp import data
from fnmlp.layers import Dense, Relu, Softmax, serial

XS = data.make_spirals(192, arms=3, seed=4)


def test_per_class_metrics_against_a_hand_counted_confusion_matrix():
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2, 2, 0, 1]
    m = fnmlp.metrics.per_class_metrics(y_true, y_pred, 3)
    # counted by hand: true 0 -> predicted (0, 1); true 1 -> (1, 1, 0); true 2 -> (2, 2, 0, 1)
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [1, 1, 2]]
    np.testing.assert_allclose(m["precision"], [1 / 3, 2 / 4, 2 / 2], rtol=1e-15)
    np.testing.assert_allclose(m["recall"], [1 / 2, 2 / 3, 2 / 4], rtol=1e-15)
    assert m["support"] == [2, 3, 4]
    assert m["accuracy"] == pytest.approx(5 / 9, rel=1e-15)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 4) / 3, rel=1e-15)


def test_per_class_metrics_of_a_class_never_predicted_or_absent():
    # the accuracy-hides-it case: everything predicted 0
    m = fnmlp.metrics.per_class_metrics([0, 0, 0, 0, 1], [0, 0, 0, 0, 0], 3)
    assert m["confusion_matrix"] == [[4, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert m["accuracy"] == 0.8
    assert m["recall"] == [1.0, 0.0, 0.0] and m["precision"] == [0.8, 0.0, 0.0]
    assert m["balanced_accuracy"] == 0.5  # class 2 is absent from y_true: not averaged
    with pytest.raises(ValueError, match=r"y_pred labels must be in \[0, 3\); got 3 at index 1"):
        fnmlp.metrics.per_class_metrics([0, 1], [0, 3], 3)


def test_classification_report_counts_the_models_predictions():
    model = serial(Dense(8), Relu(), Dense(3))
    params = model.init_params(jax.random.key(2), 2)
    report = fnmlp.classification_report(model, params, XS.x, XS.y)
    pred = np.asarray(fnmlp.predict_classes(model, params, XS.x))
    cm = np.zeros((3, 3), int)
    for t, p in zip(XS.y, pred):
        cm[t, p] += 1
    assert report["confusion_matrix"] == cm.tolist()
    assert report["accuracy"] == pytest.approx(float(np.mean(pred == XS.y)))
    # one sigmoid output: classes 0/1, predicted 1 where the logit is > 0
    m1 = fnmlp.mlp([2, 4, 1])
    p1 = m1.init_params(jax.random.key(3))
    t = (XS.y == 1).astype(np.float32)
    r = fnmlp.classification_report(m1, p1, XS.x, t, loss="sigmoid_cross_entropy")
    logit = np.asarray(fnmlp.predict(m1, p1, XS.x))[:, 0]
    assert r["confusion_matrix"][1][1] == int(np.sum((logit > 0) & (t == 1)))
    assert sum(map(sum, r["confusion_matrix"])) == 192


def test_classification_report_of_a_model_ending_in_softmax():
    """The probabilities' argmax with a loss on probabilities; a loss on logits is refused
    before anything compiles (softmax would be applied twice)."""
    model = serial(Dense(8), Relu(), Dense(3), Softmax(), in_features=2)
    params = model.init_params(jax.random.key(2))
    r = fnmlp.classification_report(model, params, XS.x, XS.y,
                                     loss="categorical_cross_entropy")
    pred = np.asarray(fnmlp.predict(model, params, XS.x)).argmax(1)
    assert r["accuracy"] == pytest.approx(float(np.mean(pred == XS.y)))
    with count_compiles() as compiles, pytest.raises(
            ValueError, match="softmax would be applied twice"):
        fnmlp.classification_report(model, params, XS.x, XS.y)
    assert compiles == []


def test_classification_report_and_confusion_matrix_refuse_what_has_no_classes():
    model = fnmlp.mlp([2, 4, 1])
    params = model.init_params(jax.random.key(0))
    with pytest.raises(ValueError, match="per-class metrics need a classification loss; got"
                                         " loss='mse'"):
        fnmlp.classification_report(model, params, XS.x, XS.x[:, :1], loss="mse")
    with pytest.raises(ValueError, match="n_classes must be an integer >= 1; got 0"):
        fnmlp.metrics.confusion_matrix([0], [0], 0)
    with pytest.raises(ValueError, match="the same length; got 2 and 1"):
        fnmlp.metrics.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"y_true must be integer class labels of shape"
                                         r" \(N,\); got float64"):
        fnmlp.metrics.confusion_matrix(np.array([0.0, 1.0]), [0, 1], 2)
