"""fnmlp.cli's functions in this process (the scripts themselves run in
tests/test_scripts.py): the one architecture grammar and its sugar, the optimizer the flags
build (--weight-decay on weight matrices only), --class-weight, the lab's --arch, what
run() stands on in the library (early stopping, weight statistics, checkpoints), and the
pictures of fnmlp.plot (titles, labelled axes, legends clear of the curves)."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp import cli, plot
from fnmlp.layers import Dense, Dropout, LayerNorm, Relu, Tanh, serial


def _parse(*flags, hidden="32", activation="tanh"):
    return cli.base_parser("t", hidden=hidden, activation=activation, optimizer="adam",
                           lr=0.01, batch_size=32, epochs=2, out="unused").parse_args(
        list(flags))


# ----------------------------------------------------------------------------- the grammar


def test_hidden_is_sugar_for_layers_and_both_are_fnmlp_mlp():
    a = cli.build_model(_parse("--hidden", "16", "--activation", "relu"), 2, 3)
    b = cli.build_model(_parse("--layers", "dense:16,relu"), 2, 3)
    want = serial(Dense(16), Relu(), Dense(3), in_features=2)
    assert a == b == want == fnmlp.mlp([2, 16, 3], "relu") and hash(a) == hash(want)
    assert all(c.get("kernel_init", None) is None for c in a.to_config()["layers"])
    # per-layer activations and dropout
    a = cli.build_model(_parse("--hidden", "8,4", "--activation", "tanh,relu", "--dropout",
                               "0.2"), 5, 2)
    b = cli.build_model(_parse("--layers", "dense:8,tanh,dropout:0.2,dense:4,relu,dropout:0.2"),
                        5, 2)
    assert a == b == fnmlp.mlp([5, 8, 4, 2], ("tanh", "relu"), dropout=0.2)
    # what only --layers says
    c = cli.build_model(_parse("--layers", "layernorm,dense:4,relu"), 7, 2)
    assert c == serial(LayerNorm(), Dense(4), Relu(), Dense(2), in_features=7)
    # compare.py's --arch goes through the same builder
    from fnmlp.cli.compare import build, parse_arch

    assert build(parse_arch("16"), 2, 3) == fnmlp.mlp([2, 16, 3], "relu")
    assert build(parse_arch("8,4:tanh,relu:0.2"), 5, 2) == a
    # equal descriptions, equal params
    pa, pb = a.init_params(jax.random.key(3)), b.init_params(jax.random.key(3))
    for u, v in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_array_equal(u, v)


def test_the_flags_are_read_once_into_a_frozen_run_config():
    """cli.RunConfig: the hidden layers of the one grammar (the sugar and --layers alike),
    the optimizer's settings resolved (adamw's PyTorch weight decay, --lr given or not);
    the model built from it is the model the flags describe."""
    import dataclasses

    a = cli.RunConfig.from_args(_parse("--hidden", "8,4", "--activation", "tanh,relu",
                                       "--dropout", "0.2"))
    b = cli.RunConfig.from_args(_parse("--layers",
                                       "dense:8,tanh,dropout:0.2,dense:4,relu,dropout:0.2"))
    assert a.hidden == b.hidden and a == b
    assert a.model(5, 2) == fnmlp.mlp([5, 8, 4, 2], ("tanh", "relu"), dropout=0.2)
    assert cli.RunConfig.from_args(a) is a
    assert not a.lr_given and a.lr == 0.01 and a.weight_decay == 0.0
    c = cli.RunConfig.from_args(_parse("--optimizer", "adamw", "--lr", "0.01"))
    assert c.lr_given and c.weight_decay == 0.01 and c.optimizer == "adamw"
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0
    assert c.replace(lr=0.5).lr == 0.5 and c.lr == 0.01
    model, config = cli.model_and_config(c, np.zeros((4, 3), np.float32), np.arange(4) % 2,
                                         "softmax_cross_entropy", "toy")
    assert model == c.model(3, 2) and config["model"] == model.to_config()
    assert {"model", "loss", "input", "optimizer", "epochs"} <= set(config)


def test_run_config_is_what_load_model_needs(tmp_path):
    args = _parse("--layers", "dense:6,relu")
    x = np.zeros((10, 3), np.float32)
    y = np.arange(10) % 4
    sizes, config = cli.run_config(args, x, y, "softmax_cross_entropy", "toy")
    assert sizes == [3, 6, 4] and config["input"] == {"kind": "features", "width": 3}
    assert not {"sizes", "activation", "dropout"} & set(config)  # the network once: model
    assert config["loss"] == "softmax_cross_entropy"
    model = cli.build_model(args, 3, 4)
    assert config["model"] == model.to_config()
    state = fnmlp.init_state(model.init_params(jax.random.key(0)), fnmlp.adam(0.1))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, config)
    saved = fnmlp.load_model(tmp_path / "c.npz")
    assert saved.model == model
    for u, v in zip(jax.tree.leaves(saved.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(u, v)


# ----------------------------------------------------------------------------- --weight-decay


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


@pytest.mark.parametrize("optimizer", sorted(fnmlp.optim.OPTIMIZERS))
def test_weight_decay_leaves_vectors_untouched(optimizer):
    """Under zero gradients only decay moves a leaf: the matrix moves toward 0, the bias
    and a LayerNorm scale (1-D) do not move at all (fnmlp.optim.matrices_only)."""
    p = [{"scale": jnp.full((3,), 2.0), "bias": jnp.full((3,), 2.0)},
         {"w": jnp.full((3, 2), 2.0), "b": jnp.full((2,), 2.0)}]
    zeros = jax.tree.map(jnp.zeros_like, p)
    opt = cli.make_optimizer(_wd_args(optimizer, 0.1), 1)
    s = opt.init(p)
    for _ in range(2):
        u, s = opt.update(zeros, s, p)
        p = fnmlp.optim.apply_updates(p, u)
    np.testing.assert_array_equal(p[0]["scale"], 2.0)
    np.testing.assert_array_equal(p[0]["bias"], 2.0)
    np.testing.assert_array_equal(p[1]["b"], 2.0)
    assert float(jnp.max(p[1]["w"])) < 2.0  # the matrix is decayed


# ----------------------------------------------------------------------------- --class-weight


def test_class_weight_flag_parsing():
    assert cli.parse_class_weight("balanced") == "balanced"
    assert cli.parse_class_weight("0=1,1=19") == {0: 1.0, 1: 19.0}
    for bad in ("0=1,0=2", "a=1", "0=-1", "0=inf", "heavy", "0:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_class_weight(bad)


def _run_toy(*flags):
    """What scripts/train_toy.py runs, in this process (the imports and compiles shared)."""
    from fnmlp import data

    args = _parse(*flags, hidden="8")
    ds = data.make_imbalanced(400, seed=0)
    train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=0)
    cli.run(args, members=cli.members_from_args(args), train=train, test=test,
            loss="softmax_cross_entropy", dataset="imbalanced")


def test_scripts_class_weight(tmp_path):
    from conftest import run_script

    _run_toy("--class-weight", "0=1,1=19", "--quiet", "--out", str(tmp_path / "one"))
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert m["config"]["class_weight"] == {"0": 1.0, "1": 19.0}
    cm = np.asarray(m["test_confusion_matrix"])
    assert cm.sum() == 100 and len(m["test_recall"]) == 2
    assert m["test_recall"][1] == pytest.approx(cm[1, 1] / cm[1].sum())
    assert m["test_balanced_accuracy"] == pytest.approx(np.mean(np.diag(cm) / cm.sum(1)))
    _run_toy("--class-weight", "balanced", "--sweep", "lr=0.01,0.02", "--quiet", "--out",
             str(tmp_path / "pop"))
    pop = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert pop["config"]["class_weight"] == "balanced"
    assert all("test_balanced_accuracy" in row for row in pop["members"])
    member = json.loads((tmp_path / "pop" / "members" / "1" / "metrics.json").read_text())
    assert len(member["test_precision"]) == 2
    r = run_script("train_regression.py", "--class-weight", "balanced", "--epochs", "1",
                   "--out", tmp_path / "reg", check=False)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "--class-weight needs a classification loss" in r.stderr


def _rewrite_config(path, change):
    """The checkpoint at ``path`` with its config replaced by ``change(config)``: a file
    as an earlier version wrote it."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["config"] = change(meta["config"])
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("era", ["sizes+model", "sizes+activation"])
def test_resume_of_a_checkpoint_in_an_earlier_format(tmp_path, era, capsys):
    """A checkpoint written before issue 42 (``sizes``, ``activation``, ``dropout`` beside
    ``model``; or before issue 27, ``sizes`` and ``activation`` alone) resumes, loads and
    predicts as it did; the checkpoint written on resuming has today's keys."""
    from fnmlp import data

    def old(config):
        d = config["input"]["width"]
        widths = [d, *(c["features"] for c in config["model"]["layers"]
                       if c["type"] == "Dense")]
        out = {k: v for k, v in config.items() if k != "input"}
        out.update(sizes=widths, activation="tanh", dropout=[0.0])
        if era == "sizes+activation":
            del out["model"]
        return out

    ds = data.make_moons(200, seed=0)
    train, test = data.train_test_split(ds.x, ds.y, 0.25, seed=0)
    flags = ("--epochs", "1", "--out", str(tmp_path), "--quiet", "--optimizer", "sgd")
    args = _parse(*flags, hidden="8")
    cli.run(args, train=train, test=test, loss="softmax_cross_entropy", dataset="moons")
    ckpt = tmp_path / "checkpoint.npz"
    before = fnmlp.load_model(ckpt)
    _rewrite_config(ckpt, old)
    meta = fnmlp.io.read_checkpoint_meta(ckpt)["config"]
    assert "sizes" in meta and "input" not in meta and ("model" in meta) == (era != "sizes"
                                                                             "+activation")
    loaded = fnmlp.load_model(ckpt)  # the earlier format: the same model, the same answers
    assert loaded.model == before.model and loaded.input_width == 2
    np.testing.assert_array_equal(np.asarray(loaded.predict(test.x)),
                                  np.asarray(before.predict(test.x)))
    args = _parse("--epochs", "2", "--out", str(tmp_path), "--quiet", "--optimizer", "sgd",
                  "--resume", hidden="8")
    cli.check_resume_architecture(args, 2, 2)  # the same network: no complaint
    metrics = cli.run(args, train=train, test=test, loss="softmax_cross_entropy",
                      dataset="moons")
    assert "resuming from" in capsys.readouterr().err
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    config = fnmlp.io.read_checkpoint_meta(ckpt)["config"]
    assert not {"sizes", "activation", "dropout"} & set(config)
    assert config["input"] == {"kind": "features", "width": 2}
    assert fnmlp.load_model(ckpt).model == before.model
    wider = _parse("--epochs", "2", "--out", str(tmp_path), "--resume", hidden="9")
    _rewrite_config(ckpt, old)
    with pytest.raises(cli.UsageError, match="holds a 2-8-tanh-2 network; the flags ask for"
                                             " 2-9-tanh-2"):
        cli.check_resume_architecture(wider, 2, 2)


