"""The modular framework: every layer's hand-written backward against jax.vjp and finite
differences, composition, a wrong backward named by its layer, dropout done right, your
own layer, architectures in checkpoints."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp import data
from fnmlp.gradcheck import random_batch
from fnmlp.layers import (
    ACTIVATION_LAYERS,
    Context,
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    Relu,
    Serial,
    Softmax,
    Tanh,
    from_config,
    mlp,
    serial,
)

BUILTIN = [Dense(4), Dense(3, "he_normal"), Softmax(), Dropout(0.3), LayerNorm(),
           LayerNorm(eps=0.1), *[cls() for cls in ACTIVATION_LAYERS.values()],
           serial(Dense(6), Tanh(), LayerNorm(), Dense(4), Relu(), Dropout(0.5), Dense(3),
                  Softmax())]


@pytest.mark.parametrize("layer", BUILTIN, ids=lambda layer: layer.name)
def test_every_builtin_backward_equals_vjp_and_finite_differences(layer):
    # float64, random params, input and cotangent; dropout in training mode (a fixed mask)
    result = fnmlp.check_layer(layer, 5, batch=7, train=True, key=jax.random.key(3))
    assert result.passed, str(result)
    rows = {r.leaf for r in result.manual_vs_autodiff.rows}
    assert "dx" in rows
    assert result.manual_vs_autodiff.max_rel_err < 1e-12


@dataclass(frozen=True)
class PReLU(Layer):
    """An activation with a learnable slope per feature: y = x if x > 0 else a x."""

    def init(self, key, d, dtype=jnp.float32):
        return d, {"a": jnp.full((d,), 0.25, dtype)}

    def forward(self, params, x, ctx=None):
        return jnp.where(x > 0, x, params["a"][None, :] * x), x

    def backward(self, params, x, dy):
        da = jnp.sum(jnp.where(x > 0, 0.0, x) * dy, axis=0)
        return {"a": da}, jnp.where(x > 0, dy, params["a"][None, :] * dy)


@dataclass(frozen=True)
class WrongPReLU(PReLU):
    def backward(self, params, x, dy):  # forgets the slope on the negative side
        g, _ = super().backward(params, x, dy)
        return g, jnp.where(x > 0, dy, dy)


def test_your_own_layer_is_checked():
    assert fnmlp.check_layer(PReLU(), 6).passed
    bad = fnmlp.check_layer(WrongPReLU(), 6)
    assert not bad.passed
    failing = {r.leaf for r in bad.manual_vs_autodiff.failing()}
    assert failing == {"dx"}  # da is right, dx is wrong
    assert not bad.manual_vs_finite_diff.passed and bad.autodiff_vs_finite_diff.passed


@dataclass(frozen=True)
class WrongTanh(Tanh):
    """tanh with the derivative 1 - tanh(z) instead of 1 - tanh(z)^2."""

    def backward(self, params, x, dy):
        return (), dy * (1 - jnp.tanh(x))


def test_a_wrong_backward_in_the_middle_of_five_layers_is_named(x64):
    model = serial(Dense(6), Tanh(), Dense(5), WrongTanh(), Dense(3))
    params = model.init_params(jax.random.key(0), 4, jnp.float64)
    x, y = random_batch(jax.random.key(1), 8, [4, 3], "softmax_cross_entropy", jnp.float64)
    result = fnmlp.check_gradients(params, x, y, model=model)
    assert not result.passed
    assert result.failing_layers() == ["3:WrongTanh"]
    assert "3:WrongTanh" in str(result) and "FAIL" in str(result)
    # the network-wide comparison sees the error in every layer below it, not which one
    assert not result.manual_vs_autodiff.passed
    assert result.to_dict()["failing_layers"] == ["3:WrongTanh"]
    right = serial(Dense(6), Tanh(), Dense(5), Tanh(), Dense(3))
    assert fnmlp.check_gradients(params, x, y, model=right).passed


def test_serial_of_dense_and_activations_is_init_mlp_with_the_same_numbers(x64):
    key = jax.random.key(5)
    sizes = [4, 7, 5, 3]
    params = fnmlp.init_mlp(key, sizes, "tanh", dtype=jnp.float64)
    model = mlp(tuple(sizes[1:]), "tanh")
    assert model == serial(Dense(7, "glorot_uniform"), Tanh(), Dense(5, "glorot_uniform"),
                           Tanh(), Dense(3, "glorot_uniform"))
    same = model.init_params(key, 4, jnp.float64)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    x, y = random_batch(key, 6, sizes, "softmax_cross_entropy", jnp.float64)
    assert float(fnmlp.loss(params, x, y, "tanh")) == float(fnmlp.loss(params, x, y,
                                                                      model=model))
    g1 = fnmlp.manual_grad(params, x, y, "tanh")
    g2 = fnmlp.manual_grad(params, x, y, model=model)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
    # the same through a plain numpy forward (an independent witness)
    h = np.asarray(x)
    for i, p in enumerate(params):
        h = h @ np.asarray(p["w"]) + np.asarray(p["b"])
        h = h if i == len(params) - 1 else np.tanh(h)
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), h, rtol=1e-13)


def test_per_layer_activations_and_a_bare_dense_default_init():
    # Dense(kernel_init=None) takes the default of the activation after it
    model = serial(Dense(8), Relu(), Dense(8), Tanh(), Dense(2))
    resolved = model._resolved()
    assert [getattr(layer, "kernel_init", None) for layer in resolved[::2]] == [
        "he_normal", "glorot_uniform", "glorot_uniform"]
    params = model.init_params(jax.random.key(0), 3)
    assert [p["w"].shape for p in params] == [(3, 8), (8, 8), (8, 2)]


def test_layer_norm_matches_pytorch_formula_in_numpy(x64):
    """PyTorch's nn.LayerNorm: (x - mean) / sqrt(var_biased + eps) * weight + bias."""
    layer = LayerNorm(eps=1e-5)
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (5, 7))
    params = {"scale": rng.normal(size=7), "bias": rng.normal(size=7)}
    got = np.asarray(layer.apply(jax.tree.map(jnp.asarray, params), jnp.asarray(x)))
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_softmax_backward_is_the_lessons_jacobian_vector_product(x64):
    rng = np.random.default_rng(1)
    z, g = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    _, dx = Softmax().backward((), jnp.asarray(p), jnp.asarray(g))
    jac = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])  # [B, C, C]
    np.testing.assert_allclose(np.asarray(dx), np.einsum("bij,bj->bi", jac, g), rtol=1e-12)


