"""Training the MNIST convnets with Keras's fit: small functions over one TrainConfig.

  create_model(config, steps_per_epoch)   build + compile (kerasnets.training.recipe)
  train(config, data, model_dir)          fit with resume, NaN guard, outputs
  predict_probabilities(model, images)    softmax outputs (scored by kerasnets.training.records)

Resume: after every epoch the full training state (model.keras with optimizer
state, plus state.json with the history so far) is written into
`<model_dir>/backup/epoch-NNNN/` (built aside, renamed into place). A run
started again with the same flags continues from the newest complete backup;
because the pipeline's epoch e depends only on (seed, e), the resumed run sees
the same batches and ends with the same history as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerasnets import errors, fileio
from kerasnets.data import pipeline
from kerasnets.models import convnets
from kerasnets.training import hparams, recipe, records, run_dir
from kerasnets.training.recipe import (TrainConfig, augmented_epochs, create_model, reaches,
                              select_examples)
from kerasnets.training.run_dir import BACKUP_DIR


class NanLossError(errors.KerasnetsError, RuntimeError):
    """The training loss became NaN or infinite."""


def set_threads(intra_op_threads: int) -> None:
    """Threads per op (0 = TensorFlow's default). Only possible before TensorFlow starts its
    runtime; later, a different setting is refused with RuntimeError."""
    if intra_op_threads and tf.config.threading.get_intra_op_parallelism_threads() != intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)


@contextlib.contextmanager
def run_settings(config: TrainConfig) -> Iterator[str]:
    """The process-wide settings a run needs, for the duration of the block; yields the
    resolved precision.

    Restored afterwards: Keras's dtype policy and the Python and NumPy random states.
    Left as set, because TensorFlow offers no public way back: the threads per op
    (fixed once its runtime starts), op determinism (it can only be enabled) and
    TensorFlow's global seed (only later unseeded random ops see it).
    """
    set_threads(config.intra_op_threads)
    policy = keras.mixed_precision.global_policy()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision = records.resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield precision
    finally:
        keras.mixed_precision.set_global_policy(policy)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def create_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The strategy's public name (MultiWorkerMirroredStrategy's class is
    CollectiveAllReduceStrategy)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


def predict_probabilities(model: keras.Model, images: np.ndarray,
                          batch_size: int = 1000) -> np.ndarray:
    """The model's softmax outputs for uint8 images [n, 28, 28]."""
    return model.predict(images.reshape(-1, 28, 28, 1), batch_size=batch_size, verbose=0)


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predicted classes) of `model` on the given examples."""
    return records.scores(predict_probabilities(model, images, batch_size), labels)


def augmentation(config: TrainConfig) -> pipeline.Augment | None:
    """The training-set augmentation of a run (None with --noaugment)."""
    if not config.augment:
        return None
    until_epoch = augmented_epochs(config) if config.clean_epochs else None
    return pipeline.Augment(config.rotation, config.shift, config.scale, until_epoch)


# --- resume state -------------------------------------------------------------------

class EpochRecorder(records.EpochHistory):
    """After each epoch: the history row and line (records.EpochHistory), a complete
    backup, and the stop once --stop_at_accuracy is reached."""

    def __init__(self, model_dir: str, config: TrainConfig, history: list[dict],
                 test_size: int, log: Callable[[str], None]):
        super().__init__(history, test_size, log)
        self.model_dir, self.config = model_dir, config

    def on_epoch_end(self, epoch, logs=None):
        recorded = len(self.history)
        super().on_epoch_end(epoch, logs)
        if len(self.history) == recorded:
            return  # a non-finite loss: NanGuard stops the run, the last backup stays newest
        write_backup(self.model_dir, self.model, self.history)
        if reached(self.history, self.config.stop_at_accuracy):
            self.model.stop_training = True


def write_backup(model_dir: str, model: keras.Model, history: list[dict]) -> None:
    """The full training state after len(history) epochs, as one new backup directory
    (built aside and renamed); older backups are removed once it is in place."""
    root = os.path.join(model_dir, BACKUP_DIR)
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, f"epoch-{len(history):04d}")
    with fileio.atomic_output_dir(target) as scratch:
        model.save(os.path.join(scratch, "model.keras"))
        with open(os.path.join(scratch, "state.json"), "w") as f:
            json.dump(dict(epochs_done=len(history), history=history), f)
    for old in os.listdir(root):
        if old != os.path.basename(target):
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)


def reached(history: list[dict], stop_at: float) -> bool:
    """Whether a --stop_at_accuracy level (0 = none) was met by the last epoch in `history`:
    EpochRecorder then stops the run, and a run resumed after it stopped there trains no
    further."""
    last = history[-1]["test_accuracy"] if history else None
    return bool(stop_at) and last is not None and reaches(last, stop_at)


class NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite batch loss (the last backup is the last good state)."""

    def __init__(self):
        super().__init__()
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = batch
            self.model.stop_training = True