# ----------------------------------------------------------------------------- compare's --arch


def test_parse_arch():
    from fnmlp.cli.compare import parse_arch

    assert parse_arch("0") == ((), ("relu",), (0.0,))
    assert parse_arch("256,128:tanh,relu") == ((256, 128), ("tanh", "relu"), (0.0,))
    assert parse_arch("64:sigmoid:0.2", "tanh").name == "64 sigmoid drop 0.2"
    for bad, needle in (("256,x", "widths must be positive"), ("64:swish", "not an activation"),
                        ("64,64:tanh,relu,relu", "3 activations for 2 hidden"),
                        ("64:relu:1.5", "drop probabilities")):
        with pytest.raises(ValueError, match=needle):
            parse_arch(bad)


# ----------------------------------------------------------------------------- what run() uses


def test_fit_returns_the_state_of_the_best_epoch():
    from fnmlp import data

    ds = data.TOY_SETS["moons"](n=200, seed=0)
    model = serial(Dense(32), Tanh(), Dense(2))
    res = fnmlp.fit(model, model.init_params(jax.random.key(0), 2), ds.x, ds.y,
                    epochs=40, batch_size=16, optimizer="adam", learning_rate=0.05,
                    validation_split=0.3, patience=1, verbose=False)
    assert res.best_epoch < len(res.history) <= 40
    assert int(res.best_state.epoch) == res.best_epoch
    for a, b in zip(jax.tree.leaves(res.best_state.params), jax.tree.leaves(res.params)):
        np.testing.assert_array_equal(a, b)
    assert [r["epoch"] for r in res.history if r.get("restored")] == [res.best_epoch]
    # the bookkeeping travels in the state, so a checkpoint of it can be resumed
    assert bool(res.state.early.stopped) and int(res.state.early.best_epoch) == res.best_epoch


