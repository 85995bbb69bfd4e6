r"""kerasnets-search: search a design under a parameter budget, on Optuna.

Samples designs from --space (`five_block`, our design family, or your own
PATH.py:FUNCTION taking an Optuna trial and returning a Keras model), computes
each one's design card first and never trains one over --max_params (it is
recorded as pruned, over_budget, and does not count; 0: no budget). Each trial trains with the
recipe flags as kerasnets-train reads them, as an ordinary run directory under
--out_dir/trials/, on the training images less a fixed validation split
(--validation_examples): its validation accuracy per epoch lets Optuna prune
weak trials, and selects. Then the best design is trained on the recipe's
training images and tested once (--out_dir/best/), and summary.csv, summary.json
and trials.png are written beside study.db (the default storage) and trials/.

The study lives in --out_dir/study.db (SQLite) unless --storage names a
database: the same command on several machines, one --storage, trains exactly
--trials trials between them. Killed, the same command carries on.

  kerasnets-search --space=five_block --max_params=8000 --trials=30 --out_dir=runs/search8k
  kerasnets-search --recipe=fast --objectives=accuracy,seconds --max_params=20000 \
      --trials=20 --out_dir=runs/search_fast
  kerasnets-search ... --storage=postgresql://kerasnets:PASSWORD@db-host/kerasnets
"""

from __future__ import annotations

import threading
from typing import Sequence

from absl import app, flags, logging

from kerasnets.cli import command, data_flags, recipe_flags
from kerasnets.search import run as search_run, spaces, study as studies

FLAGS = flags.FLAGS

recipe_flags.define(FLAGS)
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_string("space", spaces.FIVE_BLOCK, f"What a trial samples: {spaces.FORMS}.")
command.define_budget_flag()
flags.declare_key_flag("max_params")
flags.DEFINE_integer("trials", None, "The study's total of trained trials (over the budget and "
                     "failed ones do not count), however many workers share it.", lower_bound=1)
flags.DEFINE_string("out_dir", None, "Directory of the command's outputs (the files are listed above).")
flags.DEFINE_string("storage", None, "A database URL for the study, e.g. postgresql://USER:"
                    "PASSWORD@HOST/DB, shared by workers on several machines (default: SQLite "
                    "in --out_dir/study.db).")
flags.DEFINE_string("study_name", "kerasnets-search", "The study's name in its storage.")
flags.DEFINE_integer("validation_examples", 10_000, "Training images held out to select on "
                     "(the test set is used once, on the best design).", lower_bound=1)
flags.DEFINE_string("objectives", "accuracy", "accuracy, or accuracy,seconds: a two-objective "
                    "search of validation accuracy and training seconds (its Pareto front).")
flags.DEFINE_bool("train_best", True, "At the end, train the best design on all training "
                  "images and test it once.")
flags.DEFINE_integer("heartbeat_seconds", 10, "How often a trial tells the study it is alive; "
                     "one silent for 3 times as long counts as failed.", lower_bound=1)
flags.mark_flags_as_required(["trials", "out_dir"])
flags.register_validator("space", lambda v: not spaces.name_problem(v),
                         "--space must be " + spaces.FORMS)
flags.register_validator("objectives", lambda v: not search_run.objectives_problem(v),
                         "--objectives must be accuracy or accuracy,seconds")

command.register_output_dir_validator("out_dir")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS["model"].present:
        return command.fail("--model names one design; kerasnets-search samples its designs "
                            "from --space")
    logging.set_verbosity(logging.WARNING)
    threading.excepthook = studies.heartbeat_excepthook(threading.excepthook)
    search_run.run_search(
        FLAGS.space, FLAGS.max_params, FLAGS.trials, FLAGS.out_dir, recipe_flags.config(),
        FLAGS.storage, FLAGS.study_name, FLAGS.validation_examples, FLAGS.objectives,
        FLAGS.data_dir, FLAGS.mnist_path, FLAGS.train_best, FLAGS.heartbeat_seconds,
        log=lambda line: print(line, flush=True))
    return 0


def run():
    """Console-script entry point (kerasnets-search)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
