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
