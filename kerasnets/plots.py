"""Pictures of runs, drawn with matplotlib's file-only Agg backend (no display needed)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def save_figure(fig, path: str) -> None:
    """Saves `fig` as PNG to `path` and closes it."""
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_lr_sweep(runs: Sequence, path: str, log_scale: bool = True) -> None:
    """E_total against step, one labelled line per learning rate (backprop.Run objects)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for run in runs:
        e = run.column("E_total")
        ax.plot(run.column("step"), e, label=f"lr = {run.lr:g}  (final {e[-1]:.4f})")
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step (gradient-descent updates)")
    ax.set_ylabel("E_total" + (" (log scale)" if log_scale else ""))
    ax.set_title("2-2-2 network: loss by learning rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
