"""What every picture shares: matplotlib on demand (Agg), epoch axes."""

from __future__ import annotations


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'fnmlp[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PNG_OPTIONS = {"compress_level": 1}
"""How a picture is written as PNG: the fastest compression (zlib level 1, not Pillow's
default 6): the toy script's five ``savefig`` calls took 0.50-0.53 s instead of 0.57-0.58 s,
and the files 1.03 MB instead of 0.91 MB (2-core AMD EPYC, two runs each). Other formats
(``.pdf``, ``.svg``, ...) are written with matplotlib's defaults."""


def _save(fig, path: str) -> None:
    """Writes ``fig`` to ``path`` at 100 dpi, in the format its suffix names (PNG with
    :data:`PNG_OPTIONS`; no suffix: matplotlib's ``savefig.format``, added to the name as
    matplotlib does), atomically (:mod:`fnmlp.io.atomic`: a run killed mid-write keeps the
    previous picture whole), and closes the figure, also when the write fails.

    Raises:
      ValueError: a format matplotlib cannot write (its own message); nothing is written.
    """
    import os

    import matplotlib
    import matplotlib.pyplot as plt

    from fnmlp.io.atomic import write_atomic

    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    fmt = suffix[1:] if suffix else str(matplotlib.rcParams["savefig.format"]).lower()
    if not suffix:
        path = f"{path}.{fmt}"
    options = {"pil_kwargs": PNG_OPTIONS} if fmt == "png" else {}
    try:
        write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=100, **options))
    finally:
        plt.close(fig)


def _epoch_axis(ax) -> None:
    """Epochs are whole numbers: integer ticks on the x axis, labelled."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def _mark_restored(ax, history: list[dict]) -> None:
    """A dashed vertical line at the epoch early stopping restored, if any."""
    kept = [r["epoch"] for r in history if r.get("restored")]
    if kept:
        ax.axvline(kept[0], color="0.3", ls="--", lw=1,
                   label=f"epoch {kept[0]}: kept by early stopping")


HELD = (("val", "validation"), ("test", "test"))
