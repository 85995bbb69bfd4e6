r"""kerasnets-sweep: one recipe at several seeds, and how often it meets its target.

Trains the recipe (--recipe and any recipe flag after it, as kerasnets-train
reads them) once per seed of --seeds into <out_dir>/seed-<k>/, --jobs at a time;
a seed that finished earlier is skipped, one killed part-way resumes. Then it
writes summary.csv, summary.json and seeds.png into --out_dir and prints, per
seed, the last three tested epochs' accuracies, and how many seeds meet the
recipe's --target in each of them. One sweep at a time may use an --out_dir.

  kerasnets-sweep --recipe=default --seeds=0-7 --out_dir=runs/sweep_default
  kerasnets-sweep --recipe=wide --seeds=0-7 --out_dir=runs/sweep_wide
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags

from kerasnets.training import seed_sweep
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_string("seeds", "0-7", "Seeds: a range like 0-7, a list like 1,4,9, or one.")
flags.DEFINE_string("out_dir", None, "Directory of the command's outputs (the files are listed above).")
flags.DEFINE_integer("jobs", 2, "Seeds trained at once.", lower_bound=1)
flags.mark_flag_as_required("out_dir")
flags.register_validator("seeds", command.check_seeds_flag)

command.register_output_dir_validator("out_dir")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    summary, failed = seed_sweep.sweep(
        recipe_flags.config(), seed_sweep.parse_seeds(FLAGS.seeds), FLAGS.out_dir, FLAGS.jobs,
        log=lambda line: print(line, flush=True),
        data_flags=seed_sweep.child_data_flags(FLAGS.data_dir, FLAGS.mnist_path))
    if summary:
        print(seed_sweep.report(summary, FLAGS.out_dir))
    if failed:
        return command.fail(f"seeds {', '.join(map(str, failed))} failed; see "
                            f"{os.path.join(FLAGS.out_dir, 'logs')}")
    return 0


def run():
    """Console-script entry point (kerasnets-sweep)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
