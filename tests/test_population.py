"""Populations: K models in one compiled program. Member k equals fit with its config; the
epoch compiles once; the ensemble is the mean of the members' probabilities; sweeps from
the scripts; the population sharded over 4 (forced) devices equals one device."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, count_compiles

import fnmlp
from fnmlp import data, schedules
from fnmlp.population import (
    Member,
    ensemble_predict_proba,
    fit_population,
    grid,
    parse_sweep,
)

DS = data.make_spirals(480, arms=3, seed=0)
SIZES = [2, 24, 3]
model = fnmlp.mlp(SIZES, "tanh")  # the members' architecture in most tests


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_member_k_equals_fit_with_its_config(grad):
    members = [Member(3e-3, 0.0, 0), Member(1e-2, 1e-3, 1), Member(3e-2, 0.0, 2)]
    res = fit_population(fnmlp.mlp(SIZES, "tanh"), DS.x, DS.y, members, epochs=4, batch_size=32,
                         optimizer="adam", grad=grad, verbose=False)
    for k, m in enumerate(members):
        model = fnmlp.mlp(SIZES, "tanh")
        p0 = model.init_params(jax.random.key(m.seed))
        single = fnmlp.fit(model, p0, DS.x, DS.y, epochs=4, batch_size=32, grad=grad,
                           optimizer=fnmlp.adam(m.lr, weight_decay=m.wd),
                           seed=m.seed, verbose=False)
        # vmap batches the member's products, which XLA may sum in another order:
        # float32 round-off, measured ~3e-7 after 4 epochs
        assert _max_diff(single.params, res.member_params(k)) < 1e-5
        np.testing.assert_allclose([r["train_loss"] for r in res.history[k]],
                                   [r["train_loss"] for r in single.history], rtol=1e-5)


def test_members_follow_a_shared_schedule_of_their_own_rate():
    members = [Member(1e-2, 0.0, 0), Member(3e-2, 0.0, 0)]
    total = 3 * (len(DS.x) // 48)
    res = fit_population(fnmlp.mlp(SIZES, "tanh"), DS.x, DS.y, members, epochs=3, batch_size=48,
                         optimizer="sgd", verbose=False,
                         lr_factor=schedules.cosine_warmup(1.0, 0, total))
    for k, m in enumerate(members):
        single = fnmlp.fit(model, model.init_params(jax.random.key(0)), DS.x, DS.y,
                           epochs=3, batch_size=48, verbose=False,
                           optimizer=fnmlp.sgd(schedules.cosine_warmup(m.lr, 0, total)))
        assert _max_diff(single.params, res.member_params(k)) < 1e-5


def test_the_population_epoch_compiles_once():
    with count_compiles("population_epoch") as compiles:
        fit_population(model, DS.x, DS.y, grid(lr=[1e-2, 2e-2], seed=[0, 1]), epochs=4,
                       batch_size=32, verbose=False)
    assert len(compiles) == 1


def test_a_diverging_member_does_not_stop_the_others():
    members = [Member(1e-2, 0.0, 0), Member(1e6, 0.0, 0)]
    res = fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, members, epochs=3, batch_size=32,
                         optimizer="sgd", verbose=False,
                         validation_data=(DS.x, DS.y))
    assert res.history[1][-1]["diverged"] and not res.history[0][-1]["diverged"]
    assert res.best == 0 and np.isfinite(res.history[0][-1]["val_loss"])


def test_a_member_whose_rate_goes_below_zero_is_marked_and_never_the_best():
    """A breaker's find: an lr_factor that went negative trained every member uphill and
    raised nothing; fit stops on the same rule (optim.base.unusable_rate)."""
    members = [Member(1e-2, 0.0, 0), Member(1e-1, 0.0, 0)]
    steps = len(DS.x) // 32
    linear = lambda count: 1.0 - count / (1.5 * steps)  # noqa: E731  < 0 in epoch 2
    res = fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, members, epochs=3,
                         batch_size=32, optimizer="sgd", lr_factor=linear, verbose=False)
    for h in res.history:
        assert [r["diverged"] for r in h] == [False, True, True]
        assert h[1]["learning_rate"] < 0
    fine = fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, members, epochs=3,
                          batch_size=32, optimizer="sgd", verbose=False)
    assert not any(r["diverged"] for h in fine.history for r in h)
    for bad in (lambda c: jnp.ones(3), lambda c: jnp.ones(1), lambda c: None, 0.5):
        with pytest.raises(ValueError, match="lr_factor must"):  # failed in NumPy before
            fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, members, epochs=1,
                           batch_size=32, optimizer="sgd", lr_factor=bad, verbose=False)
    with pytest.raises(ValueError, match="lr_factor gives -1 at step 0"):  # as fit's schedule
        fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, members, epochs=3,
                       batch_size=32, optimizer="sgd", lr_factor=lambda c: -1.0 + 0 * c,
                       verbose=False)


def test_a_member_whose_rate_dips_below_zero_inside_an_epoch_is_marked():
    """fit's rule on the lowest rate of the epoch's updates: an lr_factor negative at one
    update in the middle of epoch 2 and positive at its end."""
    steps = len(DS.x) // 32
    dip = lambda count: jnp.where(count == steps + steps // 2, -5.0, 1.0)  # noqa: E731
    res = fit_population(fnmlp.mlp(SIZES, "identity"), DS.x, DS.y, [Member(1e-2, 0.0, 0)],
                         epochs=3, batch_size=32, optimizer="sgd", lr_factor=dip,
                         verbose=False)
    assert [r["diverged"] for r in res.history[0]] == [False, True, True]
    assert res.history[0][1]["learning_rate"] > 0  # its end rate alone hid it


def test_ensemble_is_the_mean_of_the_members_probabilities():
    res = fit_population(model, DS.x, DS.y, grid(lr=[1e-2], seed=[0, 1, 2]), epochs=3,
                         batch_size=32, verbose=False)
    ens = np.asarray(ensemble_predict_proba(model, res.params, DS.x[:50]))
    each = [np.asarray(fnmlp.predict_proba(model, res.member_params(k), DS.x[:50]))
            for k in range(3)]
    np.testing.assert_allclose(ens, np.mean(each, axis=0), rtol=1e-6)
    np.testing.assert_allclose(ens.sum(1), 1, rtol=1e-5)


def test_member_indices_out_of_range_are_refused_and_negative_ones_count_from_the_end():
    """JAX clamps an index past the end on device (member 7 of 3 was member 2, silently,
    before issue 29); the host check names the index instead."""
    res = fit_population(model, DS.x, DS.y, grid(lr=[1e-2], seed=[0, 1, 2]), epochs=1,
                         batch_size=32, verbose=False)
    x = DS.x[:20]
    with pytest.raises(ValueError, match=r"members entry 7 is out of range .* 3 members"):
        ensemble_predict_proba(model, res.params, x, members=[0, 7])
    with pytest.raises(ValueError, match=r"member 7 is out of range"):
        res.member_params(7)
    with pytest.raises(ValueError, match=r"member -4 is out of range"):
        res.member_params(-4)
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_predict_proba(model, res.params, x, members=[])
    for neg, pos in ((-1, 2), (-3, 0)):  # in range: as Python's negative indices
        assert _max_diff(res.member_params(neg), res.member_params(pos)) == 0
        np.testing.assert_array_equal(
            np.asarray(ensemble_predict_proba(model, res.params, x, members=[neg])),
            np.asarray(ensemble_predict_proba(model, res.params, x, members=[pos])))
    pair = ensemble_predict_proba(model, res.params, x, members=[0, -1])
    each = [np.asarray(fnmlp.predict_proba(model, res.member_params(k), x)) for k in (0, 2)]
    np.testing.assert_allclose(np.asarray(pair), np.mean(each, axis=0), rtol=1e-6)


@pytest.mark.parametrize("spec, match", [
    (["momentum=0.9"], "KEY one of"), (["lr="], "no empty entries"), (["lr=1e-3,,2"], "empty"),
    (["lr=-1e-3"], "must be > 0"), (["wd=-1"], "must be >= 0"), (["seed=0.5"], "integers"),
    (["lr=1", "lr=2"], "twice"), (["lr"], "KEY=V1,V2"),
    (["seed=4294967296"], r"seed values must be integers in \[0, 2\*\*32\); got 4294967296"),
    (["seed=-1"], r"integers in \[0, 2\*\*32\); got -1")])
def test_bad_sweep_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_sweep(spec, Member(1e-3))


def test_sweep_grid_order():
    got = parse_sweep(["seed=0,1", "lr=1e-3,1e-2"], Member(5e-3, 0.0, 7))
    assert got == [Member(1e-3, 0, 0), Member(1e-3, 0, 1), Member(1e-2, 0, 0),
                   Member(1e-2, 0, 1)]


def _script(*args, env=None):
    return subprocess.run([sys.executable, f"{REPO}/scripts/train_toy.py", *args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("sweep, match", [
    (["--sweep", "beta=1"], "KEY one of"), (["--sweep", "lr="], "no empty entries"),
    (["--sweep", "lr=-0.1"], "must be > 0"),
    (["--sweep", "seed=" + ",".join(map(str, range(300))), "--hidden", "4096,4096"],
     "GiB are available: give fewer members"),
    (["--sweep", "lr=0.1", "--resume"], "not available with --sweep"),
    # a breaker's find: the first of two --sweep flags was dropped (one member trained)
    (["--sweep", "lr=0.1", "--sweep", "lr=0.2", "seed=1"], "--sweep gives lr twice")])
def test_bad_sweeps_exit_2_with_one_line(tmp_path, sweep, match):
    r = _script("--out", str(tmp_path), "--epochs", "2", *sweep)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert match in r.stderr and "Traceback" not in r.stderr


def test_a_sweep_without_val_split_names_its_test_scores_test(tmp_path):
    """A new user's find: without --val-split the population's log printed the test set's
    loss as "val_loss" (the final table said test_loss for the same number)."""
    r = _script("--dataset", "moons", "--n", "200", "--epochs", "2", "--out", str(tmp_path),
                "--sweep", "lr=0.01,0.02")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() + r.stdout.splitlines()
             if ln.startswith("epoch ")]
    assert lines and all("test_loss" in ln and "val_loss" not in ln for ln in lines), lines
    h = json.loads((tmp_path / "members" / "0" / "metrics.json").read_text())["history"]
    assert "test_loss" in h[-1] and not any(k.startswith("val_") for k in h[-1])
    # wall_seconds means what one run's does (since the script started; it held training
    # and evaluation, a breaker's find), run_seconds the training and evaluation
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["wall_seconds"] > summary["run_seconds"] > 0
    assert "script_seconds" not in summary
    with pytest.raises(ValueError, match="validation_name must be 'val' or 'test'"):
        fit_population(fnmlp.mlp(TINY), SMALL.x, SMALL.y, [Member(1e-2)], epochs=1,
                       batch_size=32, verbose=False, validation_name="held")


def test_grid_refuses_seeds_the_seed_rule_refuses():
    """A breaker's find: grid(seed=[1.5, 2.9, True]) trained with seeds [1, 2, 1]."""
    for bad in (1.5, True, -1, 2**32):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            grid(lr=[0.1], seed=[0, bad])
    assert [m.seed for m in grid(seed=[np.int64(3), 2**32 - 1])] == [3, 2**32 - 1]


