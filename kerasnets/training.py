"""Training the MNIST convnets: small functions over one TrainConfig, in flax's style.

  create_model(config, steps_per_epoch)   build + compile (kerasnets.recipe)
  train(config, data, model_dir)          fit with resume, NaN guard, outputs
  evaluate(model, images, labels)         loss, accuracy, predictions

Resume: after every epoch the full training state (model.keras with optimizer
state, plus state.json with the history so far) is written into
`<model_dir>/backup/epoch-NNNN/` (built aside, renamed into place). A run
started again with the same flags continues from the newest complete backup;
because the pipeline's epoch e depends only on (seed, e), the resumed run sees
the same batches and ends with the same history as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerasnets import fileio, models, pipeline
from kerasnets.recipe import (  # noqa: F401  (the run's definition, re-exported: training.TrainConfig)
    OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, TrainConfig, augmented_epochs, course_line,
    create_model, first_epoch_at, select_examples)

BACKUP_DIR = "backup"
LOCK_FILE = ".lock"  # kerasnets-train holds it while it runs (fileio.exclusive_directory)
OUTPUT_FILES = ("model.keras", "history.csv", "results.json", "curves.png",
                "misclassified.png", "confusion.png")


class NanLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_precision(precision: str) -> str:
    """auto → mixed_float16 on a GPU, float32 on CPU."""
    if precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return precision


def set_threads(intra_op_threads: int) -> None:
    """Threads per op (0 = TensorFlow's default). Only possible before TensorFlow starts its
    runtime; later, a different setting is refused with RuntimeError."""
    if intra_op_threads and tf.config.threading.get_intra_op_parallelism_threads() != intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)


def create_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def device_description() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x GPU ({details.get('device_name', 'unknown')})"
    return f"CPU ({os.cpu_count()} cores)"


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predicted classes) of `model` on the given examples."""
    probs = model.predict(images.reshape(-1, 28, 28, 1), batch_size=batch_size, verbose=0)
    loss = float(keras.losses.sparse_categorical_crossentropy(labels, probs).numpy().mean())
    predicted = probs.argmax(axis=1)
    return loss, float(np.mean(predicted == labels)), predicted


def augmentation(config: TrainConfig) -> pipeline.Augment | None:
    """The training-set augmentation of a run (None with --noaugment)."""
    if not config.augment:
        return None
    until_epoch = augmented_epochs(config) if config.clean_epochs else None
    return pipeline.Augment(config.rotation, config.shift, config.scale, until_epoch)


# --- resume state -------------------------------------------------------------------

def latest_backup(model_dir: str) -> str | None:
    root = os.path.join(model_dir, BACKUP_DIR)
    if not os.path.isdir(root):
        return None
    done = sorted(d for d in os.listdir(root)
                  if d.startswith("epoch-") and os.path.isfile(os.path.join(root, d, "state.json")))
    return os.path.join(root, done[-1]) if done else None


class EpochRecorder(keras.callbacks.Callback):
    """After each epoch: the course's line, the history row, a complete backup, and the
    stop once --stop_at_accuracy is reached."""

    def __init__(self, model_dir: str, config: TrainConfig, history: list[dict],
                 test_size: int, log: Callable[[str], None]):
        super().__init__()
        self.model_dir, self.config, self.history = model_dir, config, history
        self.test_size, self.log = test_size, log

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(logs.get(k, 0.0)) for k in ("loss", "val_loss")):
            return  # NanGuard stops the run; the last good backup stays the newest
        lr = self.model.optimizer.learning_rate
        row = dict(epoch=epoch + 1, train_loss=logs["loss"], train_accuracy=logs["accuracy"],
                   test_loss=logs.get("val_loss"), test_accuracy=logs.get("val_accuracy"),
                   learning_rate=float(lr.numpy() if hasattr(lr, "numpy") else lr),
                   seconds=time.perf_counter() - self.start)
        self.history.append(row)
        if row["test_accuracy"] is None:  # --eval_every skipped this epoch's test pass
            self.log(f"Epoch {epoch + 1}: train loss {row['train_loss']:.4f} (no test pass)")
        else:
            correct = int(round(row["test_accuracy"] * self.test_size))
            self.log(course_line(row["test_loss"], correct, self.test_size))
        self._backup(epoch + 1)
        if reached(self.history, self.config.stop_at_accuracy):
            self.model.stop_training = True

    def _backup(self, epochs_done: int):
        root = os.path.join(self.model_dir, BACKUP_DIR)
        os.makedirs(root, exist_ok=True)
        target = os.path.join(root, f"epoch-{epochs_done:04d}")
        with fileio.atomic_output_dir(target) as scratch:
            self.model.save(os.path.join(scratch, "model.keras"))
            with open(os.path.join(scratch, "state.json"), "w") as f:
                json.dump(dict(epochs_done=epochs_done, history=self.history,
                               config=dataclasses.asdict(self.config)), f)
        for old in os.listdir(root):
            if old != os.path.basename(target):
                shutil.rmtree(os.path.join(root, old), ignore_errors=True)


