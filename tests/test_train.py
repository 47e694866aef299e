"""fnmlp.train: fit and evaluate (manual vs autodiff, the lesson's problems, determinism
and resume, early stopping across resume, the learning rate and the weighted loss on resume,
weight statistics, divergence, mixed precision, bad hyperparameters), the compiled step and
epoch, the trainer cache and how many programs fit and evaluate compile."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles

import fnmlp
from fnmlp import data
from fnmlp.train import TrainingDiverged, init_state, make_trainer


def _bits_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_manual_and_autodiff_training_agree():
    ds = data.make_moons(400, seed=1)
    model = fnmlp.mlp([2, 16, 2], "tanh")
    p0 = model.init_params(jax.random.key(0))
    kw = dict(epochs=8, batch_size=32, optimizer="momentum", learning_rate=0.05,
              verbose=False)
    a = fnmlp.fit(model, p0, ds.x, ds.y, **kw, grad="manual")
    b = fnmlp.fit(model, p0, ds.x, ds.y, **kw, grad="autodiff")
    moved = max(float(jnp.max(jnp.abs(x - y))) for x, y in
                zip(jax.tree.leaves(a.params), jax.tree.leaves(p0)))
    assert moved > 0.1  # it really trained
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        # float32 round-off grows over 96 steps: measured ~1e-6, well under 1e-4
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    assert abs(a.history[-1]["train_loss"] - b.history[-1]["train_loss"]) < 1e-5


PROBLEMS = [
    # name, maker kwargs, hidden, activation, optimizer, lr, epochs, required test accuracy
    ("linear", {}, [], "identity", "sgd", 0.5, 100, 1.0),
    ("moons", {}, [32], "tanh", "adam", 0.01, 200, 0.97),
    ("circles", {}, [32], "tanh", "adam", 0.01, 200, 0.97),
    ("spirals", {"arms": 2}, [64], "tanh", "adam", 0.01, 300, 0.95),
    ("spirals", {"arms": 3}, [64], "tanh", "adam", 0.01, 300, 0.95),
    ("xor", {}, [8], "tanh", "adam", 0.01, 100, 1.0),
]


@pytest.mark.parametrize("name, kw, hidden, act, opt, lr, epochs, need", PROBLEMS)
def test_lesson_problems(name, kw, hidden, act, opt, lr, epochs, need):
    ds = data.TOY_SETS[name](n=800, seed=0, **kw)
    train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=0)
    classes = int(ds.y.max()) + 1
    model = fnmlp.mlp([2, *hidden, classes], act)
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, train.x, train.y, epochs=epochs, batch_size=32, optimizer=opt,
                    learning_rate=lr, verbose=False)
    acc = fnmlp.evaluate(model, res.params, test.x, test.y)["accuracy"]
    assert acc >= need, (name, kw, acc)


def test_epoch_compiles_once_even_when_the_learning_rate_changes():
    ds = data.make_blobs(500, k=3, seed=0)
    model = fnmlp.mlp([2, 8, 3])
    params = model.init_params(jax.random.key(0))
    opt = fnmlp.sgd(0.1)
    trainer = make_trainer(model, opt, batch_size=32)
    state = init_state(params, opt)
    x, y = jnp.asarray(ds.x), jnp.asarray(ds.y)
    key = jax.random.key(0)
    with count_compiles("epoch") as compiles:
        for e in range(4):
            if e == 2:
                state = state._replace(
                    opt_state=fnmlp.optim.set_learning_rate(state.opt_state, 0.01))
            state, m = trainer.epoch(state, x, y, key)
    assert len(compiles) == 1
    assert int(state.epoch) == 4 and int(state.step) == 4 * (500 // 32)
    assert float(m["learning_rate"]) == pytest.approx(0.01)
    # the single step compiles once too
    b = fnmlp.train.Batch(x[:32], y[:32])
    with count_compiles("step") as compiles:
        for _ in range(3):
            state, _ = trainer.step(state, b)
    assert len(compiles) == 1


def test_compiles_once_counted_by_jax_itself(caplog):
    """The same claim through JAX's own compile log (not a private counter)."""
    import logging

    ds = data.make_moons(300, seed=0)
    model = fnmlp.mlp([2, 8, 2])
    params = model.init_params(jax.random.key(0))
    trainer = make_trainer(model, fnmlp.adam(0.01), batch_size=50)
    state = init_state(params, fnmlp.adam(0.01))
    x, y, key = jnp.asarray(ds.x), jnp.asarray(ds.y), jax.random.key(1)
    state, _ = trainer.epoch(state, x, y, key)  # first epoch compiles
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        caplog.clear()
        for _ in range(3):
            state = state._replace(opt_state=fnmlp.optim.set_learning_rate(state.opt_state, 0.003))
            state, _ = trainer.epoch(state, x, y, key)
        compiles = [r for r in caplog.records if "Compiling jit(epoch)" in r.getMessage()]
        assert compiles == []
        # the witness can see a compile: a new data shape does compile
        trainer.epoch(state, x[:250], y[:250], key)
        assert any("Compiling jit(epoch)" in r.getMessage() for r in caplog.records)


