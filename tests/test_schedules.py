"""Schedules: values by hand, float64 against the formula in Python float64, float32 against
the float32 implementation they replaced, and warm-up's first step."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp import optim, schedules

s = jnp.int32


def test_schedules_by_hand():
    assert float(schedules.constant(0.3)(s(7))) == pytest.approx(0.3)
    sd = schedules.step_decay(1.0, step_size=10, rate=0.5)
    assert [float(sd(s(i))) for i in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.5, 0.25])
    ed = schedules.exponential_decay(1.0, decay_steps=10, rate=0.5)
    assert float(ed(s(5))) == pytest.approx(0.5**0.5, rel=1e-6)
    it = schedules.inverse_time(1.0, decay_steps=10, rate=2.0)
    assert float(it(s(5))) == pytest.approx(1 / (1 + 2 * 0.5), rel=1e-6)
    # the default warm-up starts at peak / (warmup + 1): peak (step + 1) / (warmup + 1)
    cw = schedules.cosine_warmup(1.0, warmup_steps=10, total_steps=110, end=0.1)
    assert float(cw(s(0))) == pytest.approx(1 / 11, rel=1e-6)
    assert float(cw(s(5))) == pytest.approx(6 / 11, rel=1e-6)
    assert float(cw(s(9))) == pytest.approx(10 / 11, rel=1e-6)
    assert float(cw(s(10))) == pytest.approx(1.0)
    assert float(cw(s(60))) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-6)
    assert float(cw(s(500))) == pytest.approx(0.1)
    # an explicit init_value: linear from it
    cw0 = schedules.cosine_warmup(1.0, warmup_steps=10, total_steps=110, end=0.1, init_value=0.0)
    assert float(cw0(s(0))) == 0.0
    assert float(cw0(s(5))) == pytest.approx(0.5)
    cw2 = schedules.cosine_warmup(1.0, warmup_steps=4, total_steps=8, init_value=0.2)
    assert float(cw2(s(2))) == pytest.approx(0.2 + 0.8 * 0.5, rel=1e-6)
    # no warm-up: starts at the peak whatever init_value says
    assert float(schedules.cosine_warmup(0.5, 0, 10, init_value=0.0)(s(0))) == 0.5


# the float32 implementations these replaced (fnmlp before issue 29), as the witness that
# float32 values did not move
def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _old_cosine(peak, w, t, end):
    def f(step):
        x = _f32(step)
        warm = peak * x / max(w, 1)
        frac = jnp.clip((x - w) / (t - w), 0, 1)
        cos = end + (peak - end) * 0.5 * (1 + jnp.cos(math.pi * frac))
        return jnp.where(x < w, warm, cos).astype(jnp.float32)
    return f


OLD = {
    "constant": (schedules.constant(0.1), lambda step: _f32(0.1)),
    "step_decay": (schedules.step_decay(0.1, 30, 0.5),
                   lambda step: _f32(0.1) * _f32(0.5) ** (step // 30).astype(jnp.float32)),
    "exponential_decay": (schedules.exponential_decay(0.1, 100, 0.96),
                          lambda step: _f32(0.1) * _f32(0.96) ** (_f32(step) / 100)),
    "inverse_time": (schedules.inverse_time(0.1, 50, 0.7),
                     lambda step: _f32(0.1) / (1 + 0.7 * _f32(step) / 50)),
    "cosine_warmup": (schedules.cosine_warmup(0.1, 20, 300, 0.01, init_value=0.0),
                      _old_cosine(0.1, 20, 300, 0.01)),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_float32_values_stay_within_1e6_of_the_old_implementation(name):
    new, old = OLD[name]
    steps = jnp.arange(0, 400, dtype=jnp.int32)
    got, want = np.asarray(jax.vmap(new)(steps)), np.asarray(jax.vmap(old)(steps))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


# each schedule's formula in Python float64 (math), the float64 witness
FORMULA = {
    "constant": (schedules.constant(0.1), lambda k: 0.1),
    "step_decay": (schedules.step_decay(0.1, 30, 0.3), lambda k: 0.1 * 0.3 ** (k // 30)),
    "exponential_decay": (schedules.exponential_decay(0.05, 7, 0.97),
                          lambda k: 0.05 * 0.97 ** (k / 7)),
    "inverse_time": (schedules.inverse_time(0.1, 50, 0.7), lambda k: 0.1 / (1 + 0.7 * k / 50)),
    "cosine_warmup": (schedules.cosine_warmup(0.1, 20, 300, 0.01),
                      lambda k: 0.1 * (k + 1) / 21 if k < 20 else
                      0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * min(1, (k - 20) / 280)))),
}


@pytest.mark.parametrize("name", sorted(FORMULA))
def test_float64_values_match_the_formula(name, x64):
    sched, formula = FORMULA[name]
    steps = list(range(0, 400, 7))
    got = np.asarray(jax.vmap(lambda k: sched(k, jnp.float64))(jnp.asarray(steps, jnp.int32)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [formula(k) for k in steps], rtol=1e-12, atol=0)


def test_exponential_decay_power_keeps_the_rate_exact_in_float64(x64):
    # 0.9999 ** 10000: float32(0.9999) ** 10000 is 1.7e-4 off; exp(k log rate) is not
    ed = schedules.exponential_decay(0.05, 1, 0.9999)
    want = 0.05 * 0.9999**10000
    got = ed(s(10000), jnp.float64)
    assert got.dtype == jnp.float64
    assert abs(float(got) - want) <= 1e-12 * want
    got32 = ed(s(10000))
    assert got32.dtype == jnp.float32
    assert abs(float(got32) - want) <= 1e-6 * want


def test_exponential_decay_float32_without_x64():
    got = schedules.exponential_decay(0.05, 1, 0.9999)(s(10000))
    assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(0.05 * 0.9999**10000, rel=1e-6)


def test_warmup_first_update_moves_the_params_by_default_and_not_with_init_value_zero():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}

    def first(sched):
        opt = optim.sgd(sched)
        u, _ = opt.update(grads, opt.init(params), params)
        return np.asarray(optim.apply_updates(params, u)["w"])

    moved = first(schedules.cosine_warmup(0.1, 4, 40))
    np.testing.assert_allclose(moved, [1.0 - 0.02 * 0.5, -2.0 - 0.02 * 0.25], rtol=1e-6)
    old = first(schedules.cosine_warmup(0.1, 4, 40, init_value=0.0))
    assert np.array_equal(old, np.asarray(params["w"]))  # the old behaviour, bit for bit


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "0"])
def test_bad_init_value_names_it(bad):
    with pytest.raises(ValueError, match="init_value"):
        schedules.cosine_warmup(0.1, 4, 40, init_value=bad)



@pytest.mark.parametrize("bad", [lambda step: -0.1 + 0 * step, lambda step: jnp.inf + 0 * step,
                                 lambda step: jnp.nan + 0 * step])
def test_a_schedule_that_starts_negative_or_not_finite_is_refused_before_training(bad):
    """A negative rate climbs the loss and trained silently; inf or NaN ruins the params."""
    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    with pytest.raises(ValueError, match="learning_rate: the schedule gives .* at step 0"):
        fnmlp.fit(model, params, x, y, epochs=1, batch_size=8,
                  optimizer=optim.sgd(bad), verbose=False)


def test_a_schedule_that_goes_negative_stops_the_run_with_the_last_good_state():
    """A linear decay past its end (a common slip) turned negative in epoch 3 of 5 and the
    run went on uphill; fit stops there and keeps the end of epoch 2."""
    from fnmlp.train import TrainingDiverged

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    linear = lambda step: 0.1 * (1.0 - step / 4.0)  # noqa: E731  2 steps an epoch: < 0 at 5
    with pytest.raises(TrainingDiverged, match=r"learning rate became -0.025 in epoch 3 \(the"
                       r" schedule's lowest over the epoch's updates, steps 4-5\)") as e:
        fnmlp.fit(model, params, x, y, epochs=5, batch_size=8, optimizer=optim.sgd(linear),
                  verbose=False)
    assert int(e.value.state.epoch) == 2 and e.value.epoch == 3
    assert [r["epoch"] for r in e.value.history] == [1, 2]


def test_a_schedule_negative_inside_an_epoch_and_positive_at_its_end_is_seen():
    """The rate was read at the epoch's end, so a schedule below zero for updates inside
    an epoch (here step 5 of steps 4-7) trained uphill unseen; the epoch now reports the
    lowest rate any of its updates used, and fit stops on it."""
    from fnmlp.train import TrainingDiverged

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(32, 2)), np.arange(32) % 2
    dip = lambda step: jnp.where(step == 5, -0.5, 0.01)  # noqa: E731  4 steps an epoch
    with pytest.raises(TrainingDiverged, match=r"learning rate became -0.5 in epoch 2 \(the"
                       r" schedule's lowest over the epoch's updates, steps 4-7\)") as e:
        fnmlp.fit(model, params, x, y, epochs=3, batch_size=8, optimizer=optim.sgd(dip),
                  verbose=False)
    assert int(e.value.state.epoch) == 1 and [r["epoch"] for r in e.value.history] == [1]


def test_a_resumed_schedule_is_judged_against_the_rate_it_was_trained_at():
    """A breaker's find: resuming with a schedule object reset the state's rate to the
    schedule's step-0 rate (a warm-up's 0), so the round-off at the decay's end (-1e-9,
    allowed in the uninterrupted run: 1% of the 0.1 before) was refused after a resume.
    The resumed run now ends as the uninterrupted one; a real dip is still caught."""
    from fnmlp.train import TrainingDiverged

    model = fnmlp.mlp([4, 8, 3], "tanh")
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(64, 4)), np.arange(64) % 3
    kw = dict(batch_size=16, verbose=False)  # 4 updates an epoch
    sched = lambda c: jnp.where(c == 0, 0.0, jnp.where(c < 8, 0.1, -1e-9))  # noqa: E731
    full = fnmlp.fit(model, params, x, y, epochs=3, optimizer=optim.sgd(sched), **kw)
    half = fnmlp.fit(model, params, x, y, epochs=2, optimizer=optim.sgd(sched), **kw)
    resumed = fnmlp.fit(model, params, x, y, epochs=3, optimizer=optim.sgd(sched),
                        state=half.state, **kw)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    dip = lambda c: jnp.where(c == 0, 0.0, jnp.where(c < 8, 0.1, -0.05))  # noqa: E731
    with pytest.raises(TrainingDiverged, match="learning rate became -0.05 in epoch 3"):
        fnmlp.fit(model, params, x, y, epochs=3, optimizer=optim.sgd(dip), state=half.state,
                  **kw)


def test_a_schedule_that_becomes_infinite_stops_the_run():
    from fnmlp.train import TrainingDiverged

    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    later = lambda step: jnp.where(step >= 3, jnp.inf, 1e-3)  # noqa: E731  inf from step 3
    # the params turn non-finite with it: the divergence message names the rate
    with pytest.raises(TrainingDiverged, match=r"epoch 2.*learning rate (became )?inf") as e:
        fnmlp.fit(model, params, x, y, epochs=3, batch_size=8, optimizer=optim.sgd(later),
                  verbose=False)
    assert int(e.value.state.epoch) == 1


@pytest.mark.parametrize("epochs", [3, 2063])
def test_a_long_decay_to_zero_is_no_negative_rate(epochs):
    """A breaker's case: 14 steps an epoch, a linear decay reaching 0 at the last update of
    epoch 2063 came out -5.2e-10 (float32 round-off) and was refused as a negative rate
    when the allowance was 1e-4 of the rate an epoch earlier."""
    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(448, 2)), np.arange(448) % 2
    last = epochs * 14 - 1  # the last update's step
    linear = lambda step: 0.01 * (1.0 - step / last)  # noqa: E731
    r = fnmlp.fit(model, params, x, y, epochs=epochs, batch_size=32,
                  optimizer=optim.sgd(linear), verbose=False)
    assert int(r.state.epoch) == epochs and abs(r.history[-1]["learning_rate"]) < 1e-8


def test_a_decay_to_zero_at_the_last_step_is_no_negative_rate():
    """Its last rate is 0 computed in float32, which came out -1.5e-9: round-off, not a
    schedule below zero; the run ends normally."""
    model = fnmlp.mlp([2, 3, 2])
    params = model.init_params(jax.random.key(0))
    x, y = np.random.default_rng(0).normal(size=(16, 2)), np.arange(16) % 2
    linear = lambda step: 0.1 * (1.0 - step / 5.0)  # noqa: E731  the 6th step's rate: ~0
    r = fnmlp.fit(model, params, x, y, epochs=3, batch_size=8, optimizer=optim.sgd(linear),
                  verbose=False)
    assert -1e-7 < r.history[-1]["learning_rate"] <= 0 and int(r.state.epoch) == 3
