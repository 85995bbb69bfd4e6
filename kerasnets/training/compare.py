"""Finished runs side by side (kerasnets-compare): one row per run, one picture of all.

Each run directory is a finished kerasnets-train run: recipe.json (the model it
trained), results.json (its per-epoch figures and final scores) and, where the run
wrote one, design.json (the model's trainable parameters and multiply-accumulates).
A run without design.json takes its trainable parameters from results.json and has
no MAC count (None; "—" in the table).

A row holds, per run: the directory as given, the model (a builtin name or a
reference such as my_net.py:build), trainable parameters, MACs, epochs, the final
test accuracy, the minimum over the last three tested epochs (as kerasnets-sweep
counts them: untested epochs are skipped), the recipe's target, the first epoch and
seconds to it, and the gap (final train accuracy − final test accuracy).

`compare()` reads and checks every run before anything is written; `write()` puts
compare.csv and compare.png into an output directory, each written aside and renamed
into place, and refuses to replace them without `overwrite`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Sequence

from kerasnets import errors, fileio
from kerasnets.training import recipe
from kerasnets.training.run_dir import DESIGN_FILE, RECIPE_FILE, RESULTS_FILE, finished
COLUMNS = ("run", "model", "trainable_params", "macs", "epochs", "final_test_accuracy",
           "last_three_min", "target", "first_epoch_at_target", "seconds_to_target", "gap")
OUTPUT_FILES = ("compare.csv", "compare.png")
# What each run's history holds, per epoch, for the picture (results.json's lists).
HISTORY_KEYS = ("test_accuracy", "test_loss", "train_accuracy", "train_loss")


class CompareError(errors.KerasnetsError, ValueError):
    """A directory that is not a finished run, or an output directory that may not be used."""


def _read_json(run_dir: str, name: str) -> dict:
    path = os.path.join(run_dir, name)
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError) as e:  # JSON and Unicode errors are ValueErrors
        raise CompareError(f"{run_dir}: {name} cannot be read ({e})") from None
    if not isinstance(values, dict):
        raise CompareError(f"{run_dir}: {name} is not a JSON object")
    return values


def _number(values: dict, key: str, where: str, optional: bool = False,
            kind: type | tuple[type, ...] = (int, float)):
    value = values.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CompareError(f"{where} has no {key} this kerasnets can read ({value!r})")
    return value


def _history(results: dict, where: str) -> dict[str, list]:
    """results.json's per-epoch lists, checked to be as long as its epochs."""
    epochs = _number(results, "epochs", where, kind=int)
    history = {}
    for key in HISTORY_KEYS:
        values = results.get(key)
        if (not isinstance(values, list) or len(values) != epochs or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in values)):
            raise CompareError(f"{where} has no {key} list of its {epochs} epochs")
        history[key] = values
    if not recipe.last_three(history["test_accuracy"]):
        raise CompareError(f"{where} has no tested epoch")
    return history


def read_run(run_dir: str) -> dict:
    """The row of the finished run in `run_dir` (COLUMNS); CompareError, in one line naming
    the directory, for one that is missing, unfinished or unreadable."""
    return _read(run_dir)[0]


def read_history(run_dir: str) -> dict[str, list]:
    """The finished run's figures per epoch: {test_accuracy, test_loss, train_accuracy,
    train_loss: one value per epoch (None for test_* of an epoch without a test pass)}."""
    return _read(run_dir)[1]


def _read(run_dir: str) -> tuple[dict, dict[str, list]]:
    if not os.path.isdir(run_dir):
        what = "is not a directory" if os.path.exists(run_dir) else "no such directory"
        raise CompareError(f"{run_dir}: {what}")
    if not finished(run_dir):
        if os.path.isfile(os.path.join(run_dir, RECIPE_FILE)):
            raise CompareError(f"{run_dir}: not a finished run ({RECIPE_FILE} but no "
                               f"{RESULTS_FILE}: kerasnets-train with its recipe finishes it)")
        raise CompareError(f"{run_dir}: not a kerasnets-train run (no {RESULTS_FILE})")
    results = _read_json(run_dir, RESULTS_FILE)
    where = f"{run_dir}: {RESULTS_FILE}"
    history = _history(results, where)
    recorded = (_read_json(run_dir, RECIPE_FILE)
                if os.path.isfile(os.path.join(run_dir, RECIPE_FILE)) else results)
    model = recorded.get("model")
    if not isinstance(model, str):
        raise CompareError(f"{run_dir}: {RECIPE_FILE if recorded is not results else RESULTS_FILE}"
                           f" names no model ({model!r})")
    design = (_read_json(run_dir, DESIGN_FILE)
              if os.path.isfile(os.path.join(run_dir, DESIGN_FILE)) else None)
    if design is None:
        params, macs = _number(results, "trainable_params", where, kind=int), None
    else:
        params = _number(design, "trainable_params", f"{run_dir}: {DESIGN_FILE}", kind=int)
        macs = _number(design, "macs", f"{run_dir}: {DESIGN_FILE}", optional=True, kind=int)
    final_test = _number(results, "final_test_accuracy", where)
    final_train = _number(results, "final_train_accuracy", where)
    row = dict(run=run_dir, model=model, trainable_params=params, macs=macs,
               epochs=results["epochs"], final_test_accuracy=final_test,
               last_three_min=min(recipe.last_three(history["test_accuracy"])),
               target=_number(results, "target", where),
               first_epoch_at_target=_number(results, "first_epoch_at_target", where,
                                             optional=True, kind=int),
               seconds_to_target=_number(results, "seconds_to_target", where, optional=True),
               gap=final_train - final_test)
    return row, history


