"""The MNIST lab as the lesson asks it (issue 20): a validation set that is not the test
set, early stopping that saves what it reports, --resume that keeps the schedule,
weight magnitudes per layer, --weight-decay as PyTorch names it, and pictures a student
reads at a glance."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cli_surprises import _one_line_exit_2
from test_scripts import _run

import fnmlp
from fnmlp import cli, plot
from fnmlp.layers import Dense, Dropout, Relu, Tanh, serial

TOY = ["--dataset", "moons", "--n", "240", "--batch-size", "16", "--seed", "1"]


# ----------------------------------------------------------------------------- 1. validation


def test_patience_refuses_to_run_without_a_validation_split(tmp_path):
    r = _run("train_toy.py", *TOY, "--epochs", "3", "--patience", "2", "--out", str(tmp_path),
             check=False)
    _one_line_exit_2(r, "--patience monitors the validation set and needs --val-split")


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "x"])
def test_bad_val_split_is_exit_2(tmp_path, bad):
    r = _run("train_toy.py", *TOY, "--val-split", bad, "--out", str(tmp_path), check=False)
    _one_line_exit_2(r, "--val-split: must be a fraction in (0, 1)")


def test_val_split_is_held_out_reported_each_epoch_and_printed(tmp_path):
    r = _run("train_toy.py", *TOY, "--epochs", "3", "--val-split", "0.25", "--out",
             str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["val_split"] == 0.25
    for rec in m["history"]:  # both held-out sets, every epoch, and they differ
        assert {"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= rec.keys()
        assert rec["val_loss"] != rec["test_loss"]
    # the examples trained per epoch: 180 training examples, 25% held out = 135, batches
    # of 16 -> 8 full batches = 128 examples (not 176 of all 180)
    rec = m["history"][-1]
    assert rec["examples_per_second"] * rec["epoch_seconds"] == pytest.approx(128, rel=1e-6)
    # the lines the student watches show train, validation and test
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]
    assert lines and all("train_acc" in ln and "val_acc" in ln and "test_acc" in ln
                         for ln in lines), r.stderr


def test_val_split_matches_fit_with_the_same_split(tmp_path):
    """The script's validation numbers are fit's with validation_split (same seed)."""
    from fnmlp import data

    _run("train_toy.py", *TOY, "--epochs", "2", "--val-split", "0.2", "--hidden", "8",
         "--quiet", "--out", str(tmp_path))
    m = json.loads((tmp_path / "metrics.json").read_text())
    ds = data.TOY_SETS["moons"](n=240, seed=1)
    train, _ = data.train_test_split(ds.x, ds.y, 0.25, seed=1)
    model = cli.network(m)
    res = fnmlp.fit(model.init_params(jax.random.key(1), 2), train.x, train.y, model=model,
                    epochs=2, batch_size=16, optimizer="adam", learning_rate=0.01, seed=1,
                    validation_split=0.2, verbose=False)
    for a, b in zip(m["history"], res.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)


# ----------------------------------------------------------------------------- 2. early stopping


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A toy run that early stopping ends well before --epochs (a large rate, patience 1)."""
    out = tmp_path_factory.mktemp("stopped")
    r = _run("train_toy.py", *TOY, "--epochs", "60", "--lr", "0.05", "--hidden", "64",
             "--val-split", "0.25", "--patience", "1", "--out", str(out))
    return out, r


def test_early_stopping_monitors_validation_not_test(stopped):
    out, r = stopped
    m = json.loads((out / "metrics.json").read_text())
    hist = m["history"]
    assert len(hist) < 60, "early stopping did not trigger; the test needs it to"
    vals = [h["val_loss"] for h in hist]
    assert m["best_epoch"] == hist[int(np.argmin(vals))]["epoch"]
    assert "val_loss has not improved" in r.stderr


