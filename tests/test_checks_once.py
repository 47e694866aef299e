"""Issue 42, item 5: one call checks each argument once. The checks are counted as they
run (``sys.setprofile`` sees every call of their code objects, whichever module imported
them), and the loss name is resolved to a :class:`fnmlp.losses.Loss` once, at the edge."""

import collections
import contextlib
import sys

import jax
import numpy as np
import pytest

import fnmlp
from fnmlp import _checks, _validate, data, layers, losses, optim, weights
from fnmlp.train import step

# a check function -> the argument whose value names what it checked (None: count calls)
CHECKS = {
    layers.check_model: None,
    losses.check_loss_for_model: None,
    losses.get_loss: "loss",  # counted only when given a name (a Loss passes through)
    _validate.check_grad_path: None,
    _validate.param_widths: None,  # the params against the model (check_model_params)
    _validate.check_inputs: "name",
    _validate.check_targets: "name",
    _checks.check_positive_int: "name",
    _checks.check_positive_float: "name",
    optim.check_optimizer: None,
    step.check_compute_dtype: None,
    weights.check_weights: None,
}


def _in_optim(frame) -> bool:
    """Called from the optimizers' own builders (``adam(lr)`` checks its rate: a public
    function of its own, on the other side of the optim boundary)."""
    path = frame.f_code.co_filename if frame is not None else ""
    return "/fnmlp/optim/" in path or path.endswith("/fnmlp/schedules.py")


@contextlib.contextmanager
def counting():
    """Counts the calls of CHECKS while the block runs: ``{(function name, arg): n}``
    (calls made inside fnmlp.optim left out, :func:`_in_optim`)."""
    codes = {fn.__code__: (fn.__name__, arg) for fn, arg in CHECKS.items()}
    counts: collections.Counter = collections.Counter()

    def profile(frame, event, _):
        if event == "call" and frame.f_code in codes and not _in_optim(frame.f_back):
            name, arg = codes[frame.f_code]
            value = frame.f_locals.get(arg) if arg else None
            if name == "get_loss" and not isinstance(value, str):
                return
            counts[(name, value)] += 1

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield counts
    finally:
        sys.setprofile(old)


@pytest.fixture(scope="module")
def moons():
    ds = data.make_moons(120, seed=0)
    return ds.x, ds.y


def test_one_fit_runs_each_check_once(moons):
    x, y = moons
    model = fnmlp.mlp([2, 8, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    with counting() as counts:  # batch_size 13: a configuration not compiled before
        fnmlp.fit(model, params, x[:100], y[:100], epochs=2, batch_size=13,
                  optimizer="adam", learning_rate=1e-2, validation_data=(x[100:], y[100:]),
                  patience=3, verbose=False)
    want = {("check_model", None): 1, ("check_loss_for_model", None): 1,
            ("get_loss", "softmax_cross_entropy"): 1, ("check_grad_path", None): 1,
            ("param_widths", None): 1, ("check_inputs", "x"): 1,
            ("check_inputs", "x_val"): 1, ("check_targets", "y"): 1,
            ("check_targets", "y_val"): 1, ("check_positive_int", "epochs"): 1,
            ("check_positive_int", "batch_size"): 1, ("check_positive_int", "patience"): 1,
            ("check_positive_int", "log_every"): 1, ("check_optimizer", None): 1,
            ("check_compute_dtype", None): 1, ("check_weights", None): 1}
    assert dict(counts) == want


def test_one_weighted_fit_with_a_split_checks_the_model_once(moons):
    """The split's training part gets its own weights (as before); the model, its params
    and the loss are still checked once."""
    x, y = moons
    model = fnmlp.mlp([2, 8, 2], "relu")
    params = model.init_params(jax.random.key(1))
    loss = losses.get_loss("softmax_cross_entropy")  # a Loss value, passed where a name goes
    with counting() as counts:
        fnmlp.fit(model, params, x, y, epochs=1, batch_size=11, validation_split=0.25,
                  class_weight="balanced", loss=loss, verbose=False)
    assert counts[("check_model", None)] == 1
    assert counts[("check_loss_for_model", None)] == 1
    assert counts[("param_widths", None)] == 1
    assert counts[("check_positive_int", "batch_size")] == 1
    assert counts[("get_loss", "softmax_cross_entropy")] == 0  # a Loss given: no name
    assert counts[("check_weights", None)] == 2  # all of y, then the training part


def test_evaluate_and_the_public_gradients_check_once(moons):
    x, y = moons
    model = fnmlp.mlp([2, 8, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    for call in (lambda: fnmlp.evaluate(model, params, x, y),
                 lambda: fnmlp.manual_grad(model, params, x, y),
                 lambda: fnmlp.loss(model, params, x, y),
                 lambda: fnmlp.predict_proba(model, params, x, "softmax_cross_entropy"),
                 lambda: fnmlp.classification_report(model, params, x, y)):
        with counting() as counts:
            call()
        assert counts[("check_model", None)] == 1, dict(counts)
        assert counts[("check_loss_for_model", None)] == 1, dict(counts)
        assert counts[("get_loss", "softmax_cross_entropy")] == 1, dict(counts)
        assert counts[("param_widths", None)] <= 1, dict(counts)


def test_fit_population_runs_each_check_once(moons):
    x, y = moons
    model = fnmlp.mlp([2, 8, 2], "tanh")
    members = fnmlp.population.grid(lr=[1e-2, 3e-2])
    with counting() as counts:
        fnmlp.fit_population(model, x[:100], y[:100], members, epochs=1, batch_size=17,
                             validation_data=(x[100:], y[100:]), verbose=False)
    for key in [("check_model", None), ("check_loss_for_model", None),
                ("get_loss", "softmax_cross_entropy"), ("check_grad_path", None),
                ("param_widths", None), ("check_inputs", "x"), ("check_inputs", "x_val"),
                ("check_positive_int", "epochs"), ("check_positive_int", "batch_size")]:
        assert counts[key] == 1, (key, dict(counts))


def test_the_scalar_checks_live_on_the_ground_floor():
    """One definition, imported by the floors above (``_validate`` re-exports it)."""
    assert _validate.check_positive_int is _checks.check_positive_int
    assert _validate.check_positive_float is _checks.check_positive_float
    with pytest.raises(ValueError, match="epochs must be an integer >= 1; got 0"):
        _checks.check_positive_int(0, "epochs")
    with pytest.raises(ValueError, match="must be an integer >= 1; got True"):
        _checks.check_positive_int(True, "n")
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        _checks.check_key(np.zeros(3), "key")
    assert _checks.check_key(jax.random.key(0)) is not None
    with pytest.raises(ValueError, match="dtype must be a float dtype"):
        _checks.check_float_dtype(np.int32)