def compare(run_dirs: Sequence[str]) -> list[dict]:
    """One row per run, in the order given; every run is read and checked first
    (CompareError for the first that is not a finished run)."""
    return [read_run(d) for d in run_dirs]


def output_problem(out_dir: str, overwrite: bool) -> str | None:
    """Why compare's files may not be written into `out_dir` (one line), or None. Other
    files in it are left alone; compare.csv and compare.png are replaced only with
    `overwrite`."""
    problem = fileio.output_dir_problem(out_dir, overwrite=True)
    if problem:
        return f"--out_dir: {problem}"
    taken = [n for n in OUTPUT_FILES if os.path.lexists(os.path.join(out_dir, n))]
    if taken and not overwrite:
        return (f"--out_dir: {os.path.abspath(out_dir)} holds {' and '.join(taken)}; pass "
                "--overwrite to replace them, or choose another directory")
    return None


def csv_text(rows: Sequence[dict]) -> str:
    """compare.csv: COLUMNS, floats as repr (exact), an empty cell for None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in COLUMNS])
    return buffer.getvalue()


def plot(rows: Sequence[dict], histories: Sequence[dict], path_or_file) -> None:
    """Test accuracy and test loss by epoch, one colour per run (train dashed in the
    same colour), the legend naming each run; untested epochs are skipped."""
    from matplotlib.ticker import MaxNLocator

    from kerasnets import plots

    fig, (ax_acc, ax_loss) = plots.subplots(1, 2, figsize=(11, 4.2))
    for k, (row, history) in enumerate(zip(rows, histories)):
        colour = f"C{k % 10}"
        epochs = range(1, len(history["test_accuracy"]) + 1)
        for ax, key, scale in ((ax_acc, "accuracy", 100), (ax_loss, "loss", 1)):
            tested = [(e, v) for e, v in zip(epochs, history[f"test_{key}"]) if v is not None]
            ax.plot([e for e, _ in tested], [scale * v for _, v in tested], "o-", color=colour,
                    markersize=3, label=f"{row['run']} ({row['model']})")
            trained = [(e, v) for e, v in zip(epochs, history[f"train_{key}"]) if v is not None]
            ax.plot([e for e, _ in trained], [scale * v for _, v in trained], "--",
                    color=colour, alpha=0.8)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="test accuracy (train dashed)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="test loss (train dashed)")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
        ax.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=8)
    plots.save_figure(fig, path_or_file)


def write(rows: Sequence[dict], histories: Sequence[dict], out_dir: str,
          overwrite: bool) -> None:
    """compare.csv and compare.png into `out_dir` (created if missing), each written aside
    and renamed into place; CompareError (nothing written) as `output_problem` says."""
    problem = output_problem(out_dir, overwrite)
    if problem:
        raise CompareError(problem)
    os.makedirs(out_dir, exist_ok=True)
    text = csv_text(rows)
    with fileio.atomic_file(os.path.join(out_dir, "compare.png"), "wb") as f:
        plot(rows, histories, f)
    with fileio.atomic_file(os.path.join(out_dir, "compare.csv")) as f:
        f.write(text)


def compare_and_write(run_dirs: Sequence[str], out_dir: str, overwrite: bool) -> list[dict]:
    """kerasnets-compare's work: the output directory checked, every run read and checked,
    then compare.csv and compare.png written; returns the rows."""
    problem = output_problem(out_dir, overwrite)
    if problem:
        raise CompareError(problem)
    read = [_read(d) for d in run_dirs]
    rows = [row for row, _ in read]
    write(rows, [history for _, history in read], out_dir, overwrite)
    return rows


def _cell(column: str, value) -> str:
    if value is None:
        return "—"
    if column in ("final_test_accuracy", "last_three_min", "target"):
        return f"{100 * value:.2f}"
    if column == "gap":
        return f"{100 * value:+.2f}"
    if column == "seconds_to_target":
        return f"{value:.1f}"
    if column in ("trainable_params", "macs"):
        return f"{value:,}"
    return str(value)


HEADINGS = dict(run="run", model="model", trainable_params="params", macs="MACs",
                epochs="epochs", final_test_accuracy="final %", last_three_min="last-3 min %",
                target="target %", first_epoch_at_target="first at target",
                seconds_to_target="s to target", gap="gap (pp)")


def format_table(rows: Sequence[dict]) -> str:
    """The rows as kerasnets-compare prints them: accuracies in %, the gap (train − test)
    in percentage points, "—" for a figure a run lacks."""
    table = [[HEADINGS[c] for c in COLUMNS]] + [[_cell(c, r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[k]) for line in table) for k in range(len(COLUMNS))]
    left = {"run", "model"}
    return "\n".join(
        "  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                  for c, cell, w in zip(COLUMNS, line, widths)).rstrip()
        for line in table)


def report(rows: Sequence[dict], out_dir: str) -> str:
    """What kerasnets-compare prints: the table and the files it wrote."""
    where = os.path.abspath(out_dir)
    return "\n".join([format_table(rows),
                      f"wrote {os.path.join(where, OUTPUT_FILES[0])}, {OUTPUT_FILES[1]}"])


def json_line(rows: Sequence[dict]) -> str:
    """The rows as one JSON line: {"runs": [row, ...]}."""
    return json.dumps({"runs": list(rows)})