# ----------------------------------------------------------------------------- dropout


def test_dropout_is_unbiased_and_off_in_evaluation():
    rate = 0.3
    x = jnp.linspace(-2.0, 3.0, 50)[None, :].repeat(4000, axis=0)  # [4000, 50]
    y, scale = Dropout(rate).forward((), x, Context(True, jax.random.key(0)))
    kept = np.asarray(scale) > 0
    # each entry is kept with probability 0.7: over 200,000 draws the fraction is within
    # 5 standard deviations (sqrt(0.21 / 2e5) = 0.001) of 0.7
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / kept.size)
    # E[y] = x: the column means over 4,000 examples are within 5 standard errors
    se = np.abs(np.asarray(x[0])) * np.sqrt(rate / (1 - rate) / 4000)
    assert np.all(np.abs(np.asarray(y).mean(0) - np.asarray(x[0])) <= 5 * se + 1e-6)
    np.testing.assert_allclose(np.unique(np.asarray(scale)), [0.0, 1 / 0.7], rtol=1e-6)
    assert np.array_equal(np.asarray(Dropout(rate).apply((), x)), np.asarray(x))  # eval
    with pytest.raises(ValueError, match="needs ctx.key"):
        Dropout(rate).forward((), x, Context(True, None))
    for bad in (-0.1, 1.0, "0.2", True):
        with pytest.raises(ValueError, match="drop probability"):
            Dropout(bad)


def test_dropout_gradients_use_the_same_mask_on_both_paths(x64):
    model = serial(Dense(16), Relu(), Dropout(0.5), Dense(3))
    params = model.init_params(jax.random.key(0), 4, jnp.float64)
    x, y = random_batch(jax.random.key(1), 10, [4, 3], "softmax_cross_entropy", jnp.float64)
    result = fnmlp.check_gradients(params, x, y, model=model, train=True,
                                   key=jax.random.key(7))
    assert result.passed, str(result)
    # the mask matters: training-mode gradients differ from evaluation-mode ones
    ev = fnmlp.check_gradients(params, x, y, model=model, finite_diff=False)
    g_train = jax.tree.leaves(result.manual_vs_autodiff)
    assert ev.passed and g_train
    ctx = Context(True, jax.random.key(7))
    from fnmlp import _core

    _, g_hand, _ = _core.manual_value_and_grad(model, params, x, y, "softmax_cross_entropy",
                                               ctx)
    g_auto = jax.grad(_core.mean_loss, argnums=1)(model, params, x, y,
                                                  "softmax_cross_entropy", ctx)
    g_eval = fnmlp.manual_grad(params, x, y, model=model)
    assert fnmlp.compare_grads(g_hand, g_auto, rtol=1e-12).passed
    assert not fnmlp.compare_grads(g_hand, g_eval, rtol=1e-3).passed


