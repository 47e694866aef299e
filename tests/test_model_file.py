"""Saved models (fnmlp.io.model_file): model_config checks what it records, load_model
rebuilds the architecture and reads the params into it, SavedModel runs the saved
architecture with the saved loss; checkpoints of the earlier format (sizes and activation
instead of model) still load as the plain MLP they describe. The hostile files are in
test_checkpoint.py, the input scaling in test_scaling.py."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp import data
from fnmlp.io import architecture, model_config, read_checkpoint_meta
from fnmlp.layers import Dense, Relu, Serial, Softmax, Tanh, mlp, serial

DS = data.make_spirals(60, arms=3, seed=0)
X = np.asarray(DS.x[:9])


def _save(path, params, config):
    fnmlp.save_checkpoint(path, fnmlp.init_state(params, fnmlp.sgd(0.1)), config)
    return path


@pytest.mark.parametrize("sizes, activation", [([2, 5, 3], "tanh"),
                                               ([2, 5, 4, 3], ["tanh", "relu"])])
def test_a_checkpoint_of_the_earlier_format_still_loads(tmp_path, sizes, activation):
    """Checkpoints written before issue 27 record ``sizes`` and ``activation`` (one name,
    or one per hidden layer) and no ``model``: they load as ``mlp(sizes, activation)``."""
    want = mlp(sizes, activation if isinstance(activation, str) else tuple(activation))
    params = want.init_params(jax.random.key(0))
    config = {"sizes": sizes, "activation": activation, "loss": "softmax_cross_entropy"}
    saved = fnmlp.load_model(_save(tmp_path / "old.npz", params, config))
    assert isinstance(saved.model, Serial) and saved.model == want
    np.testing.assert_array_equal(np.asarray(saved.predict(X)),
                                  np.asarray(fnmlp.predict(want, params, X)))
    assert saved.loss == "softmax_cross_entropy"
    assert architecture(config) == want


def test_model_config_round_trips_through_load_model(tmp_path):
    model = serial(Dense(6), Tanh(), Dense(3), Softmax(), in_features=2)
    params = model.init_params(jax.random.key(1))
    config = model_config(model, "categorical_cross_entropy", input={"kind": "features"})
    assert config["input"] == {"kind": "features", "width": 2}  # the one input width
    assert set(config) == {"model", "loss", "input"}
    assert config["loss"] == "categorical_cross_entropy"
    saved = fnmlp.load_model(_save(tmp_path / "c.npz", params, config))
    assert saved.model == model and saved.config == config
    for a, b in zip(jax.tree.leaves(saved.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the model ends in Softmax: its output is the probability, never softmaxed twice
    out = np.asarray(fnmlp.predict(model, params, X))
    np.testing.assert_array_equal(np.asarray(saved.predict_proba(X)), out)
    np.testing.assert_array_equal(np.asarray(saved.predict_classes(X)), out.argmax(1))


def test_model_config_of_an_unrecorded_width_takes_in_features():
    model = serial(Dense(4), Relu(), Dense(3))
    with pytest.raises(ValueError, match="in_features .* must be given"):
        model_config(model, "softmax_cross_entropy")
    assert model_config(model, "softmax_cross_entropy", in_features=5)["input"]["width"] == 5
    with pytest.raises(ValueError, match="in_features=5 but the model was built for inputs"
                                         " of width 2"):
        model_config(mlp([2, 4, 3]), "softmax_cross_entropy", in_features=5)


@pytest.mark.parametrize("model, loss, match", [
    ("relu", "softmax_cross_entropy", "model must be a fnmlp Layer .*got str 'relu'"),
    (serial(Dense(3), Softmax(), in_features=2), "softmax_cross_entropy",
     "softmax would be applied twice"),
])
def test_model_config_refuses_what_load_model_could_not_use(model, loss, match):
    with pytest.raises(ValueError, match=match):
        model_config(model, loss)


def test_load_model_reads_into_the_dtype_asked_for(tmp_path):
    model = mlp([2, 4, 3])
    params = model.init_params(jax.random.key(0))
    path = _save(tmp_path / "c.npz", params, model_config(model, "softmax_cross_entropy"))
    saved = fnmlp.load_model(path, dtype=jnp.bfloat16)
    assert {a.dtype for a in jax.tree.leaves(saved.params)} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_array_equal(np.asarray(saved.params[0]["w"]),
                                  np.asarray(params[0]["w"].astype(jnp.bfloat16)))


@pytest.mark.parametrize("dtype", [jnp.int32, "uint8", bool, "int64", "no such dtype",
                                   np.longdouble, "float8_e4m3fn", "float4_e2m1fn"])
def test_load_model_refuses_a_dtype_that_is_not_a_float_before_reading(tmp_path, dtype):
    """An integer dtype failed inside JAX's eval_shape with a traceback about
    random.normal; a name that is no dtype, with NumPy's TypeError."""
    model = mlp([2, 4, 3])
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)),
                 model_config(model, "softmax_cross_entropy"))
    with pytest.raises(ValueError, match="dtype must be a float dtype, one of float16, bfloat16,"
                       " float32, float64; got"):
        fnmlp.load_model(path, dtype=dtype)
    with pytest.raises(ValueError, match="dtype must be a float dtype"):  # before the file
        fnmlp.load_model(tmp_path / "no such file.npz", dtype=dtype)