def test_an_ensemble_whose_seeds_pass_2_32_says_which_flags():
    """A breaker's find: --seed 4294967295 --ensemble 3 said 'member seed must be an
    integer in [0, 2**32); got 4294967296', a name and number never typed."""
    from fnmlp import cli

    args = cli.base_parser("t", hidden="8", activation="tanh", optimizer="adam", lr=1e-2,
                           batch_size=32, epochs=2, out="o").parse_args(["--seed", "4294967295"])
    args.ensemble = 3
    with pytest.raises(cli.UsageError, match=r"--ensemble 3 trains seeds --seed .. --seed \+ 2,"
                                             r" .* give --seed 4294967293 or less"):
        cli.members_from_args(args)


def test_resume_of_a_populations_folder_is_refused_and_keeps_its_summary(tmp_path):
    """A breaker's find: --resume --out of a sweep's folder trained its best member on and
    replaced the summary metrics.json (every member's row) with one run's history."""
    common = ["--dataset", "moons", "--n", "120", "--quiet", "--out", str(tmp_path)]
    assert _script(*common, "--epochs", "2", "--sweep", "lr=0.01,0.02").returncode == 0
    before = (tmp_path / "metrics.json").read_bytes()
    r = _script(*common, "--epochs", "4", "--resume")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "is the best member of a population" in r.stderr
    assert (tmp_path / "metrics.json").read_bytes() == before


