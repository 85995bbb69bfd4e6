"""What defines a training run, free of TensorFlow: the config and its checks, the named
recipes, the compiled model.

`TrainConfig` holds every value of a run as plain data and refuses an impossible one
when it is made (`check`), so a config built in Python is held to the same rules as
one read from the command line (kerasnets.cli.recipe_flags declares one flag per field
and its validators call the checks here). Its defaults are the `default` recipe's, so
`TrainConfig()` trains what `kerasnets-train` trains without --recipe.

The named recipes are the flagfiles of the top-level flags/ directory, shipped in the
wheel as `kerasnets.recipes`; each names every field (a test holds it), so a change of
a default here never changes a recorded recipe. `load(name)` reads one as a
TrainConfig, here or from the command line alike. Each recipe carries its `target`:
the test accuracy it is meant to reach, which results.json, kerasnets-sweep and
kerasnets-bench report against.

`create_model()` builds and compiles the named architecture with the run's optimizer
and schedule. Nothing here imports TensorFlow, so the same recipe also runs on Keras's
JAX backend (kerasnets.bench.jax_backend), and Keras is imported only to build a model,
so every command can read and check its recipe before (or without) loading Keras.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from typing import Collection

from kerasnets import errors
from kerasnets.data import augmentation
from kerasnets.checks import Range  # noqa: F401 -- recipe.Range, as before
from kerasnets.models import user_code

MODELS = user_code.BUILTIN_MODELS  # or a reference PATH.py:FUNCTION, package.module:FUNCTION
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")  # multiworker: kerasnets.training.distributed
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine")


class ConfigError(errors.KerasnetsError, ValueError):
    """A TrainConfig value, or a combination of values, that cannot run. `fields` names
    the fields involved, so a command can say where each value came from."""

    def __init__(self, message: str, fields: tuple[str, ...]):
        super().__init__(message)
        self.fields = fields


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run (the flags of kerasnets-train, as plain values).

    The defaults are the `default` recipe's (flags/default.flags); an impossible
    value or combination raises ConfigError when the config is made."""

    model: str = "default"
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    augment: bool = True
    rotation: float = 10.0
    shift: float = 2.0
    scale: float = 0.0
    clean_epochs: int = 3  # the last N epochs train on unaugmented images
    precision: str = "auto"
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = True
    steps_per_execution: int = 1  # batches per compiled call (fewer Python round trips)
    intra_op_threads: int = 0     # threads per op; 0 = TensorFlow's default (all cores)
    train_examples: int = 0  # 0 = all 60,000
    test_examples: int = 0   # 0 = all 10,000
    eval_every: int = 1      # a test pass every N epochs; 0 = only the final model's
    stop_at_accuracy: float = 0.0  # stop after the first tested epoch at or above it; 0 = never
    target: float = 0.995    # the test accuracy the recipe is meant to reach (reported, not a stop)

    def __post_init__(self):
        check(self)


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}  # "int", "float", ...
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES,
           "precision": PRECISIONS, "strategy": STRATEGIES}
RANGES = {
    "epochs": Range(1, 1000, integer=True), "batch_size": Range(1, 8192, integer=True),
    "learning_rate": Range(0, low_open=True), "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0), "warmup_epochs": Range(0),
    **augmentation.RANGES,  # rotation, shift, scale: the rule kerasnets.data's Augment holds to
    "clean_epochs": Range(0, integer=True),
    "seed": Range(0, integer=True), "steps_per_execution": Range(1, 1000, integer=True),
    "intra_op_threads": Range(0, 1024, integer=True),
    "train_examples": Range(0, 60000, integer=True), "test_examples": Range(0, 10000, integer=True),
    "eval_every": Range(0, 1000, integer=True), "stop_at_accuracy": Range(0, 1),
    "target": Range(0, 1, low_open=True),
}


def check_field(name: str, value) -> None:
    """ConfigError unless `value` is one `name` allows (its choices, type and range; a
    model's name or the text of a reference: the code it names is checked when the
    model is built)."""
    problem = name == "model" and user_code.name_problem(value)
    if problem:
        raise ConfigError(f"--model {problem}", (name,))
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(f"--{name} must be one of {', '.join(CHOICES[name])}, not {value!r}",
                          (name,))
    refusal = name in RANGES and RANGES[name].refusal(name, value)
    if refusal:
        raise ConfigError(refusal, (name,))
    if FIELD_TYPES[name] == "bool" and not isinstance(value, bool):
        raise ConfigError(f"--{name} must be true or false, not {value!r}", (name,))


