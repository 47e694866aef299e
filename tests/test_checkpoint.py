"""Checkpoints (fnmlp.io.checkpoint): bitwise round trip, atomic writes, clear errors, no
pickle; a hostile file (a 4 GB member in 3.9 MB, a lying header or size, a stray member, a
huge __meta__) is refused from its headers before any member is inflated, by
load_checkpoint and by load_model (whose other tests are in test_model_file.py)."""

import contextlib
import functools
import io
import math
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO
from numpy.lib import format as npy

import fnmlp
from fnmlp.io import checkpoint
from fnmlp.train import init_state


def _params(sizes, seed=0):
    return fnmlp.mlp(list(sizes)).init_params(jax.random.key(seed))


def _state(sizes=(3, 5, 2), opt=None, seed=0):
    opt = opt or fnmlp.adam(0.01)
    state = init_state(_params(sizes, seed), opt)
    # make every leaf non-trivial: a few real updates
    x = jax.random.normal(jax.random.key(1), (8, sizes[0]))
    y = jnp.arange(8) % sizes[-1]
    step = fnmlp.train.make_train_step(fnmlp.mlp(list(sizes)), opt)
    for _ in range(3):
        state, _ = step(state, fnmlp.train.Batch(x, y))
    return state, opt


def test_round_trip_is_bitwise_exact(tmp_path):
    state, opt = _state()
    cfg = {"sizes": [3, 5, 2], "activation": "relu"}
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, cfg)
    template = init_state(_params([3, 5, 2], seed=9), opt)
    loaded, got_cfg = fnmlp.load_checkpoint(tmp_path / "c.npz", template)
    assert got_cfg == cfg
    assert jax.tree.structure(loaded) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(state)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    meta = checkpoint.read_checkpoint_meta(tmp_path / "c.npz")
    assert meta["fnmlp_version"] == fnmlp.__version__


def test_file_holds_no_pickles(tmp_path):
    state, _ = _state()
    fnmlp.save_checkpoint(tmp_path / "c.npz", state)
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        for name in z.namelist():
            with z.open(name) as f:
                header = f.read(128)
            assert header.startswith(b"\x93NUMPY") and b"'O'" not in header, name


