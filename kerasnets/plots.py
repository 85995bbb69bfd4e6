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


def plot_digits(images, labels, path_or_file, title: str, predicted=None, columns: int = 10) -> None:
    """A grid of 28x28 digits, each titled with its label (and prediction, if given)."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.0, rows * 1.15 + 0.4),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        text = f"{labels[k]}" if predicted is None else f"true {labels[k]} / pred {predicted[k]}"
        ax.set_title(text, fontsize=8, color="black" if predicted is None else "firebrick")
    fig.suptitle(title)
    save_figure(fig, path_or_file)
