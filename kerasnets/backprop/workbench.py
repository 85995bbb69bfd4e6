r"""The backprop workbench: the 2-2-2 network's learning-rate study and its four files.

`run_workbench()` trains the 2-2-2 network by plain gradient descent at each learning rate,
checking the hand-derived gradients against tf.GradientTape at every step, and
writes into `out_dir`:

  sweep.csv      one row per (lr, step): weights, forward pass, loss, gradients
  lr_sweep.png   E_total against step, one line per learning rate
  backprop.xlsx  the same computation as live spreadsheet formulas, with charts
  backprop.html  the network to edit and step in a browser (kerasnets.backprop.html_page)

The command line is kerasnets-toynet (kerasnets.cli.toynet).
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

from kerasnets import fileio, plots
from kerasnets.backprop import chain_rule, html_page, workbook

THRESHOLD = workbook.THRESHOLD


def write_sweep_csv(path: str, runs: Sequence[chain_rule.Run]) -> None:
    """Long-format CSV, every float as repr() so it round-trips to the last bit."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(chain_rule.COLUMNS)
        for run in runs:
            for row in run.rows:
                out.writerow([repr(float(row[0])), int(row[1])] + [repr(float(v)) for v in row[2:]])


def format_table(runs: Sequence[chain_rule.Run]) -> str:
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


def run_workbench(out_dir: str, net: chain_rule.ToyNet, lrs: Sequence[float], steps: int,
                  log_scale: bool = True) -> list[chain_rule.Run]:
    """Trains at every lr (checking hand = tape at each step), then writes the outputs.

    Everything is computed before anything is written; the four files are
    written into a scratch directory and moved into `out_dir` together.
    """
    runs = chain_rule.sweep(net, lrs, steps)
    with fileio.atomic_output_dir(out_dir) as scratch:
        write_sweep_csv(os.path.join(scratch, "sweep.csv"), runs)
        plots.plot_lr_sweep(runs, os.path.join(scratch, "lr_sweep.png"), log_scale)
        workbook.write_workbook(os.path.join(scratch, "backprop.xlsx"), net, runs, log_scale)
        html_page.write(os.path.join(scratch, html_page.PAGE_FILE), net, lrs, steps)
    return runs
