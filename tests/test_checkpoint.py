"""Checkpoints: bitwise round trip, atomic writes, clear errors, no pickle."""

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp import checkpoint
from fnmlp.train import init_state


def _state(sizes=(3, 5, 2), opt=None, seed=0):
    opt = opt or fnmlp.adam(0.01)
    state = init_state(fnmlp.init_mlp(jax.random.key(seed), list(sizes)), opt)
    # make every leaf non-trivial: a few real updates
    x = jax.random.normal(jax.random.key(1), (8, sizes[0]))
    y = jnp.arange(8) % sizes[-1]
    step = fnmlp.make_train_step(opt)
    for _ in range(3):
        state, _ = step(state, fnmlp.Batch(x, y))
    return state, opt


def test_round_trip_is_bitwise_exact(tmp_path):
    state, opt = _state()
    cfg = {"sizes": [3, 5, 2], "activation": "relu"}
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, cfg)
    template = init_state(fnmlp.init_mlp(jax.random.key(9), [3, 5, 2]), opt)
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
    loaded, _ = fnmlp.load_checkpoint(path, init_state(fnmlp.init_mlp(jax.random.key(0),
                                                                      [3, 5, 2]), opt))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(old)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert os.listdir(tmp_path) == ["c.npz"]  # no temp file left behind


def test_mismatched_architecture_names_layer_and_shapes(tmp_path):
    state, opt = _state(sizes=(3, 5, 2))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state)
    wrong = init_state(fnmlp.init_mlp(jax.random.key(0), [3, 7, 2]), opt)
    with pytest.raises(ValueError, match=r"layer 0 'b' has shape \(5,\) in the checkpoint but"
                                         r" \(7,\) in the model"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", wrong)
    deeper = init_state(fnmlp.init_mlp(jax.random.key(0), [3, 5, 5, 2]), opt)
    with pytest.raises(ValueError, match="the checkpoint has 2 layers, the model 3"):
        fnmlp.load_checkpoint(tmp_path / "c.npz", deeper)


def test_non_finite_params_are_refused(tmp_path):
    state, _ = _state()
    bad = state._replace(params=[dict(state.params[0], w=state.params[0]["w"].at[0, 0].set(
        jnp.nan)), state.params[1]])
    with pytest.raises(ValueError, match="non-finite values in params/0/w"):
        fnmlp.save_checkpoint(tmp_path / "c.npz", bad)
    assert not (tmp_path / "c.npz").exists()


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    state, _ = _state()
    with pytest.raises(ValueError, match="not a readable fnmlp checkpoint"):
        fnmlp.load_checkpoint(tmp_path / "bad.npz", state)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fnmlp.load_checkpoint(tmp_path / "none.npz", state)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="no __meta__"):
        fnmlp.load_checkpoint(tmp_path / "plain.npz", state)


def test_metrics_json_given_as_a_checkpoint_says_what_it_is(tmp_path):
    import json as _json

    path = tmp_path / "metrics.json"
    path.write_text(_json.dumps({"history": [], "test_accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"metrics.json is not an fnmlp checkpoint \(.npz"
                       r" written by save_checkpoint / the training scripts\); it looks like"
                       r" JSON \(metrics.json\?\)"):
        fnmlp.load_model(path)
