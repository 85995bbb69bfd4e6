r"""kerasnets-compare: finished runs side by side.

  kerasnets-compare RUN_DIR [RUN_DIR ...] --out_dir=DIR [--json] [--overwrite]

Reads each RUN_DIR (a finished kerasnets-train --model_dir: its recipe.json,
results.json and, where the run wrote one, design.json) and prints one row per
run, in the order given: model, trainable parameters, MACs, epochs, final test
accuracy, the minimum over the last three tested epochs, the recipe's target, the
first epoch and seconds to it, and the gap between final train and test accuracy.
Writes compare.csv (the rows) and compare.png (test accuracy and loss by epoch,
train dashed) into --out_dir; every run is read and checked before anything is
written, and an earlier compare.csv or compare.png is replaced only with --overwrite.

  kerasnets-compare runs/default runs/wide --out_dir=runs/compare
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from kerasnets.cli import command
from kerasnets.training import compare

FLAGS = flags.FLAGS

flags.DEFINE_string("out_dir", None, "Directory of the command's outputs (the files are listed above).")
flags.DEFINE_bool("json", False, "Also print the results as one JSON line at the end.")
flags.DEFINE_bool("overwrite", False, "Start afresh: replace what an earlier run of the command left in the output "
                  "directory instead of refusing.")
flags.mark_flag_as_required("out_dir")

USAGE = "kerasnets-compare RUN_DIR [RUN_DIR ...] --out_dir=DIR [--json] [--overwrite]"

command.register_output_dir_validator("out_dir")


def main(argv: Sequence[str]) -> int:
    run_dirs = list(argv[1:])
    if not run_dirs:
        return command.fail(f"no run directories given; usage: {USAGE}")
    rows = compare.compare_and_write(run_dirs, FLAGS.out_dir, FLAGS.overwrite)
    print(compare.report(rows, FLAGS.out_dir), flush=True)
    if FLAGS.json:
        print(compare.json_line(rows), flush=True)
    return 0


def run():
    """Console-script entry point (kerasnets-compare)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
