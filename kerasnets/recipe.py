"""What defines a training run, free of TensorFlow: the config, its flags, the compiled model.

`TrainConfig` holds every value of a run as plain data; `define_flags()` declares
the matching absl flags with their validators (kerasnets-train and
kerasnets.bench_gpu both read the same flagfiles through them); `create_model()`
builds and compiles the named architecture with the run's optimizer and
schedule. Nothing here imports TensorFlow, so the same recipe also runs on
Keras's JAX backend (the GPU figures in README: kerasnets.bench_gpu).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
from absl import flags

from kerasnets import models

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")  # multiworker: kerasnets.distributed
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (the flags of kerasnets-train, as plain values)."""

    model: str = "default"
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    augment: bool = True
    rotation: float = 10.0
    shift: float = 2.0
    scale: float = 0.0
    clean_epochs: int = 0  # the last N epochs train on unaugmented images
    precision: str = "auto"
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = False
    steps_per_execution: int = 1  # batches per compiled call (fewer Python round trips)
    intra_op_threads: int = 0     # threads per op; 0 = TensorFlow's default (all cores)
    train_examples: int = 0  # 0 = all 60,000
    test_examples: int = 0   # 0 = all 10,000
    eval_every: int = 1      # a test pass every N epochs; 0 = only the final model's
    stop_at_accuracy: float = 0.0  # stop after the first tested epoch at or above it; 0 = never


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One absl flag per TrainConfig field, with its range checked by a validator."""
    d, fv = TrainConfig(), dict(flag_values=flag_values)
    flags.DEFINE_enum("model", d.model, list(models.BUILDERS), "Architecture (kerasnets.models).", **fv)
    flags.DEFINE_integer("epochs", d.epochs, "Epochs to train (1..1000).", lower_bound=1,
                         upper_bound=1000, **fv)
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size (1..8192).",
                         lower_bound=1, upper_bound=8192, **fv)
    flags.DEFINE_enum("optimizer", d.optimizer, list(OPTIMIZERS), "sgd (with momentum) or adamw.", **fv)
    flags.DEFINE_float("learning_rate", d.learning_rate, "Peak learning rate (> 0).", **fv)
    flags.DEFINE_float("momentum", d.momentum, "SGD momentum, 0..<1.", lower_bound=0.0, **fv)
    flags.DEFINE_bool("nesterov", d.nesterov, "Nesterov momentum for --optimizer=sgd.", **fv)
    flags.DEFINE_float("weight_decay", d.weight_decay, "Decoupled weight decay (>= 0).",
                       lower_bound=0.0, **fv)
    flags.DEFINE_enum("schedule", d.schedule, list(SCHEDULES),
                      "constant, or cosine: linear warm-up then cosine decay to 0.", **fv)
    flags.DEFINE_float("warmup_epochs", d.warmup_epochs, "Warm-up length for --schedule=cosine.",
                       lower_bound=0.0, **fv)
    flags.DEFINE_bool("augment", d.augment, "Random rotation/shift/scale of training images.", **fv)
    flags.DEFINE_float("rotation", d.rotation, "Max rotation in degrees (0..180).", lower_bound=0.0,
                       upper_bound=180.0, **fv)
    flags.DEFINE_float("shift", d.shift, "Max shift in pixels (0..14).", lower_bound=0.0,
                       upper_bound=14.0, **fv)
    flags.DEFINE_float("scale", d.scale, "Max relative scale change (0..0.5).", lower_bound=0.0,
                       upper_bound=0.5, **fv)
    flags.DEFINE_integer("clean_epochs", d.clean_epochs, "With --augment: train the last N epochs "
                         "on unaugmented images (0 = augment every epoch).", lower_bound=0, **fv)
    flags.DEFINE_enum("precision", d.precision, list(PRECISIONS),
                      "auto = mixed_float16 on a GPU, float32 on CPU; the softmax is always float32.",
                      **fv)
    flags.DEFINE_enum("strategy", d.strategy, list(STRATEGIES),
                      "tf.distribute strategy: auto (mirrored on several GPUs), default, mirrored, "
                      "multiworker (TF_CONFIG; see README).", **fv)
    flags.DEFINE_integer("seed", d.seed, "Random seed (>= 0).", lower_bound=0, **fv)
    flags.DEFINE_bool("deterministic", d.deterministic,
                      "Deterministic ops (identical reruns on CPU).", **fv)
    flags.DEFINE_integer("steps_per_execution", d.steps_per_execution,
                         "Batches per compiled call (1..1000); more means fewer Python round trips.",
                         lower_bound=1, upper_bound=1000, **fv)
    flags.DEFINE_integer("intra_op_threads", d.intra_op_threads,
                         "Threads per TensorFlow op (0 = all cores; 1 measured fastest for batch 32 "
                         "on 2 cores, see README).", lower_bound=0, upper_bound=1024, **fv)
    flags.DEFINE_integer("train_examples", d.train_examples,
                         "Use the first N training images (0 = all).", lower_bound=0,
                         upper_bound=60000, **fv)
    flags.DEFINE_integer("test_examples", d.test_examples, "Use the first N test images (0 = all).",
                         lower_bound=0, upper_bound=10000, **fv)
    flags.DEFINE_integer("eval_every", d.eval_every, "A test pass every N epochs (0 = only "
                         "the final model's, which always runs; 0..1000). Fewer passes, "
                         "faster runs.", lower_bound=0, upper_bound=1000, **fv)
    flags.DEFINE_float("stop_at_accuracy", d.stop_at_accuracy, "Stop after the first tested "
                       "epoch whose test accuracy reaches this (0..1; 0 = train every epoch). "
                       "The schedule stays that of --epochs: the run is the full run cut short.",
                       lower_bound=0.0, upper_bound=1.0, **fv)
    flags.register_multi_flags_validator(
        ["stop_at_accuracy", "eval_every", "strategy"],
        lambda v: not v["stop_at_accuracy"] or (v["eval_every"] and v["strategy"] != "multiworker"),
        "--stop_at_accuracy needs test passes (--eval_every >= 1) and a single-process run "
        "(not --strategy=multiworker)", **fv)
    flags.register_multi_flags_validator(
        ["eval_every", "strategy"],
        lambda v: v["eval_every"] == 1 or v["strategy"] != "multiworker",
        "--eval_every must be 1 with --strategy=multiworker (its loop tests every epoch)", **fv)
    flags.register_validator("learning_rate", lambda v: 0 < v < float("inf"),
                             "--learning_rate must be a finite number > 0", **fv)
    flags.register_validator("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1)", **fv)
    flags.register_multi_flags_validator(
        ["clean_epochs", "epochs"], lambda v: v["clean_epochs"] < v["epochs"],
        "--clean_epochs must be smaller than --epochs (at least one epoch is augmented)", **fv)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """The parsed flags of define_flags() as a TrainConfig."""
    return TrainConfig(**{f.name: flag_values[f.name].value for f in dataclasses.fields(TrainConfig)})


def create_model(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """A compiled model: the named architecture, optimizer, schedule and loss."""
    model = models.build_model(config.model)
    lr = config.learning_rate
    if config.schedule == "cosine":
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        total = config.epochs * steps_per_epoch
        # Linear warm-up from lr/10 to lr, then cosine decay to 0 (built in: loads safely).
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10, warmup_target=config.learning_rate,
            warmup_steps=warmup, decay_steps=max(1, total - warmup), alpha=0.0)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum,
                                         nesterov=config.nesterov and config.momentum > 0,
                                         weight_decay=config.weight_decay or None)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=config.steps_per_execution)
    return model


def select_examples(config: TrainConfig, data):
    """load_mnist()'s arrays cut to --train_examples / --test_examples (0 = all)."""
    (x_train, y_train), (x_test, y_test) = data
    n_train, n_test = config.train_examples or len(x_train), config.test_examples or len(x_test)
    return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])


