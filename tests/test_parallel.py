"""fnmlp.parallel: data-parallel training on 4 forced CPU devices (in a subprocess, so the
rest of the suite keeps one device), the mesh checks, the multi-host entry point, and
several hosts for real: two processes on 127.0.0.1 joined by jax.distributed.initialize
(through fnmlp.parallel.initialize_distributed) with JAX's CPU collectives (gloo), two
simulated devices each. Data-parallel fit and a population sharded over the 4 devices
equal the one-process runs; a process that dies makes the other exit, not hang."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import pytest
from conftest import REPO

from fnmlp import parallel

FOUR_DEVICES = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path.insert(0, "tests")
    from conftest import count_compiles
    import jax, jax.numpy as jnp
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import fnmlp
    from fnmlp import data
    from fnmlp.parallel import make_mesh, place_on_mesh
    from fnmlp.train import init_state, make_trainer

    ds = data.make_spirals(640, arms=3, seed=0)
    model = fnmlp.mlp([2, 32, 3], "tanh")
    p0 = model.init_params(jax.random.key(0))
    out = {"devices": jax.device_count()}
    for grad in ("manual", "autodiff"):
        kw = dict(epochs=3, batch_size=64, optimizer="momentum", learning_rate=0.05,
                  grad=grad, verbose=False)
        one = fnmlp.fit(model, p0, ds.x, ds.y, **kw)
        four = fnmlp.fit(model, p0, ds.x, ds.y, **kw, mesh=make_mesh(4))
        out[grad] = {
            "max_abs_diff": max(float(jnp.max(jnp.abs(a - b))) for a, b in
                                zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params))),
            "moved": max(float(jnp.max(jnp.abs(a - b))) for a, b in
                         zip(jax.tree.leaves(one.params), jax.tree.leaves(p0))),
            "replicated": four.params[0]["w"].sharding.is_fully_replicated,
            "n_devices": len(four.params[0]["w"].sharding.device_set),
        }
    from fnmlp.layers import Dense, Dropout, LayerNorm, Relu, serial
    net = serial(Dense(16), LayerNorm(), Relu(), Dropout(0.25), Dense(3))
    q0 = net.init_params(jax.random.key(1), 2)
    kw = dict(epochs=2, batch_size=64, optimizer="adam", learning_rate=1e-2, verbose=False)
    one = fnmlp.fit(net, q0, ds.x, ds.y, **kw)
    four = fnmlp.fit(net, q0, ds.x, ds.y, **kw, mesh=make_mesh(4))
    out["model_max_abs_diff"] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                                    zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)))
    mesh = make_mesh(4)
    opt = fnmlp.sgd(0.1)
    tr = make_trainer(model, opt, 64, mesh=mesh)
    x, y, st = place_on_mesh((jnp.asarray(ds.x), jnp.asarray(ds.y), init_state(p0, opt)), mesh)
    with count_compiles("epoch") as compiles:
        for e in range(3):
            st, _ = tr.epoch(st, x, y, jax.random.key(0))
    out["cache_size"] = len(compiles)
    hlo = tr.epoch.lower(st, x, y, jax.random.key(0)).compile().as_text()
    out["all_reduce"] = hlo.count("all-reduce")
    try:
        make_trainer(model, opt, 66, mesh=mesh)
    except ValueError as e:
        out["indivisible"] = str(e)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_device_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, "-c", FOUR_DEVICES], capture_output=True, text=True,
                       timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_four_devices_match_one_device(four_device_run, grad):
    res = four_device_run[grad]
    assert four_device_run["devices"] == 4
    assert res["moved"] > 0.05  # it trained
    # 30 steps of float32: the 4-way partial sums round differently; measured ~1e-7
    assert res["max_abs_diff"] < 1e-5
    assert res["n_devices"] == 4 and res["replicated"]


def test_a_model_with_dropout_and_layer_norm_trains_the_same_on_four_devices(
        four_device_run):
    # the same masks (drawn from the step's key, whatever the sharding) and float32 sums
    # in another order: 2 epochs of Adam stay within 1e-5
    assert four_device_run["model_max_abs_diff"] < 1e-5, four_device_run


def test_compiled_step_has_the_cross_device_reduction_and_compiles_once(four_device_run):
    assert four_device_run["all_reduce"] >= 1
    assert four_device_run["cache_size"] == 1


def test_indivisible_global_batch_is_refused(four_device_run):
    assert "batch_size must be divisible by the 4 devices" in four_device_run["indivisible"]
    assert "got 66" in four_device_run["indivisible"]


def test_more_devices_than_present_is_a_clear_error():
    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"at most the {n} device\(s\) present.*got {n + 1}"):
        parallel.make_mesh(n + 1)
    r = subprocess.run([sys.executable, f"{REPO}/scripts/train_toy.py", "--devices",
                        str(n + 1), "--epochs", "1", "--out", "/tmp/fnmlp-dev"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "device(s) present" in r.stderr


def test_script_trains_data_parallel(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, f"{REPO}/scripts/train_toy.py", "--devices", "2",
                        "--epochs", "20", "--n", "200", "--out", str(tmp_path), "--quiet"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["devices"] == 2 and "x2" in m["device"] and m["test_accuracy"] > 0.8


def test_initialize_distributed_argument_handling(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    for bad, match in [
        (dict(coordinator_address="10.0.0.1:1234"), "together"),
        (dict(coordinator_address="nohost", num_processes=2, process_id=0), "host:port"),
        (dict(coordinator_address="h:99999", num_processes=2, process_id=0), "host:port"),
        (dict(coordinator_address="h:1234", num_processes=0, process_id=0), "num_processes"),
        (dict(coordinator_address="h:1234", num_processes=2, process_id=2), r"\[0, 2\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            parallel.initialize_distributed(**bad)
    assert calls == []  # nothing reached JAX
    parallel.initialize_distributed("h:1234", 2, 1)
    parallel.initialize_distributed()  # auto-detected clusters
    assert calls == [
        dict(coordinator_address="h:1234", num_processes=2, process_id=1),
        dict(coordinator_address=None, num_processes=None, process_id=None)]


# Several hosts: two processes joined by jax.distributed.

WORKER = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from fnmlp.parallel import initialize_distributed, make_mesh
    pid, port, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    initialize_distributed(f"127.0.0.1:{port}", 2, pid, heartbeat_timeout_seconds=5)
    import numpy as np
    from jax.experimental import multihost_utils
    import fnmlp
    from fnmlp import data
    from fnmlp.population import fit_population, grid
    if mode == "die" and pid == 1:
        os._exit(3)  # a host lost right after joining
    ds = data.make_spirals(640, arms=3, seed=0)
    model = fnmlp.mlp([2, 32, 3], "tanh")
    p0 = model.init_params(jax.random.key(0))
    kw = dict(epochs=3, batch_size=64, optimizer="momentum", learning_rate=0.05,
              verbose=False)
    if mode == "die":  # the survivor waits in the first all-reduce
        fnmlp.fit(model, p0, ds.x, ds.y, **kw, mesh=make_mesh())
        print("survived")
        sys.exit(0)
    mesh = make_mesh()
    par = fnmlp.fit(model, p0, ds.x, ds.y, **kw, mesh=mesh)
    one = fnmlp.fit(model, p0, ds.x, ds.y, **kw)  # this process alone, on one device
    pkw = dict(epochs=3, batch_size=32, verbose=False)
    members = grid(lr=[3e-3, 1e-2], seed=[0, 1])
    pop = fit_population(fnmlp.mlp([2, 24, 3]), ds.x, ds.y, members, **pkw, mesh=mesh)
    ref = fit_population(fnmlp.mlp([2, 24, 3]), ds.x, ds.y, members, **pkw)
    pop_params = multihost_utils.process_allgather(pop.params, tiled=True)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                            for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({
        "pid": pid, "devices": jax.device_count(), "local": jax.local_device_count(),
        "fit_diff": diff(par.params, one.params), "moved": diff(one.params, p0),
        "pop_diff": diff(pop_params, ref.params),
        "local_members": [s.data.shape[0] for s in pop.params[0]["w"].addressable_shards],
        "loss": par.history[-1]["train_loss"]}))
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, mode, timeout=240):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(port), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO) for i in (0, 1)]
    t0, out = time.monotonic(), []
    for p in procs:
        try:
            so, se = p.communicate(timeout=max(1, timeout - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a process hung for more than {timeout} s ({mode})")
        out.append((p.returncode, so, se, time.monotonic() - t0))
    return out


def test_two_processes_train_like_one(tmp_path):
    results = _launch(tmp_path, "train")
    got = []
    for rc, so, se, _ in results:
        assert rc == 0, se[-3000:]
        got.append(json.loads(so.strip().splitlines()[-1]))
    for g in got:
        assert g["devices"] == 4 and g["local"] == 2
        assert g["moved"] > 0.05  # it trained
        # the 4-way all-reduce sums in another order: float32 round-off (~1e-7 measured)
        assert g["fit_diff"] < 1e-5
        assert g["pop_diff"] < 1e-5 and g["local_members"] == [1, 1]  # 4 members, 4 devices
    assert got[0]["loss"] == got[1]["loss"]  # every host sees the same replicated result


def test_a_dead_process_makes_the_other_exit_with_a_clear_error(tmp_path):
    (rc0, so0, se0, t0), (rc1, _, _, _) = _launch(tmp_path, "die", timeout=120)
    assert rc1 == 3
    assert rc0 != 0 and "survived" not in so0
    assert "another task died" in se0 or "unhealthy" in se0, se0[-2000:]
    assert t0 < 90  # ended by the 5 s heartbeat timeout, not a hang
