"""Answers you can trust (issue 39): each fact decided in one place, tested through every
entry point that reports it, against an outside witness where there is one.

* what a one-output model predicts: ``fnmlp.predict.task`` (predict_proba,
  predict_classes, ensemble_predict_proba, SavedModel);
* which learning rate applies: ``fnmlp.train.fit.choose_optimizer`` (fresh and resumed)
  and the builders' own defaults (``fnmlp.optim.default_learning_rate``);
* a gradient's norm: ``fnmlp.optim.global_norm`` (clipping at any finite size);
* the dtype the model sees and reports in: ``_validate.cast`` (x and targets, checked
  after the cast) and ``train.step.metric_dtype`` (losses and metrics);
* half-precision optimizer state: ``fnmlp.optim.state_dtype``;
* JSON of a layer's settings: ``fnmlp.layers.base.plain``; a layer's width: checked in
  ``Serial.init``.
"""

import os
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp.layers import Dense, Dropout, Layer, LayerNorm, Relu, serial
from fnmlp.optim import clip_grads_by_global_norm, global_norm


def _blobs(n=200, seed=0, d=2):
    """Two separable blobs: x [n, d] float32, y [n] in {0, 1}."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, d)).astype(np.float32) * 0.5 + (2 * y[:, None] - 1) * 2.0
    return x.astype(np.float32), y


# ----------------------------------------------------------------------------- item 2


@pytest.fixture(scope="module")
def binary_one_output():
    """mlp([2, 16, 1]) trained with sigmoid_cross_entropy to accuracy 1.0."""
    x, y = _blobs()
    model = fnmlp.mlp([2, 16, 1], "tanh")
    r = fnmlp.fit(model, model.init_params(jax.random.key(0)), x, y.astype(np.float32),
                  loss="sigmoid_cross_entropy", optimizer="adam", learning_rate=1e-2,
                  epochs=20, batch_size=20, verbose=False)
    assert fnmlp.evaluate(model, r.params, x, y, loss="sigmoid_cross_entropy")[
        "accuracy"] == 1.0
    return model, r, x, y


def test_a_one_output_model_predicts_two_classes_without_loss(binary_one_output, tmp_path):
    model, r, x, y = binary_one_output
    logit = np.asarray(fnmlp.predict(model, r.params, x))[:, 0]
    witness = 1 / (1 + np.exp(-logit.astype(np.float64)))  # sigmoid, by hand
    classes = np.asarray(fnmlp.predict_classes(model, r.params, x))
    assert classes.shape == (200,)  # [N] labels, as y: (classes == y).mean() is accuracy
    np.testing.assert_array_equal(classes, y)  # was all 0 (argmax of one column)
    np.testing.assert_array_equal(
        classes, fnmlp.predict_classes(model, r.params, x, loss="sigmoid_cross_entropy"))
    proba = np.asarray(fnmlp.predict_proba(model, r.params, x))
    np.testing.assert_allclose(proba[:, 0], witness, rtol=1e-5, atol=1e-7)  # was all 1.0
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), r.params)
    ens = np.asarray(fnmlp.population.ensemble_predict_proba(model, stacked, x))
    np.testing.assert_allclose(ens, proba, rtol=1e-6)
    path = tmp_path / "c.npz"
    fnmlp.save_checkpoint(path, r.state, fnmlp.model_config(model, "sigmoid_cross_entropy"))
    saved = fnmlp.load_model(path)
    np.testing.assert_array_equal(np.asarray(saved.predict_classes(x)), classes)
    # two outputs and no loss: still one label of two (softmax), as before
    two = fnmlp.mlp([2, 2])
    p2 = two.init_params(jax.random.key(1))
    assert fnmlp.predict_classes(two, p2, x).shape == (200,)


# ----------------------------------------------------------------------------- item 3 and defaults


def _lr_after(result):
    return result.history[-1]["learning_rate"]


def test_one_learning_rate_rule_fresh_and_resumed():
    x, y = _blobs(64)
    model = fnmlp.mlp([2, 4, 2])
    params = model.init_params(jax.random.key(0))
    kw = dict(batch_size=16, verbose=False)
    # two rates for one run: refused in one line, fresh and resumed alike
    with pytest.raises(ValueError, match=r"learning_rate=1e-06 given with an optimizer object"):
        fnmlp.fit(model, params, x, y, optimizer=fnmlp.sgd(0.1), learning_rate=1e-6,
                  epochs=1, **kw)
    first = fnmlp.fit(model, params, x, y, optimizer="sgd", learning_rate=0.1, epochs=1, **kw)
    with pytest.raises(ValueError, match="given with an optimizer object"):
        fnmlp.fit(model, params, x, y, optimizer=fnmlp.sgd(0.1), learning_rate=1e-6,
                  epochs=2, state=first.state, **kw)
    sched = fnmlp.sgd(fnmlp.schedules.step_decay(0.1, 2, 0.5))
    with pytest.raises(ValueError, match="given with an optimizer object"):
        fnmlp.fit(model, params, x, y, optimizer=sched, learning_rate=1e-6, epochs=2,
                  state=first.state, **kw)
    # a name and a rate: applied fresh and on resume
    fresh = fnmlp.fit(model, params, x, y, optimizer="sgd", learning_rate=1e-6, epochs=1, **kw)
    resumed = fnmlp.fit(model, params, x, y, optimizer="sgd", learning_rate=1e-6, epochs=2,
                        state=first.state, **kw)
    assert _lr_after(fresh) == _lr_after(resumed) == pytest.approx(1e-6, rel=1e-6)
    # a name alone keeps the state's rate on resume
    kept = fnmlp.fit(model, params, x, y, optimizer="sgd", epochs=2, state=first.state, **kw)
    assert _lr_after(kept) == pytest.approx(0.1, rel=1e-6)
    # the effect, not just the record: sgd at 1e-6 barely moves the params
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(fresh.params), jax.tree.leaves(params)))
    assert 0 < moved < 1e-4


@pytest.mark.parametrize("name, rate", [("adam", 1e-3), ("adamw", 1e-3), ("rmsprop", 1e-2),
                                        ("sgd", 0.1), ("momentum", 0.1), ("nesterov", 0.1)])
def test_each_optimizer_trains_at_its_own_default_rate(name, rate):
    x, y = _blobs(32)
    model = fnmlp.mlp([2, 2])
    r = fnmlp.fit(model, model.init_params(jax.random.key(0)), x, y, optimizer=name,
                  epochs=1, batch_size=16, verbose=False)
    assert _lr_after(r) == pytest.approx(rate, rel=1e-6)  # adam was 0.1
    assert fnmlp.optim.default_learning_rate(name) == rate


# ----------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("g, dtype", [([300.0], jnp.float16), ([1e20], jnp.float32),
                                      ([3e19, -4e19], jnp.float32), ([1e-30, 2e-30], jnp.float32),
                                      ([60000.0, 60000.0], jnp.float16)])
def test_clipping_keeps_the_direction_at_any_finite_size(g, dtype):
    grads = {"w": jnp.asarray(g, dtype)}
    witness = np.asarray(g, np.float64)  # the norm in float64, by NumPy
    norm = np.linalg.norm(witness)
    assert float(global_norm(grads)) == pytest.approx(norm, rel=1e-3 if dtype == jnp.float16
                                                      else 1e-6)
    clipped = np.asarray(clip_grads_by_global_norm(grads, 1.0)["w"], np.float64)
    want = witness * min(1.0, 1.0 / (norm + 1e-6))  # PyTorch's clip_grad_norm_
    tol = 2e-3 if dtype == jnp.float16 else 1e-6
    np.testing.assert_allclose(clipped, want, rtol=tol, atol=1e-45)
    assert clipped.dtype == np.float64 and np.all(np.isfinite(clipped))


def test_a_clipped_sgd_step_is_the_clip_norm_times_the_rate():
    opt = fnmlp.sgd(0.1, clip_norm=1.0)
    params = {"w": jnp.array([1.0, 1.0])}
    updates, _ = opt.update({"w": jnp.array([3e20, -4e20])}, opt.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), [-0.06, 0.08], rtol=1e-6)  # was -0.0
    assert float(global_norm({"a": jnp.zeros(3)})) == 0.0
    assert np.isinf(float(global_norm({"a": jnp.array([np.inf, 1.0])})))
    assert np.isnan(float(global_norm({"a": jnp.array([np.nan, 1.0])})))


# ----------------------------------------------------------------------------- item 5


def test_float64_inputs_beyond_float32_are_refused_where_the_model_sees_them():
    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x = np.array([[1e39, 0.0], [1.0, 2.0]])  # float64, finite; inf in float32
    y = np.array([0, 1])
    msg = r"x must fit the model's dtype float32.*got 1e\+39 at index \(0, 0\)"
    with pytest.raises(ValueError, match=msg):
        fnmlp.predict(model, params, x)
    with pytest.raises(ValueError, match=msg):
        fnmlp.evaluate(model, params, x, y)
    with pytest.raises(ValueError, match=msg):
        fnmlp.fit(model, params, x, y, epochs=1, batch_size=2, verbose=False)
    with pytest.raises(ValueError, match=r"y must fit the model's dtype float32"):
        fnmlp.evaluate(fnmlp.mlp([2, 1]), fnmlp.mlp([2, 1]).init_params(jax.random.key(0)),
                       x[1:], np.array([[-1e300]]), loss="mse")
    # float64 values within float32's range are fine
    assert fnmlp.predict(model, params, np.array([[3e38, 0.0]])).shape == (1, 2)


# ----------------------------------------------------------------------------- item 6


def test_float64_regression_evaluates_and_validates_in_float64(x64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x @ np.array([[1.0], [-2.0], [0.5]])) + 0.1  # NumPy float64 targets [N, 1]
    model = fnmlp.mlp([3, 8, 1], "tanh")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    got = fnmlp.evaluate(model, params, x, y, loss="mse", batch_size=16)  # crashed
    out = np.asarray(fnmlp.predict(model, params, x), np.float64)
    assert got["mse"] == pytest.approx(np.mean((out - y) ** 2), rel=1e-13)
    assert got["mae"] == pytest.approx(np.mean(np.abs(out - y)), rel=1e-13)
    r = fnmlp.fit(model, params, x, y, loss="mse", validation_split=0.25, epochs=2,
                  batch_size=10, verbose=False)  # crashed after the first epoch
    assert np.isfinite(r.history[-1]["val_loss"])
    assert r.state.params[0]["w"].dtype == jnp.float64
    pop = fnmlp.fit_population(model, x[:30], y[:30], fnmlp.population.grid(lr=(1e-2, 1e-3)),
                               loss="mse", validation_data=(x[30:], y[30:]), epochs=1,
                               batch_size=10, verbose=False)  # crashed in validation
    assert all(np.isfinite(h[-1]["val_loss"]) for h in pop.history)


def test_a_float64_classifier_is_evaluated_in_float64(x64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), np.arange(30) % 3
    model = fnmlp.mlp([4, 5, 3], "tanh")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    params = jax.tree.map(lambda a: a * 7.3, params)  # a loss with many digits
    want = float(fnmlp.loss(model, params, x, y))  # float64
    got = fnmlp.evaluate(model, params, x, y)["loss"]
    assert got == pytest.approx(want, rel=1e-13)  # was 1.8e-7 off (float32)


# ----------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_float16_params_train_through_an_always_zero_gradient(optimizer):
    x, y = _blobs(64, d=3)
    x[:, 2] = 0.0  # an always-blank pixel: its weights' gradient is exactly 0
    model = fnmlp.mlp([3, 4, 2], "tanh")
    p16 = model.init_params(jax.random.key(0), dtype=jnp.float16)
    r = fnmlp.fit(model, p16, x, y, optimizer=optimizer, epochs=3, batch_size=16,
                  verbose=False)  # was TrainingDiverged at epoch 1 (0 / 0 in float16)
    assert all(np.isfinite(h["train_loss"]) for h in r.history)
    assert r.state.params[0]["w"].dtype == jnp.float16
    state = r.state.opt_state
    buffers = fnmlp.optim.tree_get(state, "nu")  # Adam's or RMSprop's, in the chain's state
    assert buffers[0]["w"].dtype == jnp.float32 and state.learning_rate.dtype == jnp.float32
    # the same run in float32 follows the same path, to float16's precision
    r32 = fnmlp.fit(model, jax.tree.map(lambda a: a.astype(jnp.float32), p16), x, y,
                    optimizer=optimizer, epochs=3, batch_size=16, verbose=False)
    assert r.history[-1]["train_loss"] == pytest.approx(r32.history[-1]["train_loss"],
                                                        abs=0.02)


# ----------------------------------------------------------------------------- item 8


def test_resuming_to_an_epoch_already_reached_is_refused():
    x, y = _blobs(32)
    model = fnmlp.mlp([2, 2])
    params = model.init_params(jax.random.key(0))
    r = fnmlp.fit(model, params, x, y, epochs=5, batch_size=16, verbose=False)
    for epochs in (3, 5):
        with pytest.raises(ValueError, match=r"epochs=\d but the state is already at epoch 5"):
            fnmlp.fit(model, params, x, y, epochs=epochs, batch_size=16, state=r.state,
                      verbose=False)
    more = fnmlp.fit(model, params, x, y, epochs=6, batch_size=16, state=r.state,
                     verbose=False)
    assert [h["epoch"] for h in more.history] == [6]


# ----------------------------------------------------------------------------- item 9


def test_numpy_scalars_in_layers_save_after_training(tmp_path):
    model = serial(Dense(np.int64(8)), Relu(), Dropout(np.float32(0.1)),
                   LayerNorm(eps=np.float32(1e-5)), Dense(2), in_features=2)
    x, y = _blobs(32)
    seen = []

    def save(state, record):  # an on_epoch_end checkpoint, as the scripts write it
        seen.append(fnmlp.save_checkpoint(tmp_path / "c.npz", state,
                                          fnmlp.model_config(model, "softmax_cross_entropy",
                                                             extra=np.int64(3))))

    fnmlp.fit(model, model.init_params(jax.random.key(0)), x, y, epochs=2, batch_size=16,
              verbose=False, on_epoch_end=save)
    assert len(seen) == 2
    saved = fnmlp.load_model(tmp_path / "c.npz")
    assert saved.model == model and saved.config["extra"] == 3
    assert isinstance(model.layers[2].rate, float) and model.layers[2].rate == pytest.approx(0.1)
    assert Dropout(np.float32(0.5)) == Dropout(0.5) and hash(LayerNorm(np.float64(1e-3))) == \
        hash(LayerNorm(1e-3))
    with pytest.raises(ValueError, match="config must hold only what JSON can"):
        fnmlp.save_checkpoint(tmp_path / "d.npz", {"a": jnp.ones(1)}, {"bad": object()})


# ----------------------------------------------------------------------------- item 10


@dataclass(frozen=True)
class WithSquares(Layer):
    """[x, x^2]: width 2d, but its init says d (the mistake of keras #11753)."""

    has_params = False

    def init(self, key, in_features, dtype=jnp.float32):
        return in_features, ()

    def forward(self, params, x, ctx=None):
        return jnp.concatenate([x, x * x], axis=-1), x

    def backward(self, params, x, dy):
        d = x.shape[1]
        return (), dy[:, :d] + 2 * x * dy[:, d:]


def test_a_layer_whose_init_reports_the_wrong_width_is_named():
    model = serial(Dense(4), WithSquares(), Dense(2), in_features=3)
    msg = r"layer 1:WithSquares: init reports 4 output features .* returns shape \(1, 8\)"
    with pytest.raises(ValueError, match=msg):
        model.init_params(jax.random.key(0))
    x, y = _blobs(16, d=3)
    good = serial(Dense(4), Dense(2), in_features=3).init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=msg):
        fnmlp.fit(model, good, x, y, epochs=1, batch_size=8, verbose=False)


