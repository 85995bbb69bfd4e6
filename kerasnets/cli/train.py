r"""kerasnets-train: train an MNIST convnet from a named recipe.

Reads the recipe (--recipe, default `default`: the compact model to >= 99.5 %)
as if its flags came first, so any flag given after it overrides it, trains,
and writes model.keras, history.csv, results.json, curves.png,
misclassified.png, confusion.png and tensorboard/ into --model_dir. A run killed
part-way and started again with the same command resumes from its last
completed epoch; --export_base also exports the final model as the next
SavedModel version.

  kerasnets-train --recipe=fast --model_dir=runs/fast
  kerasnets-train --recipe=default --seed=3 --model_dir=runs/default-3
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Sequence

from absl import app, flags, logging

from kerasnets import data, export, fileio, models, recipe, training
from kerasnets.cli import command, data_flags, recipe_flags

FLAGS = flags.FLAGS

flags.DEFINE_enum("recipe", "default", list(recipe.names()),
                  "The recipe to train (flags/NAME.flags), read as if its flags came first: later "
                  "flags override it.")
flags.adopt_module_key_flags(recipe_flags)
flags.adopt_module_key_flags(data_flags)
flags.DEFINE_string("model_dir", None, "Directory for the model, history, results and pictures.")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in --model_dir.")
flags.DEFINE_string("export_base", None, "Also export the final model as the next SavedModel "
                    "version under this directory (e.g. savedmodels/mnist; see kerasnets-export).")
flags.DEFINE_float("collective_timeout", 120.0, "--strategy=multiworker: seconds a worker "
                   "waits on the others before giving up.", lower_bound=1e-3)
flags.mark_flag_as_required("model_dir")
command.register_export_base_validator()


@flags.multi_flags_validator(["model_dir", "overwrite"])
def _check_model_dir(values) -> bool:
    path = values["model_dir"]
    if path and os.path.isfile(os.path.join(path, "results.json")) and not values["overwrite"]:
        raise flags.ValidationError(f"--model_dir: {os.path.abspath(path)} holds a finished run; "
                                    "pass --overwrite to replace it, or choose another directory")
    problem = fileio.output_dir_problem(path, overwrite=True)  # a partial run is resumed
    if problem:
        raise flags.ValidationError(f"--model_dir: {problem}")
    return True


def train_command(config: recipe.TrainConfig, model_dir: str, data_dir: str | None,
                  mnist_path: str | None, overwrite: bool, export_base: str | None,
                  collective_timeout: float) -> int:
    """Locks --model_dir (a second run on it is refused) and trains into it."""
    model_dir = os.path.abspath(model_dir)
    lock_dir, cluster = model_dir, None
    if config.strategy == "multiworker":
        from kerasnets import distributed
        cluster = distributed.cluster_spec()
        if cluster[1]:  # a non-chief worker works in its own subdirectory
            lock_dir = os.path.join(model_dir, f".worker-{cluster[1]}")
    owner = f"kerasnets-train (started {time.strftime('%Y-%m-%d %H:%M:%S')})"
    try:
        with fileio.exclusive_directory(lock_dir, owner, training.LOCK_FILE):
            return train_into(config, model_dir, cluster, data_dir, mnist_path, overwrite,
                              export_base, collective_timeout)
    except fileio.DirectoryInUseError as e:
        return command.fail(f"--model_dir: {e}")


def train_into(config: recipe.TrainConfig, model_dir: str, cluster: tuple[int, int] | None,
               data_dir: str | None, mnist_path: str | None, overwrite: bool,
               export_base: str | None, collective_timeout: float) -> int:
    """The run behind kerasnets-train, once --model_dir is locked; returns the exit status."""
    strategy = None
    if cluster is not None:
        from kerasnets import distributed
        # Before TensorFlow runs anything else: the collectives are set up at start-up.
        logging.set_verbosity(logging.WARNING)  # one INFO line per collective otherwise
        distributed.tf.get_logger().setLevel("WARNING")
        training.set_threads(config.intra_op_threads)
        strategy = distributed.create_strategy(collective_timeout)
    mnist, source = data.resolve_mnist(data_dir, mnist_path)
    log = lambda line: print(line, flush=True)  # noqa: E731
    log(f"MNIST: {source}")
    if overwrite and os.path.isfile(os.path.join(model_dir, "results.json")):
        remove_finished_run(model_dir)
    if strategy is None:
        results = training.train(config, mnist, model_dir, log=log)
    else:
        results = distributed.train(config, mnist, model_dir, strategy, log=log)
        if results is None:
            workers, index = cluster
            print(f"worker {index} of {workers}: done (the chief, worker 0, wrote the outputs)")
            return 0
    print(f"wrote {model_dir}: {', '.join(training.OUTPUT_FILES)}, tensorboard/ "
          f"(best test accuracy {100 * results['best_test_accuracy']:.2f}%)")
    if export_base:
        logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
        export.tf_logger_quiet()
        model = models.load_model(os.path.join(model_dir, "model.keras"))
        print(f"exported SavedModel {export.export_savedmodel(model, export_base)}")
    return 0


def remove_finished_run(model_dir: str) -> None:
    """--overwrite: the files of a finished run, so the new run starts from scratch."""
    for name in training.OUTPUT_FILES + ("tensorboard", training.BACKUP_DIR):
        path = os.path.join(model_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return train_command(recipe_flags.config(), FLAGS.model_dir, FLAGS.data_dir,
                         FLAGS.mnist_path, FLAGS.overwrite, FLAGS.export_base,
                         FLAGS.collective_timeout)


def run():
    """Console-script entry point (kerasnets-train)."""
    command.run(main, __name__, default_recipe="default")


if __name__ == "__main__":
    run()