@pytest.mark.parametrize("config, held", [(None, ""), ({}, ""),
                                          ({"epochs": 3, "seed": 0}, " (it holds ['epochs',")])
def test_load_model_of_a_checkpoint_without_config_says_so_first(tmp_path, config, held):
    """It led with the earlier format's keys ('lacks ['sizes', 'activation', 'loss']'),
    also for a config of a run's settings alone."""
    model = mlp([2, 4, 3])
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)), config)
    with pytest.raises(ValueError, match=re.escape(f"holds no model config{held}") +
                       r".*so the model cannot be rebuilt .*config=fnmlp.model_config"):
        fnmlp.load_model(path)


@pytest.mark.parametrize("config, match", [
    ({"sizes": [2, 4, 3], "activation": "relu"}, r"lacks \['loss'\]"),
    ({"sizes": [2, 4, 3], "loss": "softmax_cross_entropy"}, r"lacks \['activation'\]"),
    ({"loss": "softmax_cross_entropy"}, r"holds no model config \(it holds \['loss'\]\)"),
    ({"sizes": 2, "activation": "relu", "loss": "mse"}, r"'sizes' must be a list \[D, \.\.\.\]"),
    ({"sizes": [2, 4, 3], "activation": "relu", "loss": "categorical_cross_entropy"},
     "takes probabilities"),
])
def test_a_config_that_cannot_rebuild_the_model_says_what_is_wrong(tmp_path, config, match):
    model = mlp([2, 4, 3])
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)), config)
    with pytest.raises(ValueError, match=match):
        fnmlp.load_model(path)


def test_a_model_of_the_new_format_names_what_it_lacks(tmp_path):
    model = mlp([2, 4, 3])
    config = model_config(model, "softmax_cross_entropy")
    del config["input"]
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)), config)
    with pytest.raises(ValueError, match=r"c.npz: the checkpoint's config lacks \['input'\].*"
                                         r"fnmlp.model_config\(model, loss\)"):
        fnmlp.load_model(path)


def test_a_model_larger_than_half_the_memory_is_refused_unread(tmp_path, monkeypatch):
    model = mlp([2, 4, 3])  # 27 float32 params: 108 bytes
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)),
                 model_config(model, "softmax_cross_entropy"))
    monkeypatch.setattr(fnmlp._validate, "physical_memory", lambda: 215)
    with pytest.raises(ValueError, match="more than half of this machine's .* refused unread"):
        fnmlp.load_model(path)
    monkeypatch.setattr(fnmlp._validate, "physical_memory", lambda: 216)
    assert fnmlp.load_model(path).model == model  # the witness: exactly half loads


