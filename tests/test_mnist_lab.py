"""The MNIST lab as a user lives it: train_mnist.py's pictures and per-epoch test metrics,
a checkpoint that carries its model, load_model/predict_*, and predict.py on a digit drawn
as a PNG (the model trained here on drawn strokes, since MNIST itself is not offline)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO
from test_data import _write_mnist
from test_scripts import _assert_real_png

import fnmlp
from fnmlp.data.images import mnist_from_grey, mnist_from_image
from fnmlp.inference import model_config

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def _draw(digit: str, size=120, jitter=(0, 0), width=10, dark_on_light=True):
    """A digit drawn with strokes, as a person would on a canvas: [size, size] grey."""
    ink, paper = (0, 255) if dark_on_light else (255, 0)
    img = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(img)
    s, (dx, dy) = size / 100, jitter
    def p(x, y):  # noqa: E306
        return (x * s + dx, y * s + dy)
    if digit == "1":
        d.line([p(50, 15), p(50, 85)], fill=ink, width=width)
        d.line([p(35, 30), p(50, 15)], fill=ink, width=width)
    elif digit == "7":
        d.line([p(25, 18), p(75, 18)], fill=ink, width=width)
        d.line([p(75, 18), p(40, 85)], fill=ink, width=width)
    else:  # "0"
        d.ellipse([p(28, 12), p(72, 88)], outline=ink, width=width)
    return img


def test_a_drawn_picture_follows_mnists_convention(tmp_path):
    path = tmp_path / "seven.png"
    _draw("7", size=300, jitter=(40, -20), width=24).save(path)  # off-centre, dark on light
    x = mnist_from_image(path).reshape(28, 28)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() == pytest.approx(1, abs=0.02)
    assert x[0].max() == 0 and x[:, 0].max() == 0  # black background, white ink
    rows, cols = np.nonzero(x > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # the 20x20 box
    cy = (np.arange(28)[:, None] * x).sum() / x.sum()
    cx = (np.arange(28)[None, :] * x).sum() / x.sum()
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1  # centred by mass
    light = tmp_path / "seven_light.png"  # the same digit, light on dark: the same input
    _draw("7", size=300, jitter=(40, -20), width=24, dark_on_light=False).save(light)
    assert np.abs(mnist_from_image(light) - x.reshape(784)).max() < 0.05
    with pytest.raises(ValueError, match="no digit found"):
        mnist_from_grey(np.ones((50, 50)), "blank")


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory):
    """A model trained on 300 drawn 0/1/7s (jittered, various strokes), saved as the
    scripts save it."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(300):
        digit = "017"[i % 3]
        img = _draw(digit, size=int(rng.integers(80, 200)), width=int(rng.integers(6, 18)),
                    jitter=tuple(rng.integers(-15, 15, 2)), dark_on_light=bool(i % 2))
        xs.append(mnist_from_grey(np.asarray(img, np.float32) / 255))
        ys.append(i % 3)
    x, y = np.stack(xs), np.array(ys)
    params = fnmlp.init_mlp(jax.random.key(0), [784, 32, 3])
    result = fnmlp.fit(params, x, y, epochs=15, batch_size=32, optimizer="adam",
                       learning_rate=3e-3, verbose=False)
    path = tmp_path_factory.mktemp("model") / "checkpoint.npz"
    fnmlp.save_checkpoint(path, result.state, model_config(
        [784, 32, 3], "relu", "softmax_cross_entropy", input={"kind": "mnist"}))
    return path, x, y


def test_load_model_carries_its_config(digit_model):
    path, x, y = digit_model
    model = fnmlp.load_model(path)
    assert model.activation == "relu" and model.config["sizes"] == [784, 32, 3]
    proba = np.asarray(model.predict_proba(x[:20]))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    classes = np.asarray(model.predict_classes(x))
    np.testing.assert_array_equal(classes, proba.argmax(1) if len(x) == 20 else
                                  np.asarray(fnmlp.predict(model.params, x)).argmax(1))
    assert (classes == y).mean() > 0.95
    # the free functions need the activation; a model cannot be run with the wrong one
    np.testing.assert_array_equal(
        np.asarray(fnmlp.predict_classes(model.params, x, "relu")), classes)


def test_load_model_refuses_a_checkpoint_without_its_config(tmp_path):
    params = fnmlp.init_mlp(jax.random.key(0), [2, 3])
    fnmlp.save_checkpoint(tmp_path / "c.npz", params)
    with pytest.raises(ValueError, match=r"config lacks \['sizes', 'activation', 'loss'\]"):
        fnmlp.load_model(tmp_path / "c.npz")


def _predict(*args):
    return subprocess.run([sys.executable, f"{REPO}/scripts/predict.py", *args],
                          capture_output=True, text=True, timeout=120)


def test_predict_py_classifies_digits_drawn_as_pngs(digit_model, tmp_path):
    path, _, _ = digit_model
    pngs = []
    for digit in "017":
        pngs.append(tmp_path / f"my_{digit}.png")
        _draw(digit, size=256, width=20, jitter=(10, 5)).convert("RGB").save(pngs[-1])
    r = _predict("--checkpoint", str(path), *map(str, pngs), "--json")
    assert r.returncode == 0, r.stderr
    outs = json.loads(r.stdout)["predictions"]
    assert [o["class"] for o in outs] == [0, 1, 2]  # the model's classes are 0, 1, 7
    for out in outs:
        assert len(out["top"]) == 3 and out["top"][0][1] > 0.5
        assert sum(p for _, p in out["top"]) <= 1 + 1e-6