def test_same_seed_is_bitwise_identical_and_resume_matches(tmp_path):
    ds = data.make_spirals(600, arms=3, seed=0)
    model = fnmlp.mlp([2, 16, 3], "tanh")
    p0 = model.init_params(jax.random.key(0))
    kw = dict(batch_size=40, optimizer="adam", learning_rate=0.01,
              seed=7, verbose=False)
    full = fnmlp.fit(model, p0, ds.x, ds.y, **kw, epochs=6)
    again = fnmlp.fit(model, p0, ds.x, ds.y, **kw, epochs=6)
    assert _bits_equal(full.state, again.state)
    # stop after 3 epochs, save, load, resume to 6
    part = fnmlp.fit(model, p0, ds.x, ds.y, **kw, epochs=3)
    fnmlp.save_checkpoint(tmp_path / "c.npz", part.state)
    template = init_state(p0, fnmlp.adam(0.01))
    loaded, _ = fnmlp.load_checkpoint(tmp_path / "c.npz", template)
    resumed = fnmlp.fit(model, p0, ds.x, ds.y, **kw, epochs=6, state=loaded)
    assert len(resumed.history) == 3 and resumed.history[0]["epoch"] == 4
    assert _bits_equal(full.state, resumed.state)
    different = fnmlp.fit(model, p0, ds.x, ds.y, **dict(kw, seed=8), epochs=6)
    assert not _bits_equal(full.state.params, different.state.params)


def test_early_stopping_restores_best_params():
    ds = data.make_moons(200, seed=0, noise=0.35)
    train, val = data.train_test_split(ds.x, ds.y, 0.5, seed=0)
    model = fnmlp.mlp([2, 128, 2], "relu")
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, train.x, train.y, epochs=300, batch_size=10, optimizer="adam",
                    learning_rate=0.03, validation_data=(val.x, val.y), patience=5,
                    verbose=False)
    assert len(res.history) < 300  # it stopped early (an over-fitting net on noisy data)
    best = min(res.history, key=lambda r: r["val_loss"])
    assert res.best_epoch == best["epoch"]
    assert res.history[-1]["epoch"] == best["epoch"] + 5
    got = fnmlp.evaluate(model, res.params, val.x, val.y)["loss"]
    assert got == pytest.approx(best["val_loss"], rel=1e-5)


# Early stopping, the learning rate and the weighted loss across resume (issue 29): a run
# interrupted and resumed with fit(..., state=r.state) is the uninterrupted run.

ES_KW = dict(batch_size=16, optimizer="adam", learning_rate=0.03, validation_split=0.2,
             patience=4, verbose=False)
ES_MODEL = fnmlp.mlp([2, 256, 256, 2])


def _es_run(seed, epochs=60, state=None, **kw):
    ds = data.make_classification(300, seed=seed)
    p0 = ES_MODEL.init_params(jax.random.key(0))
    return fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=epochs, state=state, **{**ES_KW, **kw})


# data seed 0 stops at epoch 12 (best 8): interrupted at 9, one epoch into the wait;
# data seed 4 stops at 8 (best 4): interrupted at its best epoch. Forgetting the best on
# resume (the code before issue 29) made the first return a later epoch's params.
@pytest.mark.parametrize("seed, cut, stop, best", [(0, 9, 12, 8), (4, 4, 8, 4)])
def test_early_stopping_interrupted_and_resumed_is_the_uninterrupted_run(seed, cut, stop, best):
    full = _es_run(seed)
    assert (len(full.history), full.best_epoch) == (stop, best)  # the scenario as measured
    part = _es_run(seed, epochs=cut)
    assert int(part.state.epoch) == cut < stop and part.state.early is not None
    resumed = _es_run(seed, state=part.state)
    assert resumed.best_epoch == full.best_epoch
    assert int(resumed.state.epoch) == stop and resumed.history[-1]["epoch"] == stop
    assert _bits_equal(resumed.params, full.params)
    assert _bits_equal(resumed.best_state, full.best_state)
    assert _bits_equal(resumed.state, full.state)  # early's bookkeeping included
    assert int(resumed.state.early.best_epoch) == best and bool(resumed.state.early.stopped)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history[cut:]]
    # the best epoch was trained before the interruption: no record of the resumed part
    # is marked restored (the interrupted part's own FitResult marked it there)
    assert not any(r.get("restored") for r in resumed.history)
    assert [r["epoch"] for r in part.history if r.get("restored")] == [best]


def test_resuming_a_run_that_stopped_trains_nothing_and_says_so():
    stopped = _es_run(4)  # stopped at epoch 8, best 4
    lines = []
    again = _es_run(4, state=stopped.state, verbose=True, log=lines.append)
    assert again.history == [] and int(again.state.epoch) == 8
    assert _bits_equal(again.state, stopped.state)
    assert len(lines) == 1 and "already stopped early" in lines[0], lines
    assert "epoch 8" in lines[0] and "epoch 4" in lines[0], lines
    assert again.best_epoch == 4
    assert _bits_equal(again.params, stopped.params)  # still the best params
    assert _bits_equal(again.best_state, stopped.best_state)
    with_more_patience = _es_run(4, state=stopped.state, patience=10)
    assert with_more_patience.history == []  # stopped is stopped, whatever the patience now


