"""Several hosts, for real: two processes on 127.0.0.1 joined by jax.distributed.initialize
(through fnmlp.parallel.initialize_distributed) with JAX's CPU collectives (gloo), two
simulated devices each. Data-parallel fit and a population sharded over the 4 devices
equal the one-process runs; a process that dies makes the other exit, not hang."""

import json
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

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