def test_predict_py_reads_npy_and_idx(digit_model, tmp_path):
    path, x, y = digit_model
    np.save(tmp_path / "batch.npy", (x[:4] * 255).astype(np.uint8).reshape(4, 28, 28))
    fnmlp.data.write_idx(tmp_path / "imgs-idx3-ubyte", (x[:3] * 255).astype(np.uint8)
                         .reshape(3, 28, 28))
    r = _predict("--checkpoint", str(path), str(tmp_path / "batch.npy"),
                 str(tmp_path / "imgs-idx3-ubyte"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[0].startswith(f"{tmp_path / 'batch.npy'}[0]: ")
    got = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert got == [*y[:4].tolist(), *y[:3].tolist()]


def test_predict_py_bad_input_is_exit_2_and_one_line(digit_model, tmp_path):
    path, _, _ = digit_model
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    np.save(tmp_path / "wide.npy", np.zeros((2, 100)))
    toy, reg = tmp_path / "toy", tmp_path / "reg"  # checkpoints as the scripts write them
    for folder, sizes, loss in ((toy, [2, 8, 2], "softmax_cross_entropy"),
                                (reg, [1, 8, 1], "mse")):
        params = fnmlp.init_mlp(jax.random.key(0), sizes, "tanh")
        fnmlp.save_checkpoint(folder / "checkpoint.npz", fnmlp.init_state(params, fnmlp.adam()),
                              model_config(sizes, "tanh", loss,
                                           input={"kind": "features", "width": sizes[0]}))
    png = tmp_path / "d.png"
    _draw("7").save(png)
    cases = [
        (["--checkpoint", str(path), str(tmp_path / "missing.png")], "no such file"),
        (["--checkpoint", str(path), str(not_image)], "not an image"),
        (["--checkpoint", str(path), str(tmp_path / "wide.npy")], "width 784"),
        (["--checkpoint", str(toy / "checkpoint.npz"), str(png)], "pictures are for MNIST"),
        (["--checkpoint", str(reg / "checkpoint.npz"), str(png)], "loss 'mse'"),
        (["--checkpoint", str(tmp_path / "none.npz"), str(png)], "no such file"),
    ]
    for args, needle in cases:
        r = _predict(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr


def test_train_mnist_writes_the_pictures_and_test_metrics_each_epoch(tmp_path):
    (tmp_path / "idx").mkdir()
    _write_mnist(tmp_path / "idx", n_train=256, n_test=64)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, f"{REPO}/scripts/train_mnist.py", "--mnist-dir",
                        str(tmp_path / "idx"), "--epochs", "3", "--hidden", "16", "--out",
                        str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["history"]) == 3
    for rec in m["history"]:
        assert 0 <= rec["test_accuracy"] <= 1 and rec["test_loss"] > 0
    assert m["history"][-1]["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert m["config"]["input"]["kind"] == "mnist" and m["config"]["schedule"] == "cosine"
    for png in ("curves.png", "confusion_matrix.png", "predictions.png", "weights.png"):
        _assert_real_png(out / png)
    model = fnmlp.load_model(out / "checkpoint.npz")
    assert model.config["sizes"] == [784, 16, 10] and model.activation == "relu"


def test_predict_py_photos_warnings_save_input_and_one_bad_file(digit_model, tmp_path):
    """A batch with one bad file: its line on stderr, the others answered, exit 2; a
    doubtful picture's warning on stderr and in --json; --save-input writes what the model
    sees, which is what the library computes."""
    from PIL import Image as PILImage

    path, _, _ = digit_model
    good = tmp_path / "seven.png"
    _draw("7", size=256, width=20).save(good)
    two = tmp_path / "two.png"  # two digits side by side: doubtful
    pair = np.concatenate([np.asarray(_draw("1", 200, width=16)),
                           np.asarray(_draw("0", 200, width=16))], axis=1)
    PILImage.fromarray(pair).save(two)
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    saved = tmp_path / "seen"
    r = _predict("--checkpoint", str(path), str(good), str(bad), str(two), "--json",
                 "--save-input", str(saved))
    assert r.returncode == 2, r.stderr
    out = json.loads(r.stdout)
    assert [o["input"] for o in out["predictions"]] == [str(good), str(two)]
    assert out["predictions"][0]["class"] == 2 and out["predictions"][0]["warnings"] == []
    assert any("large ink components" in w for w in out["predictions"][1]["warnings"])
    assert out["failed"][0]["input"] == str(bad) and "not an image" in out["failed"][0]["error"]
    err = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}: not an image") for line in err)
    assert any(line.startswith(f"{two}: warning: 2 large ink components") for line in err)
    seen = PILImage.open(saved / "seven.png.input.png")
    assert seen.size == (280, 280)
    small = np.asarray(seen, np.float32)[::10, ::10] / 255  # [28, 28]
    np.testing.assert_allclose(small.reshape(784), mnist_from_image(good), atol=1 / 255)