# --- the run ------------------------------------------------------------------------

def train(config: TrainConfig, data, model_dir: str, log: Callable[[str], None] = print,
          verbose: int | None = None,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          overwrite: bool = False, design: run_dir.Design | None = None) -> dict:
    """Trains (resuming from model_dir's backup if any) and writes all outputs.

    The directory records the recipe; a run of another recipe in it, or a finished
    one, is refused with run_dir.RunDirError unless `overwrite` (which removes it
    first: kerasnets.training.run_dir). Returns the results dict written to results.json.
    Raises NanLossError if the
    loss diverges (outputs of the last complete epoch stay in the backup), and
    errors.DiskFullError if the disk fills (the last backup stays intact, and the
    same command resumes from it once space is freed). Process-wide settings: see
    run_settings(). A `design` (kerasnets.search's sampled models) is trained instead of
    the model --model builds, and recorded in recipe.json.
    """
    if config.strategy == "multiworker":
        raise recipe.ConfigError("--strategy=multiworker trains through "
                                 "kerasnets.training.distributed.train_multiworker (kerasnets-train "
                                 "calls it), not kerasnets.train", ("strategy",))
    try:
        set_threads(config.intra_op_threads)  # before start builds a model (TF's runtime starts)
        run_dir.start(model_dir, config, overwrite, records.resolve_precision(config.precision),
                      log, design)
        with run_settings(config) as precision:
            return _train(config, data, model_dir, precision, log, verbose, extra_callbacks,
                          design)
    except (OSError, tf.errors.OpError) as e:  # TensorFlow's writers report the OS's error
        if errors.is_disk_full(e):
            raise errors.disk_full(e, model_dir, "the run's files") from None
        raise


def _train(config: TrainConfig, data, model_dir: str, precision: str,
           log: Callable[[str], None], verbose: int | None,
           extra_callbacks: Sequence[keras.callbacks.Callback],
           design: run_dir.Design | None = None) -> dict:
    (x_train, y_train), (x_test, y_test) = select_examples(config, data)
    steps = pipeline.steps_per_epoch(len(x_train), config.batch_size)
    strategy = create_strategy(config.strategy)
    with strategy.scope():
        model, history = restore_or_create(config, model_dir, steps, log, design)
    fit_start = time.perf_counter()
    fit(config, model, history, ((x_train, y_train), (x_test, y_test)), model_dir, log,
        verbose, extra_callbacks)
    if reached(history, config.stop_at_accuracy) and len(history) < config.epochs:
        log(f"stopped after epoch {len(history)} of {config.epochs}: test accuracy "
            f"{100 * history[-1]['test_accuracy']:.2f}% reached --stop_at_accuracy")
    return finish_run(config, model, history, ((x_train, y_train), (x_test, y_test)), model_dir,
                      precision, strategy, log, fit_start=fit_start)


def finish_run(config: TrainConfig, model: keras.Model, history: list[dict], data,
               model_dir: str, precision: str, strategy: tf.distribute.Strategy,
               log: Callable[[str], None], fit_start: float | None = None, **extra) -> dict:
    """The end of a run, the same for both loops (this one and kerasnets.training.distributed): the
    final model's test and train scores and their line, results.json (with `extra`, and
    train_seconds from `fit_start`) and the other outputs, and the backup removed."""
    (x_train, y_train), (x_test, y_test) = data
    test_loss, test_acc, predicted = evaluate(model, x_test, y_test)
    if fit_start is not None:
        # First batch to the final model's test accuracy, tf.function tracing included (on
        # a resumed run: of this process's epochs only).
        extra["train_seconds"] = time.perf_counter() - fit_start
    if history and history[-1]["test_accuracy"] is None:  # the final pass tested the last epoch
        history[-1].update(test_loss=test_loss, test_accuracy=test_acc)
    _, train_acc, _ = evaluate(model, x_train, y_train)
    log(f"final model: train accuracy {100 * train_acc:.2f}%, test accuracy {100 * test_acc:.2f}%")
    results = records.results_dict(config, model, history, (test_loss, test_acc, train_acc),
                                   precision, strategy_name(strategy),
                                   strategy.num_replicas_in_sync, **extra)
    hparams.write(os.path.join(model_dir, "tensorboard"), config, results)
    write_outputs(model_dir, model, history, results, x_test, y_test, predicted)
    shutil.rmtree(os.path.join(model_dir, BACKUP_DIR), ignore_errors=True)
    return results


