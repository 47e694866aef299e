"""fnmlp.layers: every layer's hand-written backward against jax.vjp and finite
differences, composition, a wrong backward named by its layer, dropout done right, your
own layer, architectures as JSON; the one model (``mlp`` is ``serial``, equal params, no
``activation=`` beside a model, what a model outputs); mixed precision in ``matmul`` and
``Dense`` (at the end)."""

import collections
import inspect
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles

import fnmlp
from fnmlp import data
from fnmlp.grad import manual_value_and_grad_kernel, mean_loss, value_and_grad_fn
from fnmlp.gradcheck import random_batch
from fnmlp.initializers import get_initializer
from fnmlp.layers import (
    ACTIVATION_LAYERS,
    Context,
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    Relu,
    Selu,
    Serial,
    Softmax,
    Tanh,
    from_config,
    serial,
)
from fnmlp.train import make_train_step

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
    result = fnmlp.check_gradients(model, params, x, y)
    assert not result.passed
    assert result.failing_layers() == ["3:WrongTanh"]
    assert "3:WrongTanh" in str(result) and "FAIL" in str(result)
    # the network-wide comparison sees the error in every layer below it, not which one
    assert not result.manual_vs_autodiff.passed
    assert result.to_dict()["failing_layers"] == ["3:WrongTanh"]
    right = serial(Dense(6), Tanh(), Dense(5), Tanh(), Dense(3))
    assert fnmlp.check_gradients(right, params, x, y).passed


@dataclass(frozen=True)
class NoBias(LayerNorm):
    def backward(self, params, residuals, dy):  # forgets the bias gradient
        g, dx = super().backward(params, residuals, dy)
        return {"scale": g["scale"]}, dx


def test_a_backward_of_the_wrong_structure_is_named_by_its_layer():
    model = serial(Dense(4), Relu(), NoBias(), Dense(3))
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1] * 4)
    with pytest.raises(ValueError, match=r"(?s)wrong structure.*2:NoBias"):
        fnmlp.check_gradients(model, model.init_params(jax.random.key(0), 3), x, y)


def test_an_unhashable_user_layer_is_told_to_be_frozen():
    @dataclass
    class Loose(fnmlp.Layer):  # a plain (mutable, so unhashable) dataclass
        width: int = 2

        def init(self, key, d, dtype=jnp.float32):
            return d, ()

    with pytest.raises(ValueError, match=r"dataclass\(frozen=True\)"):
        Loose().init_params(jax.random.key(0), 3)


def test_numpy_numbers_are_layer_settings_too():
    assert Dense(np.int64(3)) == Dense(3) and fnmlp.layers.Dropout(np.float32(0.5)).rate == 0.5


# ----------------------------------------------------------------------------- one model


def test_mlp_is_serial_of_dense_and_activations_with_the_same_numbers(x64):
    key = jax.random.key(5)
    sizes = [4, 7, 5, 3]
    model = fnmlp.mlp(sizes, "tanh")
    assert model == serial(Dense(7), Tanh(), Dense(5), Tanh(), Dense(3), in_features=4)
    params = model.init_params(key, dtype=jnp.float64)
    # tanh takes Glorot: the same numbers as Dense layers that name it
    named = serial(Dense(7, "glorot_uniform"), Tanh(), Dense(5, "glorot_uniform"), Tanh(),
                   Dense(3, "glorot_uniform"))
    same = named.init_params(key, 4, jnp.float64)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(same), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    x, y = random_batch(key, 6, sizes, "softmax_cross_entropy", jnp.float64)
    assert float(fnmlp.loss(model, params, x, y)) == float(fnmlp.loss(named, params, x, y))
    g1 = fnmlp.manual_grad(model, params, x, y)
    g2 = fnmlp.manual_grad(named, params, x, y)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
    # the same through a plain numpy forward (an independent witness)
    h = np.asarray(x)
    for i, p in enumerate(params):
        h = h @ np.asarray(p["w"]) + np.asarray(p["b"])
        h = h if i == len(params) - 1 else np.tanh(h)
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), h, rtol=1e-13)


