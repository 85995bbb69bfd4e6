r"""kerasnets-toynet: the backprop workbench on the command line.

Trains the 2-2-2 network by plain gradient descent at each learning rate,
checking the hand-derived gradients against tf.GradientTape at every step, and
writes into --out_dir:

  sweep.csv      one row per (lr, step): weights, forward pass, loss, gradients
  lr_sweep.png   E_total against step, one line per learning rate
  backprop.xlsx  the same computation as live spreadsheet formulas, with charts

Example:
  kerasnets-toynet --flagfile=flags/toynet.flags --out_dir=runs/toynet
"""

from __future__ import annotations

import csv
import math
import os
import sys
from typing import Sequence

from absl import app, flags

from kerasnets import backprop, fileio, plots, workbook

THRESHOLD = workbook.THRESHOLD
MAX_STEPS = 100_000
_DEFAULT = backprop.ToyNet()


def write_sweep_csv(path: str, runs: Sequence[backprop.Run]) -> None:
    """Long-format CSV, every float as repr() so it round-trips to the last bit."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(backprop.COLUMNS)
        for run in runs:
            for row in run.rows:
                out.writerow([repr(float(row[0])), int(row[1])] + [repr(float(v)) for v in row[2:]])


def format_table(runs: Sequence[backprop.Run]) -> str:
    """The learning-rate table printed at the end of a run."""
    last = len(runs[0].rows) - 1
    head = (f"{'lr':>6}  {'E_total@0':>12}  {'E_total@1':>12}  {f'E_total@{last}':>12}  "
            f"{f'first step E<{THRESHOLD}':>19}  {'max rel |hand-tape|':>19}")
    lines = [head]
    for run in runs:
        e = run.column("E_total")
        hit = run.first_step_below(THRESHOLD)
        lines.append(f"{run.lr:>6g}  {e[0]:>12.9f}  {e[1]:>12.9f}  {e[-1]:>12.9f}  "
                     f"{'—' if hit is None else hit:>19}  {run.max_relative_difference:>19.2e}")
    return "\n".join(lines)


def run_workbench(out_dir: str, net: backprop.ToyNet, lrs: Sequence[float], steps: int,
                  log_scale: bool = True) -> list[backprop.Run]:
    """Trains at every lr (checking hand = tape at each step), then writes the outputs.

    Everything is computed before anything is written; the three files are
    written into a scratch directory and moved into `out_dir` together.
    """
    runs = backprop.sweep(net, lrs, steps)
    with fileio.atomic_output_dir(out_dir) as scratch:
        write_sweep_csv(os.path.join(scratch, "sweep.csv"), runs)
        plots.plot_lr_sweep(runs, os.path.join(scratch, "lr_sweep.png"), log_scale)
        workbook.write_workbook(os.path.join(scratch, "backprop.xlsx"), net, runs, log_scale)
    return runs


# --- command line -------------------------------------------------------------

FLAGS = flags.FLAGS
flags.DEFINE_list("lrs", ["0.1", "0.2", "0.5", "0.8", "1.0", "2.0"],
                  "Comma-separated learning rates, each finite and > 0, no repeats.")
flags.DEFINE_integer("steps", 100, f"Gradient-descent updates per learning rate (1..{MAX_STEPS}).")
for _name in ("i1", "i2"):
    flags.DEFINE_float(_name, getattr(_DEFAULT, _name), f"Input {_name} (finite).")
for _name in ("t1", "t2"):
    flags.DEFINE_float(_name, getattr(_DEFAULT, _name), f"Target {_name}, in the open interval (0, 1).")
for _name, _value in zip(backprop.WEIGHT_NAMES, _DEFAULT.weights):
    flags.DEFINE_float(_name, _value, f"Initial weight {_name} (finite).")
for _name in ("b1", "b2"):
    flags.DEFINE_float(_name, 0.0, f"Bias {_name}, held fixed during training (finite).")
flags.DEFINE_string("out_dir", None, "Directory to write sweep.csv, lr_sweep.png and backprop.xlsx.")
flags.DEFINE_bool("overwrite", False, "Replace the files of a non-empty --out_dir.")
flags.DEFINE_bool("log_scale", True, "Plot E_total on a log scale (plot and summary chart).")
flags.mark_flag_as_required("out_dir")


def _parse_lrs(values: Sequence[str]) -> list[float]:
    lrs = [float(v) for v in values]
    if not lrs:
        raise ValueError("is empty")
    bad = [v for v in lrs if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"has {bad[0]!r}")
    if len(set(lrs)) != len(lrs):
        raise ValueError("repeats a value")
    return lrs


def _lrs_valid(values) -> bool:
    try:
        _parse_lrs(values)
    except ValueError:
        return False
    return True


flags.register_validator(
    "lrs", _lrs_valid,
    "--lrs must be a comma list of distinct finite learning rates > 0, e.g. 0.1,0.5,1.0")
flags.register_validator(
    "steps", lambda v: v is not None and 1 <= v <= MAX_STEPS,
    f"--steps must be an integer in 1..{MAX_STEPS}")
for _name in ("t1", "t2"):
    flags.register_validator(
        _name, lambda v: v is not None and 0.0 < v < 1.0,
        f"--{_name} must be in the open interval (0, 1): a sigmoid output never reaches 0 or 1")
for _name in ("i1", "i2", "b1", "b2") + backprop.WEIGHT_NAMES:
    flags.register_validator(_name, lambda v: v is not None and math.isfinite(v),
                             f"--{_name} must be a finite number")


@flags.multi_flags_validator(["out_dir", "overwrite"])
def _check_out_dir(values) -> bool:
    problem = fileio.output_dir_problem(values["out_dir"], values["overwrite"])
    if problem:
        raise flags.ValidationError(f"--out_dir: {problem}")
    return True


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    net = backprop.ToyNet(i1=FLAGS.i1, i2=FLAGS.i2, t1=FLAGS.t1, t2=FLAGS.t2, b1=FLAGS.b1,
                          b2=FLAGS.b2, weights=tuple(FLAGS[w].value for w in backprop.WEIGHT_NAMES))
    try:
        runs = run_workbench(FLAGS.out_dir, net, _parse_lrs(FLAGS.lrs), FLAGS.steps, FLAGS.log_scale)
    except backprop.GradientMismatchError as e:
        print(f"kerasnets-toynet: error: {e}", file=sys.stderr)
        return 1
    print(format_table(runs))
    print(f"hand-derived gradients = tf.GradientTape at every step (relative difference "
          f"<= {backprop.GRADIENT_RTOL:g})")
    out = os.path.abspath(FLAGS.out_dir)
    for name in ("sweep.csv", "lr_sweep.png", "backprop.xlsx"):
        print(f"wrote {os.path.join(out, name)}")
    return 0


def run():
    """Console-script entry point (kerasnets-toynet)."""
    app.run(main)


if __name__ == "__main__":
    run()