def test_a_checkpoint_of_the_sizes_and_model_format_loads_and_predicts_alike(tmp_path):
    """Checkpoints written by the scripts before issue 42 record the network three ways
    (``sizes``, ``model``, ``activation``/``dropout``) and the width in ``sizes[0]``: they
    load through fnmlp.io.legacy, predict exactly as the model they hold, and resume."""
    model = mlp([2, 5, 4, 3], ("tanh", "relu"), dropout=0.1)
    params = model.init_params(jax.random.key(3))
    old = {"dataset": "moons", "sizes": [2, 5, 4, 3], "model": model.to_config(),
           "activation": ["tanh", "relu"], "dropout": [0.1], "loss": "softmax_cross_entropy",
           "optimizer": "sgd", "epochs": 3, "seed": 0,
           "input": {"kind": "features"}}  # earlier: no width in the input record
    saved = fnmlp.load_model(_save(tmp_path / "old.npz", params, old))
    assert saved.model == model and saved.input_width == 2
    assert saved.config["input"] == {"kind": "features", "width": 2}
    assert saved.config["sizes"] == [2, 5, 4, 3]  # the file's own keys, kept as they are
    np.testing.assert_array_equal(np.asarray(saved.predict(X)),
                                  np.asarray(fnmlp.predict(model, params, X)))
    np.testing.assert_array_equal(np.asarray(saved.predict_classes(X)),
                                  np.asarray(fnmlp.predict_classes(model, params, X)))
    assert architecture(old) == model


def test_a_new_checkpoint_describes_the_network_once(tmp_path):
    """{model, loss, input} and what the caller keeps (run metadata): no ``sizes``, no
    ``activation`` or ``dropout`` beside the model."""
    model = mlp([2, 6, 3], "relu", dropout=0.2)
    config = model_config(model, "softmax_cross_entropy", epochs=3, seed=1,
                          input={"kind": "mnist", "scale": "pixel / 255", "width": 2})
    assert set(config) == {"model", "loss", "input", "epochs", "seed"}
    assert config["input"] == {"kind": "mnist", "scale": "pixel / 255", "width": 2}
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)), config)
    meta = read_checkpoint_meta(path)["config"]
    assert meta == config and "sizes" not in meta and "activation" not in meta
    assert fnmlp.load_model(path).model == model
    with pytest.raises(ValueError, match="in_features=5 but the model was built for inputs"
                                         " of width 2"):
        model_config(model, "softmax_cross_entropy", input={"width": 5})


@pytest.mark.parametrize("record", [{"kind": "features"}, {"width": 0}, {"width": "2"}, 7])
def test_an_input_record_without_a_width_is_named(tmp_path, record):
    model = mlp([2, 4, 3])
    config = {**model_config(model, "softmax_cross_entropy"), "input": record}
    path = _save(tmp_path / "c.npz", model.init_params(jax.random.key(0)), config)
    with pytest.raises(ValueError, match="config 'input' must be a record with the input"
                                         " width"):
        fnmlp.load_model(path)


def test_the_old_keys_are_read_in_one_place():
    """``"sizes"`` and ``"activation"`` appear in fnmlp/io and fnmlp/cli only in the legacy
    reader (and ``--activation`` where the flags are parsed)."""
    import pathlib
    import re

    root = pathlib.Path(fnmlp.__file__).parent
    found = []
    for path in sorted([*(root / "io").glob("*.py"), *(root / "cli").glob("*.py")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            flag = re.search(r'(ns|args), "activation"', line)  # the --activation flag
            if re.search(r'"sizes"|"activation"', line) and not flag:
                found.append(f"{path.relative_to(root)}:{n}")
    assert found and all(f.startswith("io/legacy.py:") for f in found), found
