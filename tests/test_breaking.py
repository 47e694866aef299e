"""What a tester found by trying to break the layers, weights and resume paths: each now a
clear ValueError (or exit 2 and one line) instead of a crash, a NaN model or a silent
mistake."""

import io
import json
import zipfile
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_scripts import _run

import fnmlp
from fnmlp.layers import Dense, LayerNorm, Relu, Tanh, from_config, serial

K = jax.random.key(0)
X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1] * 4)
M = serial(Dense(4), Relu(), Dense(3))


def test_a_resumed_state_must_fit_the_model_and_the_optimizer():
    p = M.init_params(K, 3)
    r1 = fnmlp.fit(p, X, Y, model=M, epochs=1, batch_size=4, verbose=False)
    wider = serial(Dense(5), Tanh(), Dense(3))
    with pytest.raises(ValueError, match=r"state.params\[0\]\['b'\] has shape \(4,\)"):
        fnmlp.fit(wider.init_params(K, 3), X, Y, model=wider, state=r1.state, epochs=2,
                  batch_size=4, verbose=False)
    with pytest.raises(ValueError, match="another architecture or optimizer"):
        fnmlp.fit(p, X, Y, model=M, state=r1.state, optimizer="adam", epochs=2,
                  batch_size=4, verbose=False)
    assert len(fnmlp.fit(p, X, Y, model=M, state=r1.state, epochs=2, batch_size=4,
                         verbose=False).history) == 1  # the right state still resumes


def test_a_non_float_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute_dtype must be a float dtype"):
        fnmlp.fit(M.init_params(K, 3), X, Y, model=M, epochs=1, batch_size=4, verbose=False,
                  compute_dtype=jnp.int32)


def test_weights_of_any_scale_train_like_weights_of_one():
    p = M.init_params(K, 3)
    kw = dict(model=M, epochs=2, batch_size=4, verbose=False)
    ones = fnmlp.fit(p, X, Y, sample_weight=np.ones(20), **kw).params
    for scale in (1e-46, 1e39):  # below float32's smallest and above its largest
        got = fnmlp.fit(p, X, Y, sample_weight=np.full(20, scale), **kw).params
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ones)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("config, match", [
    ({"type": "LayerNorm", "eps": float("nan")}, "finite number > 0"),
    ({"type": "LayerNorm", "eps": float("inf")}, "finite number > 0"),
    ({"type": ["Dense"], "features": 3}, "a 'type' name"),
    ({"type": "Serial", "layers": "Dense"}, "'layers' must be a list"),
])
def test_a_tampered_architecture_is_a_clear_error(config, match):
    with pytest.raises(ValueError, match=match):
        from_config(config)


def test_a_tampered_meta_document_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    fnmlp.save_checkpoint(path, M.init_params(K, 3), {"sizes": [3, 4, 3], "loss": "mse"})
    for doc in ([1, 2], {"format": "fnmlp-checkpoint-v1", "paths": 5}, "[" * 600 + "]" * 600):
        buf = io.BytesIO()
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(buf, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item)
                if item.filename == "__meta__.npy":
                    text = np.frombuffer(json.dumps(doc).encode() if not isinstance(doc, str)
                                         else doc.encode(), np.uint8)
                    out = io.BytesIO()
                    np.save(out, text)
                    data = out.getvalue()
                zout.writestr(item.filename, data)
        bad = tmp_path / "bad.npz"
        bad.write_bytes(buf.getvalue())
        with pytest.raises(ValueError, match="not .*fnmlp checkpoint"):
            fnmlp.load_model(bad)


def test_bfloat16_params_are_checked_at_bfloat16_tolerance():
    pb = M.init_params(K, 3, jnp.bfloat16)
    result = fnmlp.check_gradients(pb, X, Y, model=M)
    assert result.passed, str(result)
    assert result.manual_vs_autodiff.rows[0].tol == 5e-2


@dataclass(frozen=True)
class NoBias(LayerNorm):
    def backward(self, params, residuals, dy):  # forgets the bias gradient
        g, dx = super().backward(params, residuals, dy)
        return {"scale": g["scale"]}, dx


def test_a_backward_of_the_wrong_structure_is_named_by_its_layer():
    model = serial(Dense(4), Relu(), NoBias(), Dense(3))
    with pytest.raises(ValueError, match=r"(?s)wrong structure.*2:NoBias"):
        fnmlp.check_gradients(model.init_params(K, 3), X, Y, model=model)


def test_an_unhashable_user_layer_is_told_to_be_frozen():
    @dataclass
    class Loose(fnmlp.Layer):  # a plain (mutable, so unhashable) dataclass
        width: int = 2

        def init(self, key, d, dtype=jnp.float32):
            return d, ()

    with pytest.raises(ValueError, match=r"dataclass\(frozen=True\)"):
        Loose().init_params(K, 3)


def test_numpy_numbers_are_layer_settings_too():
    assert Dense(np.int64(3)) == Dense(3) and fnmlp.Dropout(np.float32(0.5)).rate == 0.5


@pytest.mark.parametrize("args, needle", [
    (["--hidden", "100000000000"], "GiB"),
    (["--layers", "dense:100000000000"], "GiB"),
    (["--seed", "99999999999999999999"], "[0, 2**32)"),
    (["--hidden", "none", "--dropout", "0.5,0.5"], "--dropout gives 2 values for 0"),
])
def test_scripts_refuse_impossible_sizes_and_seeds_in_one_line(args, needle):
    r = _run("train_toy.py", *args, "--epochs", "1", check=False)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_softmax_then_a_loss_on_logits_is_warned_about():
    model = serial(Dense(3), fnmlp.Softmax())
    with pytest.warns(UserWarning, match="softmax is applied twice"):
        fnmlp.fit(model.init_params(K, 3), X, Y, model=model, epochs=1, batch_size=4,
                  verbose=False)
