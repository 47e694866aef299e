"""fnmlp.gradcheck: no false alarm (the false-alarm count over seeds x architectures, kinks,
leaves whose gradient is 0, deep sigmoid nets), no hidden bug (checks at perturbed params:
a LayerNorm without its scale, a Scale whose dx is dy), the kind of mistake named (planted in
the middle of a 5-layer net), the reports, and scripts/gradcheck.py end to end."""

import json
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, run_script

import fnmlp
from fnmlp.gradcheck import (
    check_gradients,
    check_layer,
    compare_grads,
    diagnose,
    finite_difference_grad,
    random_batch,
)
from fnmlp.layers import Dense, Layer, LayerNorm, Silu, Tanh, serial

CE = "softmax_cross_entropy"

# ----------------------------------------------------------------------------- planted bugs


@dataclass(frozen=True)
class BuggyDense(Dense):
    """Dense with one of the common mistakes in its backward."""

    bug: str = ""

    def backward(self, params, x, dy):
        g, dx = super().backward(params, x, dy)
        w, b = g["w"], g["b"]
        if self.bug == "transposed":
            w = w.T  # dy.T @ x
        elif self.bug == "sign":
            w = -w
        elif self.bug == "batch":
            w = w * x.shape[0]
        elif self.bug == "mean_bias":
            b = jnp.mean(dy, axis=0)
        elif self.bug == "zero":
            w = jnp.zeros_like(w)
        elif self.bug == "bias_one_example":
            b = dy[0]
        elif self.bug == "one_unit":
            w = w.at[:, 2].multiply(3.0)
        return {"w": w, "b": b}, dx


@dataclass(frozen=True)
class TanhAtOutput(Tanh):
    """d tanh taken at the output: 1 - tanh(y)^2 with y = tanh(x)."""

    def backward(self, params, x, dy):
        return (), dy * (1 - jnp.tanh(jnp.tanh(x)) ** 2)


@dataclass(frozen=True)
class LayerNormNoScale(LayerNorm):
    """dx forgets ``* scale``: right while the scale is at its init (ones)."""

    def backward(self, params, residuals, dy):
        g, _ = super().backward(params, residuals, dy)
        xhat, inv = residuals
        dx = inv * (dy - jnp.mean(dy, -1, keepdims=True)
                    - xhat * jnp.mean(dy * xhat, -1, keepdims=True))
        return g, dx


@dataclass(frozen=True)
class Scale(Layer):
    """y = a * x, one a per feature, a starting at 1 (fnmlp.layers' docstring example)."""

    wrong: bool = False

    def init(self, key, d, dtype=jnp.float32):
        return d, {"a": jnp.ones((d,), dtype)}

    def forward(self, params, x, ctx=None):
        return params["a"][None, :] * x, x

    def backward(self, params, x, dy):
        da = jnp.sum(dy * x, axis=0)
        return {"a": da}, dy if self.wrong else dy * params["a"][None, :]


# (the middle layer, its name, the leaf, words the diagnosis must hold)
PLANTED = [
    (BuggyDense(6, bug="transposed"), "w", "transposed"),
    (BuggyDense(6, bug="sign"), "w", "sign flipped"),
    (BuggyDense(6, bug="batch"), "w", "the batch size B = 8"),
    (BuggyDense(6, bug="mean_bias"), "b", "1/B"),
    (BuggyDense(6, bug="zero"), "w", "zero"),
    (BuggyDense(6, bug="bias_one_example"), "b", "not summed over the batch"),
    (BuggyDense(6, bug="one_unit"), "w", "wrong only in columns (units) 2 (of 6)"),
    (TanhAtOutput(), "dx", "derivative is taken at the output"),
    (Scale(wrong=True), "dx", "got equals the incoming dy"),
    (LayerNormNoScale(), "dx", "none of the common mistakes fits"),
]


def _five(middle):
    """A 5-layer net with ``middle`` as layer 2."""
    return serial(Dense(6), Tanh(), middle, Tanh(), Dense(3), in_features=4)


@pytest.mark.parametrize("middle, leaf, words", PLANTED,
                         ids=[f"{type(m).__name__}-{getattr(m, 'bug', '')}" for m, _, _ in
                              PLANTED])