def test_repeated_sweep_flags_add_up():
    from fnmlp import cli

    args = cli.base_parser("t", hidden="8", activation="tanh", optimizer="adam", lr=1e-2,
                           batch_size=32, epochs=2, out="o").parse_args(
        ["--sweep", "lr=0.1,0.2", "--sweep", "seed=1,2"])
    members = cli.members_from_args(args)
    assert [(m.lr, m.seed) for m in members] == [(0.1, 1), (0.1, 2), (0.2, 1), (0.2, 2)]


def test_sweep_of_eight_learning_rates_from_one_command(tmp_path):
    from test_scripts import _assert_real_png

    lrs = ["1e-3", "2e-3", "5e-3", "1e-2", "2e-2", "5e-2", "1e-1", "2e-1"]
    r = _script("--dataset", "moons", "--n", "300", "--epochs", "8", "--quiet", "--out",
                str(tmp_path), "--sweep", "lr=" + ",".join(lrs))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert len(summary["members"]) == 8 and sorted(summary["ranking"]) == list(range(8))
    losses = {m["member"]: m["test_loss"] for m in summary["members"]}
    assert summary["best"] == min(losses, key=losses.get)
    for k in range(8):
        m = json.loads((tmp_path / "members" / str(k) / "metrics.json").read_text())
        assert m["config"]["lr"] == float(lrs[k]) and len(m["history"]) == 8
        assert "test_accuracy" in m["history"][-1]
    _assert_real_png(tmp_path / "sweep.png")
    model = fnmlp.load_model(tmp_path / "checkpoint.npz")  # the best member
    assert model.config["lr"] == float(lrs[summary["best"]])
    assert "ensemble of 8 members" in r.stdout and "rank" in r.stdout