# ----------------------------------------------------------------------------- item 11


def test_sparse_inputs_get_told_to_densify():
    sparse = pytest.importorskip("scipy.sparse")
    model = fnmlp.mlp([2, 2])
    params = model.init_params(jax.random.key(0))
    x, y = _blobs(8)
    for call in (lambda: fnmlp.predict(model, params, sparse.csr_matrix(x)),
                 lambda: fnmlp.fit(model, params, sparse.csr_matrix(x), y, epochs=1,
                                   batch_size=4, verbose=False)):
        with pytest.raises(ValueError, match=r"x must be a dense array; got a sparse"
                                             r" csr_matrix of shape \(8, 2\): pass x.toarray"):
            call()


# ----------------------------------------------------------------------------- a breaker's findings


def test_accuracy_of_a_one_output_model_against_labels():
    out = jnp.array([[3.0], [-2.0], [4.0], [-1.0]])
    y = np.array([1, 0, 1, 0])
    for loss in ("sigmoid_cross_entropy", None):  # was 0.5: [N, 1] == [N] broadcast to [N, N]
        assert float(fnmlp.accuracy(out, y, loss)) == 1.0
        assert float(fnmlp.losses.zero_one_loss(out, y, loss)) == 0.0
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 1\)"):
        fnmlp.accuracy(out, np.ones((4, 2)), "sigmoid_cross_entropy")