D, C = 5, 3
SPELLINGS = {
    "relu": (lambda: fnmlp.mlp([D, 16, 8, C], "relu"),
             lambda: serial(Dense(16), Relu(), Dense(8), Relu(), Dense(C)),
             ["he_normal", "he_normal", "glorot_uniform"]),
    "dropout": (lambda: fnmlp.mlp([D, 16, 8, C], "relu", dropout=0.2),
                lambda: serial(Dense(16), Relu(), Dropout(0.2), Dense(8), Relu(), Dropout(0.2),
                               Dense(C)),
                ["he_normal", "he_normal", "glorot_uniform"]),
    "per-layer": (lambda: fnmlp.mlp([D, 16, 8, C], ("tanh", "selu"), dropout=(0.1, 0.0)),
                  lambda: serial(Dense(16), Tanh(), Dropout(0.1), Dense(8), Selu(), Dense(C)),
                  ["glorot_uniform", "lecun_normal", "glorot_uniform"]),
}


@pytest.mark.parametrize("case", sorted(SPELLINGS))
def test_two_spellings_of_one_network_are_one_model_with_bitwise_equal_params(case):
    """``mlp([D, 16, 8, C], act)`` and ``serial(Dense(16), Act(), ...)`` are the same model
    and draw the same params. Witness: each Dense's weights drawn directly from the
    initialiser that suits the activation after it (He for relu, LeCun for selu, Glorot
    for tanh and the output layer) with its key of ``split(key, 3)``. Before issue 27
    ``init_mlp`` gave every Dense, the output one too, the first activation's init."""
    make_built, make_spelled, inits = SPELLINGS[case]
    built, spelled = make_built(), make_spelled()
    key = jax.random.key(11)
    a = built.init_params(key)
    b = spelled.init_params(key, D)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.dtype == v.dtype and np.array_equal(np.asarray(u), np.asarray(v))
    keys = jax.random.split(key, 3)
    widths = [D, 16, 8, C]
    for i, (p, init) in enumerate(zip(a, inits, strict=True)):
        draw = jax.jit(get_initializer(init), static_argnums=(1, 2, 3))  # init is jitted
        want = draw(keys[i], widths[i], widths[i + 1], jnp.float32)
        assert np.array_equal(np.asarray(p["w"]), np.asarray(want)), (i, init)
        assert not np.any(np.asarray(p["b"]))
    assert built == serial(*spelled.layers, in_features=D)
    assert hash(built) == hash(serial(*spelled.layers, in_features=D))
    assert built != spelled  # the width it records is part of the model
    assert from_config(built.to_config()) == built
    assert from_config(spelled.to_config()) == spelled


def test_per_layer_activations_and_a_bare_dense_default_init():
    # Dense(kernel_init=None) takes the default of the activation after it
    model = serial(Dense(8), Relu(), Dense(8), Tanh(), Dense(2))
    resolved = model._resolved()
    assert [getattr(layer, "kernel_init", None) for layer in resolved[::2]] == [
        "he_normal", "glorot_uniform", "glorot_uniform"]
    params = model.init_params(jax.random.key(0), 3)
    assert [p["w"].shape for p in params] == [(3, 8), (8, 8), (8, 2)]


def _public_callables():
    """(qualified name, callable) for fnmlp.__all__ and the public functions and classes
    of the modules that run a model."""
    from fnmlp import grad, gradcheck, io, metrics, population, predict, train, weights
    from fnmlp.io import checkpoint, model_file

    seen = {}
    for name in fnmlp.__all__:
        obj = getattr(fnmlp, name)
        if callable(obj) and not inspect.ismodule(obj):
            seen[f"fnmlp.{name}"] = obj
    for mod in (train, population, predict, grad, gradcheck, metrics, io, checkpoint,
                model_file, weights, fnmlp.layers):
        names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(
                    obj, "__module__", "").startswith("fnmlp"):
                seen[f"{mod.__name__}.{name}"] = obj
    return seen


BUILDERS = {fnmlp.layers.mlp}  # fnmlp.mlp is the same function