def test_a_planted_mistake_is_named_by_its_layer_and_kind(x64, middle, leaf, words):
    model = _five(middle)
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x, y = random_batch(jax.random.key(1), 8, [4, 3], CE, jnp.float64)
    result = check_gradients(model, params, x, y)
    name = f"2:{middle.name}"
    assert not result.passed
    assert result.failing_layers() == [name], str(result.layers)
    row = {(r.layer, r.leaf): r for r in result.layers.rows}[(name, leaf)]
    assert not row.passed and words in row.diagnosis, row.diagnosis
    assert any(d.startswith(f"{name} {leaf}: ") and words in d for d in result.diagnoses())
    # the diagnosis travels in the text, the per-layer rows and the JSON-able dict
    assert words in str(result)
    d = result.to_dict()
    rows = {(r["layer"], r["leaf"]): r for r in d["layers"]["leaves"]}
    assert words in rows[(name, leaf)]["diagnosis"] and rows[(name, leaf)]["status"] == "FAIL"
    json.dumps(d)
    # the same net without the mistake passes
    right = _five(Dense(6) if isinstance(middle, Dense) else
                  LayerNorm() if isinstance(middle, LayerNorm) else
                  Scale() if isinstance(middle, Scale) else Tanh())
    assert check_gradients(right, params, x, y).passed


@dataclass(frozen=True)
class DenseDxNotTransposed(Dense):
    """The student's most common mistake: dx = dy @ w, not dy @ w.T."""

    def backward(self, params, x, dy):
        g, _ = super().backward(params, x, dy)
        return g, dy @ params["w"]


def test_a_backward_that_cannot_run_is_a_clear_error_naming_the_layer():
    """With a non-square w the forgotten transpose cannot even multiply: a ValueError that
    names the layer's backward and the shapes, not a traceback from inside jax."""
    with pytest.raises(ValueError, match=r"DenseDxNotTransposed\.backward failed on x \(8, 5\)"
                       r" and dy \(8, 3\): TypeError: .*forgotten transpose"):
        check_layer(DenseDxNotTransposed(3), 5)
    square = check_layer(DenseDxNotTransposed(5), 5)  # square w: it runs, and fails
    assert not square.passed and square.failing_layers() == ["DenseDxNotTransposed"]


def test_the_note_says_passes_at_init_only_when_it_does():
    caught_at_init = check_layer(BuggyDense(6, bug="sign"), 5)
    row = [r for r in caught_at_init.manual_vs_autodiff.rows if r.leaf == "w"][0]
    assert not row.passed and "perturbed" not in row.note  # it fails at init already
    hidden = check_layer(Scale(wrong=True), 5)
    row = [r for r in hidden.manual_vs_autodiff.rows if r.leaf == "dx"][0]
    assert "fails only at params perturbed from init" in row.note
    assert "passes at init" in row.note


@pytest.mark.parametrize("layer, words", [(LayerNormNoScale(), "none of the common mistakes fits"),
                                          (Scale(wrong=True), "got equals the incoming dy")])
def test_hidden_bugs_are_caught_at_perturbed_params(layer, words):
    """At init (scale ones) these two backwards are right: only the perturbed points see them."""
    assert check_layer(layer, 5, points=1).passed  # what the old checker saw
    result = check_layer(layer, 5)
    assert not result.passed and result.failing_layers() == [layer.name]
    row = [r for r in result.manual_vs_autodiff.rows if r.leaf == "dx"][0]
    assert words in row.diagnosis and "perturbed from init" in row.note
    # the whole-model check too, at init params, named by the layer
    model = _five(layer)
    params = model.init_params(jax.random.key(0), dtype=jnp.float32)
    x, y = random_batch(jax.random.key(1), 8, [4, 3], CE)
    assert check_gradients(model, params, x, y, perturbed=0).passed
    whole = check_gradients(model, params, x, y)
    assert whole.failing_layers() == [f"2:{layer.name}"]
    assert "perturbed" in str(whole.layers)


def test_check_layer_names_the_kind_of_a_wrong_dense():
    for bug, words in [("transposed", "transposed"), ("sign", "sign flipped"),
                       ("batch", "= the batch size B = 8")]:
        result = check_layer(BuggyDense(5, bug=bug), 5)
        assert result.failing_layers() == ["BuggyDense"]
        assert any(words in d for d in result.diagnoses()), result.diagnoses()


