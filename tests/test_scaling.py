"""Raw pixels cannot reach a trained model by mistake: fnmlp.scaling on its own, and
through SavedModel.predict* (load_model) and fit."""

import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import fnmlp
from fnmlp.io import model_config
from fnmlp.scaling import input_range_warning, raw_input_scale, warn_input_range

MNIST = {"kind": "mnist", "width": 784, "scale": "pixel / 255"}


def _pixels(n=6, seed=0):
    """Digit-like uint8 pictures [n, 784]: dark background, a bright bar each."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 20, 2)
        x[i, r: r + 6, 4:24] = rng.integers(150, 256)
        x[i, 4:24, c: c + 3] = 255
    return x.reshape(n, 784)


def test_raw_input_scale_divides_raw_pixels_by_255():
    raw = _pixels()
    got = raw_input_scale(raw, MNIST)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, raw.astype(np.float32) / 255)
    as_float = raw.astype(np.float32)  # floats above 1 are pixels too
    np.testing.assert_array_equal(raw_input_scale(as_float, MNIST), got)
    scaled = raw.astype(np.float32) / 255  # already scaled: untouched
    assert raw_input_scale(scaled, MNIST) is scaled
    # no recorded scaling (features, regression): untouched, whatever the range
    feats = np.array([[300.0, -2.0]])
    assert raw_input_scale(feats, None) is feats
    assert raw_input_scale(feats, {"kind": "features", "width": 2}) is feats


@pytest.mark.parametrize("x, needle", [
    (np.full((1, 784), 400.0), r"pixels / 255.*got float64 values in \[400, 400\].*neither"),
    (np.full((1, 784), -0.6), r"got float64 values in \[-0.6, -0.6\]"),
    (np.array([[0.0, 1.0, 7.0]]), r"values in \[0, 7\], which is neither"),  # 1.5 < 7 < 16
    (np.array([[0, 256]], np.int32), r"integer inputs are raw pixels 0..255.*\[0, 256\]"),
    (np.array([[-1, 3]], np.int64), r"integer inputs are raw pixels"),
])
def test_raw_input_scale_refuses_what_is_not_pixels(x, needle):
    with pytest.raises(ValueError, match=needle):
        raw_input_scale(x, MNIST)


def test_the_rule_is_the_dtype_and_a_clear_range_never_one_stray_value():
    """Issue 39 item 1: a scaled batch with one bicubic overshoot (1.02) used to be
    divided by 255 as a whole. Integers are raw, floats in [-0.5, 1.5] scaled, floats
    reaching 16 (within 255 x that range) raw; the same row gets the same answer in any
    batch."""
    scaled = _pixels(20).astype(np.float32) / 255
    stray = scaled.copy()
    stray[3, 100] = 1.02  # one of 15,680 values
    np.testing.assert_array_equal(raw_input_scale(stray, MNIST), stray)
    under = scaled.copy()
    under[0, 0] = -0.03  # an undershoot too
    assert raw_input_scale(under, MNIST) is under
    # raw pixels as floats, with an overshoot beyond 255 and below 0: divided by 255
    raw = _pixels(20).astype(np.float32)
    raw[0, 0], raw[1, 1] = 262.0, -4.0
    np.testing.assert_allclose(raw_input_scale(raw, MNIST), raw / 255, rtol=1e-7)
    # integers: raw whatever their range within 0..255, even all 0/1 (the same answer
    # for a row whatever its neighbours), but 0/1 said aloud: nearly black as raw pixels
    with pytest.warns(UserWarning, match=r"only reach 1 \(nearly black\).*pass x \* 255"):
        got = raw_input_scale(np.array([[0, 1]], np.int64), MNIST)
    np.testing.assert_array_equal(got, np.array([[0, 1 / 255]], np.float32))


def test_a_saved_model_answers_a_row_the_same_whatever_its_neighbours(mnist_model):
    scaled = _pixels(40, seed=3).astype(np.float32) / 255
    stray = scaled.copy()
    stray[7, 300] = 1.02
    a = np.asarray(mnist_model.predict_proba(scaled))
    b = np.asarray(mnist_model.predict_proba(stray))
    np.testing.assert_array_equal(np.delete(a, 7, 0), np.delete(b, 7, 0))
    one = np.asarray(mnist_model.predict_proba(scaled[:1]))
    np.testing.assert_allclose(one, a[:1], rtol=1e-6, atol=1e-7)


def test_an_unknown_recorded_scale_refuses_raw_inputs_and_says_how():
    config = {"scale": "(x - 33.3) / 78.6"}
    with pytest.raises(ValueError, match=r"scaled as '\(x - 33.3\) / 78.6'.*\[0, 255\]"):
        raw_input_scale(_pixels(), config)
    ok = np.zeros((1, 784), np.float32)
    assert raw_input_scale(ok, config) is ok


def test_input_range_warning():
    assert input_range_warning(np.random.default_rng(0).normal(size=(50, 4))) is None
    assert input_range_warning(_pixels().astype(np.float32) / 255) is None
    assert input_range_warning(np.array([[0, 1]], np.uint8)) is None  # 0/1 bytes
    msg = input_range_warning(_pixels())
    assert msg.startswith("inputs range 0..255 (dtype uint8)") and "divide by 255" in msg
    assert "divide by 255" in input_range_warning(_pixels().astype(np.float32))
    msg = input_range_warning(np.array([[1990.0, -3.0], [2020.0, 4.0]]))
    assert msg.startswith("inputs range -3..2020") and "standardise" in msg


def test_warn_input_range_points_at_the_caller():
    def fit_like(x):
        warn_input_range(x)

    with pytest.warns(UserWarning, match="divide by 255") as record:
        fit_like(_pixels())
    assert record[0].filename == __file__


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory):
    """A 784-16-10 model saved the way train_mnist.py saves it (config['input'])."""
    model = fnmlp.mlp([784, 16, 10], "relu")
    params = model.init_params(jax.random.key(0))
    path = tmp_path_factory.mktemp("m") / "checkpoint.npz"
    fnmlp.save_checkpoint(path, params, model_config(model, "softmax_cross_entropy",
                                                     input=MNIST))
    return fnmlp.load_model(path)


def test_model_predict_star_on_raw_uint8_equals_on_scaled(mnist_model):
    raw = _pixels(20)
    scaled = raw.astype(np.float32) / 255
    for method in ("predict", "predict_proba", "predict_classes"):
        a = np.asarray(getattr(mnist_model, method)(raw))
        b = np.asarray(getattr(mnist_model, method)(scaled))
        np.testing.assert_array_equal(a, b, err_msg=method)
    # the witness that the scaling mattered: the free function on raw pixels differs
    free = np.asarray(fnmlp.predict_proba(mnist_model.model, mnist_model.params,
                                          raw.astype(np.float32)))
    assert np.abs(free - np.asarray(mnist_model.predict_proba(scaled))).max() > 0.05
    with pytest.raises(ValueError, match="which is neither"):
        mnist_model.predict_proba(np.full((1, 784), 1000.0))


def test_fit_warns_once_about_raw_pixels():
    x, y = _pixels(32), np.arange(32) % 2
    model = fnmlp.mlp([784, 2])
    params = model.init_params(jax.random.key(0))
    with pytest.warns(UserWarning, match=r"inputs range 0\.\.255.*divide by 255") as record:
        fnmlp.fit(model, params, x, y, epochs=2, batch_size=16, verbose=False)
    assert len([w for w in record if "divide by 255" in str(w.message)]) == 1
    assert record[0].filename == __file__  # points at the call of fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scaled inputs: no warning
        fnmlp.fit(model, params, x / 255.0, y, epochs=1, batch_size=16, verbose=False)


@pytest.mark.parametrize("to", [lambda a: a.astype(ml_dtypes.bfloat16),
                                lambda a: jnp.asarray(a, jnp.bfloat16)])
def test_fit_warns_about_raw_pixels_given_in_bfloat16(to):
    """Read from the inputs as given, bfloat16 (NumPy kind "V") was not taken for numbers
    and the warning fell silent (a breaker's find)."""
    x = to(_pixels().reshape(-1, 4).astype(np.float32))
    y = np.arange(len(x)) % 2
    model = fnmlp.mlp([4, 3, 2])
    with pytest.warns(UserWarning, match="look like raw pixels"):
        fnmlp.fit(model, model.init_params(jax.random.key(0)), x, y, epochs=1,
                  batch_size=len(x), verbose=False)