def test_resuming_without_patience_trains_on_and_its_checkpoint_holds_what_fit_returned(
        tmp_path):
    """A breaker's find: resumed without patience, fit returned the last params but its
    state still held the old early-stopping record, so save_checkpoint + load_model (and
    predict.py) gave the old best epoch's params. The state now drops it."""
    from fnmlp.io import model_config

    part = _es_run(0, epochs=9)  # best epoch 8 so far
    assert part.state.early is not None and int(part.state.early.best_epoch) > 0
    on = _es_run(0, epochs=12, state=part.state, patience=None)
    assert on.state.early is None and on.best_epoch == 12 and len(on.history) == 3
    assert _bits_equal(on.params, on.state.params)
    path = fnmlp.save_checkpoint(tmp_path / "c.npz", on.state,
                                 config=model_config(ES_MODEL, "softmax_cross_entropy"))
    assert _bits_equal(fnmlp.load_model(path).params, on.params)


def test_a_state_that_tracked_another_loss_is_refused_before_compiling():
    """A breaker's find: early-stopped on train_loss (no validation data), then resumed
    with validation data: each val_loss was compared with the best *training* loss (0.30
    against 0.92), no epoch improved, and the old epoch came back as the best. The state
    records which key it tracked (EarlyStopping.monitor); a resumed state that tracked
    another is refused, before anything compiles, saying how to start afresh."""
    from conftest import count_compiles

    kw = {**ES_KW, "validation_split": None}
    ds = data.make_classification(300, seed=0)
    p0 = ES_MODEL.init_params(jax.random.key(0))
    on_train = fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=3, **kw)
    assert on_train.state.early is not None
    with count_compiles() as compiles, pytest.raises(
            ValueError, match=r"state.early tracked 'train_loss' .* this run monitors 'val_loss'"):
        fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=6, state=on_train.state, **ES_KW)
    assert compiles == []
    fresh = on_train.state._replace(early=None)  # the way out the message gives
    assert fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=6, state=fresh, **ES_KW).best_epoch > 3
    same = fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=5, state=on_train.state, **kw)
    assert len(same.history) == 2  # the same monitor resumes as before
    older = on_train.state._replace(early=on_train.state.early._replace(monitor=None))
    fnmlp.fit(ES_MODEL, p0, ds.x, ds.y, epochs=4, state=older, **ES_KW)  # no record: as before


def test_a_learning_rate_asked_for_on_resume_is_applied():
    from fnmlp.optim import get_learning_rate, set_learning_rate

    ds = data.make_moons(200, seed=0)
    model = fnmlp.mlp([2, 8, 2])
    p0 = model.init_params(jax.random.key(0))
    kw = dict(batch_size=20, verbose=False)
    a = fnmlp.fit(model, p0, ds.x, ds.y, epochs=2, optimizer="adam", learning_rate=0.01, **kw)
    by_name = fnmlp.fit(model, p0, ds.x, ds.y, epochs=4, optimizer="adam", learning_rate=1e-4,
                        state=a.state, **kw)
    by_object = fnmlp.fit(model, p0, ds.x, ds.y, epochs=4, optimizer=fnmlp.adam(1e-4),
                          state=a.state, **kw)
    kept = fnmlp.fit(model, p0, ds.x, ds.y, epochs=4, optimizer="adam", state=a.state, **kw)
    for r in (by_name, by_object):
        assert [h["learning_rate"] for h in r.history] == pytest.approx([1e-4, 1e-4])
        assert float(get_learning_rate(r.state.opt_state)) == pytest.approx(1e-4)
    assert [h["learning_rate"] for h in kept.history] == pytest.approx([0.01, 0.01])
    assert float(get_learning_rate(kept.state.opt_state)) == pytest.approx(0.01)
    # trained at it, not only reported: the same bits as setting the rate by hand
    by_hand = a.state._replace(opt_state=set_learning_rate(a.state.opt_state, 1e-4))
    want = fnmlp.fit(model, p0, ds.x, ds.y, epochs=4, optimizer="adam", state=by_hand, **kw)
    assert _bits_equal(by_name.state, want.state) and _bits_equal(by_object.state, want.state)
    assert not _bits_equal(kept.state.params, want.state.params)
    assert float(get_learning_rate(a.state.opt_state)) == pytest.approx(0.01)  # a left intact


def test_the_epochs_weighted_loss_is_the_weighted_mean_over_the_epoch():
    """One example of 200 weighs 1, the others 0, in 10 batches of 20: the epoch's loss is
    that example's loss (as evaluate computes it), not a tenth of it (the mean of the batch
    means, nine of them empty, before issue 29)."""
    ds = data.make_moons(200, seed=0)
    model = fnmlp.mlp([2, 8, 2])
    p0 = model.init_params(jax.random.key(0))
    sw = np.zeros(200, np.float32)
    sw[37] = 1.0
    r = fnmlp.fit(model, p0, ds.x, ds.y, epochs=1, batch_size=20, learning_rate=1e-9,
                  sample_weight=sw, verbose=False)  # the params barely move
    want = fnmlp.evaluate(model, p0, ds.x, ds.y, sample_weight=sw)["loss"]
    assert want == pytest.approx(float(fnmlp.loss(model, p0, ds.x[37:38], ds.y[37:38])),
                                 rel=1e-5)
    assert r.history[0]["train_loss"] == pytest.approx(want, rel=1e-5)