def test_dropout_in_training_mode_with_a_fixed_mask():
    @dataclass(frozen=True)
    class UnscaledDropout(fnmlp.Dropout):  # backward forgets the 1/(1 - rate)
        def backward(self, params, scale, dy):
            return (), dy * (scale > 0)

    assert check_layer(fnmlp.Dropout(0.3), 6, train=True, key=jax.random.key(2)).passed
    bad = check_layer(UnscaledDropout(0.3), 6, train=True, key=jax.random.key(2))
    assert not bad.passed
    assert "constant factor 0.7" in bad.diagnoses()[0]


# ----------------------------------------------------------------------------- diagnose


def test_diagnose_each_shape():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(5, 5))
    assert diagnose(r.T, r).startswith("transposed")
    rect = rng.normal(size=(4, 6))
    assert diagnose(rect.T.reshape(4, 6), rect).startswith("transposed and reshaped")
    assert diagnose(-r, r).startswith("sign flipped")
    assert "= the batch size B = 5" in diagnose(5 * r, r, batch=5)
    assert "= 1/B" in diagnose(r / 5, r, batch=5)
    assert "constant factor 2.5" in diagnose(2.5 * r, r, batch=5)
    assert diagnose(np.zeros_like(r), r).startswith("zero")
    g = r.copy()
    g[:, 3] += 1
    assert diagnose(g, r, leaf="w") == ("wrong only in columns (units) 3 (of 5); the rest is"
                                        " right")
    g = r.copy()
    g[1] *= 2
    assert diagnose(g, r, leaf="dx").startswith("wrong only in examples 1 (of 5)")
    b = rng.normal(size=7)
    g = b.copy()
    g[4] = 0
    assert diagnose(g, b, leaf="b").startswith("wrong only in entries 4 (of 7)")
    pe = rng.normal(size=(3, 7))
    assert "example 2's gradient alone" in diagnose(pe[2], pe.sum(0), per_example=pe)
    text = diagnose(rng.normal(size=(5, 5)), r)
    assert text.startswith("none of the common mistakes fits") and "got" in text and "want" in text
    assert diagnose(np.full(3, np.nan), np.ones(3)).startswith("not finite")
    assert diagnose(r, r) == ""


# ----------------------------------------------------------------------------- no false alarm


def test_the_deep_sigmoid_net_of_the_issue_passes(x64):
    """20-32x10-10 sigmoid: layer 0's gradients sit near the round-off of h = 1e-6
    differences; the per-leaf step and the noise estimate keep them from failing."""
    sizes = [20] + [32] * 10 + [10]
    model = fnmlp.mlp(sizes, "sigmoid")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x, y = random_batch(jax.random.key(1), 8, sizes, CE, jnp.float64)
    result = check_gradients(model, params, x, y, max_evals=400)
    assert result.passed, str(result)
    assert result.manual_vs_autodiff.max_rel_err < 1e-12
    # the fixed step h = 1e-6 still passes: noise-aware, though less resolved
    assert check_gradients(model, params, x, y, max_evals=200, fd_eps=1e-6,
                           perturbed=0).passed


def test_a_relu_net_with_an_all_zero_row_passes_and_names_the_kinks(x64):
    """Biases 0 at init and an all-zero input row: that row's pre-activations are exactly
    0, so every bias's central difference straddles relu's kink (rel err 0.175 before)."""
    sizes = [5, 8, 8, 3]
    model = fnmlp.mlp(sizes, "relu")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    assert all(float(jnp.max(jnp.abs(p["b"]))) == 0 for p in params)
    x, y = random_batch(jax.random.key(1), 8, sizes, CE, jnp.float64)
    x = x.at[3].set(0.0)
    result = check_gradients(model, params, x, y)
    assert result.passed, str(result)
    rows = {(r.layer, r.leaf): r for r in result.manual_vs_finite_diff.rows}
    # every table names a layer as the per-layer one does: "index:Name" in the model
    assert sorted({r.layer for r in result.manual_vs_autodiff.rows}) == [
        "0:Dense", "2:Dense", "4:Dense"]
    assert rows[("0:Dense", "b")].kinks == 8 and rows[("0:Dense", "b")].status == "inconclusive"
    assert rows[("0:Dense", "w")].inconclusive == 0 and rows[("0:Dense", "w")].status == "ok"
    assert "1:Relu input, example 3" in rows[("0:Dense", "b")].note
    assert any("straddle a kink" in t for t in result.inconclusive())
    assert "inconclusive" in str(result) and "straddle a kink" in str(result)
    # the hand backward takes PyTorch's subgradient: equal to autodiff's
    assert result.manual_vs_autodiff.max_rel_err < 1e-12