def check(config: TrainConfig) -> None:
    """ConfigError for the first field out of its range, or the first combination that
    cannot run (the messages kerasnets-train's flags give)."""
    for name in FIELDS:
        check_field(name, getattr(config, name))
    if config.clean_epochs >= config.epochs:
        raise ConfigError("--clean_epochs must be smaller than --epochs (at least one epoch "
                          "is augmented)", ("clean_epochs", "epochs"))
    if config.stop_at_accuracy and (not config.eval_every or config.strategy == "multiworker"):
        raise ConfigError("--stop_at_accuracy needs test passes (--eval_every >= 1) and a "
                          "single-process run (not --strategy=multiworker)",
                          ("stop_at_accuracy", "eval_every", "strategy"))
    if config.eval_every != 1 and config.strategy == "multiworker":
        raise ConfigError("--eval_every must be 1 with --strategy=multiworker (its loop tests "
                          "every epoch)", ("eval_every", "strategy"))


# --- the named recipes ----------------------------------------------------------------

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


def read_flagfile(path: str, names: Collection[str], bools: Collection[str] = ()) -> dict:
    """The flags a flagfile sets, read by absl's own parser (every form absl accepts, and
    a --flagfile=... inside it): {name: value}, a bool for the flags of `bools`, the text
    as written for the others. ValueError naming the file for a flag not in `names`, one
    given twice, or a file absl cannot read."""
    from absl import flags

    fv = flags.FlagValues()
    for name in names:
        define = flags.DEFINE_bool if name in bools else flags.DEFINE_string
        define(name, None, "", flag_values=fv)
    try:
        fv(["flagfile", f"--flagfile={path}"])
    except flags.Error as e:
        raise ValueError(f"{path}: {e}") from None
    twice = [name for name in names if fv[name].present > 1]
    if twice:
        raise ValueError(f"{path}: --{twice[0]} is given twice")
    return {name: fv[name].value for name in names if fv[name].present}


BOOL_FIELDS = tuple(name for name in FIELDS if FIELD_TYPES[name] == "bool")


def parse_value(name: str, value):
    """A flag's value (a bool, or its text) as the TrainConfig field `name` holds it."""
    kind = FIELD_TYPES[name]
    if kind == "bool":
        return value.lower() in ("true", "1") if isinstance(value, str) else bool(value)
    return {"int": int, "float": float}.get(kind, str)(value)


def load(name: str) -> TrainConfig:
    """Recipe `name` as a TrainConfig (checked; every field comes from the recipe's file)."""
    values = read_flagfile(recipe_path(name), FIELDS, BOOL_FIELDS)
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise ValueError(f"{recipe_path(name)} does not name {', '.join(missing)}; a recipe "
                         "names every field")
    return TrainConfig(**{f: parse_value(f, v) for f, v in values.items()})


def as_flags(config: TrainConfig, fields: Collection[str] = FIELDS) -> list[str]:
    """`fields` of `config` as kerasnets-train flags (all of them: a command line that trains
    exactly this config whatever recipe it starts from)."""
    return [flag(name, getattr(config, name)) for name in FIELDS if name in fields]


def flag(name: str, value) -> str:
    """One field as the flag that sets it: --x=3, --x, --nox."""
    if value is True or value is False:
        return f"--{name}" if value else f"--no{name}"
    return f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}"


def as_run(config: TrainConfig) -> TrainConfig:
    """The config as it runs, and so as a run records it: --strategy=multiworker turns op
    determinism off (its collective ops do not promise it)."""
    if config.strategy == "multiworker" and config.deterministic:
        return dataclasses.replace(config, deterministic=False)
    return config


def differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """The fields whose values differ, in field order."""
    return [name for name in FIELDS if getattr(old, name) != getattr(new, name)]


def create_model(config: TrainConfig, steps_per_epoch: int,
                 batch_norm_class: type | None = None, model=None):
    """A compiled model: the named architecture (its BatchNorm layers of `batch_norm_class`,
    default ours) or the referenced one (kerasnets.models.convnets.build_model), or `model`
    where one is given (a search's sampled design), with the optimizer, schedule and loss."""
    import keras

    from kerasnets.models import convnets

    if model is None:
        model = convnets.build_model(config.model, batch_norm_class)
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


def last_three(test_accuracies: list[float | None]) -> list[float]:
    """The test accuracies of the last three epochs that had a test pass (None: an epoch
    without one): what kerasnets-sweep and kerasnets-compare hold to a target, so one
    lucky epoch does not count."""
    return [a for a in test_accuracies if a is not None][-3:]


def first_epoch_at(test_accuracies: list[float | None], level: float) -> int | None:
    """The first epoch (1-based) whose test accuracy reaches `level`, else None (epochs
    without a test pass, None, are skipped)."""
    return next((epoch for epoch, a in enumerate(test_accuracies, 1)
                 if a is not None and reaches(a, level)), None)