def test_a_one_output_multiclass_task_is_refused_everywhere():
    model = fnmlp.mlp([2, 1])
    params = model.init_params(jax.random.key(0))
    x, _ = _blobs(8)
    soft = serial(Dense(1), fnmlp.layers.Softmax(), in_features=2)
    msg = "a model with one output cannot pick one label of C"
    for call in (
            lambda: fnmlp.evaluate(model, params, x, np.zeros(8, int)),
            lambda: fnmlp.fit(model, params, x, np.zeros(8, int), epochs=1, batch_size=4,
                              verbose=False),
            lambda: fnmlp.predict_proba(model, params, x, loss="softmax_cross_entropy"),
            lambda: fnmlp.predict_classes(soft, soft.init_params(jax.random.key(0)), x)):
        with pytest.raises(ValueError, match=msg):
            call()


def test_bfloat16_raw_pixels_are_scaled_like_any_float(tmp_path):
    from fnmlp.scaling import raw_input_scale

    mnist = {"kind": "mnist", "scale": "pixel / 255"}
    raw = np.array([[0.0, 128.0, 255.0]], np.float32)
    got = np.asarray(raw_input_scale(raw.astype(jnp.bfloat16), mnist), np.float32)
    np.testing.assert_allclose(got, raw / 255, rtol=1e-2)  # was returned unscaled
    with pytest.raises(ValueError, match="x must be finite"):
        raw_input_scale(np.array([[np.nan, 1.0]]), mnist)


