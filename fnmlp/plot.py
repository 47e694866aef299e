"""Plots for the scripts: decision boundary, loss curves, regression fit (matplotlib).

matplotlib is an optional extra (``pip install 'fnmlp[plot]'``); it is imported when a
plot is made, with the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'fnmlp[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decision_boundary(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                      y: np.ndarray, path: str, title: str = "", resolution: int = 300) -> None:
    """Colours the plane by ``argmax(predict(grid))`` and scatters ``x`` by label ``y``.

    ``predict`` maps ``[M, 2]`` points to outputs ``[M, C]`` (C == 1: sign decides).
    """
    plt = _plt()
    x = np.asarray(x)
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    out = np.asarray(predict(grid))
    cls = (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else out.argmax(1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(gx, gy, cls.reshape(gx.shape), alpha=0.3, cmap="tab10",
                levels=np.arange(cls.max() + 2) - 0.5, vmin=0, vmax=9)
    pts = ax.scatter(x[:, 0], x[:, 1], c=np.asarray(y), cmap="tab10", vmin=0, vmax=9, s=12,
                     edgecolors="k", linewidths=0.3)
    handles, _ = pts.legend_elements()
    labels = [f"class {int(c)}" for c in np.unique(np.asarray(y))]
    ax.legend(handles, labels, title="points: true class\nshading: predicted",
              loc="best", fontsize=8, title_fontsize=8, framealpha=0.8)
    ax.set_title(title)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scatter_classes(x: np.ndarray, y: np.ndarray, path: str, title: str = "") -> None:
    """The 2D points ``x: [N, 2]`` coloured by their label ``y``."""
    plt = _plt()
    x, y = np.asarray(x), np.asarray(y)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(y):
        ax.scatter(x[y == c, 0], x[y == c, 1], s=14, color=plt.get_cmap("tab10")(int(c)),
                   edgecolors="k", linewidths=0.3, label=f"class {int(c)}")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curve(history: list[dict], path: str, title: str = "") -> None:
    """Training (and validation) loss per epoch, log scale."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    for key, label in (("val_loss", "validation loss"), ("test_loss", "test loss")):
        if history and key in history[0]:
            ax.plot(epochs, [r[key] for r in history], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (log scale)")
    ax.set_title(f"{title}: loss per epoch" if title else "loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def regression_fit(x: np.ndarray, y: np.ndarray, predict: Callable[[Any], Any], path: str,
                   title: str = "") -> None:
    """Data and prediction. 1-D input: a curve per output; otherwise predicted vs true."""
    plt = _plt()
    x, y = np.asarray(x), np.asarray(y).reshape(len(x), -1)
    fig, ax = plt.subplots(figsize=(6, 4))
    if x.shape[1] == 1:
        grid = np.linspace(x.min(), x.max(), 400, dtype=np.float32)[:, None]
        pred = np.asarray(predict(grid))
        for c in range(y.shape[1]):
            ax.scatter(x[:, 0], y[:, c], s=8, alpha=0.5, label=f"data {c}")
            ax.plot(grid[:, 0], pred[:, c], "k-", lw=2, label=f"prediction {c}")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        pred = np.asarray(predict(x.astype(np.float32)))
        for c in range(y.shape[1]):
            ax.scatter(y[:, c], pred[:, c], s=8, alpha=0.5, label=f"output {c}")
        lim = [min(y.min(), pred.min()), max(y.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def learning_curves(history: list[dict], path: str, title: str = "") -> None:
    """Loss (log scale) and accuracy per epoch, train and test side by side.

    Reads ``train_loss``/``train_accuracy`` and, when present, ``test_*`` (or ``val_*``)
    from each record of a ``fit`` history.
    """
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    held = "test" if history and "test_loss" in history[0] else "val"
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_l, "loss", "loss (cross-entropy)"), (ax_a, "accuracy", "accuracy")):
        if history and f"train_{key}" in history[0]:
            ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label=f"train {key}")
        if history and f"{held}_{key}" in history[0]:
            ax.plot(epochs, [r[f"{held}_{key}"] for r in history], "s-", label=f"{held} {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_l.set_yscale("log")
    ax_l.set_title("loss per epoch")
    ax_a.set_title("accuracy per epoch")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path: str, title: str = "",
                     n_classes: int | None = None) -> np.ndarray:
    """Counts of (true, predicted) pairs as a heat map with the numbers written in; the
    diagonal is the correct answers. Returns the ``[C, C]`` matrix."""
    plt = _plt()
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    c = n_classes or int(max(y_true.max(), y_pred.max())) + 1
    m = np.zeros((c, c), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(m, cmap="Blues")
    fig.colorbar(im, ax=ax, label="test examples")
    for i in range(c):
        for j in range(c):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else ("red" if i != j else "k"))
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (off-diagonal: errors)", fontsize=10, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return m


