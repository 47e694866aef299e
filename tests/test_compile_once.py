"""Compile once per configuration: how many XLA programs init_mlp, fit and evaluate build,
counted from JAX's own compile events (``jax.monitoring``), and that a learning-rate
sweep, a seed change or a resume loop of ``fit`` compiles nothing new.

Every test uses layer widths no other test file uses, so the programs it counts are its
own (JAX's caches live for the whole pytest process)."""

import contextlib

import jax
import numpy as np
import pytest

import fnmlp
from fnmlp import data

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
    # the witness sees compiles; the budget: the epoch, the state copy, the zero buffers
    assert 1 <= len(fit_compiles) <= 3, fit_compiles
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
    assert fnmlp.sgd(0.1, momentum=0.9).update is fnmlp.momentum(0.5).update
    assert fnmlp.adam(0.1).update is not fnmlp.adam(0.1, b1=0.8).update
    assert fnmlp.adam(0.1).update is not fnmlp.adam(0.1, weight_decay=1e-4).update
    assert fnmlp.rmsprop(0.1).update is not fnmlp.rmsprop(0.1, clip_norm=1.0).update
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

    opt = fnmlp.GradientTransformation(base.init, update)
    kw = dict(epochs=1, batch_size=32, verbose=False)
    fnmlp.fit(model, params, x, y, **kw, optimizer=opt)
    with compiled_programs() as again:
        fnmlp.fit(model, params, x, y, **kw, optimizer=opt)
    assert again == [] and len(calls) == 1  # traced once: the same object, the same program
    with compiled_programs() as other:
        fnmlp.fit(model, params, x, y,
                  **kw, optimizer=fnmlp.GradientTransformation(base.init, update))
    assert other == []  # the same update function: the same program
    with compiled_programs() as new:
        fnmlp.fit(model, params, x, y, **kw, optimizer=fnmlp.GradientTransformation(
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
