"""fnmlp.train.loop: the epoch loop ``fit`` runs, written out with its public pieces (the
README's block, run as it is printed there), gives ``fit``'s params bit for bit and
compiles nothing ``fit`` does not; the pieces each do one job."""

import os
import re

import jax
import numpy as np
import pytest
from conftest import REPO, count_compiles

import fnmlp
from fnmlp import data
from fnmlp.train import (
    EpochLog,
    Patience,
    TrainingDiverged,
    init_state,
    make_trainer,
    run_epochs,
    train_epoch,
    validate,
)


def _readme_loop() -> str:
    text = open(os.path.join(REPO, "README.md")).read()
    section = text.split("## Training: the loop `fit` runs", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def moons():
    ds = data.make_moons(600, seed=0)
    return ds.x[:500], ds.y[:500], ds.x[500:], ds.y[500:]


def test_the_readme_loop_is_fit_bit_for_bit(moons, capsys):
    """The block runs as printed, in an empty namespace (it used data, a model and params
    no line of it defined: a new user's copy stopped at NameError)."""
    scope = {}
    with count_compiles("epoch") as compiled:
        exec(_readme_loop(), scope)  # noqa: S102  (the README's own text)
    assert len(compiled) == 1  # one program, though state.early changes (train_epoch)
    x, y, x_val, y_val = moons
    np.testing.assert_array_equal(scope["x_val"], x_val)  # the data this test knows
    model = fnmlp.mlp([2, 16, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == scope["epoch"] and lines[0].startswith("epoch 1/50  train_loss")
    r = fnmlp.fit(model, params, x, y, epochs=50, batch_size=32, optimizer=fnmlp.adam(1e-2),
                  validation_data=(x_val, y_val), patience=5, verbose=False)
    assert r.best_epoch == Patience(5).best_epoch(scope["state"]) > 0
    assert len(r.history) == scope["epoch"]
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(scope["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_run_epochs_logs_stops_and_calls_back(moons):
    x, y, x_val, y_val = moons
    model = fnmlp.mlp([2, 8, 2], "relu")
    opt = fnmlp.sgd(1e-6)  # nearly still: the validation loss stops improving
    trainer = make_trainer(model, opt, 50)
    state = init_state(model.init_params(jax.random.key(0)), opt)
    key, lines, seen = jax.random.key(0), [], []

    def run_epoch(state, epoch):
        state, record = train_epoch(trainer, state, (x, y), key, epoch)
        record.update(validate(trainer, state.params, (x_val, y_val)))
        record["val_loss"] = 1.0  # never improves after the first epoch
        return state, record

    state, history = run_epochs(run_epoch, state, 10, stopping=Patience(2),
                                log=EpochLog(10, 5, lines.append),
                                on_epoch_end=lambda s, r: seen.append(r["epoch"]))
    assert [r["epoch"] for r in history] == seen == [1, 2, 3]
    assert lines[0].startswith("epoch 1/10") and len(lines) == 2
    assert lines[1] == ("early stopping after epoch 3: val_loss has not improved for 2"
                        " epochs; restoring epoch 1")
    state, more = run_epochs(run_epoch, state, 10, stopping=Patience(2),
                             log=EpochLog(10, 5, lines.append))
    assert more == [] and lines[-1].startswith("this run already stopped early at epoch 3")


def test_a_diverging_epoch_leaves_with_the_history_so_far(moons):
    x, y, *_ = moons
    model = fnmlp.mlp([2, 8, 2], "relu")
    opt = fnmlp.sgd(1.0)
    trainer = make_trainer(model, opt, 50)
    state = init_state(model.init_params(jax.random.key(0)), opt)
    key = jax.random.key(0)

    def run_epoch(state, epoch):
        state, record = train_epoch(trainer, state, (x, y), key, epoch)
        if epoch == 2:  # as a non-finite loss would
            raise TrainingDiverged("diverged", epoch, state, [])
        return state, record

    with pytest.raises(TrainingDiverged) as e:
        run_epochs(run_epoch, state, 5)
    assert e.value.epoch == 2 and [r["epoch"] for r in e.value.history] == [1]


def test_validate_names_every_score_with_its_prefix(moons):
    x, y, x_val, y_val = moons
    model = fnmlp.mlp([2, 8, 2], "relu")
    trainer = make_trainer(model, fnmlp.sgd(0.1), 50)
    params = model.init_params(jax.random.key(0))
    assert validate(trainer, params, None) == {}
    got = validate(trainer, params, (x_val, y_val), prefix="test_")
    assert set(got) == {"test_loss", "test_accuracy"}
    want = fnmlp.evaluate(model, params, x_val, y_val)
    assert got["test_loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_patience_on_an_accuracy_keeps_the_highest_and_refuses_min(moons):
    """A breaker's find: Patience(3, monitor="val_accuracy") kept the epoch of the
    *lowest* accuracy (0.79 of 0.79, 0.85, 0.91, 0.91) and stopped; "weight_norm" (a list)
    passed once and failed in NumPy the next epoch. mode="max" keeps the highest; an
    accuracy with mode="min" and a value that is no single number are refused."""
    x, y, x_val, y_val = moons
    model = fnmlp.mlp([2, 16, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    opt = fnmlp.adam(1e-2)
    trainer = make_trainer(model, opt, batch_size=32)
    with pytest.raises(ValueError, match="'val_accuracy' grows as the model learns: give"
                                         " mode='max'"):
        Patience(3, "val_accuracy")
    with pytest.raises(ValueError, match="mode must be 'min'"):
        Patience(3, mode="maximum")
    with pytest.raises(ValueError, match="'val_loss' falls as the model learns: give"
                                         " mode='min'"):  # it kept the worst epoch
        Patience(3, "val_loss", mode="max")
    stop, state, key = Patience(2, "val_accuracy", mode="max"), init_state(params, opt), (
        jax.random.key(0))
    seen = []
    for epoch in range(1, 31):
        state, record = train_epoch(trainer, state, (x, y), key, epoch)
        record.update(validate(trainer, state.params, (x_val, y_val)))
        seen.append(record["val_accuracy"])
        state = stop.update(state, record)
        if stop.stopped(state):
            break
    best = stop.best_epoch(state)
    assert seen[best - 1] == max(seen) and seen.index(max(seen)) == best - 1
    assert max(seen) > seen[0]  # it learned: the lowest would have been another epoch
    with pytest.raises(ValueError, match="must be one number per epoch"):
        Patience(2, "weight_norm").update(state, {**record, "weight_norm": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"state.early tracked 'val_accuracy' \(mode='max'\)"
                                         r".* this run monitors 'val_loss'"):
        Patience(2).update(state, record)