def prediction_grid(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path: str,
                    title: str = "", n_first: int = 24, n_errors: int = 16) -> None:
    """Test digits with predicted and true labels: the first ``n_first``, then up to
    ``n_errors`` misclassified ones, each error in red. ``images: [N, 28, 28]``."""
    plt = _plt()
    images, y_true, y_pred = np.asarray(images), np.asarray(y_true), np.asarray(y_pred)
    first = list(range(min(n_first, len(images))))
    wrong = [int(i) for i in np.flatnonzero(y_true != y_pred) if i >= len(first)][:n_errors]
    picks = first + wrong
    cols = 8
    rows = max(1, -(-len(picks) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.8))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), picks):
        ok = y_true[i] == y_pred[i]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"pred {y_pred[i]}" + ("" if ok else f"\ntrue {y_true[i]}"), fontsize=8,
                     color="black" if ok else "red")
        if not ok:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_color("red")
                side.set_linewidth(2)
    fig.suptitle(title or f"the first {len(first)} test digits, then {len(wrong)} more that"
                 " were misclassified\n(red: predicted wrongly, true label below)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def weight_images(w: np.ndarray, path: str, title: str = "", n: int = 32,
                  shape: tuple[int, int] = (28, 28), w_init: np.ndarray | None = None) -> None:
    """First-layer weights of ``n`` hidden units as images (``w: [784, H]``): red pixels
    push the unit up, blue pull it down, white leave it alone.

    With ``w_init`` (the weights before training) it draws what training changed,
    ``w - w_init``, for the ``n`` units that changed most: a wide layer starts from random
    weights that hide the learned strokes, as the perceptron lesson's pictures do not.
    """
    plt = _plt()
    w = np.asarray(w, np.float32)
    units = np.arange(w.shape[1])
    if w_init is not None:
        w = w - np.asarray(w_init, np.float32)
        units = np.argsort(-np.linalg.norm(w, axis=0))
    n = min(n, w.shape[1])
    cols = 8
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.4 + 0.5))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < n:
            img = w[:, units[k]].reshape(shape)
            lim = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="bwr", vmin=-lim, vmax=lim)
            ax.set_title(f"unit {units[k]}", fontsize=8)
    what = ("what training changed in the first-layer weights (w - w_init) of the"
            f" {n} hidden units that changed most" if w_init is not None
            else f"first-layer weights of {n} hidden units")
    fig.suptitle(title or f"{what}\nred: the pixel excites the unit, blue: inhibits it",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def population_curves(histories: list[list[dict]], labels: list[str], path: str,
                      title: str = "", best: int | None = None) -> None:
    """Every member's curves: training loss and held-out loss (log scale), and held-out
    accuracy when there is one; the best member drawn thick."""
    plt = _plt()
    held = "val" if histories and histories[0] and "val_loss" in histories[0][0] else "test"
    has_acc = bool(histories and histories[0] and f"{held}_accuracy" in histories[0][0])
    panels = [("train_loss", "training loss"), (f"{held}_loss", "test loss")]
    if has_acc:
        panels.append((f"{held}_accuracy", "test accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6))
    cmap = plt.get_cmap("viridis")
    for k, (hist, label) in enumerate(zip(histories, labels)):
        color = cmap(k / max(1, len(histories) - 1))
        epochs = [r["epoch"] for r in hist]
        for ax, (key, _) in zip(axes, panels):
            ax.plot(epochs, [r.get(key, float("nan")) for r in hist], color=color,
                    lw=3 if k == best else 1.2, label=label + (" (best)" if k == best else ""))
    for ax, (key, name) in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name + (" (log scale)" if "loss" in key else ""))
        if "loss" in key:
            ax.set_yscale("log")
        ax.set_title(name + " per epoch")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
