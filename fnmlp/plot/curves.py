"""Pictures over the epochs and of a trained model: loss and accuracy curves, weight
and gradient norms, populations, regression fits, confusion matrices, digits. See
:mod:`fnmlp.plot`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fnmlp.plot._common import HELD, _epoch_axis, _mark_restored, _plt, _save


def loss_curve(history: list[dict], path: str, title: str = "") -> None:
    """Training, validation and test loss per epoch (those present), log scale, and the
    accuracy beside it when the history has one; the epoch early stopping kept is
    marked. When a held-out loss ends below the training loss, a note under the panels
    says why that is no bug."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    acc = bool(history and "train_accuracy" in history[0])
    fig, axes = plt.subplots(1, 2 if acc else 1, figsize=(11 if acc else 6, 4.4),
                             squeeze=False)
    for ax, what in zip(axes[0], ("loss", "accuracy")):
        ax.plot(epochs, [r[f"train_{what}"] for r in history],
                label=f"train {what} (mean over the epoch, as trained)")
        for part, name in HELD:
            if history and f"{part}_{what}" in history[0]:
                ax.plot(epochs, [r[f"{part}_{what}"] for r in history],
                        label=f"{name} {what} (after the epoch)")
        _mark_restored(ax, history)
        if what == "loss":
            ax.set_yscale("log")
        _epoch_axis(ax)
        ax.set_ylabel(what + (" (log scale)" if what == "loss" else ""))
        ax.set_title(f"{title}: {what} per epoch" if title else f"{what} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    last = history[-1] if history else {}
    below = [name for part, name in HELD if last.get(f"{part}_loss", np.inf)
             < last.get("train_loss", -np.inf)]
    if below:
        fig.text(0.01, 0.01, f"Why the {' and '.join(below)} loss can sit below the training"
                 " loss (no bug): the training loss is averaged over the epoch while the weights"
                 " were still changing (and with dropout on, if any);\nthe held-out loss is"
                 " measured after the epoch. And on a small set with label noise, the split"
                 " decides how many mislabelled or borderline points, which dominate the"
                 " loss, land on each side.", fontsize=8, va="bottom", color="0.25")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    _save(fig, path)


def regression_fit(x: np.ndarray, y: np.ndarray, predict: Callable[[Any], Any], path: str,
                   title: str = "") -> None:
    """Data and prediction. 1-D input: a curve per output; otherwise predicted vs true."""
    plt = _plt()
    x, y = np.asarray(x), np.asarray(y).reshape(len(x), -1)
    fig, ax = plt.subplots(figsize=(6, 4))
    one = y.shape[1] == 1
    if x.shape[1] == 1:
        grid = np.linspace(x.min(), x.max(), 400, dtype=np.float32)[:, None]
        pred = np.asarray(predict(grid))
        for c in range(y.shape[1]):
            color = "C0" if one else f"C{c}"
            name = "" if one else f"output {c}: "
            ax.scatter(x[:, 0], y[:, c], s=8, alpha=0.5, color=color,
                       label=f"{name}data (noisy samples)")
            ax.plot(grid[:, 0], pred[:, c], "-", color="k" if one else color, lw=2,
                    label=f"{name}the network's prediction")
        ax.set_xlabel("input x")
        ax.set_ylabel("target y")
    else:
        pred = np.asarray(predict(x.astype(np.float32)))
        for c in range(y.shape[1]):
            ax.scatter(y[:, c], pred[:, c], s=8, alpha=0.5,
                       label="examples" if one else f"output {c}")
        lim = [min(y.min(), pred.min()), max(y.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=1, label="perfect: predicted = true")
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted value")
    ax.set_title(title or "the network's fit to the data")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    _save(fig, path)


def learning_curves(history: list[dict], path: str, title: str = "") -> None:
    """Loss (log scale) and accuracy per epoch: train, validation and test (those
    present) side by side; the epoch early stopping kept is marked.

    Reads ``train_*``, ``val_*`` and ``test_*`` from each record of a ``fit`` history.
    """
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
    marker = "o-" if len(history) <= 30 else "-"
    for ax, key, label in ((ax_l, "loss", "loss (cross-entropy)"), (ax_a, "accuracy", "accuracy")):
        for part, name in (("train", "train"), *HELD):
            if history and f"{part}_{key}" in history[0]:
                ax.plot(epochs, [r[f"{part}_{key}"] for r in history], marker, ms=3,
                        label=f"{name} {key}")
        _mark_restored(ax, history)
        _epoch_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_l.set_yscale("log")
    ax_l.set_title("loss per epoch")
    ax_a.set_title("accuracy per epoch")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def confusion_heatmap(y_true: np.ndarray, y_pred: np.ndarray, path: str, title: str = "",
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
    _save(fig, path)
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
    _save(fig, path)


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
    _save(fig, path)


def population_curves(histories: list[list[dict]], labels: list[str], path: str,
                      title: str = "", best: int | None = None, held: str = "test") -> None:
    """Every member's curves: training loss and held-out loss (log scale), and held-out
    accuracy when there is one; the best member drawn thick. ``held`` names the held-out
    set the histories' ``val_*`` entries were measured on (``"test"`` or
    ``"validation"``). The legend sits below the panels, clear of the curves."""
    plt = _plt()
    key = "val" if histories and histories[0] and "val_loss" in histories[0][0] else "test"
    has_acc = bool(histories and histories[0] and f"{key}_accuracy" in histories[0][0])
    panels = [("train_loss", "training loss"), (f"{key}_loss", f"{held} loss")]
    if has_acc:
        panels.append((f"{key}_accuracy", f"{held} accuracy"))
    rows = -(-len(labels) // 4)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2 + 0.3 * rows))
    cmap = plt.get_cmap("viridis")
    for k, (hist, label) in enumerate(zip(histories, labels)):
        color = cmap(k / max(1, len(histories) - 1))
        epochs = [r["epoch"] for r in hist]
        for ax, (key, _) in zip(axes, panels):
            ax.plot(epochs, [r.get(key, float("nan")) for r in hist], color=color,
                    lw=3 if k == best else 1.2, label=label + (" (best)" if k == best else ""))
    for ax, (key, name) in zip(axes, panels):
        _epoch_axis(ax)
        ax.set_ylabel(name + (" (log scale)" if "loss" in key else ""))
        if "loss" in key:
            ax.set_yscale("log")
        ax.set_title(name + " per epoch")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8,
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 1))
    _save(fig, path)


def ensemble_bars(member_accuracy: list[float], ensemble_accuracy: float, path: str,
                  title: str = "", labels: list[str] | None = None) -> None:
    """Each member's test accuracy as a bar, the ensemble's beside them (and as a line
    across), the y axis zoomed on the range where they differ."""
    plt = _plt()
    accs = [float(a) for a in member_accuracy]
    labels = labels or [f"#{k}" for k in range(len(accs))]
    fig, ax = plt.subplots(figsize=(max(8.5, 0.8 * len(accs) + 5), 4.2))  # the legend beside
    xs = np.arange(len(accs) + 1)
    bars = ax.bar(xs, accs + [ensemble_accuracy], color=["C0"] * len(accs) + ["C3"])
    for b, a in zip(bars, accs + [ensemble_accuracy]):
        ax.text(b.get_x() + b.get_width() / 2, a, f"{a:.4f}", ha="center", va="bottom",
                fontsize=8)
    ax.axhline(ensemble_accuracy, color="C3", ls="--", lw=1)
    ax.axhline(float(np.mean(accs)), color="C0", ls=":", lw=1)
    lo = min(accs + [ensemble_accuracy])
    hi = max(accs + [ensemble_accuracy])
    pad = max(0.01, (hi - lo) * 0.6)
    ax.set_ylim(max(0.0, lo - pad), hi + pad)  # room above 1.0 for the bars' labels
    ax.set_yticks([t for t in ax.get_yticks() if max(0.0, lo - pad) <= t <= 1.0 + 1e-9])
    ax.set_xticks(xs, labels + ["ensemble\n(mean prob.)"], fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("model")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ax.legend([Patch(color="C0"), Patch(color="C3"), Line2D([], [], color="C3", ls="--"),
               Line2D([], [], color="C0", ls=":")],
              ["one member", "the ensemble", f"the ensemble's level {ensemble_accuracy:.4f}",
               f"members' mean {np.mean(accs):.4f}"],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_title(title + ("\n" if title else "") + "each member's test accuracy and the"
                 " ensemble's (y axis zoomed)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def weight_norms(history: list[dict], path: str, title: str = "",
                 at_init: dict | None = None, shapes: list | None = None,
                 grad_at_init: list | None = None, grad_batch: int | None = None) -> None:
    """Each weight matrix's largest absolute weight and Frobenius norm per epoch, from the
    history's ``weight_max_abs`` / ``weight_norm`` lists (one entry per matrix,
    :func:`fnmlp.train.weight_matrices`; no layer layout assumed); ``at_init`` (the same
    keys) is drawn at epoch 0; ``shapes`` (each matrix's shape) labels the curves
    ``matrix 1 (784x64)``. When the records hold ``grad_norm`` (one per matrix: the norm
    of the loss's gradient with respect to it, on a fixed batch of ``grad_batch``
    training examples, :mod:`fnmlp.cli.probe`), a third panel draws it, log scale
    (``grad_at_init`` at epoch 0): the first layers' gradients fading is vanishing
    gradients, seen."""
    plt = _plt()
    rows = [r for r in history if "weight_max_abs" in r]
    if not rows:
        raise ValueError("the history has no weight_max_abs entries to draw")
    n_layers = len(rows[0]["weight_max_abs"])
    panels = [("weight_max_abs", "max |w| in the matrix"),
              ("weight_norm", "||w|| (Frobenius norm)")]
    grads = all("grad_norm" in r for r in rows)
    if grads:
        panels.append(("grad_norm", "||dL/dw|| (gradient norm)"))
    starts = {**(at_init or {}), **({"grad_norm": grad_at_init} if grad_at_init else {})}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels) + 1.5, 4.4))
    for ax, (key, name) in zip(axes, panels):
        for i in range(n_layers):
            epochs = [r["epoch"] for r in rows]
            vals = [r[key][i] for r in rows]
            if key in starts:
                epochs, vals = [0] + epochs, [starts[key][i]] + vals
            ax.plot(epochs, vals, "o-" if len(epochs) <= 30 else "-", ms=3,
                    label=f"matrix {i + 1}"
                    + (f" ({'x'.join(map(str, shapes[i]))})" if shapes else "")
                    + (" (output)" if i == n_layers - 1 else ""))
        _mark_restored(ax, rows)
        _epoch_axis(ax)
        ax.set_ylabel(name + (" (log scale)" if key == "grad_norm" else ""))
        at0 = " (0 = at init)" if key in starts else ""
        if key == "grad_norm":
            ax.set_yscale("log")
            ax.set_title(f"gradient norm after each epoch{at0}\non a fixed batch of"
                         f" {grad_batch or 0:,} training examples", fontsize=10)
        else:
            ax.set_title(f"{name} per epoch{at0}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.suptitle(title or "weight magnitudes per weight matrix")
    fig.tight_layout()
    _save(fig, path)


def gradient_norms(runs: list[tuple[str, list[dict], list | None]], path: str,
                   title: str = "", grad_batch: int | None = None) -> None:
    """One panel per run (architecture): each weight matrix's gradient norm per epoch
    (``grad_norm`` in each record; the third item of a run, if given, is the norms at
    initialisation, drawn at epoch 0), log scale, the same y axis for all, the first
    matrix darkest: where the first layers' curves sit far below the last's, the
    gradient vanishes on its way back."""
    plt = _plt()
    runs = [r for r in runs if r[1] and "grad_norm" in r[1][0]]
    if not runs:
        raise ValueError("no run has grad_norm entries to draw")
    cols = min(4, len(runs))
    nrows = -(-len(runs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows + 0.8),
                             sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    for ax, (name, hist, at_init) in zip(axes.ravel(), runs):
        n = len(hist[0]["grad_norm"])
        for i in range(n):
            epochs = [r["epoch"] for r in hist]
            vals = [r["grad_norm"][i] for r in hist]
            if at_init:
                epochs, vals = [0] + epochs, [at_init[i]] + vals
            ax.plot(epochs, vals, "o-" if len(epochs) <= 30 else "-", ms=2.5,
                    color=cmap(0.9 * i / max(1, n - 1)),
                    label=f"matrix {i + 1}" + (" (output)" if i == n - 1 else
                                               " (input)" if i == 0 else ""))
        ax.set_yscale("log")
        _epoch_axis(ax)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.ravel()[:len(runs)]:
        ax.set_ylabel("||dL/dw|| (log scale)")
    fig.suptitle((title + "\n" if title else "") + "each weight matrix's gradient norm per"
                 f" epoch, on a fixed batch of {grad_batch or 0:,} training examples"
                 " (0 = at init)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def compare_curves(runs: list[tuple[str, list[dict]]], path: str, title: str = "") -> None:
    """Several runs on one chart: validation accuracy (solid) and training accuracy
    (dashed, same colour) per epoch, one colour per run; the legend beside the axes.
    Falls back to the losses when there is no accuracy (regression)."""
    plt = _plt()
    acc = bool(runs and runs[0][1] and "train_accuracy" in runs[0][1][0])
    what = "accuracy" if acc else "loss"
    fig, ax = plt.subplots(figsize=(10, 5))
    for k, (name, hist) in enumerate(runs):
        epochs = [r["epoch"] for r in hist]
        c = f"C{k % 10}"
        ax.plot(epochs, [r.get(f"val_{what}", float("nan")) for r in hist], "-", color=c,
                lw=2, label=f"{name}: validation")
        ax.plot(epochs, [r[f"train_{what}"] for r in hist], "--", color=c, lw=1,
                label=f"{name}: train")
    _epoch_axis(ax)
    ax.set_ylabel(what + ("" if acc else " (log scale)"))
    if not acc:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_title(title or f"{what} per epoch: solid validation, dashed train")
    fig.tight_layout()
    _save(fig, path)
