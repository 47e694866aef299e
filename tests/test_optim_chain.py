"""The optimizers as chains of one-job transforms: a chain written by hand is the named
optimizer, the injected rate compiles nothing new, a user's chain trains under fit, and
a checkpoint of the old optimizer-state layout resumes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles

import fnmlp
from fnmlp import data, optim, schedules
from fnmlp.optim import legacy

P = [{"w": jnp.asarray([[1.0, -1.2], [1.4, -1.6], [1.8, -2.0]]), "b": jnp.full(2, 0.5)}]


def _grads(t):
    rng = np.random.default_rng(t)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), P)


def _run(opt, n=6, params=P):
    update, state = jax.jit(opt.update), opt.init(params)
    for t in range(n):
        u, state = update(_grads(t), state, params)
        params = optim.apply_updates(params, u)
    return params, state


def _by_hand(name):
    """The named optimizers, chained by hand from the transforms (the module doc's table)."""
    mo = optim.matrices_only
    return {
        "nesterov": lambda learning_rate, weight_decay: optim.chain(
            optim.clip_by_global_norm(1.0), optim.add_decayed_weights(weight_decay, mo),
            optim.trace(0.9, nesterov=True), optim.scale_by_learning_rate(learning_rate)),
        "adamw": lambda learning_rate, weight_decay: optim.chain(
            optim.scale_by_adam(0.9, 0.999, 1e-8), optim.add_decayed_weights(weight_decay, mo),
            optim.scale_by_learning_rate(learning_rate)),
        "adam_l2": lambda learning_rate, weight_decay: optim.chain(
            optim.add_decayed_weights(weight_decay), optim.scale_by_adam(),
            optim.scale_by_learning_rate(learning_rate)),
        "rmsprop": lambda learning_rate, weight_decay: optim.chain(
            optim.clip_by_global_norm(0.5), optim.scale_by_rms(0.99, 1e-8),
            optim.scale_by_learning_rate(learning_rate)),
    }[name]


NAMED = {
    "nesterov": optim.nesterov(0.05, 0.9, weight_decay=0.3, clip_norm=1.0,
                               mask=optim.matrices_only),
    "adamw": optim.adamw(0.05, weight_decay=0.3, mask=optim.matrices_only),
    "adam_l2": optim.adam(0.05, weight_decay=0.3),
    "rmsprop": optim.rmsprop(0.01, clip_norm=0.5),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_a_chain_written_by_hand_is_the_named_optimizer(name):
    opt = NAMED[name]
    lr, wd = float(opt.init(P).learning_rate), float(opt.init(P).weight_decay)
    mine = optim.inject_hyperparams(_by_hand(name), lr, wd)
    (a, sa), (b, sb) = _run(opt), _run(mine)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # the same arithmetic
    assert int(sa.count) == int(sb.count) == 6


def test_the_state_keeps_the_rate_the_decay_and_the_chains_buffers():
    state = optim.adam(0.1, weight_decay=0.2).init(P)
    assert isinstance(state, optim.InjectHyperparamsState)
    assert (int(state.count), float(state.learning_rate)) == (0, pytest.approx(0.1))
    assert float(state.weight_decay) == pytest.approx(0.2)
    adam = optim.tree_get(state, "mu")
    assert jax.tree.structure(adam) == jax.tree.structure(P)
    assert optim.tree_get(state, "velocity", None) is None
    with pytest.raises(KeyError, match="velocity"):
        optim.tree_get(state, "velocity")
    # the layout depends on the optimizer, not on whether it clips or decays
    for kw in ({}, {"clip_norm": 1.0}, {"weight_decay": 0.1, "mask": optim.matrices_only}):
        assert jax.tree.structure(optim.adam(0.1, **kw).init(P)) == jax.tree.structure(state)


def test_half_precision_params_keep_float32_transform_state():
    p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), P)
    for opt in (optim.momentum(0.1), optim.adam(0.1), optim.rmsprop(0.1)):
        state = opt.init(p16)
        u, state = jax.jit(opt.update)(jax.tree.map(jnp.ones_like, p16), state, p16)
        buffers = [a for a in jax.tree.leaves(state.inner_state) if a.ndim]
        assert buffers and all(a.dtype == jnp.float32 for a in buffers)
        assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(u))  # the params' dtype


def test_an_injected_rate_or_decay_compiles_nothing_new():
    opt = optim.inject_hyperparams(_by_hand("adamw"), 0.05, 0.3)
    step = jax.jit(opt.update)
    state = opt.init(P)
    with count_compiles("update") as compiles:
        _, state = step(_grads(0), state, P)
        state = optim.set_weight_decay(optim.set_learning_rate(state, 0.01), 0.0)
        _, state = step(_grads(1), state, P)
    assert len(compiles) == 1 and float(state.learning_rate) == pytest.approx(0.01)


def test_a_schedule_is_injected_and_evaluated_at_the_count():
    opt = optim.inject_hyperparams(_by_hand("rmsprop"), schedules.step_decay(1.0, 1, 0.5))
    _, state = _run(opt, n=3)
    assert float(state.learning_rate) == 0.25 and int(state.count) == 3


def test_the_update_is_shared_by_the_static_configuration():
    f = _by_hand("adamw")
    assert optim.inject_hyperparams(f, 0.1).update is optim.inject_hyperparams(f, 0.3, 1.0).update
    assert optim.adam(0.1).update is optim.get_optimizer("adam", 0.5).update
    assert optim.adam(0.1).update is not optim.adam(0.1, b1=0.8).update


