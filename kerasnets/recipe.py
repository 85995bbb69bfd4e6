"""What defines a training run, free of TensorFlow: the config, the named recipes, the
compiled model.

`TrainConfig` holds every value of a run as plain data (kerasnets.cli.recipe_flags
declares one flag per field); the named recipes are the flagfiles of the top-level
flags/ directory, shipped in the wheel as `kerasnets.recipes`; `create_model()`
builds and compiles the named architecture with the run's optimizer and schedule.
Nothing here imports TensorFlow, so the same recipe also runs on Keras's JAX
backend (kerasnets.bench.jax_backend), and Keras is imported only to build a model,
so every command can read its recipe before (or without) loading Keras.
"""

from __future__ import annotations

import dataclasses
import importlib.resources

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


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
MNIST_RECIPES = ("default", "fast", "seed", "smoke", "wide")
RECIPE_PACKAGE = "kerasnets.recipes"  # the top-level flags/ directory, shipped in the wheel


def names(kind: str = "mnist") -> tuple[str, ...]:
    """The recorded recipes: the MNIST trainings, or ("toynet",) for the backprop workbench."""
    return MNIST_RECIPES if kind == "mnist" else ("toynet",)


def recipe_path(name: str) -> str:
    """The flagfile of recipe `name` (flags/<name>.flags in the checkout, kerasnets/recipes/
    in an installed wheel); ValueError listing the names for an unknown one."""
    if name not in MNIST_RECIPES + names("toynet"):
        raise ValueError(f"unknown recipe {name!r}; the recipes are "
                         f"{', '.join(MNIST_RECIPES + names('toynet'))}")
    return str(importlib.resources.files(RECIPE_PACKAGE).joinpath(f"{name}.flags"))


def as_flags(config: TrainConfig) -> list[str]:
    """Every field of `config` as a kerasnets-train flag: a command line that trains exactly
    this config whatever recipe it starts from."""
    out = []
    for name in FIELDS:
        value = getattr(config, name)
        out.append(f"--{name}" if value is True else f"--no{name}" if value is False
                   else f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
    return out


def create_model(config: TrainConfig, steps_per_epoch: int,
                 batch_norm_class: type | None = None):
    """A compiled model: the named architecture (its BatchNorm layers of `batch_norm_class`,
    default ours), optimizer, schedule and loss."""
    import keras

    from kerasnets import models

    model = (models.build_model(config.model, batch_norm_class) if batch_norm_class
             else models.build_model(config.model))
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


def reaches(accuracy: float, target: float) -> bool:
    """accuracy >= target, with accuracies as Keras stores them (float32: 9960/10000 is
    0.99599999) compared at the resolution a test set can have (rounded to 1e-6)."""
    return round(accuracy, 6) >= round(target, 6)


def first_epoch_at(test_accuracies: list[float | None], level: float) -> int | None:
    """The first epoch (1-based) whose test accuracy reaches `level`, else None (epochs
    without a test pass, None, are skipped)."""
    return next((epoch for epoch, a in enumerate(test_accuracies, 1)
                 if a is not None and reaches(a, level)), None)