DS = data.make_spirals(300, arms=3, seed=0)
DROP = serial(Dense(32), Tanh(), Dropout(0.2), Dense(16), Relu(), Dropout(0.1), Dense(3))
KW = dict(batch_size=30, optimizer="adam", learning_rate=1e-2, verbose=False, model=DROP,
          seed=4)


def test_a_resumed_run_with_dropout_equals_an_uninterrupted_one_bitwise():
    p0 = DROP.init_params(jax.random.key(0), 2)
    whole = fnmlp.fit(p0, DS.x, DS.y, epochs=4, **KW)
    half = fnmlp.fit(p0, DS.x, DS.y, epochs=2, **KW)
    resumed = fnmlp.fit(p0, DS.x, DS.y, epochs=4, state=half.state, **KW)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # dropout is really on in training: another seed gives other params
    other = fnmlp.fit(p0, DS.x, DS.y, epochs=4, **{**KW, "seed": 5})
    assert not np.array_equal(np.asarray(other.params[0]["w"]), np.asarray(whole.params[0]["w"]))
    # evaluation and prediction run without dropout: the same as the model without it
    plain = serial(Dense(32), Tanh(), Dense(16), Relu(), Dense(3))
    out = fnmlp.predict(whole.params, DS.x, model=DROP)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(
        fnmlp.predict(whole.params, DS.x, model=plain)))
    assert fnmlp.evaluate(whole.params, DS.x, DS.y, model=DROP) == fnmlp.evaluate(
        whole.params, DS.x, DS.y, model=plain)


def test_both_gradient_paths_train_the_same_with_dropout(x64):
    p0 = DROP.init_params(jax.random.key(0), 2, jnp.float64)
    x = np.asarray(DS.x, np.float64)
    a = fnmlp.fit(p0, x, DS.y, epochs=2, grad="manual", **KW)
    b = fnmlp.fit(p0, x, DS.y, epochs=2, grad="autodiff", **KW)
    assert fnmlp.compare_grads(a.params, b.params, rtol=1e-10).passed


def test_a_population_member_with_dropout_equals_fit():
    from fnmlp.population import fit_population, grid

    members = grid(lr=[1e-2], seed=[4, 9])
    pop = fit_population(None, DS.x, DS.y, members, epochs=2, batch_size=30,
                         optimizer="adam", model=DROP, verbose=False)
    for k, m in enumerate(members):
        ref = fnmlp.fit(DROP.init_params(jax.random.key(m.seed), 2), DS.x, DS.y, epochs=2,
                        **{**KW, "seed": m.seed})
        got = pop.member_params(k)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


# ----------------------------------------------------------------------------- networks


def test_the_lessons_two_networks_with_softmax_and_a_probability_loss(x64):
    """Linear(2,2) + Softmax, and Linear(2,10) + Tanh + Linear(10,2) + Softmax, with a
    cross-entropy of probabilities, as the lesson writes them."""
    ds = data.make_moons(200, seed=0)
    for model in (serial(Dense(2), Softmax()),
                  serial(Dense(10), Tanh(), Dense(2), Softmax())):
        params = model.init_params(jax.random.key(0), 2, jnp.float64)
        x = np.asarray(ds.x[:16], np.float64)
        check = fnmlp.check_gradients(params, x, ds.y[:16], loss="categorical_cross_entropy",
                                      model=model)
        assert check.passed, str(check)
        res = fnmlp.fit(params, np.asarray(ds.x, np.float64), ds.y, epochs=30, batch_size=20,
                        optimizer="adam", learning_rate=0.05, loss="categorical_cross_entropy",
                        model=model, verbose=False)
        acc = fnmlp.evaluate(res.params, ds.x, ds.y, loss="categorical_cross_entropy",
                             model=model)["accuracy"]
        assert acc > (0.8 if len(model.layers) == 2 else 0.95), (model, acc)
        proba = np.asarray(fnmlp.predict_proba(res.params, ds.x, loss="categorical_cross_entropy",
                                               model=model))
        np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)


def test_a_network_without_hidden_layers_trains():
    ds = data.make_blobs(300, k=3, seed=0)
    model = serial(Dense(3))
    res = fnmlp.fit(model.init_params(jax.random.key(0), 2), ds.x, ds.y, epochs=20,
                    batch_size=30, optimizer="adam", learning_rate=0.05, model=model,
                    verbose=False)
    assert fnmlp.evaluate(res.params, ds.x, ds.y, model=model)["accuracy"] > 0.9


