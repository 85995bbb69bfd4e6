r"""One recipe at several seeds, and how often it meets its target (kerasnets-sweep).

Each seed is an ordinary kerasnets-train process of the recipe with --seed=<k>
into <out_dir>/seed-<k>/, its output in <out_dir>/logs/seed-<k>.log; so a run
killed part-way resumes, and a seed that finished is skipped when the sweep is
started again. At the end the sweep writes summary.csv and summary.json (per
seed: the last three tested epochs' accuracies and their minimum, best, final,
first epoch at the recipe's target, seconds) and seeds.png.

Seeds run `jobs` at a time, each with TensorFlow's default threads: splitting
the cores (--intra_op_threads=1 each) would change the arithmetic's order and so
the results, and a seed of the sweep must equal
`kerasnets-train <the same recipe> --seed=k` (docs/training.md has the timings).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from kerasnets import fileio
from kerasnets.training import recipe, run_dir

SUMMARY_COLUMNS = ("seed", "last_three", "last_three_min", "best", "final", "first_epoch_at_target",
                   "seconds", "meets_target")
LOCK_FILE = ".sweep.lock"  # held by the sweep running in an out_dir


def parse_seeds(spec: str) -> list[int]:
    """"0-7" -> [0..7], "1,4,9" -> [1, 4, 9], "3" -> [3]; ValueError with what is allowed."""
    allowed = "a range like 0-7, a list like 1,4,9, or one seed; seeds are integers >= 0"
    seeds: list[int] = []
    for part in (spec or "").split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not (low.isdigit() and (not dash or high.isdigit())):
            raise ValueError(f"{spec!r} is not {allowed}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"{part!r} runs backwards; write {last}-{first}")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{spec!r} names a seed twice")
    return seeds


def seed_dir(out_dir: str, seed: int) -> str:
    return os.path.join(out_dir, f"seed-{seed}")


def finished(out_dir: str, seed: int) -> bool:
    """Whether seed `seed` of the sweep in out_dir finished (run_dir.finished)."""
    return run_dir.finished(seed_dir(out_dir, seed))


def child_data_flags(data_dir: str | None, mnist_path: str | None) -> list[str]:
    """Where this process reads MNIST, as flags for its kerasnets-train child processes."""
    return [f"--{name}={value}" for name, value in (("data_dir", data_dir),
                                                     ("mnist_path", mnist_path)) if value]


def train_argv(config: recipe.TrainConfig | None, extra_flags: Sequence[str] = ()) -> list[str]:
    """A kerasnets-train child process that trains exactly `config` (every field as a flag;
    None: the recipe its --recipe in extra_flags names), then reads `extra_flags`."""
    return [sys.executable, "-m", "kerasnets.cli.train",
            *(recipe.as_flags(config) if config else []), *extra_flags]


def train_seed(config: recipe.TrainConfig, seed: int, out_dir: str,
               data_flags: Sequence[str] = ()) -> int:
    """Runs kerasnets-train for one seed (output to logs/seed-<k>.log); returns its status."""
    os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
    command = train_argv(dataclasses.replace(config, seed=seed),
                            [f"--model_dir={seed_dir(out_dir, seed)}", *data_flags])
    with open(os.path.join(out_dir, "logs", f"seed-{seed}.log"), "a") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


def seed_row(out_dir: str, seed: int, target: float) -> dict:
    """One summary row, read back from the seed's results.json.

    "Last three" are the last three epochs that had a test pass: with --eval_every=N
    the untested epochs (None in results.json) are skipped, and a recipe tested only
    at the end (--eval_every=0) has one, its final model's."""
    with open(os.path.join(seed_dir(out_dir, seed), run_dir.RESULTS_FILE)) as f:
        results = json.load(f)
    last_three = recipe.last_three(results["test_accuracy"])
    return dict(seed=seed, last_three=last_three, last_three_min=min(last_three),
                best=results["best_test_accuracy"], final=results["final_test_accuracy"],
                first_epoch_at_target=results["first_epoch_at_target"],
                seconds=round(sum(results["seconds_per_epoch"]), 1),
                meets_target=recipe.reaches(min(last_three), target))


def summarise(rows: Sequence[dict], target: float) -> dict:
    minima = [r["last_three_min"] for r in rows]
    return dict(target=target, seeds=len(rows), meet=sum(r["meets_target"] for r in rows),
                mean_last_three_min=statistics.mean(minima),
                sd_last_three_min=statistics.stdev(minima) if len(minima) > 1 else 0.0,
                rows=list(rows))


def summary_line(summary: dict) -> str:
    return (f"last-three minimum {100 * summary['mean_last_three_min']:.3f} ± "
            f"{100 * summary['sd_last_three_min']:.3f} % (mean ± sd); {summary['meet']} of "
            f"{summary['seeds']} seeds meet the target {100 * summary['target']:.2f} %")