def test_a_sweeps_weight_decay_touches_what_the_single_runs_does(tmp_path):
    """A breaker's find: ``--sweep wd=W`` decayed the biases too, while one run's
    ``--weight-decay W`` decays the weight matrices only (cli.flags.decay_mask, now used by
    both): the member equals the single run with its flags (biases shrank 20x before)."""
    common = ["--dataset", "moons", "--n", "200", "--epochs", "4", "--batch-size", "20",
              "--optimizer", "adam", "--lr", "0.05", "--quiet"]
    r = _script(*common, "--weight-decay", "0.5", "--out", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    r = _script(*common, "--sweep", "wd=0.5", "--out", str(tmp_path / "pop"))
    assert r.returncode == 0, r.stderr
    one = fnmlp.load_model(tmp_path / "one" / "checkpoint.npz").params
    member = fnmlp.load_model(tmp_path / "pop" / "checkpoint.npz")  # the best: the one
    assert member.config["weight_decay"] == 0.5
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(member.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    with pytest.raises(ValueError, match="weight_decay_mask must be a predicate"):
        fit_population(fnmlp.mlp(TINY), SMALL.x, SMALL.y, [Member(1e-2, 0.1)], epochs=1,
                       batch_size=32, verbose=False, weight_decay_mask="matrices")


def test_a_sweep_whose_every_member_diverges_exits_1_with_one_line(tmp_path):
    """A breaker's find: exit 2 with 'members must list at least one member index; got
    none' (the ensemble of no member), no metrics.json; the regression script 'refusing to
    save a checkpoint with non-finite values'. Divergence is exit 1, as for one run."""
    r = _script("--dataset", "moons", "--n", "120", "--epochs", "2", "--quiet", "--out",
                str(tmp_path), "--sweep", "lr=1e38,3e38")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "every member diverged" in lines[0], r.stderr
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["best"] is None and all(m["diverged"] for m in summary["members"])
    assert not (tmp_path / "checkpoint.npz").exists()


FOUR = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    import fnmlp
    from fnmlp import data
    from fnmlp.parallel import make_mesh
    from fnmlp.population import fit_population, grid
    ds = data.make_spirals(480, arms=3, seed=0)
    kw = dict(epochs=3, batch_size=32, verbose=False)
    members = grid(lr=[3e-3, 1e-2], seed=[0, 1, 2, 3])
    one = fit_population(fnmlp.mlp([2, 24, 3]), ds.x, ds.y, members, **kw)
    four = fit_population(fnmlp.mlp([2, 24, 3]), ds.x, ds.y, members, **kw, mesh=make_mesh(4))
    w = four.params[0]["w"]
    print(json.dumps({
        "diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params))),
        "devices": len(w.sharding.device_set),
        "per_device_members": [s.data.shape[0] for s in w.addressable_shards]}))
""")


def test_population_sharded_over_four_devices_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, "-c", FOUR], capture_output=True, text=True,
                       timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["per_device_members"] == [2, 2, 2, 2]
    assert out["diff"] < 1e-5  # each device runs its own members: same math, same program


# ------------------------------------------------- each member trains with exactly its config

SMALL = data.make_spirals(160, arms=3, seed=1)
TINY = [2, 8, 3]


def _default_wd(name):
    """The optimizer's own weight decay default, read from the state it builds."""
    opt = fnmlp.optim.get_optimizer(name, 1e-2)
    return float(opt.init(fnmlp.mlp(TINY).init_params(jax.random.key(0))).weight_decay)


def _wd_grids(name):
    d = _default_wd(name) or 0.03  # adamw's 1e-2; 0 (already in the grids) for the others
    return {"all zero": [Member(1e-2, 0.0, 0), Member(3e-2, 0.0, 1)],
            "zero, default, more": [Member(1e-2, 0.0, 0), Member(3e-2, d, 1),
                                    Member(1e-2, 0.1, 2)],
            "no zero": [Member(3e-2, d, 1), Member(1e-2, 0.1, 2)]}


_FITS: dict = {}


def _fit_member(name, m, x=SMALL.x, y=SMALL.y, dtype=None, epochs=2, mask=None):
    """fnmlp.fit with member m's config: the same optimizer, m's lr and weight decay (on
    the leaves ``mask`` names), m's seed (cached: the grids share members)."""
    key = (name, m, dtype, epochs, mask)
    if key not in _FITS:
        tiny = fnmlp.mlp(TINY, "tanh")
        p0 = tiny.init_params(jax.random.key(m.seed), dtype=dtype or jnp.float32)
        opt = fnmlp.optim.get_optimizer(name, m.lr, weight_decay=m.wd, mask=mask)
        _FITS[key] = fnmlp.fit(tiny, p0, x, y, epochs=epochs, batch_size=32, optimizer=opt,
                               seed=m.seed, verbose=False).params
    return _FITS[key]


@pytest.mark.parametrize("grid_name", ["all zero", "zero, default, more", "no zero"])
@pytest.mark.parametrize("name", sorted(fnmlp.optim.OPTIMIZERS))
def test_every_member_trains_with_its_own_lr_and_weight_decay(name, grid_name):
    """adamw with every member at wd=0 trained every member with adamw's default 0.01
    (4e-4 away from fit with wd=0 after a few steps); every optimizer, every grid."""
    members = _wd_grids(name)[grid_name]
    res = fit_population(fnmlp.mlp(TINY, "tanh"), SMALL.x, SMALL.y, members, epochs=2,
                         batch_size=32, optimizer=name, verbose=False)
    for k, m in enumerate(members):
        # vmap's batched products may sum in another order: float32 round-off only
        assert _max_diff(_fit_member(name, m), res.member_params(k)) < 1e-5, (k, m)


def test_metrics_json_reports_what_each_member_trained_with(tmp_path):
    """The per-member metrics.json said weight_decay 0.0 while adamw trained with 0.01;
    now its lr and weight_decay, given to fit, reproduce the member."""
    from fnmlp import cli

    args = cli.base_parser("t", hidden="8", activation="tanh", optimizer="adamw", lr=1e-2,
                           batch_size=32, epochs=2, out=str(tmp_path)).parse_args(
        ["--sweep", "lr=1e-2,3e-2", "--quiet"])
    test = data.make_spirals(60, arms=3, seed=2)
    cli.run_population(args, cli.members_from_args(args), train=(SMALL.x, SMALL.y),
                       test=(test.x, test.y), loss="softmax_cross_entropy", dataset="spirals")
    best = json.loads((tmp_path / "metrics.json").read_text())["best"]
    for k in range(2):
        cfg = json.loads((tmp_path / "members" / str(k) / "metrics.json").read_text())["config"]
        single = _fit_member("adamw", Member(cfg["lr"], cfg["weight_decay"], cfg["seed"]),
                             mask=fnmlp.optim.matrices_only)  # as the scripts' single run
        if k == best:
            saved = fnmlp.load_model(tmp_path / "checkpoint.npz").params
            assert _max_diff(single, saved) < 1e-5
    # no --weight-decay: adamw's PyTorch default 0.01, as a single adamw run trains with
    assert cfg["weight_decay"] == 0.01


def test_reported_hyperparameters_are_read_from_the_state():
    from fnmlp.population import member_hyperparameters

    members = [Member(1e-2, 0.0, 0), Member(3e-2, 1e-2, 1)]
    res = fit_population(fnmlp.mlp(TINY, "tanh"), SMALL.x, SMALL.y, members, epochs=1,
                         batch_size=32, optimizer="adamw", verbose=False,
                         lr_factor=schedules.cosine_warmup(1.0, 0, 5))
    # the float32 values the state holds, as their shortest decimals (not 0.00999999977)
    assert member_hyperparameters(res) == [{"lr": 1e-2, "weight_decay": 0.0},
                                           {"lr": 3e-2, "weight_decay": 1e-2}]
    o = res.state.opt_state  # read from these arrays, not from the request
    np.testing.assert_array_equal(o.weight_decay, np.float32([0.0, 1e-2]))
    assert float(o.learning_rate[1]) < 1e-2  # the schedule's last rate: base_lr is read
    res = res._replace(state=res.state._replace(opt_state=o._replace(
        weight_decay=o.weight_decay.at[0].set(5.0))), base_lr=res.base_lr.at[1].set(0.25))
    assert member_hyperparameters(res) == [{"lr": 1e-2, "weight_decay": 5.0},
                                           {"lr": 0.25, "weight_decay": 1e-2}]


# ----------------------------------------------------------------------------- float64


def test_float64_population_member_equals_float64_fit(x64):
    """fit_population trained in float32 whatever the data: its init used init_mlp's
    float32 default and the data was cast to it."""
    x = np.asarray(SMALL.x, np.float64)
    members = [Member(1e-2, 0.0, 0), Member(3e-2, 1e-2, 1)]
    res = fit_population(fnmlp.mlp(TINY, "tanh"), x, SMALL.y, members, epochs=2, batch_size=32,
                         optimizer="adam", verbose=False)
    for k, m in enumerate(members):
        p = res.member_params(k)
        assert all(a.dtype == np.float64 for a in jax.tree.leaves(p))
        single = _fit_member("adam", m, x=x, dtype=np.float64)
        assert all(a.dtype == np.float64 for a in jax.tree.leaves(single))
        assert _max_diff(single, p) < 1e-12
    assert res.state.opt_state.learning_rate.dtype == np.float64


def test_population_dtype_argument(x64):
    from fnmlp.population import population_dtype

    x32 = np.asarray(SMALL.x, np.float32)
    assert population_dtype(None, x32) == np.float32
    assert population_dtype(None, x32.astype(np.float64)) == np.float64
    assert population_dtype(None, x32.astype(np.float16)) == np.float32
    assert population_dtype("float32", x32.astype(np.float64)) == np.float32
    res = fit_population(fnmlp.mlp(TINY), x32, SMALL.y, [Member(1e-2)], epochs=1, batch_size=32,
                         verbose=False, dtype="float64")
    assert res.params[0]["w"].dtype == np.float64


@pytest.mark.parametrize("dtype, match", [
    ("int32", "dtype must be a float dtype"), ("banana", "dtype must be a float dtype"),
    ("float64", "needs JAX.s float64")])
def test_bad_population_dtype_is_refused_before_compiling(dtype, match):
    with count_compiles() as compiles, pytest.raises(ValueError, match=match):
        fit_population(fnmlp.mlp(TINY), SMALL.x, SMALL.y, [Member(1e-2)], epochs=1, batch_size=32,
                       verbose=False, dtype=dtype)
    assert compiles == []