def augmented_epochs(config: TrainConfig) -> int:
    """How many epochs, from the first, train on augmented images: all but the last
    --clean_epochs (0 with --noaugment)."""
    return config.epochs - config.clean_epochs if config.augment else 0


def course_line(loss: float, correct: int, total: int) -> str:
    """The course's per-epoch line."""
    return (f"Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{total} "
            f"({100.0 * correct / total:.2f}%)")


def first_epoch_at(test_accuracies: list[float | None], level: float) -> int | None:
    """The first epoch (1-based) whose test accuracy reaches `level`, else None (epochs
    without a test pass, None, are skipped)."""
    return next((epoch for epoch, a in enumerate(test_accuracies, 1)
                 if a is not None and a >= level), None)


def flagfile_as_recipe(argv: Sequence[str]) -> list[str]:
    """argv with --flagfile=F turned into --recipe=F, for commands (kerasnets-sweep,
    kerasnets-bench) whose --flagfile names a kerasnets-train recipe to run rather than
    flags of their own, which absl would otherwise read it as."""
    out, args = [], iter(argv)
    for arg in args:
        if arg in ("--flagfile", "-flagfile"):
            out.append(f"--recipe={next(args, '')}")
        elif arg.startswith(("--flagfile=", "-flagfile=")):
            out.append("--recipe=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out