def test_early_stopping_saves_and_reports_the_restored_epoch(stopped):
    out, r = stopped
    m = json.loads((out / "metrics.json").read_text())
    best, hist = m["best_epoch"], m["history"]
    assert hist[-1]["epoch"] > best  # the later epochs are still in the history ...
    marked = [h["epoch"] for h in hist if h.get("restored")]
    assert marked == [best]  # ... with the restored one marked
    kept = hist[best - 1]
    assert m["test_accuracy"] == pytest.approx(kept["test_accuracy"], abs=1e-6)
    assert m["val_loss"] == pytest.approx(kept["val_loss"], rel=1e-6)
    # the checkpoint holds that epoch: its state's epoch, and its params score the same
    model = fnmlp.load_model(out / "checkpoint.npz")
    with np.load(out / "checkpoint.npz") as z:
        epochs = [z[k] for k in z.files if k.endswith("epoch")]
    assert epochs and int(epochs[0]) == best
    from fnmlp import data

    ds = data.TOY_SETS["moons"](n=240, seed=1)
    _, test = data.train_test_split(ds.x, ds.y, 0.25, seed=1)
    acc = float(np.mean(np.asarray(model.predict_classes(test.x)) == test.y))
    assert acc == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert f"epoch {best}, kept by early stopping" in r.stdout


def test_learning_curves_title_and_marker_describe_the_kept_epoch(stopped, figures):
    out, _ = stopped
    m = json.loads((out / "metrics.json").read_text())
    plot.learning_curves(m["history"], str(out / "c.png"), "t")
    fig = figures[-1]
    for ax in fig.axes:
        labels = ax.get_legend_handles_labels()[1]
        assert f"epoch {m['best_epoch']}: kept by early stopping" in labels
        assert {"train loss", "validation loss", "test loss"} & set(labels) or \
            {"train accuracy", "validation accuracy", "test accuracy"} <= set(labels)


def test_fit_returns_the_state_of_the_best_epoch():
    from fnmlp import data

    ds = data.TOY_SETS["moons"](n=200, seed=0)
    model = serial(Dense(32), Tanh(), Dense(2))
    res = fnmlp.fit(model.init_params(jax.random.key(0), 2), ds.x, ds.y, model=model,
                    epochs=40, batch_size=16, optimizer="adam", learning_rate=0.05,
                    validation_split=0.3, patience=1, verbose=False)
    assert res.best_epoch < len(res.history) <= 40
    assert int(res.best_state.epoch) == res.best_epoch
    for a, b in zip(jax.tree.leaves(res.best_state.params), jax.tree.leaves(res.params)):
        np.testing.assert_array_equal(a, b)
    assert [r["epoch"] for r in res.history if r.get("restored")] == [res.best_epoch]


# ----------------------------------------------------------------------------- resume


def test_resume_refuses_a_changed_epochs_under_cosine(tmp_path):
    args = [*TOY, "--schedule", "cosine", "--quiet", "--out", str(tmp_path)]
    _run("train_toy.py", *args, "--epochs", "2")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["history"][-1]["learning_rate"] < 0.01 * 0.01  # near 0 at its horizon
    r = _run("train_toy.py", *args, "--epochs", "3", "--resume", check=False)
    _one_line_exit_2(r, "would restart the decay")
    r = _run("train_toy.py", *args, "--epochs", "2", "--resume")  # the same horizon: fine
    assert "nothing to train" in r.stderr


# ----------------------------------------------------------------------------- 3. weights


def test_history_records_each_dense_layers_max_abs_and_norm():
    from fnmlp import data

    ds = data.TOY_SETS["blobs"](n=120, seed=0)
    model = serial(Dense(16), Relu(), Dropout(0.1), Dense(8), Tanh(), Dense(int(ds.y.max()) + 1))
    res = fnmlp.fit(model.init_params(jax.random.key(0), 2), ds.x, ds.y, model=model,
                    epochs=2, batch_size=16, optimizer="adam", learning_rate=0.01,
                    verbose=False)
    last = res.history[-1]
    ws = [np.asarray(p["w"], np.float64) for p in res.params]  # the witness: numpy
    assert len(last["weight_max_abs"]) == len(last["weight_norm"]) == 3
    np.testing.assert_allclose(last["weight_max_abs"], [np.abs(w).max() for w in ws], rtol=1e-6)
    np.testing.assert_allclose(last["weight_norm"], [np.linalg.norm(w) for w in ws], rtol=1e-5)
    assert res.history[0]["weight_norm"] != last["weight_norm"]


