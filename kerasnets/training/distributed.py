"""Training on several machines: tf.distribute.MultiWorkerMirroredStrategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy with keras 3.15.1 /
tensorflow 2.21.0, the newest releases ("Attempt to convert a value (PerReplica
...) with an unsupported type"), so this module runs the training loop itself —
`strategy.run` over a `tf.function` step and `strategy.reduce` for the
figures — with the same Keras model, loss, optimizer (and its learning-rate
schedule) and tf.data pipeline as `kerasnets.training.fit`. The result is an
ordinary Keras model, saved and exported exactly as on one machine.

The cluster comes from the standard TF_CONFIG environment variable; every
worker runs the same kerasnets-train command. Worker 0 is the chief: only it
writes the run's files into --model_dir. The other workers keep their
backups in `<model_dir>/.worker-<i>/` (their own disk on a real cluster),
removed when the run ends.

Data: each worker reads its own shard of the training set (example i goes to
worker i mod n), trimmed so every worker runs the same number of full steps.
Resume: after each epoch every worker writes a backup (model, optimizer,
epochs done, history); a job restarted with the same command continues from
the last one. A lost worker makes the collective ops fail (or time out after
--collective_timeout seconds): the others stop with an error naming the epoch
to resume from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasnets import errors
from kerasnets.data import pipeline
from kerasnets.training import fit, recipe, records, run_dir
from kerasnets.training.recipe import TrainConfig, create_model, select_examples

class WorkerLostError(errors.KerasnetsError, RuntimeError):
    """A collective operation failed: a worker stopped or cannot be reached."""

    exit_status = 2


class ClusterError(errors.KerasnetsError, ValueError):
    """TF_CONFIG is missing or does not describe this worker, or the recipe does not fit
    the cluster."""


def cluster_spec() -> tuple[int, int]:
    """(number of workers, this worker's index) from TF_CONFIG; raises ClusterError if unusable."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ClusterError("--strategy=multiworker needs the TF_CONFIG environment variable "
                         "(see README: training on several machines)")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"] + config["cluster"].get("chief", [])
        task = config["task"]
        index = int(task["index"]) + (len(config["cluster"].get("chief", []))
                                      if task["type"] == "worker" else 0)
    except (ValueError, KeyError, TypeError) as e:
        raise ClusterError(f"TF_CONFIG is not valid: {e!r}; expected "
                         '{"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": N}}') from None
    if task["type"] not in ("worker", "chief") or not 0 <= index < len(workers):
        raise ClusterError(f"TF_CONFIG task {task} is not one of the cluster's workers")
    return len(workers), index


def worker_dir(model_dir: str, index: int) -> str:
    """Where worker `index` keeps its backup: the chief in model_dir, others beside it."""
    return model_dir if index == 0 else os.path.join(model_dir, f".worker-{index}")


