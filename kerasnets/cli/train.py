r"""kerasnets-train: train an MNIST convnet from a named recipe.

Reads the recipe (--recipe, default `default`: the compact model to >= 99.5 %):
its values are the flags' defaults, so any flag given overrides it. Trains, and
writes recipe.json (at the start), model.keras, history.csv, results.json,
curves.png, misclassified.png, confusion.png and tensorboard/ into --model_dir.
A run killed part-way and started again with the same recipe resumes from its
last completed epoch; started with another recipe it is refused, naming each
difference (--overwrite starts afresh, from a partial or a finished run).
--export_base also exports the final model as the next version (kerasnets-export).

  kerasnets-train --recipe=fast --model_dir=runs/fast
  kerasnets-train --recipe=default --seed=3 --model_dir=runs/default-3
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags, logging

from kerasnets.training import job
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_string("model_dir", None, "A kerasnets-train run directory (its recipe.json, model.keras, history, results and "
                    "pictures).")
flags.DEFINE_bool("overwrite", False, "Start afresh: replace what an earlier run of the command left in the output "
                  "directory instead of refusing.")
flags.DEFINE_string("export_base", None, "Directory of numbered versions (each a SavedModel with the other formats beside "
                    "it), e.g. savedmodels/mnist: the run's final model is exported into it.")
flags.DEFINE_float("collective_timeout", 120.0, "--strategy=multiworker: seconds a worker "
                   "waits on the others before giving up.", lower_bound=1e-3)
flags.mark_flag_as_required("model_dir")
command.register_export_base_validator()

command.register_output_dir_validator("model_dir")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow's collectives and SavedModel log at INFO
    job.train_and_export(recipe_flags.config(), FLAGS.model_dir, FLAGS.data_dir,
                             FLAGS.mnist_path, FLAGS.overwrite, FLAGS.export_base,
                             FLAGS.collective_timeout, log=lambda line: print(line, flush=True))
    return 0


def run():
    """Console-script entry point (kerasnets-train)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