def test_weight_stats_find_every_matrix_whatever_the_layout():
    """A model that starts with LayerNorm: the history has one norm per weight matrix (the
    two Dense kernels, not LayerNorm's scale or any bias), equal to NumPy's."""
    from fnmlp.layers import Dense, LayerNorm, Relu, serial

    ds = data.make_moons(200, seed=0)
    model = serial(LayerNorm(), Dense(8), Relu(), Dense(2), in_features=2)
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, ds.x, ds.y, epochs=2, batch_size=20, verbose=False)
    mats = [np.asarray(res.params[1]["w"]), np.asarray(res.params[2]["w"])]  # [2, 8], [8, 2]
    assert res.history[-1]["weight_norm"] == pytest.approx(
        [float(np.linalg.norm(m)) for m in mats], rel=1e-6)
    assert res.history[-1]["weight_max_abs"] == pytest.approx(
        [float(np.max(np.abs(m))) for m in mats], rel=1e-6)
    # no name is assumed: a matrix called anything is one (the leaves named "w" before)
    from fnmlp.train import weight_matrices, weight_stats

    a, b = jnp.ones((3, 4)), jnp.full((4, 2), 2.0)
    tree = [{"kernel": a, "bias": jnp.ones(4)}, {"scale": jnp.ones(4)}, {"w": b}]
    assert [m.shape for m in weight_matrices(tree)] == [(3, 4), (4, 2)]
    np.testing.assert_allclose(np.asarray(weight_stats(tree)["weight_norm"]),
                               [np.sqrt(12.0), 4.0 * np.sqrt(2.0)], rtol=1e-6)
    assert weight_stats([{"scale": jnp.ones(3)}]) == {}


def test_validation_split_and_history_fields():
    ds = data.make_circles(300, seed=0)
    model = fnmlp.mlp([2, 8, 2])
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, ds.x, ds.y, epochs=2, batch_size=30, validation_split=0.2,
                    verbose=False)
    r = res.history[-1]
    for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
              "epoch_seconds", "compile_seconds", "examples_per_second", "learning_rate"):
        assert k in r
    for rec in res.history:
        assert rec["examples_per_second"] == pytest.approx(
            240 // 30 * 30 / (rec["epoch_seconds"] - rec["compile_seconds"]))
    assert r["compile_seconds"] == 0  # epoch 2 compiles nothing


def test_epoch_1_reports_its_compile_apart_from_training():
    """Issue 41: epoch 1 read "5 ex/s" on a 32-example run, the compile counted as
    training. The compile (JAX's own monitoring events) is reported apart."""
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    model = fnmlp.mlp([3, 11, 17, 2])  # widths no other test uses: epoch 1 compiles
    lines = []
    res = fnmlp.fit(model, model.init_params(jax.random.key(0)), x, np.arange(64) % 2,
                    epochs=2, batch_size=32, log=lines.append)
    first, second = res.history
    assert 0 < first["compile_seconds"] <= first["epoch_seconds"]
    assert second["compile_seconds"] == 0
    assert "s compiling)" in lines[0] and "compiling" not in lines[1]
    # training alone: the compile, most of epoch 1's wall time, is not in the rate
    assert first["examples_per_second"] > 2 * 64 / first["epoch_seconds"]


def test_divergence_stops_with_last_finite_params():
    ds = data.make_blobs(400, seed=0)
    model = fnmlp.mlp([2, 16, 3])
    params = model.init_params(jax.random.key(0))
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch 1") as info, \
            pytest.warns(UserWarning, match="far outside the usual range"):  # x100 inputs
        fnmlp.fit(model, params, ds.x * 100, ds.y, epochs=5, batch_size=20, optimizer="sgd",
                  learning_rate=1e6, verbose=False)
    err = info.value
    assert err.epoch == 1
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree.leaves(err.state.params))
    assert _bits_equal(err.state.params, params)  # the last finite params: the initial ones


def test_evaluate_masks_the_partial_chunk():
    ds = data.make_blobs(103, seed=1)
    model = fnmlp.mlp([2, 4, 3])
    params = model.init_params(jax.random.key(0))
    got = fnmlp.evaluate(model, params, ds.x, ds.y, batch_size=10)
    out = fnmlp.grad.batched_predict(model, params, ds.x)
    want_loss = float(fnmlp.loss(model, params, ds.x, ds.y))
    want_acc = float(jnp.mean(jnp.argmax(out, 1) == ds.y))
    assert got["loss"] == pytest.approx(want_loss, rel=1e-5)
    assert got["accuracy"] == pytest.approx(want_acc)


def test_regression_fit_learns_the_sine():
    ds = data.make_sine(400, seed=0, noise=0.05)
    model = fnmlp.mlp([1, 32, 32, 1], "tanh")
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, ds.x, ds.y, epochs=150, batch_size=32, optimizer="adam",
                    learning_rate=0.01, loss="mse", verbose=False)
    mse = fnmlp.evaluate(model, res.params, ds.x, ds.y, "mse")["mse"]
    assert mse < 0.01  # noise variance is 0.0025; sin itself has variance 0.5


def test_an_unknown_activation_is_refused_by_the_builder():
    with pytest.raises(ValueError, match="activation must be one of"):
        fnmlp.mlp([2, 3, 3], "swish2")


X = np.ones((20, 2), np.float32)
Y = np.zeros(20, np.int64)