def reached(history: list[dict], target: float) -> bool:
    """Whether a --stop_at_accuracy target (0 = none) was met by the last epoch in `history`:
    EpochRecorder then stops the run, and a run resumed after it stopped there trains no
    further."""
    last = history[-1]["test_accuracy"] if history else None
    return bool(target) and last is not None and last >= target


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
          extra_callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict:
    """Trains (resuming from model_dir's backup if any) and writes all outputs.

    Returns the results dict written to results.json. Raises NanLossError if
    the loss diverges (outputs of the last complete epoch stay in the backup).
    """
    set_threads(config.intra_op_threads)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision = resolve_precision(config.precision)
    keras.mixed_precision.set_global_policy(precision)
    (x_train, y_train), (x_test, y_test) = select_examples(config, data)
    steps = pipeline.steps_per_epoch(len(x_train), config.batch_size)

    strategy = create_strategy(config.strategy)
    backup = latest_backup(model_dir)
    with strategy.scope():
        if backup:
            with open(os.path.join(backup, "state.json")) as f:
                state = json.load(f)
            model = keras.saving.load_model(os.path.join(backup, "model.keras"))
            history, first_epoch = state["history"], state["epochs_done"]
            log(f"resuming from {backup} (epoch {first_epoch} of {config.epochs} done)")
        else:
            model, history, first_epoch = create_model(config, steps), [], 0

    augment = augmentation(config)
    train_ds, test_ds = pipeline.make_datasets(
        ((x_train, y_train), (x_test, y_test)), config.batch_size, config.seed, augment,
        first_epoch, config.epochs, config.deterministic)
    guard = NanGuard()
    callbacks = [guard, EpochRecorder(model_dir, config, history, len(x_test), log),
                 keras.callbacks.TensorBoard(os.path.join(model_dir, "tensorboard")),
                 *extra_callbacks]
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    fit_start = time.perf_counter()
    if first_epoch < config.epochs and not reached(history, config.stop_at_accuracy):
        model.fit(train_ds, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                  validation_data=test_ds if config.eval_every else None,
                  validation_freq=config.eval_every or 1, callbacks=callbacks, verbose=verbose,
                  shuffle=False)
    if guard.bad_step is not None:
        raise NanLossError(
            f"loss became NaN/inf in epoch {len(history) + 1}, batch {guard.bad_step}; stopped. "
            f"The last good state (epoch {len(history)}) is in {os.path.join(model_dir, BACKUP_DIR)}; "
            "lower --learning_rate and start again with --overwrite")

    if reached(history, config.stop_at_accuracy) and len(history) < config.epochs:
        log(f"stopped after epoch {len(history)} of {config.epochs}: test accuracy "
            f"{100 * history[-1]['test_accuracy']:.2f}% reached --stop_at_accuracy")
    test_loss, test_acc, predicted = evaluate(model, x_test, y_test)
    # First batch to the final model's test accuracy, tf.function tracing included (on
    # a resumed run: of this process's epochs only).
    train_seconds = time.perf_counter() - fit_start
    if history and history[-1]["test_accuracy"] is None:  # the final pass tested the last epoch
        history[-1].update(test_loss=test_loss, test_accuracy=test_acc)
    _, train_acc, _ = evaluate(model, x_train, y_train)
    log(f"final model: train accuracy {100 * train_acc:.2f}%, test accuracy {100 * test_acc:.2f}%")
    results = results_dict(config, model, history, test_loss, test_acc, train_acc, precision,
                           strategy, train_seconds=train_seconds)
    write_outputs(model_dir, model, history, results, x_test, y_test, predicted)
    shutil.rmtree(os.path.join(model_dir, BACKUP_DIR), ignore_errors=True)
    return results


def results_dict(config: TrainConfig, model: keras.Model, history: list[dict], test_loss: float,
                 test_acc: float, train_acc: float, precision: str,
                 strategy: tf.distribute.Strategy, **extra) -> dict:
    """What results.json holds: per-epoch lists, the final model's scores, how it ran."""
    trainable, frozen = models.count_params(model)
    test_accs = [h["test_accuracy"] for h in history]
    tested = [a for a in test_accs if a is not None]
    first_994 = first_epoch_at(test_accs, 0.994)
    return dict(
        model=config.model, trainable_params=trainable, total_params=trainable + frozen,
        epochs=len(history), test_accuracy=test_accs,
        train_accuracy=[h["train_accuracy"] for h in history],
        test_loss=[h["test_loss"] for h in history], train_loss=[h["train_loss"] for h in history],
        seconds_per_epoch=[h["seconds"] for h in history], first_epoch_at_99_4=first_994,
        seconds_to_99_4=(sum(h["seconds"] for h in history[:first_994]) if first_994 else None),
        best_test_accuracy=max(tested) if tested else None,
        final_test_accuracy=test_acc, final_train_accuracy=train_acc, final_test_loss=test_loss,
        precision=precision, device=device_description(), strategy=("MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
                  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                  else type(strategy).__name__),
        replicas=strategy.num_replicas_in_sync, **extra, flags=dataclasses.asdict(config))


def write_outputs(model_dir, model, history, results, x_test, y_test, predicted) -> None:
    """The final files, each written aside and renamed (results.json last: it marks 'finished')."""
    from kerasnets import plots

    tmp_model = os.path.join(model_dir, ".model.tmp.keras")
    model.save(tmp_model)
    os.replace(tmp_model, os.path.join(model_dir, "model.keras"))
    with fileio.atomic_file(os.path.join(model_dir, "history.csv")) as f:
        columns = list(history[0]) if history else ["epoch"]
        f.write(",".join(columns) + "\n")
        for row in history:
            f.write(",".join(repr(row[c]) for c in columns) + "\n")
    for name, draw in (("curves.png", lambda p: plots.plot_curves(history, p)),
                       ("misclassified.png", lambda p: plots.plot_misclassified(
                           x_test, y_test, predicted, p)),
                       ("confusion.png", lambda p: plots.plot_confusion(y_test, predicted, p))):
        with fileio.atomic_file(os.path.join(model_dir, name), "wb") as f:
            draw(f)
    with fileio.atomic_file(os.path.join(model_dir, "results.json")) as f:
        json.dump(results, f, indent=2)