@pytest.mark.parametrize("make", [
    lambda: optim.clip_by_global_norm(0.0), lambda: optim.scale_by_adam(b1=1.0),
    lambda: optim.scale_by_adam(eps=0.0), lambda: optim.scale_by_rms(decay=-0.1),
    lambda: optim.trace(1.0), lambda: optim.add_decayed_weights(-1.0),
    lambda: optim.add_decayed_weights(0.1, mask="matrices"),
    lambda: optim.scale_by_learning_rate(0.0),
    lambda: optim.inject_hyperparams(_by_hand("adamw"), -0.1),
])
def test_a_transform_refuses_a_bad_hyperparameter_when_built(make):
    with pytest.raises(ValueError):
        make()


def test_chain_takes_only_transforms():
    with pytest.raises(TypeError, match="position 1"):
        optim.chain(optim.identity(), optim.adam)


def test_a_users_chain_trains_under_fit_and_reports_its_rate():
    ds = data.make_moons(400, seed=0)
    model = fnmlp.mlp([2, 16, 2], "tanh")
    params = model.init_params(jax.random.key(0))

    def clipped_momentum(learning_rate, weight_decay):
        return optim.chain(optim.clip_by_global_norm(1.0), optim.trace(0.9),
                           optim.scale_by_learning_rate(learning_rate))

    opt = optim.inject_hyperparams(clipped_momentum, 0.05)
    optim.check_optimizer(opt, params)
    result = fnmlp.fit(model, params, ds.x, ds.y, epochs=10, batch_size=32, optimizer=opt,
                       verbose=False)
    assert result.history[-1]["learning_rate"] == pytest.approx(0.05)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]


# ----------------------------------------------------------------------------- old checkpoints


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
def test_a_checkpoint_of_the_old_layout_resumes(name, tmp_path):
    from fnmlp.io import load_checkpoint, save_checkpoint
    from fnmlp.io.checkpoint import read_checkpoint_meta
    from fnmlp.train import init_state

    ds = data.make_moons(200, seed=0)
    model = fnmlp.mlp([2, 8, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    opt = optim.get_optimizer(name, 0.01)
    kw = dict(batch_size=32, optimizer=opt, verbose=False)
    first = fnmlp.fit(model, params, ds.x, ds.y, epochs=2, **kw)
    old = legacy.to_legacy(first.state)  # the arrays, stored as before issue 42
    assert type(old.opt_state).__name__ in ("SGDState", "AdamState", "RMSPropState")
    save_checkpoint(tmp_path / "old.npz", old)
    paths = read_checkpoint_meta(tmp_path / "old.npz")["paths"]
    assert legacy.is_legacy(paths) == (name != "sgd")  # plain sgd: no buffers, same paths
    template = init_state(params, opt)
    if legacy.is_legacy(paths):
        with pytest.raises(ValueError, match="does not match"):
            load_checkpoint(tmp_path / "old.npz", template)
        loaded, _ = load_checkpoint(tmp_path / "old.npz", legacy.to_legacy(template))
        state = legacy.from_legacy(loaded, template)
    else:
        state, _ = load_checkpoint(tmp_path / "old.npz", template)
    resumed = fnmlp.fit(model, params, ds.x, ds.y, epochs=4, state=state, **kw)
    straight = fnmlp.fit(model, params, ds.x, ds.y, epochs=4, **kw)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_from_legacy_names_the_old_format_when_the_layout_differs():
    template = optim.adam(0.1).init(P)
    with pytest.raises(ValueError, match="before issue 42"):
        legacy.from_legacy(legacy.to_legacy(optim.momentum(0.1).init(P)), template)


def _as_before_issue_42(path):
    """Rewrites a checkpoint's optimizer state as fnmlp wrote it before the chains (the
    buffers directly under opt_state/, no chain count), independently of optim.legacy."""
    import json

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays.pop("__meta__")).decode())
    renamed = {}
    for name in meta["paths"]:
        head, sep, rest = name.partition("opt_state/inner_state/")
        if not sep:
            renamed[name] = name
        elif rest.split("/")[1] != "count":  # Adam's own count: the state's count before
            renamed[name] = head + "opt_state/" + "/".join(rest.split("/")[1:])
    meta["paths"] = list(renamed.values())
    out = {new: arrays[old] for old, new in renamed.items()}
    out["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **out)
    return meta["paths"]


def test_the_scripts_resume_a_checkpoint_of_the_old_layout(tmp_path):
    from conftest import run_script

    def arrays(out):
        with np.load(out / "checkpoint.npz") as z:
            return {k: z[k] for k in z.files if k != "__meta__"}

    common = ["--dataset", "moons", "--n", "200", "--quiet", "--seed", "3", "--optimizer",
              "adam", "--patience", "5", "--val-split", "0.2"]
    run_script("train_toy.py", *common, "--epochs", "5", "--out", str(tmp_path / "full"))
    run_script("train_toy.py", *common, "--epochs", "2", "--out", str(tmp_path / "part"))
    paths = _as_before_issue_42(tmp_path / "part" / "checkpoint.npz")
    assert "opt_state/mu/0/w" in paths and "early/best/opt_state/nu/1/b" in paths
    r = run_script("train_toy.py", *common, "--epochs", "5", "--out", str(tmp_path / "part"),
                   "--resume")
    assert "resuming from" in r.stderr
    full, part = arrays(tmp_path / "full"), arrays(tmp_path / "part")
    assert full.keys() == part.keys()  # written back in today's layout
    assert all(np.array_equal(full[k], part[k]) for k in full)