def test_weight_stats_add_no_compile_per_epoch():
    from conftest import count_compiles

    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    params = fnmlp.init_mlp(jax.random.key(0), [3, 4, 2])
    fnmlp.fit(params, x, y, epochs=1, batch_size=16, verbose=False)  # warm
    with count_compiles("epoch") as compiles:
        fnmlp.fit(params, x, y, epochs=3, batch_size=16, verbose=False)
    assert len(compiles) <= 1


def _wd_args(optimizer, wd):
    return argparse.Namespace(optimizer=optimizer, lr=0.1, weight_decay=wd, schedule="constant",
                              epochs=1, batch_size=1)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_weight_decay_is_l2_for_sgd_and_momentum(optimizer):
    p = [{"w": jnp.array([[2.0]]), "b": jnp.array([0.0])}]
    g = [{"w": jnp.array([[0.5]]), "b": jnp.array([0.0])}]
    opt = cli.make_optimizer(_wd_args(optimizer, 0.1), 1)
    u, _ = opt.update(g, opt.init(p), p)
    # first step: PyTorch's g + wd * p, momentum buffer = that gradient
    assert float(u[0]["w"][0, 0]) == pytest.approx(-0.1 * (0.5 + 0.1 * 2.0), rel=1e-6)


def test_weight_decay_is_decoupled_for_adamw_with_pytorchs_default():
    p = [{"w": jnp.array([[2.0]]), "b": jnp.array([0.0])}]
    g = [{"w": jnp.array([[0.5]]), "b": jnp.array([0.0])}]
    for wd, want in ((None, 0.01), (0.1, 0.1), (0.0, 0.0)):
        opt = cli.make_optimizer(_wd_args("adamw", wd), 1)
        u, _ = opt.update(g, opt.init(p), p)
        # AdamW's first step: -lr * (m_hat / (sqrt(v_hat) + eps)) - lr * wd * p = -lr - lr wd p
        assert float(u[0]["w"][0, 0]) == pytest.approx(-0.1 * (1 + want * 2.0), rel=1e-5)


def test_weight_decay_flag_in_config_and_bad_values(tmp_path):
    _run("train_toy.py", *TOY, "--epochs", "1", "--quiet", "--optimizer", "sgd",
         "--weight-decay", "0.001", "--out", str(tmp_path))
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["weight_decay"] == 0.001
    r = _run("train_toy.py", *TOY, "--weight-decay", "-1", "--out", str(tmp_path), check=False)
    _one_line_exit_2(r, "--weight-decay: must be a finite number >= 0")


# ----------------------------------------------------------------------------- 7. pictures


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plots make, kept open (plt.close is intercepted) to inspect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = []
    real = plt.close

    def keep(fig=None):
        kept.append(fig)

    monkeypatch.setattr(plt, "close", keep)
    yield kept
    for f in kept:
        real(f)


def _overlaps_a_curve(fig, legend):
    """Whether any plotted point of any axes falls inside the legend's box (pixels)."""
    fig.canvas.draw()
    box = legend.get_window_extent()
    for ax in fig.axes:
        for line in ax.get_lines():
            xy = ax.transData.transform(np.asarray(line.get_xydata(), float))
            inside = ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0)
                      & (xy[:, 1] <= box.y1))
            if inside.any():
                return True
    return False


def _population_history(k=8, epochs=3):
    rng = np.random.default_rng(0)
    return [[{"epoch": e + 1, "train_loss": float(rng.uniform(0.1, 1)),
              "val_loss": float(rng.uniform(0.1, 1)), "val_accuracy": float(rng.uniform(0.8, 1))}
             for e in range(epochs)] for _ in range(k)]