def start_cluster(config: TrainConfig,
                  collective_timeout: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """The job's strategy, with the threads per op of `config`. Must run before TensorFlow
    executes anything else in the process: the collectives are set up at start-up."""
    tf.get_logger().setLevel("WARNING")  # one INFO line per collective otherwise
    fit.set_threads(config.intra_op_threads)
    return multiworker_strategy(collective_timeout)


def multiworker_strategy(collective_timeout: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """Must run before TensorFlow executes anything else in the process."""
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=collective_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def shard(images: np.ndarray, labels: np.ndarray, workers: int, index: int,
          worker_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Worker `index`'s examples, trimmed to whole batches equal across workers."""
    per_worker = (len(images) // workers) // worker_batch * worker_batch
    return images[index::workers][:per_worker], labels[index::workers][:per_worker]


def make_train_step(strategy, model: keras.Model, global_batch: int):
    """A tf.function running `steps` synchronous SGD steps; returns (mean loss, correct)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = loss_fn(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            scaled = model.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduces
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(probabilities, axis=1), tf.cast(labels, tf.int64)), tf.float32))
        return loss, correct

    @tf.function
    def train_steps(iterator, steps):
        total_loss, total_correct = tf.constant(0.0), tf.constant(0.0)
        for _ in tf.range(steps):
            loss, correct = strategy.run(replica_step, args=next(iterator))
            total_loss += strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            total_correct += strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        return total_loss, total_correct

    return train_steps


def train_multiworker(config: TrainConfig, data, model_dir: str, strategy,
                      log: Callable[[str], None] = print, overwrite: bool = False) -> dict | None:
    """Trains on the cluster in TF_CONFIG; the chief writes the usual outputs and returns the
    results dict, other workers return None. Raises WorkerLostError if a worker is lost.
    Each worker's directory records the recipe as kerasnets.training.fit.train's does
    (kerasnets.training.run_dir: the same recipe resumes, another is refused unless `overwrite`).
    Op determinism is off (recipe.as_run), and the run records it so.
    Process-wide settings: as kerasnets.training.fit.train (training.run_settings)."""
    ran = recipe.as_run(config)
    if ran != config:
        log("op determinism: off under --strategy=multiworker (its collective ops do not "
            "promise it); recipe.json and results.json record deterministic: false")
    cluster = cluster_spec()
    try:
        run_dir.start(worker_dir(model_dir, cluster[1]), ran, overwrite,
                      records.resolve_precision(ran.precision), log)
        return _train(ran, data, model_dir, strategy, cluster, log, ordered=config.deterministic)
    except (OSError, tf.errors.OpError) as e:  # TensorFlow's writers report the OS's error
        if errors.is_disk_full(e):
            raise errors.disk_full(e, model_dir, "the run's files") from None
        raise


def _train(config: TrainConfig, data, model_dir: str, strategy, cluster: tuple[int, int],
           log: Callable[[str], None], ordered: bool) -> dict | None:
    """`cluster`: (workers, this worker's index). `ordered`: the recipe's --deterministic,
    still honoured by the input pipeline (its order is a function of seed and epoch, so a
    resumed job sees the same batches)."""
    workers, index = cluster
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ClusterError(f"--batch_size={config.batch_size} must be divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas of the cluster")
    # Threads were set before the strategy started TensorFlow's runtime (start_cluster).
    settings = dataclasses.replace(config, intra_op_threads=0)
    with fit.run_settings(settings) as precision:
        (x_train, y_train), (x_test, y_test) = select_examples(config, data)
        per_worker = config.batch_size // workers  # split again over the worker's own devices
        my_x, my_y = shard(x_train, y_train, workers, index, per_worker)
        steps = len(my_x) // per_worker
        work_dir = worker_dir(model_dir, index)
        state = WorkerState(config, strategy, work_dir, steps, index, log)
        run_epochs(config, state, strategy, (my_x, my_y), (x_test, y_test), steps, model_dir,
                   index, log, ordered)
        # Synchronous training: every worker ends with the same weights; each says so.
        history = state.history
        log(f"worker {index}: final weights {weights_fingerprint(state.model)}, "
            f"test accuracy {history[-1]['test_accuracy'] if history else float('nan'):.4f}")
        if index:
            shutil.rmtree(work_dir, ignore_errors=True)
            return None
        return finish(config, state, (x_train, y_train), (x_test, y_test), steps, precision,
                      strategy, workers, model_dir, log)


class WorkerState:
    """A worker's model (under the strategy) and history. After each epoch it is backed up
    as a single-machine run is (kerasnets.training.fit.write_backup: model.keras with the
    optimizer's state, and state.json, in <work_dir>/backup/epoch-NNNN/), and a restarted
    job restores from there: one resume format for both loops."""

    def __init__(self, config: TrainConfig, strategy, work_dir: str, steps: int, index: int,
                 log: Callable[[str], None]):
        self.config, self.work_dir, self.steps = config, work_dir, steps
        self.backup_dir = os.path.join(work_dir, run_dir.BACKUP_DIR)
        with strategy.scope():
            self.model = create_model(config, steps)
            self.model.optimizer.build(self.model.trainable_variables)
        run_dir.write_design(work_dir, self.model)
        self.history: list[dict] = []
        backup = run_dir.latest_backup(work_dir)
        if backup:
            saved, self.history = fit.read_backup(backup)
            copy_training_state(saved, self.model)
            log(f"worker {index}: resuming from {backup} "
                f"(epoch {self.first_epoch} of {config.epochs} done)")

    @property
    def first_epoch(self) -> int:
        return len(self.history)

    def save(self) -> None:
        """The state after the epochs in `history`, as a model outside the strategy (every
        worker saves its own)."""
        fit.write_backup(self.work_dir, plain_copy(self.config, self.model, self.steps),
                              self.history)


def plain_copy(config: TrainConfig, model: keras.Model, steps: int) -> keras.Model:
    """`model` (trained under the strategy) as a model outside it, with the optimizer's
    state (step count, momentum) as the single-machine loop has it: predicting and saving
    it need no cluster."""
    copy = create_model(config, steps)
    copy.optimizer.build(copy.trainable_variables)
    copy_training_state(model, copy)
    return copy


def copy_training_state(source: keras.Model, target: keras.Model) -> None:
    """Weights and optimizer variables of `source` into `target`, a model of the same
    recipe (so the same variables, in the same order)."""
    target.set_weights(source.get_weights())
    for mine, theirs in zip(target.optimizer.variables, source.optimizer.variables,
                            strict=True):
        mine.assign(theirs.value)


def run_epochs(config: TrainConfig, state: WorkerState, strategy, my_data, test_data,
               steps: int, model_dir: str, index: int, log: Callable[[str], None],
               ordered: bool) -> None:
    """The epochs not yet done: synchronous steps on this worker's shard, a test pass, the
    history row (chief: its line and TensorBoard scalars), the backup."""
    (my_x, my_y), (x_test, y_test) = my_data, test_data
    first_epoch, augment = state.first_epoch, fit.augmentation(config)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return pipeline.train_dataset(my_x, my_y, context.get_per_replica_batch_size(
            config.batch_size), config.seed + index, augment, first_epoch, config.epochs,
            ordered)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_steps = make_train_step(strategy, state.model, config.batch_size)
    predict = tf.function(lambda x: state.model(x, training=False))
    summaries = (tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard", "epochs"))
                 if index == 0 else None)
    for epoch in range(first_epoch, config.epochs):
        start = time.perf_counter()
        try:
            loss_sum, correct = train_steps(iterator, tf.constant(steps))
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError) as e:
            raise WorkerLostError(
                f"worker {index}: lost contact with the cluster in epoch {epoch + 1} "
                f"({type(e).__name__}); restart every worker with the same command to resume "
                f"from epoch {epoch} (its backup is in {state.backup_dir})") from None
        test_loss, test_acc, _ = records.scores(batched(predict, x_test), y_test)
        state.history.append(records.epoch_row(
            epoch + 1, float(loss_sum) / steps, float(correct) / (steps * config.batch_size),
            test_loss, test_acc, records.learning_rate(state.model.optimizer),
            time.perf_counter() - start))
        if summaries:
            log(records.epoch_line(state.history[-1], len(x_test)))
            with summaries.as_default(step=epoch + 1):
                for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
                    tf.summary.scalar(key, state.history[-1][key])
        state.save()


def finish(config: TrainConfig, state: WorkerState, train_data, test_data, steps: int,
           precision: str, strategy, workers: int, model_dir: str,
           log: Callable[[str], None]) -> dict:
    """The chief's end of the run: the trained model outside the strategy, scored and
    written like a single-machine run."""
    return fit.finish_run(config, plain_copy(config, state.model, steps), state.history,
                               (train_data, test_data), model_dir, precision, strategy, log,
                               workers=workers)


def weights_fingerprint(model: keras.Model) -> str:
    """sha256 of all weights (float32 bytes, in the model's order): equal weights, equal text."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()[:16]


def batched(predict, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """predict() over `images` [n, 28, 28] in batches, concatenated."""
    return np.concatenate([predict(images[i:i + batch_size, :, :, None]).numpy()
                           for i in range(0, len(images), batch_size)])
