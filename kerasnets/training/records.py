"""What every training loop records, written once: the epoch row, the scores, results.json.

Three loops train a recipe: Keras's `fit` (kerasnets.training.fit), the multi-worker
loop (kerasnets.training.distributed, whose `strategy.run` step Keras's fit cannot drive)
and `fit` on Keras's JAX backend (kerasnets.bench.jax_backend). They differ in how
they step and predict, not in what they record, so the history row, the test
scores, the results dict and the choice of precision live here, free of
TensorFlow (the JAX path must not import it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Sequence

import keras
import numpy as np

from kerasnets.models import convnets
from kerasnets.training.recipe import TrainConfig, course_line, first_epoch_at

HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                   "learning_rate", "seconds")


def accelerator_present() -> bool:
    """Whether the Keras backend has a GPU (or other accelerator) to run on."""
    if keras.backend.backend() == "jax":
        import jax
        return jax.default_backend() != "cpu"
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


def device_description() -> str:
    """The device a run trained on, as results.json names it."""
    if keras.backend.backend() == "jax":
        import jax
        return str(jax.devices()[0].device_kind)
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x GPU ({details.get('device_name', 'unknown')})"
    return f"CPU ({os.cpu_count()} cores)"


def resolve_precision(precision: str) -> str:
    """--precision=auto → mixed_float16 with an accelerator, float32 on a CPU."""
    if precision == "auto":
        return "mixed_float16" if accelerator_present() else "float32"
    return precision


def learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The optimizer's current learning rate (its schedule's value at the current step)."""
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


def epoch_row(epoch: int, train_loss: float, train_accuracy: float, test_loss: float | None,
              test_accuracy: float | None, learning_rate: float, seconds: float) -> dict:
    """One line of history.csv (test_* None for an epoch without a test pass)."""
    return dict(zip(HISTORY_COLUMNS, (epoch, train_loss, train_accuracy, test_loss,
                                      test_accuracy, learning_rate, seconds)))


def epoch_line(row: dict, test_size: int) -> str:
    """What a run prints after an epoch: the course's line, or the train loss when untested."""
    if row["test_accuracy"] is None:
        return f"Epoch {row['epoch']}: train loss {row['train_loss']:.4f} (no test pass)"
    return course_line(row["test_loss"], int(round(row["test_accuracy"] * test_size)), test_size)


def scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, predicted classes) of softmax outputs against labels."""
    per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    loss = float(np.mean(keras.ops.convert_to_numpy(per_example)))
    predicted = np.asarray(probabilities).argmax(axis=1)
    return loss, float(np.mean(predicted == labels)), predicted


class EpochHistory(keras.callbacks.Callback):
    """Appends each epoch's row to `history` (a list it shares with the caller) and logs
    its line; an epoch with a non-finite loss is not recorded (the caller's guard
    stops the run)."""

    def __init__(self, history: list[dict], test_size: int, log: Callable[[str], None]):
        super().__init__()
        self.history, self.test_size, self.log = history, test_size, log
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(logs.get(k, 0.0)) for k in ("loss", "val_loss")):
            return
        self.history.append(epoch_row(epoch + 1, logs["loss"], logs["accuracy"],
                                      logs.get("val_loss"), logs.get("val_accuracy"),
                                      learning_rate(self.model.optimizer),
                                      time.perf_counter() - self.start))
        self.log(epoch_line(self.history[-1], self.test_size))


def results_dict(config: TrainConfig, model: keras.Model, history: Sequence[dict],
                 final: tuple[float, float, float], precision: str, strategy: str,
                 replicas: int, **extra) -> dict:
    """What results.json holds: per-epoch lists, the recipe's target and the first epoch
    (and seconds) to it, the final model's scores, how it ran.

    `final` is the final model's (test loss, test accuracy, train accuracy).
    """
    test_loss, test_acc, train_acc = final
    trainable, frozen = convnets.count_params(model)
    test_accs = [h["test_accuracy"] for h in history]
    tested = [a for a in test_accs if a is not None]
    first = first_epoch_at(test_accs, config.target)
    return dict(
        model=config.model, trainable_params=trainable, total_params=trainable + frozen,
        epochs=len(history), test_accuracy=test_accs,
        train_accuracy=[h["train_accuracy"] for h in history],
        test_loss=[h["test_loss"] for h in history], train_loss=[h["train_loss"] for h in history],
        seconds_per_epoch=[h["seconds"] for h in history], target=config.target,
        first_epoch_at_target=first,
        seconds_to_target=sum(h["seconds"] for h in history[:first]) if first else None,
        best_test_accuracy=max(tested) if tested else None,
        final_test_accuracy=test_acc, final_train_accuracy=train_acc, final_test_loss=test_loss,
        precision=precision, device=device_description(), strategy=strategy, replicas=replicas,
        **extra, flags=dataclasses.asdict(config))