def restore_or_create(config: TrainConfig, model_dir: str, steps_per_epoch: int,
                      log: Callable[[str], None], design: run_dir.Design | None = None
                      ) -> tuple[keras.Model, list[dict]]:
    """(model, history so far): from the newest backup in model_dir, or a fresh model
    (`design`'s if given; its design card written into model_dir before the first epoch)."""
    backup = run_dir.latest_backup(model_dir)
    if backup:
        model, history = read_backup(backup)
        log(f"resuming from {backup} (epoch {len(history)} of {config.epochs} done)")
    else:
        model = create_model(config, steps_per_epoch, model=design.build() if design else None)
        history = []
    run_dir.write_design(model_dir, model)
    return model, history


def read_backup(backup: str) -> tuple[keras.Model, list[dict]]:
    """(compiled model with its optimizer's state, history) of a backup directory (written
    by write_backup; the same for both training loops). Read by convnets.load_model, which
    builds the model under the policy it was saved with: under another one, a mixed-precision
    model would compile without its LossScaleOptimizer and drop the optimizer's state."""
    with open(os.path.join(backup, "state.json")) as f:
        history = json.load(f)["history"]
    return convnets.load_model(os.path.join(backup, "model.keras")), history


def fit(config: TrainConfig, model: keras.Model, history: list[dict], data, model_dir: str,
        log: Callable[[str], None], verbose: int | None,
        extra_callbacks: Sequence[keras.callbacks.Callback]) -> None:
    """model.fit over the epochs not yet in `history`, appending to it; raises NanLossError
    on a non-finite loss."""
    (x_train, y_train), (x_test, y_test) = data
    first_epoch = len(history)
    if first_epoch >= config.epochs or reached(history, config.stop_at_accuracy):
        return
    train_ds, test_ds = pipeline.make_datasets(
        data, config.batch_size, config.seed, augmentation(config), first_epoch, config.epochs,
        config.deterministic)
    guard = NanGuard()
    callbacks = [guard, EpochRecorder(model_dir, config, history, len(x_test), log),
                 keras.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")),
                 *extra_callbacks]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(train_ds, epochs=config.epochs, initial_epoch=first_epoch,
              steps_per_epoch=pipeline.steps_per_epoch(len(x_train), config.batch_size),
              validation_data=test_ds if config.eval_every else None,
              validation_freq=config.eval_every or 1, callbacks=callbacks, verbose=verbose,
              shuffle=False)
    if guard.bad_step is not None:
        raise NanLossError(
            f"loss became NaN/inf in epoch {len(history) + 1}, batch {guard.bad_step}; stopped. "
            f"The last good state (epoch {len(history)}) is in {os.path.join(model_dir, BACKUP_DIR)}; "
            "lower --learning_rate and start again with --overwrite")


def write_outputs(model_dir: str, model: keras.Model, history: list[dict], results: dict,
                  x_test: np.ndarray, y_test: np.ndarray, predicted: np.ndarray) -> None:
    """The final files, each written aside and renamed (results.json last: it marks 'finished')."""
    from kerasnets import plots

    tmp_model = os.path.join(model_dir, ".model.tmp.keras")
    try:
        model.save(tmp_model)
        os.replace(tmp_model, os.path.join(model_dir, "model.keras"))
    finally:
        if os.path.exists(tmp_model):
            os.remove(tmp_model)
    with fileio.atomic_file(os.path.join(model_dir, "history.csv")) as f:
        columns = list(history[0]) if history else ["epoch"]
        f.write(",".join(columns) + "\n")
        for row in history:
            f.write(",".join(repr(row[c]) for c in columns) + "\n")
    for name, draw in (("curves.png", lambda p: plots.plot_curves(history, p, results["target"])),
                       ("misclassified.png", lambda p: plots.plot_misclassified(
                           x_test, y_test, predicted, p)),
                       ("confusion.png", lambda p: plots.plot_confusion(y_test, predicted, p))):
        with fileio.atomic_file(os.path.join(model_dir, name), "wb") as f:
            draw(f)
    with fileio.atomic_file(os.path.join(model_dir, run_dir.RESULTS_FILE)) as f:
        json.dump(results, f, indent=2)