def test_no_public_callable_takes_an_activation_beside_a_model():
    """Issue 27: the model is the one description of a network. Only the builder takes an
    activation name; a function that takes a model takes it first."""
    found, model_not_first, checked = [], [], 0
    for qual, obj in _public_callables().items():
        try:
            params = list(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            continue
        checked += 1
        if obj in BUILDERS:
            assert params[:2] == ["sizes", "activation"], (qual, params)
            continue
        if "activation" in params:
            found.append(qual)
        if "model" in params and params[0] != "model" and not inspect.isclass(obj):
            model_not_first.append((qual, params))
    assert checked > 80, checked  # the walk really saw the API
    assert found == [], found
    assert model_not_first == [], model_not_first
    assert fnmlp.mlp is fnmlp.layers.mlp
    for gone in ("init_mlp", "backprop", "_core", "inference"):
        assert not hasattr(fnmlp, gone), gone


NOT_A_LAYER = {
    "an activation name": ("relu", r"must be a fnmlp Layer such as mlp\(.*activation names"
                                   r" go to the builder: mlp\(\[D, H, C\], 'relu'\)"),
    "params": (None, r"must be a fnmlp Layer such as mlp\(.*params come second:"
                     r" fit\(model, params, x, y\)"),
}


def _entry_points(model, params, x, y):
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    from fnmlp.population import grid, make_population

    return {
        "fit": lambda: fnmlp.fit(model, params, x, y, epochs=1, batch_size=2, verbose=False),
        "evaluate": lambda: fnmlp.evaluate(model, params, x, y),
        "loss": lambda: fnmlp.loss(model, params, x, y),
        "manual_grad": lambda: fnmlp.manual_grad(model, params, x, y),
        "manual_value_and_grad": lambda: fnmlp.grad.manual_value_and_grad(model, params, x, y),
        "per_example_grads": lambda: fnmlp.train.per_example_grads(model, params, x, y),
        "check_gradients": lambda: fnmlp.check_gradients(model, params, x, y),
        "forward": lambda: fnmlp.grad.predict_one(model, params, x[0]),
        "batched_forward": lambda: fnmlp.grad.batched_predict(model, params, x),
        "forward_with_cache": lambda: fnmlp.grad.forward_with_cache(model, params, x),
        "predict": lambda: fnmlp.predict(model, params, x),
        "predict_proba": lambda: fnmlp.predict_proba(model, params, x),
        "predict_classes": lambda: fnmlp.predict_classes(model, params, x),
        "ensemble_predict_proba": lambda: fnmlp.population.ensemble_predict_proba(
            model, stacked, x),
        "classification_report": lambda: fnmlp.classification_report(model, params, x, y),
        "make_trainer": lambda: fnmlp.train.make_trainer(model, fnmlp.sgd(0.1), 2),
        "make_train_step": lambda: fnmlp.train.make_train_step(model, fnmlp.sgd(0.1)),
        "fit_population": lambda: fnmlp.fit_population(model, x, y, grid(lr=[0.1]), epochs=1,
                                                       batch_size=2, verbose=False),
        "make_population": lambda: make_population(model, 4, grid(lr=[0.1]), batch_size=2),
        "model_config": lambda: fnmlp.model_config(model, "softmax_cross_entropy", 4),
    }


@pytest.mark.parametrize("what", sorted(NOT_A_LAYER))
def test_a_model_that_is_not_a_layer_says_how_to_build_one(what):
    good = fnmlp.mlp([4, 5, 3], "tanh")
    params = good.init_params(jax.random.key(0))
    x, y = np.ones((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    bad, match = NOT_A_LAYER[what]
    bad = params if bad is None else bad
    calls = _entry_points(bad, params, x, y)
    assert len(calls) == 20
    for name, call in calls.items():
        with count_compiles() as compiled, pytest.raises(ValueError, match=match):
            call()
        assert compiled == [], (name, compiled)
    with pytest.raises(ValueError, match=match):
        fnmlp.layers.check_model(bad)


# ----------------------------------------------------------------------------- outputs


def test_what_a_model_outputs_is_read_off_its_last_leaf_layer():
    assert fnmlp.mlp([4, 5, 3]).outputs == "logits"
    assert serial(Dense(3), Softmax()).outputs == "probabilities"
    # a Softmax at the end of a nested serial is the end of the model
    nested = serial(Dense(8), Relu(), serial(Dense(3), Softmax()))
    assert nested.outputs == "probabilities"
    assert serial(serial(Dense(8), Softmax()), Dense(3)).outputs == "logits"
    assert serial(Dense(8), Softmax(), Dense(3)).outputs == "logits"
    assert from_config(nested.to_config()).outputs == "probabilities"


@pytest.mark.parametrize("build", [
    lambda: serial(Dense(3), Softmax(), Dropout(0.1)),
    lambda: serial(Dense(3), Softmax(), Relu()),
    lambda: serial(serial(Dense(3), Softmax()), Dropout(0.1)),
    lambda: Serial((Dense(3), Softmax(), Dropout(0.1), Tanh())),
])
def test_a_softmax_followed_only_by_parameter_free_layers_is_refused_at_build_time(build):
    with pytest.raises(ValueError, match=r"Softmax \(layer 1\) is followed by .*neither"
                                         r" probabilities nor logits; put the Softmax last"):
        build()


# ----------------------------------------------------------------------------- single layers


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


def test_builder_and_layer_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="must be a fnmlp Layer"):
        serial(Dense(2), "relu")
    with pytest.raises(ValueError, match="features must be a positive integer"):
        Dense(0)


@pytest.mark.parametrize("config, match", [
    ({"type": "LayerNorm", "eps": float("nan")}, "finite number > 0"),
    ({"type": "LayerNorm", "eps": float("inf")}, "finite number > 0"),
    ({"type": ["Dense"], "features": 3}, "a 'type' name"),
    ({"type": "Serial", "layers": "Dense"}, "'layers' must be a list"),
])
def test_a_tampered_architecture_is_a_clear_error(config, match):
    with pytest.raises(ValueError, match=match):
        from_config(config)


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
    result = fnmlp.check_gradients(model, params, x, y, train=True, key=jax.random.key(7))
    assert result.passed, str(result)
    # the mask matters: training-mode gradients differ from evaluation-mode ones
    ev = fnmlp.check_gradients(model, params, x, y, finite_diff=False)
    g_train = jax.tree.leaves(result.manual_vs_autodiff)
    assert ev.passed and g_train
    ctx = Context(True, jax.random.key(7))
    _, g_hand, _ = manual_value_and_grad_kernel(model, params, x, y, "softmax_cross_entropy",
                                                ctx)
    g_auto = jax.grad(mean_loss, argnums=1)(model, params, x, y, "softmax_cross_entropy", ctx)
    g_eval = fnmlp.manual_grad(model, params, x, y)
    assert fnmlp.gradcheck.compare_grads(g_hand, g_auto, rtol=1e-12).passed
    assert not fnmlp.gradcheck.compare_grads(g_hand, g_eval, rtol=1e-3).passed


def test_dropout_mask_is_the_same_in_float32_and_in_the_float64_witness():
    """check_gradients takes finite differences in float64: the mask must not depend on
    the dtype (a bernoulli draw of a float64 p gives other bits than of a float32 one)."""
    model = serial(Dense(16), Tanh(), Dropout(0.4), Dense(3))
    params = model.init_params(jax.random.key(0), 4)
    x, y = random_batch(jax.random.key(1), 12, [4, 3], "softmax_cross_entropy")
    result = fnmlp.check_gradients(model, params, x, y, train=True)
    assert result.passed, str(result)


DS = data.make_spirals(300, arms=3, seed=0)
DROP = serial(Dense(32), Tanh(), Dropout(0.2), Dense(16), Relu(), Dropout(0.1), Dense(3))
KW = dict(batch_size=30, optimizer="adam", learning_rate=1e-2, verbose=False, seed=4)


def test_a_resumed_run_with_dropout_equals_an_uninterrupted_one_bitwise():
    p0 = DROP.init_params(jax.random.key(0), 2)
    whole = fnmlp.fit(DROP, p0, DS.x, DS.y, epochs=4, **KW)
    half = fnmlp.fit(DROP, p0, DS.x, DS.y, epochs=2, **KW)
    resumed = fnmlp.fit(DROP, p0, DS.x, DS.y, epochs=4, state=half.state, **KW)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # dropout is really on in training: another seed gives other params
    other = fnmlp.fit(DROP, p0, DS.x, DS.y, epochs=4, **{**KW, "seed": 5})
    assert not np.array_equal(np.asarray(other.params[0]["w"]), np.asarray(whole.params[0]["w"]))
    # evaluation and prediction run without dropout: the same as the model without it
    plain = serial(Dense(32), Tanh(), Dense(16), Relu(), Dense(3))
    out = fnmlp.predict(DROP, whole.params, DS.x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(
        fnmlp.predict(plain, whole.params, DS.x)))
    assert fnmlp.evaluate(DROP, whole.params, DS.x, DS.y) == fnmlp.evaluate(
        plain, whole.params, DS.x, DS.y)


def test_both_gradient_paths_train_the_same_with_dropout(x64):
    p0 = DROP.init_params(jax.random.key(0), 2, jnp.float64)
    x = np.asarray(DS.x, np.float64)
    a = fnmlp.fit(DROP, p0, x, DS.y, epochs=2, grad="manual", **KW)
    b = fnmlp.fit(DROP, p0, x, DS.y, epochs=2, grad="autodiff", **KW)
    assert fnmlp.gradcheck.compare_grads(a.params, b.params, rtol=1e-10).passed


def test_a_population_member_with_dropout_equals_fit():
    from fnmlp.population import fit_population, grid

    members = grid(lr=[1e-2], seed=[4, 9])
    pop = fit_population(DROP, DS.x, DS.y, members, epochs=2, batch_size=30,
                         optimizer="adam", verbose=False)
    for k, m in enumerate(members):
        ref = fnmlp.fit(DROP, DROP.init_params(jax.random.key(m.seed), 2), DS.x, DS.y,
                        epochs=2, **{**KW, "seed": m.seed})
        got = pop.member_params(k)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


# ----------------------------------------------------------------------------- networks


def test_the_lessons_two_networks_with_softmax_and_a_probability_loss(x64):
    """Linear(2,2) + Softmax, and Linear(2,10) + Tanh + Linear(10,2) + Softmax, with a
    cross-entropy of probabilities, as the lesson writes them."""
    ds = data.make_moons(200, seed=0)
    loss = "categorical_cross_entropy"
    for model in (serial(Dense(2), Softmax()),
                  serial(Dense(10), Tanh(), Dense(2), Softmax())):
        params = model.init_params(jax.random.key(0), 2, jnp.float64)
        x = np.asarray(ds.x[:16], np.float64)
        check = fnmlp.check_gradients(model, params, x, ds.y[:16], loss=loss)
        assert check.passed, str(check)
        res = fnmlp.fit(model, params, np.asarray(ds.x, np.float64), ds.y, epochs=30,
                        batch_size=20, optimizer="adam", learning_rate=0.05, loss=loss,
                        verbose=False)
        acc = fnmlp.evaluate(model, res.params, ds.x, ds.y, loss=loss)["accuracy"]
        assert acc > (0.8 if len(model.layers) == 2 else 0.95), (model, acc)
        proba = np.asarray(fnmlp.predict_proba(model, res.params, ds.x, loss=loss))
        np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)


def test_a_network_without_hidden_layers_trains():
    ds = data.make_blobs(300, k=3, seed=0)
    model = serial(Dense(3))
    res = fnmlp.fit(model, model.init_params(jax.random.key(0), 2), ds.x, ds.y, epochs=20,
                    batch_size=30, optimizer="adam", learning_rate=0.05, verbose=False)
    assert fnmlp.evaluate(model, res.params, ds.x, ds.y)["accuracy"] > 0.9


def test_architecture_round_trips_through_json_and_checkpoints(tmp_path):
    model = serial(Dense(8, "he_normal"), Relu(), Dropout(0.25), LayerNorm(1e-4), Dense(3),
                   Softmax())
    assert from_config(model.to_config()) == model
    assert hash(from_config(model.to_config())) == hash(model)
    params = model.init_params(jax.random.key(0), 2)
    state = fnmlp.init_state(params, fnmlp.adam(1e-3))
    config = fnmlp.model_config(model, "categorical_cross_entropy", 2)
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, config)
    loaded = fnmlp.load_model(tmp_path / "c.npz")
    assert loaded.model == model
    x = np.asarray(DS.x[:7])
    np.testing.assert_array_equal(np.asarray(loaded.predict_proba(x)),
                                  np.asarray(model.apply(params, jnp.asarray(x))))
    # your own layer needs its class to come back
    own = serial(Dense(4), PReLU(), Dense(3))
    p = own.init_params(jax.random.key(0), 2)
    fnmlp.save_checkpoint(tmp_path / "own.npz", p,
                          fnmlp.model_config(own, "softmax_cross_entropy", 2))
    with pytest.raises(ValueError, match="unknown layer type 'PReLU'.*custom_layers"):
        fnmlp.load_model(tmp_path / "own.npz")
    back = fnmlp.load_model(tmp_path / "own.npz", custom_layers={"PReLU": PReLU})
    assert back.model == own