def test_resume_template_follows_the_checkpoints_paths(tmp_path):
    """A checkpoint of a run with --patience holds early/...; run()'s load template then
    carries an EarlyStopping of the same structure, and the state loads whole."""
    from fnmlp import data

    ds = data.TOY_SETS["moons"](n=120, seed=0)
    model = fnmlp.mlp([2, 8, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    res = fnmlp.fit(model, params, ds.x, ds.y, epochs=3, batch_size=16, optimizer="adam",
                    learning_rate=0.01, validation_split=0.25, patience=5, verbose=False)
    fnmlp.save_checkpoint(tmp_path / "c.npz", res.state, {})
    paths = fnmlp.io.read_checkpoint_meta(tmp_path / "c.npz")["paths"]
    assert any(p.startswith("early/best/params/") for p in paths)
    fresh = fnmlp.init_state(params, fnmlp.adam(0.01))
    assert cli.resume_template(fresh, ["params/0/w"]) is fresh
    loaded, _ = fnmlp.load_checkpoint(tmp_path / "c.npz", cli.resume_template(fresh, paths))
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(res.state), strict=True):
        np.testing.assert_array_equal(a, b)
    from fnmlp.train.step import monitor_id

    assert int(loaded.early.monitor) == monitor_id("val_loss") and "early/monitor" in paths
    # a checkpoint written before the monitored key was recorded still resumes
    older = res.state._replace(early=res.state.early._replace(monitor=None))
    fnmlp.save_checkpoint(tmp_path / "old.npz", older, {})
    paths = fnmlp.io.read_checkpoint_meta(tmp_path / "old.npz")["paths"]
    assert "early/monitor" not in paths
    loaded, _ = fnmlp.load_checkpoint(tmp_path / "old.npz", cli.resume_template(fresh, paths))
    assert loaded.early.monitor is None and int(loaded.early.best_epoch) == res.best_epoch


def test_history_records_each_dense_layers_max_abs_and_norm():
    from fnmlp import data

    ds = data.TOY_SETS["blobs"](n=120, seed=0)
    model = serial(Dense(16), Relu(), Dropout(0.1), Dense(8), Tanh(), Dense(int(ds.y.max()) + 1))
    res = fnmlp.fit(model, model.init_params(jax.random.key(0), 2), ds.x, ds.y,
                    epochs=2, batch_size=16, optimizer="adam", learning_rate=0.01,
                    verbose=False)
    last = res.history[-1]
    # the witness: numpy, on every 2-D leaf, whatever the layers call them
    ws = [np.asarray(a, np.float64) for a in jax.tree.leaves(res.params) if np.ndim(a) == 2]
    assert len(ws) == 3
    assert len(last["weight_max_abs"]) == len(last["weight_norm"]) == 3
    np.testing.assert_allclose(last["weight_max_abs"], [np.abs(w).max() for w in ws], rtol=1e-6)
    np.testing.assert_allclose(last["weight_norm"], [np.linalg.norm(w) for w in ws], rtol=1e-5)
    assert res.history[0]["weight_norm"] != last["weight_norm"]


def test_weight_stats_add_no_compile_per_epoch():
    from conftest import count_compiles

    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = fnmlp.mlp([3, 4, 2])
    params = model.init_params(jax.random.key(0))
    fnmlp.fit(model, params, x, y, epochs=1, batch_size=16, verbose=False)  # warm
    with count_compiles("epoch") as compiles:
        fnmlp.fit(model, params, x, y, epochs=3, batch_size=16, verbose=False)
    assert len(compiles) <= 1


def test_params_only_template_loads_the_params_of_a_state(tmp_path):
    model = fnmlp.mlp([2, 5, 3])
    params = model.init_params(jax.random.key(0))
    state = fnmlp.init_state(params, fnmlp.adam(0.1))
    fnmlp.save_checkpoint(tmp_path / "c.npz", state, {"note": 1})
    template = model.init_params(jax.random.key(1))
    loaded, config = fnmlp.load_checkpoint(tmp_path / "c.npz", template)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="the checkpoint has 2 layers, the model 3"):
        fnmlp.load_checkpoint(tmp_path / "c.npz",
                              fnmlp.mlp([2, 5, 5, 3]).init_params(jax.random.key(1)))