@pytest.mark.parametrize("kwargs, match", [
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0; got 0.0"),
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
    ({"batch_size": 21}, r"batch_size must be at most the number of training examples \(20\)"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"optimizer": "adagrad"}, "optimizer must be one of"),
    ({"epochs": 0}, "epochs"),
    ({"grad": "numeric"}, "grad must be one of"),
    ({"loss": "categorical_cross_entropy"}, "takes probabilities, and the model outputs logits"),
    ({"validation_split": 1.5}, "validation_split"),
    ({"patience": 0}, "patience"),
])
def test_bad_hyperparameters_raise_before_training(kwargs, match):
    model = fnmlp.mlp([2, 3])
    params = model.init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        fnmlp.fit(model, params, X, Y, **{"epochs": 1, "batch_size": 4, "verbose": False, **kwargs})


@pytest.mark.parametrize("x, y, match", [
    (X[:0], Y[:0], "at least one example"),
    (X, Y[:10], "same length; got 20 and 10"),
    (X, np.full(20, 5), r"labels must be in \[0, 3\); got 5"),
    (np.full((20, 2), np.nan), Y, "x must be finite"),
])
def test_bad_data_raises_before_training(x, y, match):
    model = fnmlp.mlp([2, 3])
    params = model.init_params(jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        fnmlp.fit(model, params, x, y, epochs=1, batch_size=4, verbose=False)


def test_fit_does_not_invalidate_callers_params():
    model = fnmlp.mlp([2, 3])
    params = model.init_params(jax.random.key(0))
    fnmlp.fit(model, params, X, Y, epochs=2, batch_size=4, verbose=False)
    assert np.isfinite(np.asarray(params[0]["w"])).all()  # still readable (not donated)


def test_evaluate_does_not_recompile_on_repeated_calls():
    from fnmlp.train import jitted_eval

    ds = data.make_blobs(90, seed=2)
    model = fnmlp.mlp([2, 4, 3])
    params = model.init_params(jax.random.key(0))
    with count_compiles("evaluate") as compiles:
        first = fnmlp.evaluate(model, params, ds.x, ds.y, batch_size=32)
        for _ in range(3):
            assert fnmlp.evaluate(model, params, ds.x, ds.y, batch_size=32) == first
    assert len(compiles) == 1
    assert jitted_eval(model, "softmax_cross_entropy", 32) is jitted_eval(
        fnmlp.mlp([2, 4, 3]), "softmax_cross_entropy", 32)  # equal models: one program


def test_mixed_precision_loss_curve_tracks_float32():
    ds = data.make_moons(512, seed=0)
    model = fnmlp.mlp([2, 64, 64, 2], "relu")
    p0 = model.init_params(jax.random.key(0))
    kw = dict(epochs=30, batch_size=64, optimizer="adam", learning_rate=0.005, verbose=False)
    f32 = fnmlp.fit(model, p0, ds.x, ds.y, **kw)
    for grad in ("manual", "autodiff"):
        bf16 = fnmlp.fit(model, p0, ds.x, ds.y, **kw, compute_dtype=jnp.bfloat16, grad=grad)
        assert bf16.params[0]["w"].dtype == jnp.float32  # float32 master params
        a = np.array([r["train_loss"] for r in f32.history])
        b = np.array([r["train_loss"] for r in bf16.history])
        # bfloat16 has 8 mantissa bits (rel. precision 2^-8 ~ 0.4%): the stated tolerance is
        # 0.05 absolute on every epoch's mean loss, and the final loss within 20% relative
        assert np.max(np.abs(a - b)) < 0.05, (grad, a, b)
        assert abs(a[-1] - b[-1]) < 0.2 * a[-1] + 0.01
        assert b[-1] < 0.2 * b[0]  # and it learned


# Compile once per configuration: how many XLA programs init, fit and evaluate build,
# counted from JAX's own compile events (``jax.monitoring``), and that a learning-rate
# sweep, a seed change or a resume loop of ``fit`` compiles nothing new. Every test here
# uses layer widths no other test uses, so the programs it counts are its own (JAX's
# caches live for the whole pytest process).

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one per XLA compilation


@contextlib.contextmanager
def compiled_programs():
    """Yields a list that fills with the name of every program XLA compiles in the block,
    read from the event JAX records around each backend compilation."""
    names: list[str] = []

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            names.append(str(kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _blobs(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32), y


def test_init_fit_evaluate_compile_at_most_1_3_1():
    x, y = _blobs(300, 3, 5)
    key = jax.random.key(11)  # the user's key: made before counting
    with compiled_programs() as init_compiles:
        model = fnmlp.mlp([3, 19, 5])
        params = model.init_params(key)
    with compiled_programs() as fit_compiles:
        res = fnmlp.fit(model, params, x, y, epochs=2, batch_size=32, optimizer="adam",
                        learning_rate=0.01, verbose=False)
    with compiled_programs() as eval_compiles:
        acc = fnmlp.evaluate(model, res.params, x, y)["accuracy"]
    assert 1 <= len(init_compiles) <= 1, init_compiles
    # the witness sees compiles; the budget: the epoch alone (no copy, no zero buffers)
    assert len(fit_compiles) == 1, fit_compiles
    assert 1 <= len(eval_compiles) <= 1, eval_compiles
    assert acc > 0.5  # it trained


def test_fit_with_validation_compiles_at_most_4_and_evaluate_reuses_its_program():
    x, y = _blobs(400, 4, 3)
    model = fnmlp.mlp([4, 23, 3])
    params = model.init_params(jax.random.key(0))
    xv, yv = _blobs(100, 4, 3, seed=1)
    with compiled_programs() as fit_compiles:
        fnmlp.fit(model, params, x, y, epochs=2, batch_size=40, validation_data=(xv, yv),
                  verbose=False)
    with compiled_programs() as eval_compiles:
        fnmlp.evaluate(model, params, xv, yv)  # same model, loss, chunk and shapes as validation
    assert 1 <= len(fit_compiles) <= 4, fit_compiles
    assert eval_compiles == []


def test_learning_rate_seed_and_resume_loops_of_fit_compile_nothing_new():
    x, y = _blobs(256, 5, 4)
    model = fnmlp.mlp([5, 29, 4], "tanh")
    params = model.init_params(jax.random.key(0))
    kw = dict(epochs=2, batch_size=32, optimizer="adam", verbose=False)
    with compiled_programs() as first:
        r1 = fnmlp.fit(model, params, x, y, **kw, learning_rate=0.1)
    assert first  # the witness: the first call compiles
    runs = {}
    with compiled_programs() as later:
        for lr in (0.03, 0.01, 0.1):
            runs[lr] = fnmlp.fit(model, params, x, y, **kw, learning_rate=lr)
        seeded = fnmlp.fit(model, params, x, y, **kw, learning_rate=0.1, seed=5)
        resumed = fnmlp.fit(model, params, x, y,
                            **{**kw, "epochs": 4}, learning_rate=0.1, state=runs[0.1].state)
    assert later == []
    # each call really used its own rate and seed, and a cached trainer gives the same
    # bits as the first (compiling) call
    for lr, r in runs.items():
        assert r.history[-1]["learning_rate"] == pytest.approx(lr)
    leaves = [np.asarray(a) for a in jax.tree.leaves(r1.params)]
    assert all(np.array_equal(a, np.asarray(b))
               for a, b in zip(leaves, jax.tree.leaves(runs[0.1].params)))
    assert not np.array_equal(leaves[0], np.asarray(runs[0.01].params[0]["w"]))
    assert not np.array_equal(leaves[0], np.asarray(seeded.params[0]["w"]))
    assert int(resumed.state.epoch) == 4 and len(resumed.history) == 2


def test_builders_share_update_per_static_config_and_schedules_are_not_mixed_up():
    assert fnmlp.adam(0.1).update is fnmlp.adam(0.01, weight_decay=0.0).update
    assert fnmlp.sgd(0.1, momentum=0.9).update is fnmlp.optim.momentum(0.5).update
    assert fnmlp.adam(0.1).update is not fnmlp.adam(0.1, b1=0.8).update
    assert fnmlp.adam(0.1).update is not fnmlp.adam(0.1, weight_decay=1e-4).update
    assert fnmlp.optim.rmsprop(0.1).update is not fnmlp.optim.rmsprop(0.1, clip_norm=1.0).update
    # two schedules are two programs: each run reports its own schedule's rate
    x, y = _blobs(128, 2, 3)
    model = fnmlp.mlp([2, 31, 3])
    params = model.init_params(jax.random.key(0))
    rates = []
    for lr in (0.05, 0.02):
        sched = fnmlp.schedules.constant(lr)
        r = fnmlp.fit(model, params, x, y, epochs=1, batch_size=32, optimizer=fnmlp.sgd(sched),
                      verbose=False)
        rates.append(r.history[-1]["learning_rate"])
    assert rates == pytest.approx([0.05, 0.02])


def test_a_users_optimizer_object_is_cached_by_identity():
    x, y = _blobs(128, 3, 2)
    model = fnmlp.mlp([3, 37, 2])
    params = model.init_params(jax.random.key(0))
    base = fnmlp.sgd(0.1)
    calls = []

    def update(grads, state, p):  # a user's transformation: sgd, counting its traces
        calls.append(1)
        return base.update(grads, state, p)

    opt = fnmlp.optim.GradientTransformation(base.init, update)
    kw = dict(epochs=1, batch_size=32, verbose=False)
    fnmlp.fit(model, params, x, y, **kw, optimizer=opt)
    with compiled_programs() as again:
        fnmlp.fit(model, params, x, y, **kw, optimizer=opt)
    assert again == [] and len(calls) == 1  # traced once: the same object, the same program
    with compiled_programs() as other:
        fnmlp.fit(model, params, x, y,
                  **kw, optimizer=fnmlp.optim.GradientTransformation(base.init, update))
    assert other == []  # the same update function: the same program
    with compiled_programs() as new:
        fnmlp.fit(model, params, x, y, **kw, optimizer=fnmlp.optim.GradientTransformation(
            base.init, lambda g, s, p: update(g, s, p)))
    assert len(new) >= 1  # another update function: compiled anew


def test_toy_data_from_the_data_module_compiles_no_conversion_programs():
    ds = data.make_moons(200, seed=3)  # float64 NumPy x, int64 NumPy y
    model = fnmlp.mlp([2, 41, 2])
    params = model.init_params(jax.random.key(0))
    with compiled_programs() as names:
        fnmlp.fit(model, params, ds.x, ds.y, epochs=1, batch_size=16, validation_split=0.25,
                  verbose=False)
    assert not [n for n in names if "stage" in n or "convert" in n or "copy" == n], names
    assert len(names) <= 4, names


def test_early_stopping_and_its_resume_compile_nothing_new():
    """Early stopping's bookkeeping (a copy of the best state, kept in state.early) and a
    resume with a new rate reuse the programs of the first fit."""
    x, y = _blobs(320, 3, 2)
    model = fnmlp.mlp([3, 43, 2])
    params = model.init_params(jax.random.key(0))
    kw = dict(batch_size=32, optimizer="adam", learning_rate=1e-3, validation_split=0.25,
              patience=3, verbose=False)
    with compiled_programs() as first:
        part = fnmlp.fit(model, params, x, y, epochs=3, **kw)
    assert first  # the witness
    with compiled_programs() as later:
        resumed = fnmlp.fit(model, params, x, y, epochs=6, state=part.state, **kw)
        again = fnmlp.fit(model, params, x, y, epochs=9, state=resumed.state,
                          **{**kw, "learning_rate": 3e-4})
        fnmlp.fit(model, params, x, y, epochs=3, **{**kw, "patience": 5, "seed": 3})
    assert later == [], later
    assert not bool(part.state.early.stopped)  # the resume had epochs to train
    assert int(resumed.state.epoch) == 6 and resumed.state.early is not None
    assert again.history[0]["learning_rate"] == pytest.approx(3e-4)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 128, 1000, 60000])
def test_the_shuffle_is_a_permutation_of_every_example(n):
    from fnmlp.train.step import permutation

    perm = np.asarray(jax.jit(permutation, static_argnums=1)(jax.random.key(n), n))
    assert perm.dtype == np.int32 and perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


@pytest.mark.parametrize("n", [4, 300])
def test_the_shuffle_is_uniform(n):
    """Chi-square against the uniform law: for n = 4 over all 24 orders, for n = 300 over
    where element 0 and element n-1 land (the positions' bits cross the pass boundary)."""
    from fnmlp.train.step import permutation

    draws = 24_000
    keys = jax.random.split(jax.random.key(7), draws)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: permutation(k, n)))(keys))
    if n == 4:
        codes = perms @ (4 ** np.arange(3, -1, -1))
        counts = np.unique(codes, return_counts=True)[1]
        assert len(counts) == 24
        cells = [counts]
    else:
        cells = [np.bincount(np.argmax(perms == e, axis=1), minlength=n) for e in (0, n - 1)]
    for counts in cells:
        expected = draws / len(counts)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        dof = len(counts) - 1
        assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)  # 5 sd above the mean


