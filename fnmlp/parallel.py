"""Data-parallel training over a 1-D device mesh, on JAX's own SPMD machinery.

Params and optimizer state are replicated (``NamedSharding(mesh, P())``); each minibatch
is sharded along the batch axis (``NamedSharding(mesh, P("data"))``). The step is the
same pure function as on one device: under ``jax.jit`` XLA partitions the forward and
backward by the batch and inserts the all-reduce that sums the per-device gradient
contributions (``a^T @ delta`` and ``sum(delta)`` contract over the batch axis). The
training set itself is replicated on every device, so the per-epoch shuffle is the same
program as on one device and gives the same minibatches.

Use it through ``fit(..., mesh=make_mesh(n))`` or ``--devices N`` on the scripts. Across
hosts, call :func:`initialize_distributed` first on every host (it wraps
``jax.distributed.initialize``); then ``jax.devices()`` lists every host's devices and
``make_mesh`` spans them.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnmlp._checks import check_positive_int

AXIS = "data"


def make_mesh(n_devices: int | None = None, devices: list | None = None) -> Mesh:
    """A 1-D mesh named ``"data"`` over the first ``n_devices`` devices (default: all)."""
    available = list(devices if devices is not None else jax.devices())
    n = len(available) if n_devices is None else check_positive_int(n_devices, "devices")
    if n > len(available):
        raise ValueError(
            f"devices must be at most the {len(available)} device(s) present"
            f" ({available[0].platform}); got {n}")
    return Mesh(np.array(available[:n]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"batch_size must be divisible by the {n} devices of the mesh (each device takes"
            f" batch_size / {n} examples); got {batch_size}")


def shard_step(step, mesh: Mesh):
    """Wraps a pure ``(state, batch, key=None) -> (state, metrics)`` step: batch sharded
    along the batch axis, state replicated. Still pure; jit it (or scan it) as usual."""
    data, rep = batch_sharded(mesh), replicated(mesh)

    def sharded(state, batch, key=None):
        batch = jax.lax.with_sharding_constraint(batch, data)
        state = jax.lax.with_sharding_constraint(state, rep)
        state, metrics = step(state, batch, key)
        return jax.lax.with_sharding_constraint(state, rep), metrics

    return sharded


def place_on_mesh(tree, mesh: Mesh):
    """Puts any pytree of arrays (data, a TrainState) on the mesh, replicated."""
    return put(tree, replicated(mesh))


def put(tree, sharding: NamedSharding):
    """``jax.device_put(tree, sharding)``, also when the sharding spans several processes:
    there every process passes the same host value and puts the shards of its own
    devices (``jax.make_array_from_callback``)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(one, tree)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> None:
    """Joins a multi-host job (``jax.distributed.initialize``), after checking arguments.

    Give all three (``"host:port"`` of process 0, the process count, this process's id in
    ``[0, num_processes)``), or none of them on clusters JAX detects by itself (SLURM,
    Open MPI, Cloud TPU). Other keywords go to ``jax.distributed.initialize``; e.g.
    ``heartbeat_timeout_seconds=10``: when a process dies, the others are ended by JAX
    with "the JAX distributed service detected fatal errors ... another task died" after
    that many seconds (JAX's default is 100) instead of waiting in a collective.

    On CPU, set ``jax.config.update("jax_cpu_collectives_implementation", "gloo")``
    before this call so that the processes can reduce across each other (tested: two
    processes on one machine, two devices each).
    """
    given = [coordinator_address, num_processes, process_id]
    if any(v is not None for v in given) and any(v is None for v in given):
        raise ValueError("give coordinator_address, num_processes and process_id together,"
                         f" or none of them; got {given}")
    if coordinator_address is not None:
        host, sep, port = str(coordinator_address).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("coordinator_address must be 'host:port' with a port in"
                             f" 1..65535; got {coordinator_address!r}")
        num_processes = check_positive_int(num_processes, "num_processes")
        process_id = check_positive_int(process_id, "process_id", 0)
        if process_id >= num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}); got {process_id}")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id, **kwargs)