def test_missing_mnist_message_names_installable_routes(tmp_path):
    from fnmlp.data import MnistUnavailableError, load_mnist_tfds

    with pytest.raises(MnistUnavailableError) as info:
        load_mnist_tfds("train", data_dir=str(tmp_path), download=False)
    msg = str(info.value)
    assert "mnist-build" not in msg and "fnmlp[mnist]" in msg and "no TensorFlow" in msg


# ----------------------------------------------------------------------------- pictures


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


def _titled_and_labelled(fig):
    """Every picture has a title and labelled axes (pictures without axes excepted:
    image grids)."""
    titled = fig._suptitle is not None and fig._suptitle.get_text()
    for ax in fig.axes:
        if not ax.axison or ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), ax
        titled = titled or ax.get_title()
    assert titled


def _population_history(k=8, epochs=3):
    rng = np.random.default_rng(0)
    return [[{"epoch": e + 1, "train_loss": float(rng.uniform(0.1, 1)),
              "val_loss": float(rng.uniform(0.1, 1)), "val_accuracy": float(rng.uniform(0.8, 1))}
             for e in range(epochs)] for _ in range(k)]


def test_learning_curves_title_and_marker_describe_the_kept_epoch(tmp_path, figures):
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 0.5 + abs(e - 3) / 10,
             "test_loss": 0.6 + abs(e - 3) / 10, "train_accuracy": 0.5 + e / 20,
             "val_accuracy": 0.6, "test_accuracy": 0.6} for e in range(1, 7)]
    hist[2]["restored"] = True
    plot.learning_curves(hist, str(tmp_path / "c.png"), "t")
    fig = figures[-1]
    for ax in fig.axes:
        labels = ax.get_legend_handles_labels()[1]
        assert "epoch 3: kept by early stopping" in labels
        assert {"train loss", "validation loss", "test loss"} & set(labels) or \
            {"train accuracy", "validation accuracy", "test accuracy"} <= set(labels)
    _titled_and_labelled(fig)


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
    _titled_and_labelled(fig)


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
    _titled_and_labelled(figures[-1])
    plot.regression_fit(x, np.hstack([x, -x]), lambda g: np.hstack([g, -g]),
                        str(tmp_path / "f2.png"))
    labels = figures[-1].axes[0].get_legend_handles_labels()[1]
    assert "output 1: the network's prediction" in labels and "prediction 0" not in labels