def test_sweep_png_integer_epochs_named_test_and_a_legend_clear_of_the_curves(tmp_path,
                                                                               figures):
    hist = _population_history()
    plot.population_curves(hist, [f"#{k} lr {k}e-3 seed 0" for k in range(8)],
                           str(tmp_path / "s.png"), "title", best=2)
    fig = figures[-1]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["training loss per epoch", "test loss per epoch",
                      "test accuracy per epoch"]
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1 and not _overlaps_a_curve(fig, legends[0])


def test_sweep_with_a_validation_split_names_validation(tmp_path, figures):
    plot.population_curves(_population_history(3, 2), ["a", "b", "c"], str(tmp_path / "s.png"),
                           held="validation")
    assert [ax.get_title() for ax in figures[-1].axes][1:] == [
        "validation loss per epoch", "validation accuracy per epoch"]


def test_regression_fit_legend_says_what_each_thing_is(tmp_path, figures):
    x = np.linspace(-1, 1, 50)[:, None]
    plot.regression_fit(x, np.sin(3 * x), lambda g: np.sin(3 * g), str(tmp_path / "f.png"))
    labels = figures[-1].axes[0].get_legend_handles_labels()[1]
    assert labels == ["data (noisy samples)", "the network's prediction"]
    plot.regression_fit(x, np.hstack([x, -x]), lambda g: np.hstack([g, -g]),
                        str(tmp_path / "f2.png"))
    labels = figures[-1].axes[0].get_legend_handles_labels()[1]
    assert "output 1: the network's prediction" in labels and "prediction 0" not in labels


def test_weight_norms_png_one_curve_per_layer_from_epoch_0(tmp_path, figures):
    hist = [{"epoch": e, "weight_max_abs": [e, 2 * e], "weight_norm": [3 * e, e]}
            for e in (1, 2, 3)]
    plot.weight_norms(hist, str(tmp_path / "w.png"), "t",
                      {"weight_max_abs": [0.5, 0.5], "weight_norm": [1, 1]})
    fig = figures[-1]
    ax_max, ax_norm = fig.axes
    assert [line.get_label() for line in ax_max.get_lines()] == ["Dense 1", "Dense 2 (output)"]
    np.testing.assert_array_equal(ax_max.get_lines()[1].get_xydata(),
                                  [[0, 0.5], [1, 2], [2, 4], [3, 6]])
    assert ax_max.get_xlabel() == "epoch" and "max |w|" in ax_max.get_ylabel()
    assert not _overlaps_a_curve(fig, ax_norm.get_legend())


def test_train_toy_prints_every_10th_epoch_and_the_last(tmp_path):
    r = _run("train_toy.py", *TOY, "--epochs", "25", "--hidden", "8", "--out", str(tmp_path))
    shown = [int(ln.split()[1].split("/")[0]) for ln in r.stderr.splitlines()
             if ln.startswith("epoch ")]
    assert shown == [1, 10, 20, 25]
    for png in ("weight_norms.png", "loss_curve.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_ensemble_draws_members_beside_the_ensemble(tmp_path):
    from test_data import _write_mnist

    (tmp_path / "idx").mkdir()
    _write_mnist(tmp_path / "idx", n_train=128, n_test=64)
    out = tmp_path / "ens"
    _run("train_mnist.py", "--mnist-dir", str(tmp_path / "idx"), "--epochs", "1",
         "--hidden", "8", "--batch-size", "32", "--ensemble", "3", "--quiet", "--out", str(out))
    from test_scripts import _assert_real_png

    _assert_real_png(out / "ensemble.png")
    _assert_real_png(out / "sweep.png")


def test_ensemble_bars_show_every_member_and_the_ensemble(tmp_path, figures):
    plot.ensemble_bars([0.90, 0.91, 0.92], 0.95, str(tmp_path / "e.png"), "t",
                       ["seed 0", "seed 1", "seed 2"])
    ax = figures[-1].axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.90, 0.91, 0.92, 0.95])
    assert [t.get_text() for t in ax.get_xticklabels()][-1].startswith("ensemble")
    assert ax.get_ylabel() == "test accuracy"