def format_table(rows: Sequence[dict]) -> str:
    lines = [f"{'seed':>4}  {'last three epochs (%)':>22}  {'min':>6}  {'best':>6}  "
             f"{'first at target':>15}  {'seconds':>7}  meets"]
    for r in rows:
        three = ", ".join(f"{100 * a:.2f}" for a in r["last_three"])
        lines.append(f"{r['seed']:>4}  {three:>22}  {100 * r['last_three_min']:>6.2f}  "
                     f"{100 * r['best']:>6.2f}  {str(r['first_epoch_at_target'] or '—'):>15}  "
                     f"{r['seconds']:>7.1f}  {'yes' if r['meets_target'] else 'no'}")
    return "\n".join(lines)


def write_summary(out_dir: str, summary: dict) -> None:
    """summary.csv, summary.json and seeds.png, each written aside and renamed into place."""
    from kerasnets import plots

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SUMMARY_COLUMNS)
    for r in summary["rows"]:
        writer.writerow([r["seed"], " ".join(repr(a) for a in r["last_three"]),
                         *(repr(r[c]) if isinstance(r[c], float) else r[c]
                           for c in SUMMARY_COLUMNS[2:])])
    with fileio.atomic_file(os.path.join(out_dir, "seeds.png"), "wb") as f:
        plots.plot_seeds(summary["rows"], summary["target"], f)
    with fileio.atomic_file(os.path.join(out_dir, "summary.csv")) as f:
        f.write(buffer.getvalue())
    with fileio.atomic_file(os.path.join(out_dir, "summary.json")) as f:
        json.dump(summary, f, indent=2)


def report(summary: dict, out_dir: str) -> str:
    """What kerasnets-sweep prints at the end: the table, the summary line, the files."""
    return "\n".join([format_table(summary["rows"]), summary_line(summary),
                      f"wrote {os.path.join(os.path.abspath(out_dir), 'summary.csv')}, "
                      "summary.json, seeds.png"])


def sweep(config: recipe.TrainConfig, seeds: Sequence[int], out_dir: str, jobs: int,
          log=print, data_flags: Sequence[str] = ()) -> tuple[dict | None, list[int]]:
    """Holds out_dir (a second sweep on it is refused: fileio.DirectoryInUseError), trains
    every unfinished seed (`jobs` at a time) and writes the summary; returns (summary,
    failed seeds), each seed's last three tested epochs held to the recipe's target. A
    referenced model is checked once, before out_dir is touched."""
    from kerasnets.training import job

    job.check_model(config)
    with fileio.exclusive_directory(out_dir, "kerasnets-sweep", LOCK_FILE, "--out_dir"):
        return _sweep(config, seeds, out_dir, jobs, log, data_flags)


def other_recipe(out_dir: str, seed: int, config: recipe.TrainConfig) -> str | None:
    """Why the finished seed `seed` in out_dir cannot join a sweep of `config` (it ran
    another recipe, or one this version cannot read), or None if it can. The recipe is
    the one the run recorded, read as kerasnets-train reads it (run_dir.recorded_recipe)."""
    wanted = recipe.as_run(dataclasses.replace(config, seed=seed))
    where = f"--out_dir: {seed_dir(out_dir, seed)} holds a finished run of"
    try:
        ran = run_dir.recorded_recipe(seed_dir(out_dir, seed))
    except run_dir.RunDirError:
        ran = None
    if ran is None:
        return (f"{where} a recipe this kerasnets cannot read (no whole "
                f"{run_dir.RECIPE_FILE}); choose another --out_dir")
    changed = run_dir.differences_text(ran, wanted)
    return changed and (f"{where} another recipe ({changed[0]}); sweep with {changed[1]}, or "
                        "choose another --out_dir")


def _sweep(config: recipe.TrainConfig, seeds: Sequence[int], out_dir: str, jobs: int,
           log, data_flags: Sequence[str]) -> tuple[dict | None, list[int]]:
    target = config.target
    for seed in seeds:  # a summary mixing two recipes would say what neither ran
        reason = finished(out_dir, seed) and other_recipe(out_dir, seed, config)
        if reason:
            raise run_dir.RunDirError(reason)
    todo = [s for s in seeds if not finished(out_dir, s)]
    for s in seeds:
        if s not in todo:
            log(f"seed {s}: finished earlier ({seed_dir(out_dir, s)}), skipped")

    def run_one(seed: int) -> tuple[int, int]:
        log(f"seed {seed}: training into {seed_dir(out_dir, seed)}")
        status = train_seed(config, seed, out_dir, data_flags)
        log(f"seed {seed}: " + ("done" if status == 0 else
                                f"failed (exit status {status}; see logs/seed-{seed}.log)"))
        return seed, status

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [seed for seed, status in pool.map(run_one, todo) if status != 0]
    rows = [seed_row(out_dir, s, target) for s in seeds if finished(out_dir, s)]
    summary = summarise(rows, target) if rows else None
    if summary:
        write_summary(out_dir, summary)
    return summary, failed
