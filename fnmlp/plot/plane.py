"""Pictures of the plane: decision boundaries (one, or one per epoch or architecture),
what each hidden unit computes, the classes scattered. See :mod:`fnmlp.plot`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fnmlp.plot._common import _plt, _save


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
    ax.set_title(title or "decision boundary: the predicted class over the plane")
    ax.set_xlabel("x0")
    ax.set_ylabel("x1")
    fig.tight_layout()
    _save(fig, path)


def _plane(x: np.ndarray, resolution: int):
    """A grid over the data's box, 0.5 wider on each side: ``(gx, gy, grid [M, 2])``."""
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def _class_of(out: np.ndarray) -> np.ndarray:
    return (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else out.argmax(1)


def decision_boundaries(panels: list[tuple[str, Callable[[np.ndarray], np.ndarray]]],
                        x: np.ndarray, y: np.ndarray, path: str, title: str = "",
                        resolution: int = 150, cols: int | None = None) -> None:
    """Several decision boundaries side by side, on the same data: one panel per
    ``(caption, predict)``, each shading the plane by the predicted class (as
    :func:`decision_boundary`) with the points ``x [N, 2]`` coloured by their true class
    ``y``. For the boundary over the epochs (one panel per snapshot) and one per
    architecture."""
    plt = _plt()
    x, y = np.asarray(x), np.asarray(y)
    gx, gy, grid = _plane(x, resolution)
    cols = cols or min(len(panels), 5)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.1 * rows + 0.9),
                             squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (caption, predict) in zip(axes.ravel(), panels):
        cls = _class_of(np.asarray(predict(grid)))
        ax.contourf(gx, gy, cls.reshape(gx.shape), alpha=0.3, cmap="tab10",
                    levels=np.arange(11) - 0.5, vmin=0, vmax=9)
        pts = ax.scatter(x[:, 0], x[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=5,
                         edgecolors="k", linewidths=0.2)
        ax.set_title(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("x0", fontsize=9, labelpad=1)
        ax.set_ylabel("x1", fontsize=9, labelpad=1)
    fig.suptitle((title + "\n" if title else "") + "shading: the predicted class; points:"
                 " the true class", fontsize=10)
    handles, _ = pts.legend_elements()  # the colour of each class, as in every panel
    fig.legend(handles, [f"class {int(c)}" for c in np.unique(y)], loc="lower center",
               ncol=len(handles), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">")  # one shape per class


def hidden_units(layers: list[tuple[str, Callable[[np.ndarray], np.ndarray]]],
                 x: np.ndarray, y: np.ndarray, path: str, title: str = "",
                 n_units: int = 8, importance: list | None = None,
                 resolution: int = 80, cols: int = 4) -> None:
    """What each hidden unit computes on the plane: for every hidden layer (a block of
    rows per layer, ``(name, activations)`` where ``activations(points [M, 2]) -> [M, H]``),
    up to ``n_units`` units drawn as heat maps of their output over the data's box,
    ``cols`` to a row, with the line where the unit's output crosses 0 and a sample of the
    points ``x [N, 2]`` on top (one black-edged shape per class ``y``, so they read on any
    shading). The units shown are those that move the network's output most: the spread
    (standard deviation) of their output over the data times ``importance`` (one ``[H]``
    array per layer, e.g. the norm of each unit's outgoing weights; None: 1), given in
    each panel's title. One colour scale per layer (purple below 0, white at 0, orange
    above), so a unit that barely changes looks pale."""
    plt = _plt()
    x, y = np.asarray(x), np.asarray(y)
    gx, gy, grid = _plane(x, resolution)
    maps = []
    for k, (name, acts) in enumerate(layers):
        a = np.asarray(acts(grid))
        spread = np.asarray(acts(x.astype(np.float32))).std(0)  # [H] over the data
        rank = None if importance is None else importance[k]
        score = spread * (1.0 if rank is None else np.asarray(rank))
        order = np.argsort(-score, kind="stable")[:n_units]
        lim = float(np.abs(a[:, order]).max()) or 1.0
        maps.append((name, a, order, a.shape[1], lim, score))
    cols = max(1, min(cols, max(len(m[2]) for m in maps)))
    blocks = [-(-len(m[2]) // cols) for m in maps]  # rows per layer
    fig, axes = plt.subplots(sum(blocks), cols, figsize=(2.3 * cols + 1.2,
                                                         2.2 * sum(blocks) + 1.0),
                             squeeze=False, layout="constrained")
    sample = np.random.default_rng(0).permutation(len(x))[:200]  # a readable number
    classes = np.unique(y)
    top = 0
    for (name, a, order, width, lim, score), n_rows in zip(maps, blocks):
        panel_axes = axes[top:top + n_rows].ravel()
        top += n_rows
        for ax in panel_axes[len(order):]:
            ax.axis("off")
        for j, (ax, u) in enumerate(zip(panel_axes, order)):
            img = a[:, u].reshape(gx.shape)
            im = ax.imshow(img, origin="lower", cmap="PuOr_r", vmin=-lim, vmax=lim,
                           extent=(gx.min(), gx.max(), gy.min(), gy.max()), aspect="auto")
            if img.min() < 0 < img.max():
                ax.contour(gx, gy, img, levels=[0.0], colors="k", linewidths=0.8)
            for i, c in enumerate(classes):
                pick = sample[y[sample] == c]
                ax.scatter(x[pick, 0], x[pick, 1], marker=MARKERS[i % len(MARKERS)], s=9,
                           facecolors="w" if i % 2 == 0 else "k", edgecolors="k",
                           linewidths=0.4, label=f"class {int(c)}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"unit {u}\nscore {score[u]:.2g}", fontsize=8)
            ax.set_xlabel("x0", fontsize=8, labelpad=1)
            first = j % cols == 0
            ax.set_ylabel(f"{name}\n{len(order)} of {width} units\nx1" if j == 0 else "x1",
                          fontsize=8, labelpad=1)
            if not first:
                ax.set_ylabel("x1", fontsize=8, labelpad=1)
        fig.colorbar(im, ax=list(panel_axes), shrink=0.8, pad=0.01,
                     label="unit output")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    fig.suptitle((title + "\n" if title else "") + "what each hidden unit computes: its output"
                 " over the plane (black line: where it is 0);\nthe units that move the"
                 " output most (score: spread over the data \u00d7 outgoing weight)",
                 fontsize=9)
    _save(fig, path)


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
    ax.set_title(title or "the data, coloured by class")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