def test_the_training_programs_are_compiled_with_fnmlps_cpu_options(monkeypatch):
    """On the CPU the step, the epoch and the evaluation get compiler_options() (the
    512-bit vector width), unless XLA_FLAGS sets the width itself. An option XLA cannot
    parse fails the compile, so every program that gets it is seen to get it."""
    from fnmlp.train import step as S

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert S.compiler_options() == {"xla_cpu_prefer_vector_width": 512}
    monkeypatch.setattr(S.jax, "default_backend", lambda: "gpu")
    assert S.compiler_options() is None
    monkeypatch.undo()
    monkeypatch.setattr(S, "compiler_options",
                        lambda: {"xla_cpu_prefer_vector_width": "not-a-width"})
    S.jitted_eval.cache_clear()
    try:
        model, opt = fnmlp.mlp([2, 4, 3]), fnmlp.sgd(0.1)
        trainer = make_trainer(model, opt, batch_size=4)
        state = init_state(model.init_params(jax.random.key(0)), opt)
        x, y = jnp.zeros((8, 2)), jnp.zeros(8, jnp.int32)
        for call in [lambda: trainer.epoch(state, x, y, jax.random.key(0)),
                     lambda: trainer.step(state, fnmlp.train.Batch(x[:4], y[:4])),
                     lambda: trainer.evaluate(state.params, x, y)]:
            with pytest.raises(Exception, match="not-a-width"):
                call()
    finally:
        S.jitted_eval.cache_clear()  # no later test gets the broken option's evaluation