def test_init_compiles_one_program_per_architecture():
    model = serial(Dense(11), Tanh(), Dense(13), Relu(), Dense(2))
    with count_compiles() as first:
        model.init_params(jax.random.key(0), 6)
    with count_compiles() as again:
        model.init_params(jax.random.key(1), 6)
    assert len(first) <= 1 and len(again) == 0, (first, again)


# ----------------------------------------------------------------------------- mixed precision
# bfloat16 operands, float32 accumulation and results (the products that bf16 units compute
# natively), on both gradient paths; float32 unchanged.

BF = jnp.bfloat16
ONE_PLUS = 1 + 2.0**-8  # exact in float32, not in bfloat16 (which rounds it to 1.0)


def _bf(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, BF), tree)


def _layer(w, b):
    return {"w": np.asarray(w, np.float32), "b": np.asarray(b, np.float32)}


def test_forward_products_accumulate_in_float32():
    # [1, 1] @ [[1], [2^-8]]: both operands exact in bfloat16, the sum is not
    model = serial(Dense(1), in_features=2)
    params = _bf([_layer([[1.0], [2.0**-8]], [0.0])])
    x = jnp.asarray([[1.0, 1.0]], BF)
    out, cache = fnmlp.grad.forward_with_cache(model, params, x)
    assert out.dtype == jnp.float32 and float(out[0, 0]) == ONE_PLUS
    assert float(fnmlp.grad.predict_one(model, params, x[0])[0]) == ONE_PLUS  # the per-example one