def test_params_that_do_not_fit_the_model_are_refused_by_name():
    model = serial(Dense(4), Relu(), LayerNorm(), Dense(2))
    params = model.init_params(jax.random.key(0), 3)
    x, y = np.zeros((5, 3), np.float32), np.zeros(5, np.int32)
    bad = [params[0], {"scale": params[1]["scale"][:3], "bias": params[1]["bias"]}, params[2]]
    with pytest.raises(ValueError, match=r"params\[1\]\['scale'\] must have shape \(4,\)"):
        fnmlp.loss(bad, x, y, model=model)
    with pytest.raises(ValueError, match="x must have 3 features"):
        fnmlp.loss(params, np.zeros((5, 4)), y, model=model)
    with pytest.raises(ValueError, match="structure"):
        fnmlp.loss(params[:2], x, y, model=model)
    with pytest.raises(ValueError, match="must be a fnmlp Layer"):
        serial(Dense(2), "relu")
    with pytest.raises(ValueError, match="features must be a positive integer"):
        Dense(0)


def test_architecture_round_trips_through_json_and_checkpoints(tmp_path):
    model = serial(Dense(8, "he_normal"), Relu(), Dropout(0.25), LayerNorm(1e-4), Dense(3),
                   Softmax())
    assert from_config(model.to_config()) == model
    assert hash(from_config(model.to_config())) == hash(model)
    params = model.init_params(jax.random.key(0), 2)
    state = fnmlp.init_state(params, fnmlp.adam(1e-3))
    config = fnmlp.inference.model_config([2, 8, 3], None, "categorical_cross_entropy",
                                          model=model)
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, config)
    loaded = fnmlp.load_model(tmp_path / "c.npz")
    assert loaded.network == model
    x = np.asarray(DS.x[:7])
    np.testing.assert_array_equal(np.asarray(loaded.predict_proba(x)),
                                  np.asarray(model.apply(params, jnp.asarray(x))))
    # your own layer needs its class to come back
    own = serial(Dense(4), PReLU(), Dense(3))
    p = own.init_params(jax.random.key(0), 2)
    fnmlp.save_checkpoint(tmp_path / "own.npz", p,
                          fnmlp.inference.model_config([2, 4, 3], None,
                                                       "softmax_cross_entropy", model=own))
    with pytest.raises(ValueError, match="unknown layer type 'PReLU'.*custom_layers"):
        fnmlp.load_model(tmp_path / "own.npz")
    back = fnmlp.load_model(tmp_path / "own.npz", custom_layers={"PReLU": PReLU})
    assert back.network == own


def test_a_checkpoint_of_the_earlier_format_still_loads(tmp_path):
    params = fnmlp.init_mlp(jax.random.key(0), [2, 5, 3], "tanh")
    config = {"sizes": [2, 5, 3], "activation": "tanh", "loss": "softmax_cross_entropy"}
    fnmlp.save_checkpoint(tmp_path / "old.npz", fnmlp.init_state(params, fnmlp.sgd(0.1)),
                          config)
    model = fnmlp.load_model(tmp_path / "old.npz")
    x = np.asarray(DS.x[:9])
    np.testing.assert_array_equal(np.asarray(model.predict(x)),
                                  np.asarray(fnmlp.predict(params, x, "tanh")))
    assert isinstance(model.network, Serial)


def test_init_compiles_one_program_per_architecture():
    from conftest import count_compiles

    model = serial(Dense(11), Tanh(), Dense(13), Relu(), Dense(2))
    with count_compiles() as first:
        model.init_params(jax.random.key(0), 6)
    with count_compiles() as again:
        model.init_params(jax.random.key(1), 6)
    assert len(first) <= 1 and len(again) == 0, (first, again)


def test_dropout_mask_is_the_same_in_float32_and_in_the_float64_witness():
    """check_gradients takes finite differences in float64: the mask must not depend on
    the dtype (a bernoulli draw of a float64 p gives other bits than of a float32 one)."""
    model = serial(Dense(16), Tanh(), Dropout(0.4), Dense(3))
    params = model.init_params(jax.random.key(0), 4)
    x, y = random_batch(jax.random.key(1), 12, [4, 3], "softmax_cross_entropy")
    result = fnmlp.check_gradients(params, x, y, model=model, train=True)
    assert result.passed, str(result)