@pytest.mark.parametrize("xla_flags, user_sets_width", [
    ("", False),
    ("--xla_cpu_enable_fast_math=false", False),
    ("--xla_cpu_prefer_vector_width=256", True),
    ("--xla_cpu_enable_fast_math=false  --xla_cpu_prefer_vector_width=128 --xla_dump_to=/d", True),
    # a flag whose value merely contains the name does not set it
    ("--xla_dump_to=/tmp/xla_cpu_prefer_vector_width_dumps", False),
    ("--xla_cpu_prefer_vector_width_x=1", False),
    ("FILE", True),  # not starting with '-': XLA reads flags from that file
    ("MISSING", False),
])
def test_the_users_xla_flags_vector_width_wins(monkeypatch, tmp_path, xla_flags,
                                               user_sets_width):
    from fnmlp.train import step as S

    flag_file = tmp_path / "flags"
    flag_file.write_text("--xla_cpu_enable_fast_math=false\n--xla_cpu_prefer_vector_width=128\n")
    xla_flags = {"FILE": str(flag_file), "MISSING": str(tmp_path / "none")}.get(xla_flags,
                                                                                   xla_flags)
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    expected = None if user_sets_width else {"xla_cpu_prefer_vector_width": 512}
    assert S.compiler_options() == expected