def test_clipping_under_jit_near_float32s_largest():
    opt = fnmlp.sgd(0.1, clip_norm=1.0)
    params = {"w": jnp.zeros(2)}
    step = jax.jit(opt.update)  # XLA flushes subnormals: 1 / 1e38 is 0 there
    for g in ([1e38, -1e38], [3.4e38, 3.4e38], [1e38, -5e37]):
        updates, _ = step({"w": jnp.array(g, jnp.float32)}, opt.init(params), params)
        want = -0.1 * np.asarray(g, np.float64) / np.linalg.norm(np.asarray(g, np.float64))
        np.testing.assert_allclose(np.asarray(updates["w"]), want, rtol=1e-6)
    assert float(jax.jit(global_norm)({"w": jnp.array([1e38, -5e37])})) == pytest.approx(
        np.hypot(1e38, 5e37), rel=1e-6)


def test_integers_beyond_a_float16_models_range_are_refused():
    model = fnmlp.mlp([2, 3, 2])
    p16 = model.init_params(jax.random.key(0), dtype=jnp.float16)
    for x in (np.array([[70000, 0]]), jnp.array([[70000, 0]])):
        with pytest.raises(ValueError, match=r"x must fit the model's dtype float16.*70000"):
            fnmlp.predict(model, p16, x)
    assert np.isfinite(np.asarray(fnmlp.predict(model, p16, np.array([[6, 0]])))).all()


def test_floats_beyond_a_bfloat16_models_range_are_refused_as_for_float16():
    """A breaker's find: NumPy's finfo refuses bfloat16, which the check read as "cannot
    overflow": 3.4e38 (finite in float32, beyond bfloat16's 3.39e38) reached the model as
    inf; predict gave -inf, evaluate NaN, fit blamed the learning rate."""
    model = fnmlp.mlp([3, 4, 2], "relu")
    pbf = model.init_params(jax.random.key(0), dtype=jnp.bfloat16)
    x = np.ones((8, 3), np.float32)
    x[0, 0] = 3.4e38
    msg = r"x must fit the model's dtype bfloat16 \(\|v\| <= 3.39e\+38\); got 3.4e\+38"
    for call in (lambda: fnmlp.predict(model, pbf, x),
                 lambda: fnmlp.evaluate(model, pbf, x, np.zeros(8, int)),
                 lambda: fnmlp.fit(model, pbf, x, np.zeros(8, int), epochs=1, batch_size=8,
                                   verbose=False)):
        with pytest.raises(ValueError, match=msg):
            call()
    x[0, 0] = 3.3e38  # within bfloat16's range: no complaint
    assert np.asarray(fnmlp.predict(model, pbf, x)).shape == (8, 2)


