"""kerasnets-bench --what=time_to_accuracy: how long a recipe takes to a trustworthy accuracy.

Each seed is a real kerasnets-train process of the recipe at --seed=k; from its
results.json come the final test accuracy and the training time (first batch to
the final model's test accuracy, tracing included), and the bench adds the process
start-up and data loading around it (wall time minus training time). With
`compare_torch`, the same run also times the course's recipe in PyTorch until its
test accuracy first reaches the target (kerasnets.bench.torch_course) and the
default recipe's own time to it at the same seeds (one seed's early crossing is
luck: default's first epoch at it varies from seed to seed), and prints the
ratios of the means.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from typing import Sequence

from kerasnets import errors
from kerasnets.training import run_dir, seed_sweep
from kerasnets.training.recipe import TrainConfig

DEFAULT_RECIPE = "default"


class TrainingFailedError(errors.KerasnetsError, RuntimeError):
    """A kerasnets-train process of the benchmark failed; the message ends with its last line."""


def train_recipe(command: Sequence[str], seed: int, model_dir: str) -> dict:
    """One kerasnets-train process (`command` with --seed and --model_dir added); its
    figures, the first epoch at its recipe's target and the seconds to it among them.
    Raises TrainingFailedError if it fails."""
    start = time.perf_counter()
    proc = subprocess.run([*command, f"--seed={seed}", f"--model_dir={model_dir}"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise TrainingFailedError(f"kerasnets-train at --seed={seed} failed: {tail}")
    with open(os.path.join(model_dir, run_dir.RESULTS_FILE)) as f:
        results = json.load(f)
    seconds = results["seconds_to_target"]
    return dict(seed=seed, epochs=results["epochs"],
                final_test_accuracy=results["final_test_accuracy"],
                train_seconds=round(results["train_seconds"], 2),
                startup_seconds=round(wall - results["train_seconds"], 2),
                epoch_at_target=results["first_epoch_at_target"],
                seconds_to_target=seconds and round(seconds, 2))


def bench_time_to_accuracy(config: TrainConfig, seeds: Sequence[int],
                           compare_torch: bool = False, data_flags: Sequence[str] = ()) -> dict:
    """The recipe at each seed, against its target; with `compare_torch` also the course's
    recipe in PyTorch (once: it is seeded but not deterministic) and the default recipe at
    the same seeds, each to the same target and stopped at its first test pass there
    (--stop_at_accuracy)."""
    target = config.target
    recipe_command = seed_sweep.train_argv(config, data_flags)
    with tempfile.TemporaryDirectory() as scratch:
        rows = [train_recipe(recipe_command, s, os.path.join(scratch, f"seed-{s}"))
                for s in seeds]
        report = dict(recipe=config.model, target=target, rows=rows, **_stats(rows))
        if compare_torch:
            from kerasnets.data import offline
            from kerasnets.bench import torch_course

            torch_run = torch_course.seconds_to_accuracy(offline.load_mnist(), target)
            default_command = seed_sweep.train_argv(
                None, [f"--recipe={DEFAULT_RECIPE}", f"--target={target}",
                       f"--stop_at_accuracy={target}", *data_flags])
            default_rows = [train_recipe(default_command, s, os.path.join(scratch, f"default-{s}"))
                            for s in seeds]
            report.update(pytorch_course_recipe=dict(epoch=torch_run["epoch"],
                                                     seconds=round(torch_run["seconds"], 2)),
                          default_recipe=default_rows, **speedups(report, torch_run, default_rows))
    return report


def speedups(report: dict, torch_run: dict, default_rows: Sequence[dict]) -> dict:
    """The recipe's mean training time against PyTorch's time to the target and against
    default's mean time to it over the same seeds (seeds where default never got there
    are left out and counted)."""
    mean = report["mean_train_seconds"]
    crossed = [r["seconds_to_target"] for r in default_rows if r["seconds_to_target"]]
    out = dict(default_seeds_at_target=len(crossed))
    if crossed:
        out.update(default_mean_seconds_to_target=round(statistics.mean(crossed), 2),
                   speedup_vs_default=round(statistics.mean(crossed) / mean, 2))
    if torch_run["epoch"]:
        out["speedup_vs_pytorch"] = round(torch_run["seconds"] / mean, 2)
    return out


def _stats(rows: Sequence[dict]) -> dict:
    seconds = [r["train_seconds"] for r in rows]
    accuracy = [r["final_test_accuracy"] for r in rows]

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0

    return dict(mean_train_seconds=round(statistics.mean(seconds), 2),
                sd_train_seconds=round(sd(seconds), 2), min_train_seconds=min(seconds),
                max_train_seconds=max(seconds),
                mean_final_test_accuracy=statistics.mean(accuracy),
                sd_final_test_accuracy=sd(accuracy), worst_final_test_accuracy=min(accuracy))


def format_report(report: dict) -> str:
    lines = [f"{'seed':>4}  {'final test':>10}  {'train s':>8}  {'start-up s':>10}  "
             f"{'first epoch >= ' + format(100 * report['target'], 'g') + '%':>20}"]
    for r in report["rows"]:
        crossed = (f"{r['epoch_at_target']} ({r['seconds_to_target']:.1f} s)"
                   if r["epoch_at_target"] else "—")
        lines.append(f"{r['seed']:>4}  {100 * r['final_test_accuracy']:>9.2f}%  "
                     f"{r['train_seconds']:>8.1f}  {r['startup_seconds']:>10.1f}  {crossed:>20}")
    lines.append(f"recipe ({report['recipe']} model): final test accuracy "
                 f"{100 * report['mean_final_test_accuracy']:.2f} ± "
                 f"{100 * report['sd_final_test_accuracy']:.2f} % (worst "
                 f"{100 * report['worst_final_test_accuracy']:.2f} %), training "
                 f"{report['mean_train_seconds']:.1f} ± {report['sd_train_seconds']:.1f} s "
                 f"({report['min_train_seconds']:.1f}–{report['max_train_seconds']:.1f})")
    if "pytorch_course_recipe" in report:
        torch_run, target = report["pytorch_course_recipe"], format(100 * report["target"], "g")
        crossings = ", ".join(f"{r['epoch_at_target']} ({r['seconds_to_target']:.1f} s)"
                              if r["epoch_at_target"] else "—" for r in report["default_recipe"])
        mean = report.get("default_mean_seconds_to_target")
        lines.append(f"course recipe in PyTorch to {target} %: epoch {torch_run['epoch']}, "
                     f"{torch_run['seconds']:.1f} s")
        lines.append(f"the {DEFAULT_RECIPE} recipe to {target} % at the same seeds: epochs {crossings}; "
                     f"mean {'—' if mean is None else format(mean, '.1f') + ' s'} "
                     f"({report['default_seeds_at_target']} of {len(report['default_recipe'])} "
                     "seeds got there)")
        lines.append(f"speed-up: {report.get('speedup_vs_pytorch', '—')}x the course's recipe "
                     f"in PyTorch, {report.get('speedup_vs_default', '—')}x the {DEFAULT_RECIPE} "
                     "recipe")
    return "\n".join(lines)