def test_weight_gradient_accumulates_in_float32():
    # dW = a^T @ delta = [1, 1] . [1, 2^-8]: one weight, a sum of two products
    params = _bf(_layer([[0.5]], [0.0]))
    x_in = jnp.asarray([[1.0], [1.0]], BF)  # Dense's residual: its (bf16) input
    delta = jnp.asarray([[1.0], [2.0**-8]], jnp.float32)
    grads, _ = Dense(1).backward(params, x_in, delta)
    assert grads["w"].dtype == jnp.float32 and float(grads["w"][0, 0]) == ONE_PLUS


def _dots(text):
    """``(operand types, result type)`` of every dot_general in StableHLO text."""
    out = []
    for line in text.splitlines():
        if "stablehlo.dot_general" in line:
            operands, result = line.rsplit(":", 1)[1].split("->")
            out.append((operands, result))
    return out


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_every_product_takes_bf16_and_gives_float32(grad):
    """The hand-derived path runs all eight products of a 3-layer net (3 forward, 3 weight
    gradients, 2 input gradients) as bf16 x bf16 -> float32. jax.grad's transpose
    of such a product upcasts the bf16 operand to the float32 cotangent, so on the autodiff
    path only the forward products are bf16 (its backward products run in float32)."""
    model = fnmlp.mlp([6, 5, 4, 3], "tanh")
    params = _bf(model.init_params(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (8, 6)).astype(BF)
    y = jnp.arange(8) % 3
    f = value_and_grad_fn(model, "softmax_cross_entropy", grad, jnp.float32)
    dots = _dots(jax.jit(f).lower(params, x, y).as_text())
    assert len(dots) == 8
    mixed = [d for d in dots if d[0].count("bf16") == 2 and "f32" in d[1] and "bf16" not in d[1]]
    assert len(mixed) == (8 if grad == "manual" else 3), dots
    assert all("bf16" not in d[1] for d in dots)  # no product rounds its result to bf16
    value, grads, out = f(params, x, y)
    assert value.dtype == out.dtype == jnp.float32


def test_float32_products_are_unchanged():
    """Without a low-precision dtype the kernels are plain float32 ``@``."""
    model = fnmlp.mlp([4, 3, 2], "relu")
    params = model.init_params(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    out, _ = fnmlp.grad.forward_with_cache(model, params, x)
    ref = np.maximum(np.asarray(x) @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]), 0)
    ref = ref @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6, atol=1e-6)