def test_weight_norms_png_one_curve_per_matrix_from_epoch_0(tmp_path, figures):
    hist = [{"epoch": e, "weight_max_abs": [e, 2 * e], "weight_norm": [3 * e, e]}
            for e in (1, 2, 3)]
    plot.weight_norms(hist, str(tmp_path / "w.png"), "t",
                      {"weight_max_abs": [0.5, 0.5], "weight_norm": [1, 1]})
    fig = figures[-1]
    ax_max, ax_norm = fig.axes
    assert [line.get_label() for line in ax_max.get_lines()] == ["matrix 1",
                                                                 "matrix 2 (output)"]
    np.testing.assert_array_equal(ax_max.get_lines()[1].get_xydata(),
                                  [[0, 0.5], [1, 2], [2, 4], [3, 6]])
    assert ax_max.get_xlabel() == "epoch" and "max |w|" in ax_max.get_ylabel()
    assert not _overlaps_a_curve(fig, ax_norm.get_legend())
    _titled_and_labelled(fig)
    plot.weight_norms(hist, str(tmp_path / "w2.png"), "t", shapes=[(784, 64), (64, 10)])
    assert [line.get_label() for line in figures[-1].axes[0].get_lines()] == [
        "matrix 1 (784x64)", "matrix 2 (64x10) (output)"]


def test_ensemble_bars_show_every_member_and_the_ensemble(tmp_path, figures):
    plot.ensemble_bars([0.90, 0.91, 0.92], 0.95, str(tmp_path / "e.png"), "t",
                       ["seed 0", "seed 1", "seed 2"])
    ax = figures[-1].axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.90, 0.91, 0.92, 0.95])
    assert [t.get_text() for t in ax.get_xticklabels()][-1].startswith("ensemble")
    assert ax.get_ylabel() == "test accuracy"
    _titled_and_labelled(figures[-1])


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
    _titled_and_labelled(fig)