def test_init_fit_evaluate_compile_three_programs():
    """Issue 41: init + fit + evaluate compiled 5 programs (init, the optimizer's zero
    buffers, a state copy, the epoch, the evaluation). Now: the init, the epoch and the
    evaluation; the optimizer's buffers are made on the host and the epoch donates
    nothing, so nothing is copied. Counted by JAX's own compile log."""
    x = np.random.default_rng(0).normal(size=(96, 5)).astype(np.float32)
    y = np.arange(96) % 3
    key = jax.random.key(0)
    model = fnmlp.mlp([5, 19, 7, 3])  # widths no other test uses
    with count_compiles() as compiles:
        params = model.init_params(key)
        r = fnmlp.fit(model, params, x, y, epochs=3, batch_size=32, optimizer="adam",
                      verbose=False)
        fnmlp.evaluate(model, r.params, x, y)
    assert len(compiles) == 3, compiles
    # the caller's params are untouched (not donated), and a resume compiles nothing
    assert np.isfinite(np.asarray(params[0]["w"])).all()
    with count_compiles() as again:
        fnmlp.fit(model, params, x, y, epochs=4, batch_size=32, optimizer="adam",
                  state=r.state, verbose=False)
    assert again == []


def test_resuming_with_another_optimizer_names_the_one_the_state_was_made_by():
    """A new user's find: resuming an Adam state with fit's default optimizer read as a
    PyTreeDef cut at 500 characters, never naming Adam."""
    model = fnmlp.mlp([2, 4, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    r = fnmlp.fit(model, params, x, y, epochs=2, batch_size=8, optimizer="adam",
                  learning_rate=0.01, verbose=False)
    with pytest.raises(ValueError, match=r"state.opt_state was made by another optimizer than"
                       r" this fit's; its structure is that of 'adam' or 'adamw': pass the"
                       r" optimizer it was trained with") as e:
        fnmlp.fit(model, r.params, x, y, epochs=4, batch_size=8, state=r.state,
                  verbose=False)
    assert "PyTreeDef" not in str(e.value)
    again = fnmlp.fit(model, r.params, x, y, epochs=4, batch_size=8, state=r.state,
                      optimizer="adam", verbose=False)  # as the message says
    assert int(again.state.epoch) == 4  # at the state's rate, not adam's default 1e-3
    assert again.history[-1]["learning_rate"] == pytest.approx(0.01)
    other = fnmlp.mlp([2, 4, 4, 2])
    with pytest.raises(ValueError, match=r"state.params does not fit .* another architecture\):"
                       r" the state holds 4 arrays, the model 6"):
        fnmlp.fit(other, other.init_params(jax.random.key(0)), x, y, epochs=4, batch_size=8,
                  state=r.state, optimizer="adam", verbose=False)
    normed = fnmlp.serial(fnmlp.layers.Dense(4), fnmlp.layers.LayerNorm(), fnmlp.layers.Tanh(),
                          fnmlp.layers.Dense(2), in_features=2)  # 6 arrays, as [2, 4, 4, 2]
    deeper = fnmlp.mlp([2, 4, 4, 2])
    r2 = fnmlp.fit(deeper, deeper.init_params(jax.random.key(0)), x, y, epochs=1,
                   batch_size=8, optimizer="adam", verbose=False)
    with pytest.raises(ValueError, match=r"the state has params\[1\]\['b'\] \(4,\) where the"
                       r" model has params\[1\]\['bias'\]"):  # the counts alike: the place
        fnmlp.fit(normed, normed.init_params(jax.random.key(0)), x, y, epochs=2,
                  batch_size=8, state=r2.state, optimizer="adam", verbose=False)



@pytest.mark.parametrize("optimizer, name", [(fnmlp.optim.sgd(0.1, weight_decay=0.1), "sgd"),
                                             (fnmlp.optim.adam(1e-2, weight_decay=0.1), "adam")])
def test_resuming_by_name_refuses_to_drop_the_states_weight_decay(optimizer, name):
    """A breaker's find: an sgd(0.1, weight_decay=0.1) state resumed with optimizer='sgd'
    trained on without decay (the name builds no decay term) while its state read 0.1."""
    model = fnmlp.mlp([2, 4, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    r = fnmlp.fit(model, params, x, y, epochs=1, batch_size=8, optimizer=optimizer,
                  verbose=False)
    with pytest.raises(ValueError, match=rf"weight decay 0.1, which optimizer='{name}' alone"
                       rf" would drop .*fnmlp.optim.{name}\(weight_decay=0.1\)"):
        fnmlp.fit(model, r.params, x, y, epochs=2, batch_size=8, state=r.state,
                  optimizer=name, verbose=False)
    kept = fnmlp.fit(model, r.params, x, y, epochs=2, batch_size=8, state=r.state,
                     optimizer=optimizer, verbose=False)  # the object: its decay applies
    straight = fnmlp.fit(model, params, x, y, epochs=2, batch_size=8, optimizer=optimizer,
                         verbose=False)
    for a, b in zip(jax.tree.leaves(kept.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
