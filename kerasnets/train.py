r"""kerasnets-train: train an MNIST convnet from the command line.

  kerasnets-train --flagfile=flags/default.flags --model_dir=runs/default

Writes model.keras, history.csv, results.json, curves.png, misclassified.png,
confusion.png and tensorboard/ into --model_dir. A run killed part-way and
started again with the same command resumes from its last completed epoch.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from typing import Sequence

from absl import app, flags, logging

from kerasnets import data, export, fileio, models, training

FLAGS = flags.FLAGS
_D = training.TrainConfig()

data.define_data_flags()
flags.DEFINE_enum("model", _D.model, list(models.BUILDERS), "Architecture (kerasnets.models).")
flags.DEFINE_integer("epochs", _D.epochs, "Epochs to train (1..1000).", lower_bound=1, upper_bound=1000)
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size (1..8192).",
                     lower_bound=1, upper_bound=8192)
flags.DEFINE_enum("optimizer", _D.optimizer, list(training.OPTIMIZERS), "sgd (with momentum) or adamw.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Peak learning rate (> 0).")
flags.DEFINE_float("momentum", _D.momentum, "SGD momentum, 0..<1.", lower_bound=0.0)
flags.DEFINE_bool("nesterov", _D.nesterov, "Nesterov momentum for --optimizer=sgd.")
flags.DEFINE_float("weight_decay", _D.weight_decay, "Decoupled weight decay (>= 0).", lower_bound=0.0)
flags.DEFINE_enum("schedule", _D.schedule, list(training.SCHEDULES),
                  "constant, or cosine: linear warm-up then cosine decay to 0.")
flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Warm-up length for --schedule=cosine.",
                   lower_bound=0.0)
flags.DEFINE_bool("augment", _D.augment, "Random rotation/shift/scale of training images.")
flags.DEFINE_float("rotation", _D.rotation, "Max rotation in degrees (0..180).", lower_bound=0.0,
                   upper_bound=180.0)
flags.DEFINE_float("shift", _D.shift, "Max shift in pixels (0..14).", lower_bound=0.0, upper_bound=14.0)
flags.DEFINE_float("scale", _D.scale, "Max relative scale change (0..0.5).", lower_bound=0.0,
                   upper_bound=0.5)
flags.DEFINE_integer("clean_epochs", _D.clean_epochs, "With --augment: train the last N epochs "
                     "on unaugmented images (0 = augment every epoch).", lower_bound=0)
flags.DEFINE_enum("precision", _D.precision, list(training.PRECISIONS),
                  "auto = mixed_float16 on a GPU, float32 on CPU; the softmax is always float32.")
flags.DEFINE_enum("strategy", _D.strategy, list(training.STRATEGIES),
                  "tf.distribute strategy: auto (mirrored on several GPUs), default, mirrored, "
                  "multiworker (TF_CONFIG; see README).")
flags.DEFINE_integer("seed", _D.seed, "Random seed (>= 0).", lower_bound=0)
flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution,
                     "Batches per compiled call (1..1000); more means fewer Python round trips.",
                     lower_bound=1, upper_bound=1000)
flags.DEFINE_integer("intra_op_threads", _D.intra_op_threads,
                     "Threads per TensorFlow op (0 = all cores; 1 measured fastest for batch 32 "
                     "on 2 cores, see README).", lower_bound=0, upper_bound=1024)
flags.DEFINE_float("collective_timeout", 120.0, "--strategy=multiworker: seconds a worker "
                   "waits on the others before giving up (> 0).", lower_bound=1e-3)
flags.DEFINE_bool("deterministic", _D.deterministic, "Deterministic ops (identical reruns on CPU).")
flags.DEFINE_integer("train_examples", 0, "Use the first N training images (0 = all).",
                     lower_bound=0, upper_bound=60000)
flags.DEFINE_integer("test_examples", 0, "Use the first N test images (0 = all).",
                     lower_bound=0, upper_bound=10000)
flags.DEFINE_string("model_dir", None, "Directory for the model, history, results and pictures.")
flags.DEFINE_bool("overwrite", False, "Replace a finished run in --model_dir.")
flags.DEFINE_string("export_base", None, "Also export the final model as the next SavedModel "
                    "version under this directory (e.g. savedmodels/mnist; see kerasnets-export).")
flags.mark_flag_as_required("model_dir")

flags.register_validator("learning_rate", lambda v: v > 0 and v < float("inf"),
                         "--learning_rate must be a finite number > 0")
flags.register_validator("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1)")



export.register_export_base_validator()
flags.register_multi_flags_validator(
    ["clean_epochs", "epochs"], lambda v: v["clean_epochs"] < v["epochs"],
    "--clean_epochs must be smaller than --epochs (at least one epoch is augmented)")


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


def config_from_flags() -> training.TrainConfig:
    return training.TrainConfig(**{f.name: FLAGS[f.name].value
                                   for f in dataclasses.fields(training.TrainConfig)})


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    strategy = None
    if config.strategy == "multiworker":
        from kerasnets import distributed
        try:
            workers, index = distributed.cluster_spec()
        except ValueError as e:
            print(f"kerasnets-train: error: {e}", file=sys.stderr)
            return 1
        # Before TensorFlow runs anything else: the collectives are set up at start-up.
        logging.set_verbosity(logging.WARNING)  # one INFO line per collective otherwise
        distributed.tf.get_logger().setLevel("WARNING")
        training.set_threads(config.intra_op_threads)
        strategy = distributed.create_strategy(FLAGS.collective_timeout)
    try:
        mnist = data.load_mnist(FLAGS.data_dir, FLAGS.mnist_path)
    except data.MnistDataError as e:
        print(f"kerasnets-train: error: {e}", file=sys.stderr)
        return 1
    model_dir = os.path.abspath(FLAGS.model_dir)
    if FLAGS.overwrite and os.path.isfile(os.path.join(model_dir, "results.json")):
        for name in training.OUTPUT_FILES + ("tensorboard", training.BACKUP_DIR):
            path = os.path.join(model_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(model_dir, exist_ok=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if strategy is None:
            results = training.train(config, mnist, model_dir, log=log)
        else:
            results = distributed.train(config, mnist, model_dir, strategy, log=log)
            if results is None:
                print(f"worker {index} of {workers}: done (the chief, worker 0, wrote the outputs)")
                return 0
    except (training.NanLossError, ValueError) as e:
        print(f"kerasnets-train: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # distributed.WorkerLostError
        print(f"kerasnets-train: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {model_dir}: {', '.join(training.OUTPUT_FILES)}, tensorboard/ "
          f"(best test accuracy {100 * results['best_test_accuracy']:.2f}%)")
    if FLAGS.export_base:
        logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
        export.tf_logger_quiet()
        model = models.load_model(os.path.join(model_dir, "model.keras"))
        print(f"exported SavedModel {export.export_savedmodel(model, FLAGS.export_base)}")
    return 0


def run():
    """Console-script entry point (kerasnets-train)."""
    app.run(main)


if __name__ == "__main__":
    run()
