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
    ax.scatter(x[:, 0], x[:, 1], c=np.asarray(y), cmap="tab10", vmin=0, vmax=9, s=12,
               edgecolors="k", linewidths=0.3)
    ax.set_title(title)
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curve(history: list[dict], path: str, title: str = "") -> None:
    """Training (and validation) loss per epoch, log scale."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    if history and "val_loss" in history[0]:
        ax.plot(epochs, [r["val_loss"] for r in history], label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
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
