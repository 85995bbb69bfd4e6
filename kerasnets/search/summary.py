"""A search's record: every trial as a row, the best design's two accuracies, the files.

summary.json holds the study's settings, one row per trial (its number and state, the
design's parameters, trainable parameters and MACs, validation accuracy, seconds,
whether it was over the budget) and the best design with its validation accuracy and
its one test accuracy; summary.csv the rows; trials.png accuracy against size (and,
with two objectives, the Pareto front).
"""

from __future__ import annotations

import csv
import json
import os

from kerasnets import fileio
from kerasnets.search import study as studies

COLUMNS = ("trial", "state", "over_budget", "trainable_params", "macs", "validation_accuracy",
           "epochs", "seconds", "seconds_objective", "best", "design", "error")
BEST_DESIGN = "best_design.py"
BEST_DESIGN_TEXT = '''"""The best design of the study {study!r} (trial #{trial}), written by kerasnets-search.

Name it as a model wherever kerasnets takes one, for example over seeds with the
search's recipe flags and the learning rate it chose:
  kerasnets-sweep --recipe=... --model={path}:build --learning_rate={learning_rate!r} \\
      --seeds=0-7 --out_dir=...
"""

import optuna

from kerasnets.search import spaces

SPACE = {space!r}
PARAMS = {params!r}


def build():
    return spaces.load(SPACE).build(optuna.trial.FixedTrial(PARAMS))
'''


def trial_rows(study, best_number: int | None) -> list[dict]:
    """One row per trial of the study, in trial order."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        values = trial.values
        reported = trial.intermediate_values
        accuracy = values[0] if values else (reported[max(reported)] if reported else None)
        rows.append({
            "trial": trial.number,
            "state": trial.state.name,
            "over_budget": bool(attrs.get(studies.OVER_BUDGET)),
            "trainable_params": attrs.get(studies.TRAINABLE_PARAMS),
            "macs": attrs.get(studies.MACS),
            "validation_accuracy": accuracy,
            "epochs": max(reported) if reported else None,
            "seconds": attrs.get(studies.SECONDS),
            "seconds_objective": values[1] if values and len(values) > 1 else None,
            "best": trial.number == best_number,
            "design": trial.params,
            "error": attrs.get(studies.ERROR),
        })
    return rows


def summarise(study, settings: studies.Settings, best, best_results: dict | None,
              pareto: list[int], url: str) -> dict:
    """What summary.json holds."""
    rows = trial_rows(study, best.number if best else None)
    trained, _ = studies.counted_trials(study)
    return {
        "study": study.study_name, "storage": studies.shown(url), **settings.as_json(),
        "trained": len(trained),
        "over_budget": sum(r["over_budget"] for r in rows),
        "failed": sum(r["state"] == "FAIL" for r in rows),
        "pareto_front": pareto,
        "best_learning_rate": best and best.params.get("learning_rate",
                                                         settings.recipe["learning_rate"]),
        "best": None if best is None else {
            "trial": best.number, "design": best.params,
            "trainable_params": best.user_attrs.get(studies.TRAINABLE_PARAMS),
            "macs": best.user_attrs.get(studies.MACS),
            "validation_accuracy": best.values[0],
            "test_accuracy": best_results and best_results["final_test_accuracy"],
            "epochs": best_results and best_results["epochs"],
        },
        "trials": rows,
    }


def write(out_dir: str, summary: dict) -> None:
    """summary.json, summary.csv, trials.png and (with a best design) best_design.py,
    each written aside and renamed."""
    from kerasnets import plots

    best = summary["best"]
    if best is not None:
        path = os.path.join(os.path.abspath(out_dir), BEST_DESIGN)
        with fileio.atomic_file(path) as f:
            f.write(BEST_DESIGN_TEXT.format(
                study=summary["study"], trial=best["trial"], path=path,
                learning_rate=summary["best_learning_rate"], space=absolute(summary["space"]),
                params=best["design"]))

    with fileio.atomic_file(os.path.join(out_dir, "summary.json")) as f:
        json.dump(summary, f, indent=2)
    with fileio.atomic_file(os.path.join(out_dir, "summary.csv")) as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in summary["trials"]:
            writer.writerow({**row, "design": json.dumps(row["design"], sort_keys=True)})
    with fileio.atomic_file(os.path.join(out_dir, "trials.png"), "wb") as f:
        plots.plot_trials(summary["trials"], f, summary["max_params"], summary["pareto_front"])


def absolute(space: str) -> str:
    """A space named by a file, with the file's absolute path (best_design.py is read
    from anywhere)."""
    from kerasnets.models import user_code

    source, function = user_code.split(space)
    return f"{os.path.abspath(source)}:{function}" if source.endswith(".py") else space


def counted(n: int, noun: str) -> str:
    """'1 trial', '4 trials'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def report(summary: dict, out_dir: str) -> str:
    """The lines kerasnets-search prints at the end."""
    best = summary["best"]
    lines = [f"study {summary['study']}: {counted(summary['trained'], 'trial')} trained, "
             f"{counted(summary['over_budget'], 'design')} over "
             f"--max_params={summary['max_params']:,} never trained, {summary['failed']} failed"]
    if best is None:
        lines.append("no trial completed: no best design")
    else:
        test = best["test_accuracy"]
        lines.append(f"best design #{best['trial']}: {json.dumps(best['design'], sort_keys=True)}; "
                     f"{best['trainable_params']:,} params, {best['macs']:,} MACs; validation "
                     f"{100 * best['validation_accuracy']:.2f} %"
                     + ("" if test is None else f", test {100 * test:.2f} % (trained on the "
                                               "recipe's training images, tested once)"))
    if summary["pareto_front"]:
        lines.append(f"Pareto front (accuracy, seconds): trials "
                     f"{', '.join(f'#{n}' for n in summary['pareto_front'])}")
    lines.append(f"wrote {os.path.join(os.path.abspath(out_dir), 'summary.csv')}, "
                 "summary.json, trials.png" + (f", {BEST_DESIGN} (the best design as a --model: "
                                               f"{os.path.join(os.path.abspath(out_dir), BEST_DESIGN)}"
                                               ":build)" if best else ""))
    return "\n".join(lines)
