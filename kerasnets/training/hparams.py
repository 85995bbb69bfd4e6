"""A finished run's recipe and final figures as TensorBoard HParams.

`write()` logs every TrainConfig field as a hyperparameter of the run and its final
figures as scalars beside them, in the run's tensorboard/ directory (where its
epoch curves are), so `tensorboard --logdir runs/` lists the runs under it side by
side in the HParams dashboard, each row a run, with its curves a click away.
"""

from __future__ import annotations

import dataclasses

from kerasnets.training.recipe import TrainConfig

# results.json's final figures logged as the run's metrics; "seconds" is the sum of its
# epochs' seconds (the resumed parts of a run included).
METRICS = ("final_test_accuracy", "final_train_accuracy", "final_test_loss",
           "best_test_accuracy", "trainable_params", "seconds")


def hyperparameters(config: TrainConfig) -> dict:
    """Every field of the recipe by name: its str, int, float or bool value."""
    return dataclasses.asdict(config)


def metrics(results: dict) -> dict[str, float]:
    """The run's final figures (METRICS) from its results dict; one it lacks is left out."""
    values = dict(results, seconds=sum(results.get("seconds_per_epoch") or ()))
    return {name: float(values[name]) for name in METRICS if values.get(name) is not None}


def write(log_dir: str, config: TrainConfig, results: dict) -> None:
    """The run's hyperparameters (the recipe) and final metrics as one HParams session in
    `log_dir`, the metrics at step = the run's epochs."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(log_dir)
    try:
        with writer.as_default():
            hp.hparams(hyperparameters(config))
            for name, value in metrics(results).items():
                tf.summary.scalar(name, value, step=int(results.get("epochs") or 0))
        writer.flush()
    finally:
        writer.close()