def test_a_leaf_whose_true_gradient_is_zero_passes(x64):
    sizes = [5, 8, 8, 3]
    model = fnmlp.mlp(sizes, "relu")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    params[0]["b"] = params[0]["b"] - 50.0  # every unit of layer 0 dead: its grads are 0
    x, y = random_batch(jax.random.key(1), 8, sizes, CE, jnp.float64)
    g = fnmlp.manual_grad(model, params, x, y)
    assert float(jnp.max(jnp.abs(g[0]["w"]))) == 0
    result = check_gradients(model, params, x, y)
    assert result.passed, str(result)
    # and an exact comparison of zero against round-off is not a failure either
    g_auto = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y)
    noisy = jax.tree.map(lambda a: a, g_auto)
    noisy[0]["w"] = noisy[0]["w"] + 1e-19
    assert compare_grads(g, noisy).passed


def _false_alarm_cases():
    """(name, model, sizes, loss, dtype, train, zero_row): 6 architectures."""
    return [
        ("sigmoid 20-32x8-10", fnmlp.mlp([20] + [32] * 8 + [10], "sigmoid"),
         [20, 10], CE, "float64", False, False),
        ("relu, a zero row", fnmlp.mlp([6, 8, 8, 8, 3], "relu"), [6, 3], CE, "float64",
         False, True),
        ("tanh/gelu/selu/leaky_relu/elu, mae",
         fnmlp.mlp([5, 7, 7, 7, 7, 7, 4], ("tanh", "gelu", "selu", "leaky_relu", "elu")),
         [5, 4], "mae", "float64", False, False),
        ("layernorm, softplus, dropout, silu",
         serial(Dense(8), Tanh(), LayerNorm(), Dense(8), fnmlp.layers.Softplus(),
                fnmlp.Dropout(0.3), Dense(8), Silu(), Dense(2), in_features=5), [5, 2],
         "sigmoid_cross_entropy", "float64", True, False),
        # the float32 cases reuse two models above: their float64 witness compiles once
        ("sigmoid 20-32x8-10 float32", fnmlp.mlp([20] + [32] * 8 + [10], "sigmoid"),
         [20, 10], CE, "float32", False, False),
        ("relu float32, a zero row", fnmlp.mlp([6, 8, 8, 8, 3], "relu"), [6, 3], CE,
         "float32", False, True),
    ]


SEEDS = 32  # x 6 architectures = 192 checks (count_false_alarms(100): 600, also 0)
FALSE_ALARMS = 0  # counted over them (tests/test_gradcheck.py, README)


def count_false_alarms(seeds: int = SEEDS) -> tuple[int, int, list]:
    """Runs check_gradients on correct nets: ``(false alarms, checks, failures)``."""
    alarms, checks, failed = 0, 0, []
    for name, model, sizes, loss, dtype, train, zero_row in _false_alarm_cases():
        with jax.enable_x64(dtype == "float64"):
            for seed in range(seeds):
                key = jax.random.key(seed)
                params = model.init_params(key, dtype=dtype)
                x, y = random_batch(jax.random.fold_in(key, 1), 8, sizes, loss, dtype)
                if zero_row:
                    x = x.at[seed % 8].set(0.0)
                result = check_gradients(model, params, x, y, loss, max_evals=150,
                                         train=train, key=jax.random.key(seed))
                checks += 1
                if not result.passed:
                    alarms += 1
                    failed.append((name, seed, str(result)))
    return alarms, checks, failed