def test_a_schedule_resumes_from_a_zero_rate_and_compiles_one_program_for_it():
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import count_compiles

    x, y = _blobs(64, d=3)
    model = fnmlp.mlp([3, 9, 2])  # widths of this test alone
    params = model.init_params(jax.random.key(0))
    opt = fnmlp.sgd(fnmlp.schedules.cosine_warmup(0.1, 4, 20, init_value=0.0))
    with count_compiles() as compiles:  # was 7-15: the schedule's first rate op by op
        r = fnmlp.fit(model, params, x, y, optimizer=opt, epochs=2, batch_size=16,
                      verbose=False)
    assert len(compiles) == 2, compiles  # its first rate, the epoch
    again = fnmlp.fit(model, params, x, y, optimizer=opt, epochs=4, batch_size=16,
                      state=r.state, verbose=False)  # was "learning_rate must be > 0"
    whole = fnmlp.fit(model, params, x, y, optimizer=opt, epochs=4, batch_size=16,
                      verbose=False)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(whole.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a schedule given with a name is a rate asked for, as a number is
    named = fnmlp.fit(model, params, x, y, optimizer="sgd", epochs=2, batch_size=16,
                      learning_rate=fnmlp.schedules.step_decay(0.1, 2, 0.5), verbose=False)
    assert named.history[-1]["learning_rate"] == pytest.approx(0.1 * 0.5 ** 3)


def test_numpy_scalars_and_widths_at_the_builders():
    model = fnmlp.mlp([3, 4, 2], dropout=np.float32(0.2))  # was a TypeError (not iterable)
    rate = model.layers[2].rate
    assert type(rate) is float and rate == pytest.approx(0.2)

    @dataclass(frozen=True)
    class FloatWidth(Layer):
        has_params = False

        def init(self, key, in_features, dtype=jnp.float32):
            return float(in_features), ()

        def forward(self, params, x, ctx=None):
            return x, None

        def backward(self, params, r, dy):
            return (), dy

    with pytest.raises(ValueError, match="layer 0:FloatWidth: init must report its output"
                                         " width as an int; got 3.0"):
        serial(FloatWidth(), Dense(2), in_features=3).init_params(jax.random.key(0))


# ----------------------------------------------------------------------------- items 10 and 13


def test_check_layer_names_a_layer_whose_init_reports_the_wrong_width():
    with pytest.raises(ValueError, match=r"layer 0:WithSquares: init reports 3 output features"):
        fnmlp.check_layer(WithSquares(), 3)


def test_a_gradcheck_report_is_strict_json():
    import json

    @dataclass(frozen=True)
    class Zero(Layer):
        """y = 0 x, with a wrong backward dx = dy where the reference is exactly 0: an
        infinite relative error, which json.dumps wrote as Infinity."""

        has_params = False

        def init(self, key, in_features, dtype=jnp.float32):
            return in_features, ()

        def forward(self, params, x, ctx=None):
            return 0 * x, None

        def backward(self, params, r, dy):
            return (), dy

    result = fnmlp.check_layer(Zero(), 3)
    assert not result.passed
    text = result.to_json()

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    assert json.loads(text, parse_constant=refuse)["passed"] is False
    from fnmlp.gradcheck import json_safe

    assert json_safe({"a": [float("inf"), np.float32(2.0), float("nan")]}) == {
        "a": [None, 2.0, None]}


# ------------------------------------------------------------------------- the breaker's last four


def test_a_float64_saved_model_scales_raw_pixels_in_float64(tmp_path, x64):
    """Before: raw pixels were divided in float32 (1.5e-7 off) and then fed to a float64
    model; now in the model's dtype, so raw and pre-scaled float64 inputs agree exactly."""
    from fnmlp.io import model_config

    model = fnmlp.mlp([784, 8, 10], "tanh")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    path = tmp_path / "m.npz"
    fnmlp.save_checkpoint(path, params, model_config(model, "softmax_cross_entropy",
                                                     input={"kind": "mnist",
                                                            "scale": "pixel / 255"}))
    saved = fnmlp.load_model(path)
    raw = np.random.default_rng(0).integers(0, 256, (5, 784)).astype(np.uint8)
    want = fnmlp.predict(model, params, raw.astype(np.float64) / 255.0)
    got = saved.predict(raw)
    assert got.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_integer_pixels_that_only_reach_one_are_said_aloud():
    from fnmlp.scaling import raw_input_scale

    mnist = {"kind": "mnist", "scale": "pixel / 255"}
    with pytest.warns(UserWarning, match="only reach 1"):
        raw_input_scale(np.eye(4, dtype=np.uint8), mnist)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real raw pixels, and an all-black image: silent
        raw_input_scale(np.array([[0, 200]], np.uint8), mnist)
        raw_input_scale(np.zeros((1, 4), np.uint8), mnist)


def test_confusion_matrix_of_sparse_labels_says_to_densify():
    sparse = pytest.importorskip("scipy.sparse")
    y = sparse.csr_matrix(np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match=r"y_true must be a dense array.*y_true.toarray"):
        fnmlp.metrics.confusion_matrix(y, np.array([0, 1, 1]), 2)


def test_an_idx_file_gzipped_twice_reads(tmp_path):
    import gzip

    from fnmlp.data import read_idx
    from fnmlp.data.mnist import write_idx

    labels = np.arange(10, dtype=np.uint8)
    once = tmp_path / "labels-idx1-ubyte.gz"
    write_idx(once, labels)
    twice = tmp_path / "twice.gz"
    twice.write_bytes(gzip.compress(once.read_bytes()))
    np.testing.assert_array_equal(read_idx(twice, 1), labels)


def test_load_model_keeps_the_saved_dtype(tmp_path):
    """Before: float64 params loaded as float32 silently (load_model's dtype defaulted to
    float32). Now the saved dtype, and where float64 is off, float32 with a warning."""
    from fnmlp.io import model_config

    model = fnmlp.mlp([3, 4, 2], "tanh")
    with jax.enable_x64(True):
        params = model.init_params(jax.random.key(0), dtype=jnp.float64)
        fnmlp.save_checkpoint(tmp_path / "m.npz", params,
                              model_config(model, "softmax_cross_entropy"))
        saved = fnmlp.load_model(tmp_path / "m.npz")
        assert {a.dtype for a in jax.tree.leaves(saved.params)} == {jnp.dtype("float64")}
        np.testing.assert_array_equal(saved.params[0]["w"], params[0]["w"])
    with pytest.warns(UserWarning, match="saved in float64 but float64 is off"):
        saved = fnmlp.load_model(tmp_path / "m.npz")
    assert {a.dtype for a in jax.tree.leaves(saved.params)} == {jnp.dtype("float32")}


def test_float64_asked_by_name_with_float64_off_is_refused_everywhere(tmp_path):
    """One rule for a dtype asked for (``_checks.check_float_dtype``): ``init_params``
    truncated float64 to float32 with JAX's warning while ``fit_population`` refused.
    Now init, ``load_model(dtype=)`` and populations refuse, before anything compiles;
    with float64 on, each gives float64."""
    from conftest import count_compiles

    from fnmlp.io import model_config

    model = fnmlp.mlp([3, 4, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    fnmlp.save_checkpoint(tmp_path / "m.npz", params, model_config(model, "softmax_cross_entropy"))
    x, y = np.ones((8, 3), np.float32), np.arange(8) % 2
    with pytest.raises(ValueError, match="dtype must be a float dtype, .*; got None"):
        model.init_params(jax.random.key(0), dtype=None)  # dtype(None) is float64: it said so
    calls = [lambda: model.init_params(jax.random.key(0), dtype=jnp.float64),
             lambda: fnmlp.load_model(tmp_path / "m.npz", dtype="float64"),
             lambda: fnmlp.fit_population(model, x, y, [fnmlp.population.Member(0.1)], epochs=1,
                                          batch_size=4, verbose=False, dtype=np.float64)]
    for call in calls:
        with count_compiles() as compiles, pytest.raises(ValueError, match=(
                r"dtype=float64 needs JAX's float64: call jax.config.update\('jax_enable_x64'")):
            call()
        assert compiles == []
    with jax.enable_x64(True):
        assert model.init_params(jax.random.key(0), dtype=jnp.float64)[0]["w"].dtype == np.float64
        assert fnmlp.load_model(tmp_path / "m.npz", dtype="float64").params[0]["w"].dtype == (
            np.float64)


@pytest.mark.parametrize("seed", [2**32, -1, 1.5, True, "0", None])
def test_a_seed_outside_0_to_2_32_is_refused_by_fit_and_populations(seed):
    """A breaker's find: fit(seed=2**32) trained bit for bit as seed=0 (the key wraps with
    float64 off), -1 as 2**32-1, 1.5 failed inside JAX, True passed as 1; a member's
    seed -1 died in NumPy's cast. One rule (_checks.check_seed), the scripts' --seed's."""
    from conftest import count_compiles

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.ones((8, 2), np.float32), np.arange(8) % 2
    with count_compiles() as compiles:
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            fnmlp.fit(model, params, x, y, epochs=1, batch_size=4, seed=seed, verbose=False)
        with pytest.raises(ValueError, match=r"member seed must be an integer in \[0, 2"):
            fnmlp.fit_population(model, x, y, [fnmlp.population.Member(0.1, 0.0, seed)],
                                 epochs=1, batch_size=4, verbose=False)
    assert compiles == []
    assert fnmlp.fit(model, params, x, y, epochs=1, batch_size=4, seed=2**32 - 1,
                     verbose=False).history


def test_compute_dtype_follows_the_one_dtype_rule_and_bounds_the_inputs():
    """Breaker's finds: compute_dtype="float64" with float64 off ran in float32 (the loss
    bit for bit a float32 run's) while init_params refused float64; "foo", longdouble and
    float8 failed inside JAX; a float16 compute_dtype turned an input of 1e5 into inf and
    the run 'diverged' naming the learning rate. All refused by name, before compiling."""
    from conftest import count_compiles

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.ones((8, 2), np.float32), np.arange(8) % 2
    fit = lambda cd, x=x: fnmlp.fit(model, params, x, y, epochs=1, batch_size=4,  # noqa: E731
                                    compute_dtype=cd, verbose=False)
    cases = [("float64", r"compute_dtype=float64 needs JAX's float64"),
             ("foo", "compute_dtype must be a float dtype"),
             (np.longdouble, "compute_dtype must be a float dtype"),
             ("float8_e4m3fn", "compute_dtype must be a float dtype")]
    with count_compiles() as compiles:
        for cd, msg in cases:
            with pytest.raises(ValueError, match=msg):
                fit(cd)
            with pytest.raises(ValueError, match=msg):
                fnmlp.train.make_trainer(model, fnmlp.adam(1e-3), 4, compute_dtype=cd)
        big = x.copy()
        big[5, 0] = 1e5
        with pytest.raises(ValueError, match=r"x must fit compute_dtype float16 .* got 100000"
                                             r" at index \(5, 0\)"):
            fit(jnp.float16, big)
    assert compiles == []
    with pytest.warns(UserWarning, match="far outside the usual range"):  # fit's own note
        assert fit(jnp.bfloat16, big).history  # bfloat16's range holds 1e5


def test_load_model_refuses_a_dtype_the_saved_weights_do_not_fit(tmp_path):
    """A breaker's find: load_model(dtype="float16") turned a weight of 1e5 into inf with
    only NumPy's cast warning; predict_proba gave NaN. Refused, naming the layer and index;
    the same file loads in float32, and in float16 once every weight fits."""
    from fnmlp.io import model_config

    model = fnmlp.mlp([3, 4, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    params[0]["w"] = params[0]["w"].at[1, 2].set(1e5)
    fnmlp.save_checkpoint(tmp_path / "m.npz", params, model_config(model, "softmax_cross_entropy"))
    with pytest.raises(ValueError, match=r"layer 0 'w' holds 100000 at index \(1, 2\) .*beyond"
                                         r" float16's range"):
        fnmlp.load_model(tmp_path / "m.npz", dtype="float16")
    assert np.isfinite(np.asarray(fnmlp.load_model(tmp_path / "m.npz").predict_proba(
        np.ones((1, 3), np.float32)))).all()
    params[0]["w"] = params[0]["w"].at[1, 2].set(6e4)
    fnmlp.save_checkpoint(tmp_path / "m.npz", params, model_config(model, "softmax_cross_entropy"))
    assert fnmlp.load_model(tmp_path / "m.npz", dtype="float16").params[0]["w"].dtype == (
        jnp.float16)


def test_float64_params_used_with_float64_off_are_refused_by_every_entry_point():
    """A new user's find: params made inside jax.enable_x64 and trained outside it failed
    inside lax.scan (a raw TypeError on the carry's dtype); evaluate computed in float32
    with JAX's warnings. The params' dtype follows the one dtype rule, before compiling."""
    from conftest import count_compiles

    model = fnmlp.mlp([2, 16, 2], "tanh")
    model.init_params(jax.random.key(0))  # JAX's own key programs, compiled once
    with jax.enable_x64(True):
        p64 = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x, y = np.ones((8, 2), np.float32), np.arange(8) % 2
    calls = [lambda: fnmlp.fit(model, p64, x, y, epochs=1, batch_size=8, verbose=False),
             lambda: fnmlp.evaluate(model, p64, x, y), lambda: fnmlp.predict(model, p64, x),
             lambda: fnmlp.predict_proba(model, p64, x),
             lambda: model.apply(p64, x)]  # it computed in float32 (a breaker's find)
    with count_compiles() as compiles:
        for call in calls:
            with pytest.raises(ValueError, match=r"the params' dtype=float64 needs JAX's"
                                                 r" float64"):
                call()
    assert compiles == []
    with jax.enable_x64(True):
        assert fnmlp.fit(model, p64, x, y, epochs=1, batch_size=8, verbose=False).params[0][
            "w"].dtype == np.float64


def test_backprop_names_a_delta_of_the_wrong_width():
    """A new user's finding: a raw ``dot_general`` TypeError before."""
    model = fnmlp.mlp([4, 5, 3])
    params = model.init_params(jax.random.key(0))
    out, res = fnmlp.grad.forward_with_cache(model, params, jnp.ones((2, 4)))
    assert jax.tree.structure(fnmlp.grad.backprop(model, params, res, jnp.ones_like(out))
                              ) == jax.tree.structure(params)
    with pytest.raises(ValueError, match=r"delta of shape \(2, 5\) does not fit"):
        fnmlp.grad.backprop(model, params, res, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"delta must be dL/d out of shape \[B, C\]"):
        fnmlp.grad.backprop(model, params, res, jnp.ones(3))


# ------------------------------------------------------------- the second breaker's findings


def test_a_wrong_backward_deep_in_a_vanishing_net_is_caught():
    """Before: the README's BadTanh under 11 sigmoid layers passed (its rows were measured
    against the model's largest gradient, 6e7 times its own); now against its own size."""
    from fnmlp.layers import Sigmoid, Tanh

    @dataclass(frozen=True)
    class BadTanh(Tanh):
        def backward(self, params, x, dy):
            return (), dy * (1 - jnp.tanh(x))

    body = [layer for _ in range(11) for layer in (Dense(16), Sigmoid())]
    x = jax.random.normal(jax.random.key(0), (32, 8))
    y = jax.random.randint(jax.random.key(1), (32,), 0, 3)
    bad = serial(Dense(16), BadTanh(), *body, Dense(3), in_features=8)
    params = bad.init_params(jax.random.key(0))
    assert fnmlp.check_gradients(bad, params, x, y).failing_layers() == ["1:BadTanh"]
    good = serial(Dense(16), Tanh(), *body, Dense(3), in_features=8)
    assert fnmlp.check_gradients(good, params, x, y).passed


def test_a_binary_loss_on_probabilities_thresholds_at_one_half():
    """Before: accuracy, classes and the report thresholded probabilities at 0 (all 1s)."""
    from fnmlp.losses import Loss

    def bce(p, t):
        t = t.reshape(p.shape)
        return -jnp.mean(t * jnp.log(p) + (1 - t) * jnp.log1p(-p), axis=1)

    def dbce(p, t):
        t = t.reshape(p.shape)
        return (p - t) / (p * (1 - p)) / p.shape[1]

    @dataclass(frozen=True)
    class SigmoidOut(Layer):
        outputs: ClassVar[str] = "probabilities"

        def init(self, key, d, dtype=jnp.float32):
            return d, ()

        def forward(self, params, x, ctx=None):
            s = jax.nn.sigmoid(x)
            return s, s

        def backward(self, params, s, dy):
            return (), dy * s * (1 - s)

    loss = Loss("bce_on_probabilities", bce, dbce, "binary", "probabilities")
    model = serial(Dense(1), SigmoidOut(), in_features=2)
    params = [{"w": jnp.array([[4.0], [0.0]]), "b": jnp.zeros(1)}, ()]
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-2.0, 1.0]], np.float32)
    y = np.array([1, 0, 1, 0])
    np.testing.assert_array_equal(fnmlp.predict_classes(model, params, x, loss), y)
    assert float(fnmlp.evaluate(model, params, x, y, loss=loss)["accuracy"]) == 1.0
    assert fnmlp.classification_report(model, params, x, y, loss=loss)["accuracy"] == 1.0


def test_a_loss_of_your_own_is_held_to_the_contract():
    from fnmlp.io import model_config
    from fnmlp.losses import LOSSES, Loss

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = jnp.ones((4, 2)), jnp.ones((4, 2))
    mean = Loss("my_mse", lambda o, t: jnp.mean((o - t) ** 2), LOSSES["mse"].deriv,
                "regression")  # a batch mean, where the weighted mean needs [B]
    with pytest.raises(ValueError, match=r"fn\(out \[B, C\], targets\) must return shape \[B\]"):
        fnmlp.loss(model, params, x, y, mean)
    typo = Loss("mine", LOSSES["mse"].fn, LOSSES["mse"].deriv, "classification")
    with pytest.raises(ValueError, match="kind must be 'multiclass', 'binary' or 'regression'"):
        fnmlp.fit(model, params, x, y, loss=typo, epochs=1, batch_size=2, verbose=False)
    own = Loss("mine", LOSSES["mse"].fn, LOSSES["mse"].deriv, "regression")
    assert float(fnmlp.loss(model, params, x, y, own)) == float(
        fnmlp.loss(model, params, x, y, "mse"))
    with pytest.raises(ValueError, match="records its loss by name"):
        model_config(model, own)
    assert model_config(model, LOSSES["mse"])["loss"] == "mse"


def test_resuming_with_an_optimizer_object_applies_its_weight_decay():
    """Before: the state's decay was kept (adamw(weight_decay=5.0) resumed at 0.01)."""
    model = fnmlp.mlp([2, 4, 2])
    params = model.init_params(jax.random.key(0))
    x, y = _blobs(64)
    first = fnmlp.fit(model, params, x, y, epochs=1, batch_size=16, verbose=False,
                      optimizer=fnmlp.optim.adamw(1e-2, weight_decay=0.01))
    again = fnmlp.fit(model, params, x, y, epochs=2, batch_size=16, verbose=False,
                      optimizer=fnmlp.optim.adamw(1e-2, weight_decay=5.0), state=first.state)
    assert float(again.state.opt_state.weight_decay) == 5.0
    named = fnmlp.fit(model, params, x, y, epochs=2, batch_size=16, verbose=False,
                      optimizer="adamw", learning_rate=1e-2, state=first.state)
    assert float(named.state.opt_state.weight_decay) == pytest.approx(0.01)  # a name keeps it


def test_patience_is_checked_and_names_a_missing_validation_score():
    """A breaker's finding: Patience(0), Patience(-3), Patience("5") were accepted, and
    Patience without a validation score raised KeyError 'val_loss'."""
    from fnmlp.train import Patience, init_state

    for bad in (0, -3, "5", True):
        with pytest.raises(ValueError, match="patience must be an integer >= 1"):
            Patience(bad)
    model = fnmlp.mlp([2, 2])
    params = model.init_params(jax.random.key(0))
    state = init_state(params, fnmlp.sgd(0.1))
    with pytest.raises(ValueError, match="monitors 'val_loss', which this epoch's record lacks"):
        Patience(3).update(state, {"epoch": 1, "train_loss": 0.5})