# ----------------------------------------------------------------------------- 4. compare


def test_parse_arch():
    from fnmlp.lab import parse_arch

    assert parse_arch("0") == ((), ("relu",), (0.0,))
    assert parse_arch("256,128:tanh,relu") == ((256, 128), ("tanh", "relu"), (0.0,))
    assert parse_arch("64:sigmoid:0.2", "tanh").name == "64 sigmoid drop 0.2"
    for bad, needle in (("256,x", "widths must be positive"), ("64:swish", "not an activation"),
                        ("64,64:tanh,relu,relu", "3 activations for 2 hidden"),
                        ("64:relu:1.5", "drop probabilities")):
        with pytest.raises(ValueError, match=needle):
            parse_arch(bad)


def test_compare_py_trains_each_architecture_and_draws_one_chart(tmp_path):
    r = _run("compare.py", "--dataset", "moons", "--n", "200", "--arch", "0", "--arch",
             "16,16:tanh,relu", "--epochs", "3", "--batch-size", "16", "--lr", "0.01",
             "--val-split", "0.2", "--out", str(tmp_path))
    m = json.loads((tmp_path / "compare.json").read_text())
    names = [run["name"] for run in m["runs"]]
    assert names == ["no hidden layer", "16-16 tanh,relu"]
    for run in m["runs"]:
        assert [h["epoch"] for h in run["history"]] == [1, 2, 3]
        assert all("val_accuracy" in h and "test_accuracy" not in h for h in run["history"])
        assert 0 <= run["test_accuracy"] <= 1
    # the perceptron has one weight matrix, the other three
    assert [len(run["history"][0]["weight_norm"]) for run in m["runs"]] == [1, 3]
    assert "no hidden layer" in r.stdout and (tmp_path / "compare.png").stat().st_size > 20_000
    bad = _run("compare.py", "--dataset", "moons", "--arch", "16:swish", "--out", str(tmp_path),
               check=False)
    _one_line_exit_2(bad, "'swish' is not an activation")


def test_compare_chart_legend_beside_the_curves(tmp_path, figures):
    hist = [{"epoch": e, "train_accuracy": 0.5 + e / 20, "val_accuracy": 0.5 + e / 25}
            for e in range(1, 13)]
    plot.compare_curves([("a", hist), ("b", hist[::-1])], str(tmp_path / "c.png"), "t")
    fig = figures[-1]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.get_legend_handles_labels()[1] == ["a: validation", "a: train", "b: validation",
                                                 "b: train"]
    assert not _overlaps_a_curve(fig, ax.get_legend())


def test_sweep_with_val_split_ranks_on_validation_and_reports_test(tmp_path):
    from test_data import _write_mnist

    (tmp_path / "idx").mkdir()
    _write_mnist(tmp_path / "idx", n_train=160, n_test=64)
    out = tmp_path / "sweep"
    r = _run("train_mnist.py", "--mnist-dir", str(tmp_path / "idx"), "--epochs", "2",
             "--hidden", "8", "--batch-size", "32", "--sweep", "lr=1e-3,3e-2", "--val-split",
             "0.25", "--quiet", "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["ranked_by"] == "val_loss" and "(by val_loss)" in r.stdout
    rows = {row["member"]: row for row in m["members"]}
    assert m["best"] == min(rows, key=lambda k: rows[k]["val_loss"])
    assert all(0 <= row["test_accuracy"] <= 1 for row in rows.values())
    member = json.loads((out / "members" / "0" / "metrics.json").read_text())
    assert "val_loss" in member["history"][0] and "test_loss" not in member["history"][0]