def test_mixed_gradients_are_closer_to_float32_than_bf16_rounding_allows():
    """The hand-derived float32-accumulated weight gradients of a 256-64-10 batch stay
    within bfloat16's input rounding (inputs and weights rounded to 8 bits: a few % of
    the gradient's norm), and the manual and autodiff paths agree to that level."""
    key = jax.random.key(0)
    model = fnmlp.mlp([256, 64, 10], "relu")
    p = model.init_params(key)
    x = jax.random.uniform(key, (64, 256))
    y = jnp.arange(64) % 10
    _, g32, _ = jax.jit(value_and_grad_fn(model, "softmax_cross_entropy", "manual"))(p, x, y)
    pb, xb = _bf(p), x.astype(BF)
    for grad in ("manual", "autodiff"):
        f = jax.jit(value_and_grad_fn(model, "softmax_cross_entropy", grad, jnp.float32))
        _, g, _ = f(pb, xb, y)
        for a, b in zip(g, g32):
            rel = jnp.linalg.norm(a["w"].astype(jnp.float32) - b["w"]) / jnp.linalg.norm(b["w"])
            assert float(rel) < 0.08, (grad, float(rel))


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_biases_stay_float32_under_bf16_compute(grad):
    """Only a product's operands are rounded: a bias of 1 + 2^-8 (which bfloat16 rounds to
    1) reaches the loss intact. MSE of out = 0 * w + b against 0 is b^2 = 1.0078278,
    not 1.0; the bias gradient 2 b is float32 too."""
    model = serial(Dense(1), in_features=1)
    params = [_layer([[0.5]], [ONE_PLUS])]
    state = fnmlp.init_state(params, fnmlp.sgd(0.1))
    step = jax.jit(make_train_step(model, fnmlp.sgd(0.1), "mse", grad, jnp.bfloat16))
    batch = fnmlp.train.Batch(jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    _, metrics = step(state, batch)
    assert float(metrics["loss"]) == np.float32(ONE_PLUS) ** 2
    _, grads, _ = value_and_grad_fn(model, "mse", grad, jnp.float32)(
        params, batch.x, batch.y, Context(True, None, BF))
    assert grads[0]["b"].dtype == jnp.float32
    assert float(grads[0]["b"][0]) == 2 * np.float32(ONE_PLUS)


def test_bfloat16_params_are_checked_at_bfloat16_tolerance():
    model = serial(Dense(4), Relu(), Dense(3))
    pb = model.init_params(jax.random.key(0), 3, jnp.bfloat16)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1] * 4)
    result = fnmlp.check_gradients(model, pb, x, y)
    assert result.passed, str(result)
    assert result.manual_vs_autodiff.rows[0].tol == 5e-2


