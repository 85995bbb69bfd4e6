"""Pictures of runs, drawn on matplotlib Figures of their own (no pyplot, no display).

Each picture is a `matplotlib.figure.Figure` rendered straight to PNG by the Agg
canvas, so drawing one neither needs a display nor changes matplotlib's global
backend or pyplot's figure list for the program that imports kerasnets.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def subplots(*args, **kwargs):
    """(figure, axes) like pyplot.subplots, on a Figure that pyplot does not track."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path: str) -> None:
    """Saves `fig` as PNG to `path` (a path or a binary file)."""
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")


def plot_lr_sweep(runs: Sequence, path: str, log_scale: bool = True) -> None:
    """E_total against step, one labelled line per learning rate (chain_rule.Run objects)."""
    fig, ax = subplots(figsize=(7.5, 4.5))
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
    height = 1.15 if predicted is None else 1.4  # two title lines with a prediction
    fig, axes = subplots(rows, columns, figsize=(columns * 1.0, rows * height + 0.4),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        text = f"{labels[k]}" if predicted is None else f"true {labels[k]}\npred {predicted[k]}"
        ax.set_title(text, fontsize=8, color="black" if predicted is None else "firebrick")
    fig.suptitle(title)
    save_figure(fig, path_or_file)


def plot_curves(history, path_or_file, target: float | None = None) -> None:
    """Loss and accuracy per epoch, train and test (rows of history.csv), and the recipe's
    target accuracy as a dotted line."""
    epochs = [h["epoch"] for h in history]
    nan = float("nan")  # epochs without a test pass (--eval_every) are gaps
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        loss = [nan if h[f"{split}_loss"] is None else h[f"{split}_loss"] for h in history]
        accuracy = [nan if h[f"{split}_accuracy"] is None else 100 * h[f"{split}_accuracy"]
                    for h in history]
        ax_loss.plot(epochs, loss, marker="o", label=split)
        ax_acc.plot(epochs, accuracy, marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if target:
        ax_acc.axhline(100 * target, color="gray", linestyle=":",
                       label=f"target {100 * target:g}%")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
    save_figure(fig, path_or_file)


def plot_misclassified(images, labels, predicted, path_or_file, limit: int = 40) -> None:
    """The first `limit` wrong test digits, titled true / predicted."""
    wrong = [k for k in range(len(labels)) if labels[k] != predicted[k]][:limit]
    total = int((labels != predicted).sum())
    plot_digits(images[wrong], labels[wrong], path_or_file,
                f"misclassified test digits: {total} of {len(labels)} (first {len(wrong)} shown)",
                predicted=predicted[wrong])


def plot_seeds(rows, target: float, path_or_file) -> None:
    """Each seed's last three test accuracies (kerasnets-sweep rows) against the target."""
    fig, ax = subplots(figsize=(max(5.0, 0.6 * len(rows) + 2), 4))
    for k, row in enumerate(rows):
        accuracies = [100 * a for a in row["last_three"]]
        colour = "tab:blue" if row["meets_target"] else "tab:red"
        offsets = [0.15 * (i - (len(accuracies) - 1) / 2) for i in range(len(accuracies))]
        ax.plot([k + o for o in offsets], accuracies, "o-", color=colour, markersize=4)
    ax.axhline(100 * target, color="gray", linestyle=":", label=f"target {100 * target:.2f}%")
    ax.set_xticks(range(len(rows)), [str(r["seed"]) for r in rows])
    ax.set(xlabel="seed (last three epochs; red: below the target)",
           ylabel="test accuracy (%)", title="the recipe over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save_figure(fig, path_or_file)


def plot_confusion(labels, predicted, path_or_file) -> None:
    """10x10 confusion matrix with counts; the diagonal is masked so errors stand out."""
    import numpy as np

    matrix = np.zeros((10, 10), int)
    np.add.at(matrix, (labels.astype(int), predicted.astype(int)), 1)
    off = matrix.astype(float)
    np.fill_diagonal(off, np.nan)
    fig, ax = subplots(figsize=(6.5, 5.5))
    im = ax.imshow(off, cmap="Reds")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=7,
                    color="black" if i != j else "navy")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
           title="confusion matrix (test set; errors shaded)")
    fig.colorbar(im, ax=ax)
    save_figure(fig, path_or_file)


def plot_trials(rows, path_or_file, max_params: int, pareto: Sequence[int] = ()) -> None:
    """A search's trials (kerasnets-search rows): validation accuracy against trainable
    parameters, the budget as a line, the best trial ringed; with `pareto` (a
    two-objective search's front, by trial number) a second panel of accuracy against
    training seconds with the front joined."""
    trained = [r for r in rows if r["validation_accuracy"] is not None]
    fig, axes = subplots(1, 2 if pareto else 1, figsize=(12 if pareto else 7, 4.5),
                         squeeze=False)
    ax = axes[0][0]
    for state, colour in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray")):
        chosen = [r for r in trained if r["state"] == state]
        ax.scatter([r["trainable_params"] for r in chosen],
                   [100 * r["validation_accuracy"] for r in chosen], color=colour, s=24,
                   label=state.lower() + (" (last epoch reported)" if state == "PRUNED" else ""))
    best = [r for r in trained if r.get("best")]
    if best:
        ax.scatter([best[0]["trainable_params"]], [100 * best[0]["validation_accuracy"]],
                   s=160, facecolors="none", edgecolors="tab:red", label=f"best (#{best[0]['trial']})")
    if max_params:
        ax.axvline(max_params, color="gray", linestyle=":", label=f"budget {max_params:,}")
    ax.set(xlabel="trainable parameters", ylabel="validation accuracy (%)",
           title="trials: accuracy against size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if pareto:
        ax = axes[0][1]
        complete = [r for r in trained if r["state"] == "COMPLETE"]
        ax.scatter([r["seconds_objective"] for r in complete],
                   [100 * r["validation_accuracy"] for r in complete], color="tab:blue", s=24,
                   label="complete")
        front = sorted((r for r in complete if r["trial"] in pareto),
                       key=lambda r: r["seconds_objective"])
        ax.plot([r["seconds_objective"] for r in front],
                [100 * r["validation_accuracy"] for r in front], "o-", color="tab:red",
                label="Pareto front")
        ax.set(xlabel="training seconds", ylabel="validation accuracy (%)",
               title="accuracy against time")
        ax.grid(True, alpha=0.3)
        ax.legend()
    save_figure(fig, path_or_file)