def test_interrupted_write_leaves_old_checkpoint_loadable(tmp_path, monkeypatch):
    old, opt = _state(seed=0)
    path = tmp_path / "c.npz"
    fnmlp.save_checkpoint(path, old)
    new, _ = _state(seed=1)

    real_savez = np.savez

    def crash_midway(f, **arrays):  # write half of the archive, then "crash"
        real_savez(f, **dict(list(arrays.items())[: len(arrays) // 2]))
        raise KeyboardInterrupt("simulated crash during the write")

    monkeypatch.setattr(checkpoint.np, "savez", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        fnmlp.save_checkpoint(path, new)
    monkeypatch.undo()
    loaded, _ = fnmlp.load_checkpoint(path, init_state(_params([3, 5, 2]), opt))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(old)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert os.listdir(tmp_path) == ["c.npz"]  # no temp file left behind


def test_mismatched_architecture_names_layer_and_shapes(tmp_path):
    state, opt = _state(sizes=(3, 5, 2))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state)
    wrong = init_state(_params([3, 7, 2]), opt)
    with pytest.raises(ValueError, match=r"layer 0 'b' has shape \(5,\) in the checkpoint but"
                                         r" \(7,\) in the model"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", wrong)
    deeper = init_state(_params([3, 5, 5, 2]), opt)
    with pytest.raises(ValueError, match="the checkpoint has 2 layers, the model 3"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", deeper)


def test_non_finite_params_are_refused(tmp_path):
    state, _ = _state()
    bad = state._replace(params=[dict(state.params[0], w=state.params[0]["w"].at[0, 0].set(
        jnp.nan)), state.params[1]])
    with pytest.raises(ValueError, match="non-finite values in params/0/w"):
        fnmlp.save_checkpoint(tmp_path / "c.npz", bad)
    assert not (tmp_path / "c.npz").exists()


def test_a_checkpoint_holding_nan_is_refused_on_load_and_relu_passes_nan(tmp_path):
    """A breaker's find: a valid archive whose weights held NaN (save refuses them, so a
    damaged file or another writer) loaded, and relu (where(z > 0, z, 0)) zeroed the NaN
    units: finite probabilities from NaN weights. Loading refuses it, naming the layer;
    relu passes NaN as PyTorch's does."""
    import io
    import zipfile

    model = fnmlp.mlp([4, 8, 3], "relu")
    params = model.init_params(jax.random.key(0))
    src, dst = tmp_path / "ok.npz", tmp_path / "nan.npz"
    fnmlp.save_checkpoint(src, params, fnmlp.model_config(model, "softmax_cross_entropy"))
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
        for name in zi.namelist():
            data = zi.read(name)
            if name.endswith("0/w.npy"):
                a = np.load(io.BytesIO(data)).copy()
                a[:, 0] = np.nan
                buf = io.BytesIO()
                np.save(buf, a)
                data = buf.getvalue()
            zo.writestr(name, data)
    with pytest.raises(ValueError, match=r"layer 0 'w' holds nan at index \(0, 0\) \(4"
                                         r" non-finite value\(s\) in all\)"):
        fnmlp.load_model(dst)
    nan = jax.tree.map(lambda a: a, params)
    nan[0]["w"] = nan[0]["w"].at[:, 0].set(jnp.nan)
    assert np.isnan(np.asarray(fnmlp.predict_proba(model, nan, np.ones((2, 4))))).all()
    z = jnp.array([-jnp.inf, -1.0, 0.0, 2.0, jnp.nan])
    got = np.asarray(fnmlp.activations.relu(z))
    np.testing.assert_array_equal(got[:4], [0.0, 0.0, 0.0, 2.0])  # torch.relu's values
    assert np.isnan(got[4])


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    state, _ = _state()
    with pytest.raises(ValueError, match="not a readable fnmlp checkpoint") as e:
        fnmlp.load_checkpoint(tmp_path / "bad.npz", state)
    assert "pickle" not in str(e.value)  # a new user's find: NumPy's hint to load it unsafely
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fnmlp.load_checkpoint(tmp_path / "none.npz", state)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="no __meta__"):
        fnmlp.load_checkpoint(tmp_path / "plain.npz", state)


# ------------------------------------------------- a hostile checkpoint is refused unread

BOMB = (4, 250_000_000)  # float32 zeros: 4 GB inflated, 3.9 MB deflated
MODEL = {"sizes": [3, 5, 2], "activation": "relu", "loss": "softmax_cross_entropy"}


def _header(shape, descr="<f4") -> bytes:
    f = io.BytesIO()
    npy.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue()


def _member(raw: bytes, size=None, crc=None):
    """A deflated member: (raw deflate stream, crc32, declared size)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (c.compress(raw) + c.flush(), zlib.crc32(raw) if crc is None else crc,
            len(raw) if size is None else size)


@functools.lru_cache(maxsize=4)
def _zero_bomb(shape, descr="<f4", itemsize=4, chunk=1_000_000):
    """A real .npy member of zeros (correct header, size and CRC) deflated without ever
    holding it: after a full flush deflate restarts, so one chunk's stream repeats."""
    total = math.prod(shape) * itemsize
    assert total % chunk == 0
    head = _header(shape, descr)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH) == block
    crc, zeros = zlib.crc32(head), bytes(chunk)
    for _ in range(total // chunk):
        crc = zlib.crc32(zeros, crc)
    return start + block * (total // chunk) + c.flush(), crc, len(head) + total


def _write_zip(path, members: dict) -> None:
    """A zip whose entries declare the given crc and size, whatever their stream holds."""
    out, central = bytearray(), bytearray()
    for name, (body, crc, size) in members.items():
        n = name.encode()
        central += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 8, 0, 33,
                               crc, len(body), size, len(n), 0, 0, 0, 0, 0o644 << 16,
                               len(out)) + n
        out += struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, 33, crc, len(body),
                           size, len(n), 0) + n + body
    out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members),
                                 len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out))


def _saved_members(tmp_path) -> tuple[dict, dict]:
    """A real checkpoint of a 3-5-2 model: {entry name: raw .npy bytes}, and the template."""
    state, _ = _state()
    fnmlp.save_checkpoint(tmp_path / "good.npz", state, MODEL)
    with zipfile.ZipFile(tmp_path / "good.npz") as z:
        return {n: z.read(n) for n in z.namelist()}, state


def _hostile(tmp_path, case) -> tuple:
    raw, state = _saved_members(tmp_path)
    members = {n: _member(b) for n, b in raw.items()}
    w = "params/0/w.npy"
    if case == "a real 4 GB member":
        members[w] = _zero_bomb(BOMB)
        match = r"layer 0 'w' has shape \(4, 250000000\) in the checkpoint but \(3, 5\)"
    elif case == "a header claiming 4 GB":
        members[w] = _member(_header(BOMB) + raw[w][len(_header((3, 5))):])
        match = r"layer 0 'w' has shape \(4, 250000000\) in the checkpoint but \(3, 5\)"
    elif case == "a declared size above the header's":
        members[w] = _member(raw[w], size=len(raw[w]) + 4 * 10**9)
        match = rf"{w} declares {len(raw[w]) + 4 * 10**9} bytes but its header .* implies"
    elif case == "a member nobody names":
        members["extra.npy"] = _zero_bomb((1000, 1000))
        match = "a member 'extra.npy' that neither its __meta__ nor the model names"
    elif case == "a 20 MiB __meta__":
        members["__meta__.npy"] = _zero_bomb((20 * 2**20,), "|u1", 1, 2**20)
        match = "__meta__ declares 20971648 bytes; .* at most 16777216 bytes"
    elif case == "an object array":
        members[w] = _member(_header((3, 5), "|O") + bytes(60))
        match = "params/0/w.npy holds dtype object; a checkpoint holds arrays of numbers"
    path = tmp_path / "hostile.npz"
    _write_zip(path, members)
    return path, state, match