def test_a_non_float_compute_dtype_is_refused():
    model = serial(Dense(4), Relu(), Dense(3))
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1] * 4)
    with pytest.raises(ValueError, match="compute_dtype must be a float dtype"):
        fnmlp.fit(model, model.init_params(jax.random.key(0), 3), x, y, epochs=1,
                  batch_size=4, verbose=False, compute_dtype=jnp.int32)


@pytest.mark.parametrize("activation", [jax.nn.relu, jnp.tanh, 3, None])
def test_mlp_refuses_an_activation_that_is_no_name_by_name(activation):
    """A new user's try, mlp([2, 8, 2], jax.nn.relu), raised "'custom_jvp' object is not
    iterable" from inside serial.py."""
    with pytest.raises(ValueError, match=r"activation must be a name \(one of .*'relu'.*\) or"
                       r" a list of names; got .*a layer with its backward"):
        fnmlp.mlp([2, 8, 2], activation)


@pytest.mark.parametrize("names", [np.array(["relu", "tanh"]), collections.UserList(["relu",
                                   "tanh"]), ("relu", "tanh")])
def test_mlp_takes_any_sequence_of_names(names):
    """A NumPy array and a UserList of names worked before the check above refused them."""
    assert fnmlp.mlp([2, 4, 4, 2], names) == fnmlp.mlp([2, 4, 4, 2], ["relu", "tanh"])