def test_confusion_heatmap_and_decision_boundary_are_titled_and_labelled(tmp_path, figures):
    assert not hasattr(plot, "confusion_matrix")  # that name is fnmlp.metrics'
    y = np.array([0, 1, 2, 2, 1, 0])
    plot.confusion_heatmap(y, np.array([0, 1, 1, 2, 1, 0]), str(tmp_path / "cm.png"),
                           n_classes=3)
    _titled_and_labelled(figures[-1])
    x = np.random.default_rng(0).normal(size=(40, 2))
    plot.decision_boundary(lambda g: np.stack([g[:, 0], -g[:, 0]], 1), x, (x[:, 0] < 0) * 1,
                           str(tmp_path / "db.png"), "t")
    _titled_and_labelled(figures[-1])
    plot.loss_curve([{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)],
                    str(tmp_path / "l.png"), "t")
    _titled_and_labelled(figures[-1])


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".svg", b"<?xml"), ("", b"\x89PNG")])
def test_pictures_are_written_in_the_format_their_name_asks_for(tmp_path, suffix, magic):
    """PNG's compression option is given to PNG alone (every picture failed as .pdf and
    .svg when it was passed to all), and a failed write still closes the figure."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = tmp_path / f"l{suffix}"
    plot.loss_curve([{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)], str(path), "t")
    written = path if suffix else tmp_path / "l.png"  # no suffix: matplotlib's png
    assert written.read_bytes().startswith(magic)
    with matplotlib.rc_context({"savefig.format": "pdf"}):  # no suffix: this format
        plot.loss_curve([{"epoch": 1, "train_loss": 1.0}], str(tmp_path / "m"), "t")
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    before = len(plt.get_fignums())
    with pytest.raises(ValueError, match="not supported"):
        plot.loss_curve([{"epoch": 1, "train_loss": 1.0}], str(tmp_path / "l.nosuch"), "t")
    assert len(plt.get_fignums()) == before


# ----------------------------------------------------------------------------- issue 43


def test_flags_are_never_abbreviated():
    """--n is not --no-download (argparse's allow_abbrev is off in the one Parser)."""
    p = cli.Parser(prog="t")
    p.add_argument("--no-download", action="store_true")
    assert p.parse_args(["--no-download"]).no_download
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--no-d"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        _parse("--hid", "8")  # base_parser's --hidden


def test_mnist_files_checked_before_jax_agree_with_the_loader():
    from fnmlp.data.mnist import IDX_FILES

    assert list(cli.MNIST_FILES) == [s for pair in IDX_FILES.values() for s in pair]


def test_mnist_dir_is_checked_for_its_four_files(tmp_path):
    from test_mnist import _write_mnist

    with pytest.raises(cli.UsageError, match="does not exist"):
        cli.check_mnist_dir(str(tmp_path / "nowhere"))
    _write_mnist(tmp_path, n_train=10, n_test=10)
    cli.check_mnist_dir(str(tmp_path))  # the four files, gzipped
    next(tmp_path.glob("t10k-labels*")).unlink()
    with pytest.raises(cli.UsageError, match="no t10k-labels-idx1-ubyte"):
        cli.check_mnist_dir(str(tmp_path))


def test_gradient_norms_are_autodiffs_per_weight_matrix():
    from fnmlp.cli.probe import gradient_norms_fn

    model = fnmlp.mlp([3, 5, 4, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = jnp.arange(16) % 2
    got = gradient_norms_fn(model, "softmax_cross_entropy", x, y)(params)
    g = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y)  # the independent witness
    want = [float(jnp.linalg.norm(layer["w"])) for layer in g]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_the_fixed_batch_leaves_the_validation_examples_out():
    from fnmlp.cli.probe import fixed_batch

    x = np.arange(100, dtype=np.float32)[:, None]
    xb, yb = fixed_batch(x, np.arange(100), seed=3, val_split=0.2, n=1000)
    held = fnmlp.data.train_test_split(x, np.arange(100), 0.2, seed=3)[1].y  # fit's split
    assert len(xb) == 80 and not set(yb.tolist()) & set(held.tolist())
    assert np.array_equal(fixed_batch(x, np.arange(100), seed=3, val_split=0.2, n=8)[1],
                          yb[:8])  # the same examples every call


def test_hidden_activations_are_each_hidden_layer_by_hand():
    from fnmlp.cli.probe import hidden_activations, snapshot_epochs, unit_importance

    model = fnmlp.mlp([2, 4, 3, 2], ("tanh", "relu"), dropout=0.5)
    params = model.init_params(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    (n1, h1), (n2, h2) = hidden_activations(model, params, x)
    want1 = np.tanh(x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]))
    want2 = np.maximum(want1 @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"]), 0)
    assert (n1, n2) == ("layer 1 (tanh)", "layer 2 (relu)")
    np.testing.assert_allclose(h1, want1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h2, want2, rtol=1e-5, atol=1e-6)
    imp = unit_importance(model, params)
    np.testing.assert_allclose(imp[1], np.linalg.norm(np.asarray(params[2]["w"]), axis=1))
    assert snapshot_epochs(200) == [0, 1, 2, 6, 14, 34, 83, 200]
    assert snapshot_epochs(1) == [0, 1]


def test_gradient_and_weight_norm_panels_one_curve_per_matrix(tmp_path, figures):
    hist = [{"epoch": e, "weight_max_abs": [1, 2], "weight_norm": [3, 4],
             "grad_norm": [10.0 ** -e, 1.0]} for e in (1, 2, 3)]
    plot.weight_norms(hist, str(tmp_path / "w.png"), "t", grad_at_init=[1.0, 2.0],
                      grad_batch=1024)
    fig = figures[-1]
    ax_grad = fig.axes[2]
    assert ax_grad.get_yscale() == "log" and "1,024" in ax_grad.get_title()
    np.testing.assert_array_equal(ax_grad.get_lines()[0].get_xydata(),
                                  [[0, 1], [1, 0.1], [2, 0.01], [3, 0.001]])
    _titled_and_labelled(fig)
    plot.gradient_norms([("a", hist, [1.0, 2.0]), ("b", hist, None)],
                        str(tmp_path / "g.png"), "t", grad_batch=64)
    fig = figures[-1]
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert len(fig.axes[0].get_lines()[0].get_xydata()) == 4  # epoch 0 drawn
    _titled_and_labelled(fig)


def test_boundaries_hidden_units_and_the_loss_with_accuracy(tmp_path, figures):
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    panels = [(f"epoch {e}", lambda g, e=e: np.stack([g[:, 0] * e, -g[:, 0] * e], 1))
              for e in (0, 1, 2)]
    plot.decision_boundaries(panels, x, y, str(tmp_path / "b.png"), "t")
    fig = figures[-1]
    assert [ax.get_title() for ax in fig.axes] == ["epoch 0", "epoch 1", "epoch 2"]
    _titled_and_labelled(fig)
    # unit 1 varies most over the data (and unit 2 not at all): it is drawn first
    acts = lambda g: np.stack([0.1 * g[:, 0], np.tanh(3 * g[:, 1]), 0 * g[:, 0]], 1)  # noqa: E731
    plot.hidden_units([("layer 1 (tanh)", acts)], x, y, str(tmp_path / "h.png"), n_units=2)
    fig = figures[-1]
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[:2]] == ["unit 1", "unit 0"]
    _titled_and_labelled(fig)
    hist = [{"epoch": e, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 0.5,
             "test_accuracy": 0.6} for e in (1, 2, 3)]
    plot.loss_curve(hist, str(tmp_path / "l.png"), "t")
    fig = figures[-1]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss (log scale)", "accuracy"]
    assert any("below the training loss" in t.get_text() for t in fig.texts)
    _titled_and_labelled(fig)


def test_resume_names_a_data_record_it_cannot_read():
    """A hand-edited config's 'data' that is no dict raised AttributeError."""
    import importlib

    run = importlib.import_module("fnmlp.cli.run")
    now = {"examples": 3, "digest": "abc"}
    assert "its training data ('x'; now 3, abc" in run._difference("data", "x", now)
    assert "its training data (None; now 3" in run._difference("data", None, now)
    assert "(5 examples, digest d; now 3, abc" in run._difference(
        "data", {"examples": 5, "digest": "d"}, now)


def test_resume_names_the_first_layer_where_the_model_differs():
    """A new user's find: --resume with another --hidden printed both model configs whole
    (~450 characters) to diff by eye."""
    from fnmlp.cli.run import _difference

    def cfg(*layers):
        return fnmlp.mlp(list(layers), "tanh").to_config()

    assert _difference("model", cfg(2, 32, 2), cfg(2, 16, 2)) == (
        "model: layer 0 Dense features 32 (now 16)")
    assert _difference("model", cfg(2, 32, 2), fnmlp.mlp([2, 32, 2], "relu").to_config()) == (
        "model: layer 1 Tanh (now Relu)")
    assert _difference("model", cfg(2, 32, 2), cfg(2, 32, 2, 2)) == "model: 3 layers (now 5)"
    # fewer hidden layers: the count first (it named the output layer's width alone)
    assert _difference("model", cfg(2, 16, 8, 2), cfg(2, 16, 2)) == (
        "model: 5 layers (now 3); first at layer 2 Dense features 8 (now 2)")
    assert len(_difference("model", cfg(784, 256, 128, 10), cfg(784, 256, 64, 10))) < 80


def test_ensemble_bars_keep_their_labels_inside_and_say_each_line(tmp_path, figures):
    """A new user's find: at accuracy 1.0 the bars' value labels ran into the subtitle
    (the axis stopped at 1.0), the ensemble's dashed line was not in the legend, and the
    subtitle was cut at the left of a 3-member picture."""
    plot.ensemble_bars([0.94, 1.0, 1.0], 1.0, str(tmp_path / "e.png"), "t",
                       ["lr 0.001\nseed 0", "lr 0.01\nseed 0", "lr 0.01\nseed 1"])
    fig = figures[-1]
    ax = fig.axes[0]
    fig.canvas.draw()
    top = max(t.get_window_extent().y1 for t in ax.texts)  # the value labels
    assert top < ax.get_window_extent().y1 and ax.get_ylim()[1] > 1.0
    assert max(ax.get_yticks()) <= 1.0 + 1e-9  # no accuracy tick above 1
    labels = ax.get_legend().get_texts()
    assert any("the ensemble's level 1.0000" in t.get_text() for t in labels)
    title = ax.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1
    assert [t.get_text() for t in ax.get_xticklabels()][:1] == ["lr 0.001\nseed 0"]


def test_wall_seconds_counts_from_python_in_a_process_a_shell_exec_d_into():
    """A new user's find: 'pip install ... && python scripts/train_toy.py' reported wall
    13.9 s for a 2.3 s script: bash exec's its last command in its own process, whose
    start /proc gives. A process older than fnmlp.cli's import by EXEC_GAP counts from
    the import; a plain start counts from the process (the interpreter included)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    code = ("import time; t = time.perf_counter(); from fnmlp.cli.flags import wall_seconds;"
            " print(wall_seconds(), time.perf_counter() - t)")
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run(["bash", "-c", f"sleep 4; exec {sys.executable} -c '{code}'"],
                       capture_output=True, text=True, env=env, timeout=60)
    wall, since = map(float, r.stdout.split())
    assert 0 <= wall <= since < 1.5, r.stdout  # from the import on: not the 4 s of sleep
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    wall, since = map(float, r.stdout.split())
    assert since <= wall < 3, r.stdout  # the interpreter's start included


def test_a_sweeps_ensemble_bars_name_each_member_by_what_varies(tmp_path, figures):
    """Breakers' finds: a sweep's bars were all labelled 'seed 0/1' (its learning rates
    unnamed) and large seeds printed as 'seed 1e+06' (format :g)."""
    from fnmlp import data

    args = cli.base_parser("t", hidden="8", activation="tanh", optimizer="adam", lr=1e-2,
                           batch_size=32, epochs=2, out=str(tmp_path)).parse_args(
        ["--sweep", "lr=0.01,0.03", "seed=1000000,1000001", "--quiet"])
    train, test = data.make_moons(160, seed=0), data.make_moons(60, seed=1)
    cli.run_population(args, cli.members_from_args(args), train=(train.x, train.y),
                       test=(test.x, test.y), loss="softmax_cross_entropy", dataset="moons")
    bars = [f for f in figures if f.axes and "ensemble" in f.axes[0].get_title()][-1]
    labels = [t.get_text() for t in bars.axes[0].get_xticklabels()]
    assert labels[:2] == ["lr 0.01\nseed 1000000", "lr 0.01\nseed 1000001"], labels
    assert "4 members" in bars.axes[0].get_title()