HOSTILE = ["a real 4 GB member", "a header claiming 4 GB", "a declared size above the"
           " header's", "a member nobody names", "a 20 MiB __meta__", "an object array"]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_checkpoint_is_refused_before_it_is_read(tmp_path, case):
    """A 3.9 MB file whose first weight is 4 GB of zeros was refused only after the whole
    member had been inflated (21 s, 4 GB); now every member's header is checked first."""
    path, state, match = _hostile(tmp_path, case)
    assert path.stat().st_size < 5e6
    for load in (lambda: fnmlp.load_checkpoint(path, state),
                 lambda: fnmlp.load_model(path)):
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(ValueError, match=match):
                load()
            seconds, (_, peak) = time.perf_counter() - t0, tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert seconds < 0.5 and peak < 2**20, (seconds, peak)  # measured: ~5 ms, ~60 KB


def test_the_good_checkpoint_the_hostile_ones_came_from_loads(tmp_path):
    raw, state = _saved_members(tmp_path)
    _write_zip(tmp_path / "rewritten.npz", {n: _member(b) for n, b in raw.items()})
    loaded, cfg = fnmlp.load_checkpoint(tmp_path / "rewritten.npz", state)
    assert cfg == MODEL
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(state)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert fnmlp.load_model(tmp_path / "rewritten.npz").config["sizes"] == [3, 5, 2]


LOAD_BOMB = """
import resource, sys, time, fnmlp
load_model = fnmlp.load_model  # fnmlp imports it (and jax) on first use: not timed
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    load_model(sys.argv[1])
    print("loaded")
except ValueError as e:
    print(e)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_load_model_refuses_the_4gb_member_without_memory(tmp_path):
    """The issue's file, loaded as predict.py does, in a fresh process: ru_maxrss (KiB)
    must not grow (it grew by 4 GB)."""
    path, _, _ = _hostile(tmp_path, "a real 4 GB member")
    r = subprocess.run([sys.executable, "-c", LOAD_BOMB, str(path)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    message, numbers = r.stdout.strip().splitlines()[-2:]
    seconds, grown_kib = map(float, numbers.split())
    assert "layer 0 'w' has shape (4, 250000000) in the checkpoint but (3, 5)" in message
    assert seconds < 1 and grown_kib < 50 * 1024, (seconds, grown_kib)


def test_metrics_json_given_as_a_checkpoint_says_what_it_is(tmp_path):
    import json as _json

    path = tmp_path / "metrics.json"
    path.write_text(_json.dumps({"history": [], "test_accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"metrics.json is not an fnmlp checkpoint \(.npz"
                       r" written by save_checkpoint / the training scripts\); it looks like"
                       r" JSON \(metrics.json\?\)"):
        fnmlp.load_model(path)


def _epoch_on_disk(path, template):
    loaded, _ = fnmlp.load_checkpoint(path, template)
    return int(loaded.epoch)


@pytest.mark.parametrize("ending", ["finished", "interrupted", "diverged"])
def test_the_scripts_checkpointer_writes_the_last_epoch_however_the_run_ends(tmp_path, ending):
    """The scripts write a checkpoint at most once a second (a write per epoch took 0.2 s
    of the toy run's 2.5 s), and the latest epoch on leaving the run, whatever ends it:
    never an older epoch on disk than before, when each epoch was written."""
    from fnmlp.cli.run import Checkpointer
    from fnmlp.train import TrainingDiverged

    state, _ = _state()
    path = tmp_path / "checkpoint.npz"
    error = {"finished": None, "interrupted": KeyboardInterrupt(),
             "diverged": TrainingDiverged("diverged in epoch 6", 6, state, [])}[ending]
    saver = Checkpointer(path, {"run": 1}, every_seconds=3600.0)
    with pytest.raises(type(error)) if error else contextlib.nullcontext():
        with saver:
            for epoch in range(1, 6):
                saver.epoch_done(state._replace(epoch=jnp.asarray(epoch, state.epoch.dtype)))
                assert not path.exists()  # within the hour: nothing written yet
            if error:
                raise error
    assert _epoch_on_disk(path, state) == 5
    assert checkpoint.read_checkpoint_meta(path)["config"] == {"run": 1}


def test_the_scripts_checkpointer_writes_each_epoch_once_the_time_has_passed(tmp_path):
    from fnmlp.cli.run import Checkpointer

    state, _ = _state()
    path = tmp_path / "checkpoint.npz"
    with Checkpointer(path, {}, every_seconds=0.0) as saver:
        for epoch in (1, 2, 3):
            saver.epoch_done(state._replace(epoch=jnp.asarray(epoch, state.epoch.dtype)))
            assert _epoch_on_disk(path, state) == epoch
        mtime = path.stat().st_mtime_ns
    assert path.stat().st_mtime_ns == mtime  # the last epoch was on disk: not written again