def test_false_alarm_count_over_seeds_and_architectures():
    """192 correct nets (6 architectures x 32 seeds; 128 in float64, 64 in float32; depths
    3-9; sigmoid, relu with an all-zero input row (kinks at 0), tanh, gelu, selu,
    leaky_relu, elu, softplus, silu, LayerNorm, dropout in training; five losses, mae with
    its kink), each checked at its init params and two perturbed points: no false alarm.
    Before the noise-aware comparison, the deep sigmoid and the zero-row relu nets failed."""
    start = time.perf_counter()
    alarms, checks, failed = count_false_alarms()
    assert checks == 6 * SEEDS
    assert alarms == FALSE_ALARMS, failed[:1]
    assert time.perf_counter() - start < 120


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kw, words", [
    ({"fd_eps": 0}, "fd_eps"), ({"fd_eps": -1e-6}, "fd_eps"), ({"fd_eps": float("nan")},
                                                                "fd_eps"),
    ({"fd_eps": 2.0}, "fd_eps"), ({"rtol": 0}, "rtol"), ({"fd_rtol": -1.0}, "fd_rtol"),
    ({"rtol": float("inf")}, "rtol"), ({"max_evals": 0}, "max_evals"),
    ({"perturbed": -1}, "perturbed"),
])
def test_bad_checker_arguments_are_refused_up_front(kw, words):
    model = fnmlp.mlp([3, 4, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    x, y = random_batch(jax.random.key(1), 4, [3, 2], CE)
    with pytest.raises(ValueError, match=words):
        check_gradients(model, params, x, y, **kw)
    if "perturbed" not in kw and "rtol" not in kw:
        with pytest.raises(ValueError, match=words):
            check_layer(Tanh(), 3, **kw)
    if "fd_eps" in kw:
        with pytest.raises(ValueError, match="fd_eps"):
            finite_difference_grad(lambda p: jnp.sum(p ** 2), jnp.ones(3), eps=kw["fd_eps"])


# ----------------------------------------------------------------------------- reports


def test_report_table_lists_every_leaf(x64):
    model = fnmlp.mlp([5, 7, 3], "relu")
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    params = [dict(p, b=p["b"] + 0.1) for p in params]
    x, y = random_batch(jax.random.key(1), 6, [5, 3], "mse", jnp.float64)
    text = str(check_gradients(model, params, x, y, "mse"))
    for needle in ("manual vs autodiff", "manual vs finite differences", "5x7", "7x3",
                   "max rel err", "PASSED"):
        assert needle in text


def test_every_builtin_layer_passes_check_layer():
    from fnmlp.layers import ACTIVATION_LAYERS, Softmax

    for layer in [Dense(4), Softmax(), LayerNorm(), *[c() for c in ACTIVATION_LAYERS.values()]]:
        result = check_layer(layer, 5, batch=7)
        assert result.passed, str(result)


# ----------------------------------------------------------------------------- the script

SCRIPT = "gradcheck.py"


def test_script_the_deep_sigmoid_command_exits_0():
    r = run_script(SCRIPT, "--sizes", "20,32,32,32,32,32,32,32,32,32,32,10", "--activation",
                   "sigmoid", "--dtype", "float64", "--max-evals", "1000")
    assert "overall: PASSED" in r.stdout


def test_script_issue_example_passes_tightly():
    r = run_script(SCRIPT, "--sizes", "5,16,16,3", "--activation", "tanh", "--loss",
                   "softmax_cross_entropy", "--dtype", "float64", "--json")
    d = json.loads(r.stdout)
    assert d["passed"] is True
    assert d["max_rel_err_manual_vs_autodiff"] <= 1e-9
    assert d["max_rel_err_vs_finite_diff"] <= 1e-6
    assert d["config"]["sizes"] == [5, 16, 16, 3]
    assert d["diagnoses"] == [] and all("diagnosis" in r for r in d["layers"]["leaves"])


def test_script_hidden_flag_and_default_run():
    r = run_script(SCRIPT)
    assert "manual vs autodiff: PASSED" in r.stdout and "overall: PASSED" in r.stdout
    r = run_script(SCRIPT, "--sizes", "5,3", "--hidden", "8,8", "--activation", "relu",
                   "--json")
    assert json.loads(r.stdout)["config"]["sizes"] == [5, 8, 8, 3]


def test_script_float32_json():
    r = run_script(SCRIPT, "--dtype", "float32", "--activation", "relu", "--loss", "mse",
                   "--json")
    assert json.loads(r.stdout)["max_rel_err_manual_vs_autodiff"] <= 1e-4


@pytest.mark.parametrize("args, needle", [
    (["--activation", "foo"], "'foo' is not an activation; choose from elu"),
    (["--loss", "bar"], "invalid choice: 'bar'"),
    (["--sizes", "3"], "at least two positive layer sizes"),
    (["--sizes", "3,0,2"], "at least two positive layer sizes"),
    (["--sizes", "3,x"], "comma-separated integers"),
    (["--batch-size", "0"], "positive integer"),
    (["--dtype", "float16"], "invalid choice"),
])
def test_script_bad_arguments_exit_2_with_one_line(args, needle):
    r = run_script(SCRIPT, *args, check=False)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_script_wrong_derivative_exits_1_and_names_it(monkeypatch, capsys):
    sys.path.insert(0, f"{REPO}/scripts")
    try:
        import gradcheck as script
    finally:
        sys.path.pop(0)
    from fnmlp import activations

    wrong = activations.ActivationFn("tanh", jnp.tanh, lambda z: 1 - jnp.tanh(z), "Tanh")
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", wrong)
    jax.clear_caches()  # the checker's compiled kernels hold the right tanh
    assert script.main(["--activation", "tanh", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] is False and d["max_rel_err_manual_vs_autodiff"] > 1e-3
    assert d["failing_layers"] == ["1:Tanh"] and d["diagnoses"][0].startswith("1:Tanh dx: ")


# every leaf checked, a wrong small leaf caught (from test_trust.py)

def test_every_leaf_gets_finite_difference_coordinates():
    """784-256-10 with the default 4,096 samples left the 10 biases of layer 1 with none
    (they hold 1/20,000 of the coordinates) and still printed 'ok'; 784-64-10 with 512
    samples is the same case at a tenth of the cost."""
    sizes = [784, 64, 10]
    model = fnmlp.mlp(sizes)
    params = model.init_params(jax.random.key(0))
    x, y = random_batch(jax.random.key(1), 8, sizes, "softmax_cross_entropy")
    result = fnmlp.check_gradients(model, params, x, y, max_evals=512)
    rows = {(r.layer, r.leaf): r for r in result.manual_vs_finite_diff.rows}
    assert rows[("2:Dense", "b")].checked == 10 and rows[("2:Dense", "b")].total == 10
    assert rows[("2:Dense", "w")].checked >= 32 and rows[("0:Dense", "b")].checked >= 32
    assert sum(r.checked for r in rows.values()) <= 512 + 4 * 32
    assert "10/10" in str(result.manual_vs_finite_diff)
    leaf = result.to_dict()["manual_vs_finite_diff"]["leaves"][2]
    assert (leaf["layer"], leaf["leaf"], leaf["checked"], leaf["total"]) == ("2:Dense", "b", 10, 10)
    assert result.passed


def test_a_leaf_with_nothing_checked_is_never_ok():
    g = [{"w": jnp.ones((3, 2)), "b": jnp.ones(2)}]
    mask = [{"w": np.ones((3, 2), bool), "b": np.zeros(2, bool)}]
    report = compare_grads(g, g, mask=mask)
    row = [r for r in report.rows if r.leaf == "b"][0]
    assert row.checked == 0 and row.total == 2 and not row.passed
    assert not report.passed
    assert "UNCHECKED" in str(report) and "0/2" in str(report)


def test_a_wrong_small_leaf_is_caught_on_a_big_net(x64):
    """A bug confined to the last layer's 10 biases must show in the finite-difference
    comparison even when the 200k weights dominate the sample."""
    sizes = [784, 64, 10]
    model = fnmlp.mlp(sizes)
    params = model.init_params(jax.random.key(0), dtype=jnp.float64)
    x, y = random_batch(jax.random.key(1), 4, sizes, "softmax_cross_entropy", jnp.float64)
    good = fnmlp.manual_grad(model, params, x, y)
    wrong = [good[0], {"w": good[1]["w"], "b": good[1]["b"] * 1.5}]
    fd, mask = finite_difference_grad(lambda p: fnmlp.loss(model, p, x, y), params,
                                      max_evals=256)
    report = compare_grads(wrong, fd, 1e-6, mask=mask)
    assert [(r.layer, r.leaf) for r in report.failing()] == [("1", "b")]
