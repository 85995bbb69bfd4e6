"""The recipe flags: --recipe and one absl flag per `kerasnets.training.recipe.TrainConfig` field,
defined once.

Every command that trains or times a recipe (kerasnets-train, kerasnets-sweep,
kerasnets-bench, the JAX-backend bench) calls `define(FLAGS)` at its top and adopts
them as its key flags so its --help lists them (defined on call, not at import, so
a process that imports this module for `read` keeps absl's FLAGS to itself). The named
recipe's values become these flags' defaults where absl parses --recipe, on the command
line or in a flagfile (kerasnets.cli.command.RecipeFlag), so --help shows what a run
will use and any flag given overrides the recipe. The checks are the
library's (kerasnets.training.recipe.check_field and check); the validators only call them and,
for a combination that cannot run, say which values the user gave and which came
from the recipe.
"""

from __future__ import annotations

from absl import flags

from kerasnets.training import recipe
from kerasnets.cli import command

FLAGS = flags.FLAGS

_HELP = {
    "model": "seed, default, wide or fast (kerasnets.models.convnets), or your own: "
             "PATH.py:FUNCTION or package.module:FUNCTION, a function of no arguments "
             "returning a Keras model (docs/training.md).",
    "epochs": "Epochs to train.",
    "batch_size": "Global batch size.",
    "optimizer": "sgd (with momentum) or adamw.",
    "learning_rate": "Peak learning rate.",
    "momentum": "SGD momentum.",
    "nesterov": "Nesterov momentum for --optimizer=sgd.",
    "weight_decay": "Decoupled weight decay.",
    "schedule": "constant, or cosine: linear warm-up then cosine decay to 0.",
    "warmup_epochs": "Warm-up length for --schedule=cosine.",
    "augment": "Random rotation/shift/scale of training images.",
    "rotation": "Max rotation in degrees.",
    "shift": "Max shift in pixels.",
    "scale": "Max relative scale change.",
    "clean_epochs": "With --augment: train the last N epochs on unaugmented images (0 = "
                    "augment every epoch; < --epochs).",
    "precision": "auto = mixed_float16 on a GPU, float32 on CPU; the softmax is always float32.",
    "strategy": "tf.distribute strategy: auto (mirrored on several GPUs), default, mirrored, "
                "multiworker (TF_CONFIG; see docs/training.md).",
    "seed": "Random seed.",
    "deterministic": "Deterministic ops (identical reruns on the same CPU).",
    "steps_per_execution": "Batches per compiled call; more means fewer Python round trips.",
    "intra_op_threads": "Threads per TensorFlow op (0 = TensorFlow's default: all cores).",
    "train_examples": "Use the first N training images (0 = all 60,000).",
    "test_examples": "Use the first N test images (0 = all 10,000).",
    "eval_every": "A test pass every N epochs (0 = only the final model's, which always runs).",
    "stop_at_accuracy": "Stop after the first tested epoch whose test accuracy reaches this (0 = "
                        "train every epoch). The schedule stays that of --epochs: the run is "
                        "the full run cut short.",
    "target": "The test accuracy the recipe is meant to reach: results.json gives the first "
              "epoch and the seconds to it, kerasnets-sweep counts the seeds whose last three "
              "tested epochs reach it (it does not stop the run).",
}
_DEFAULTS = recipe.TrainConfig()
RECIPE_HELP = ("The recipe (flags/NAME.flags): its values are the defaults of the flags below, "
               "and a flag given overrides it.")  # kerasnets-toynet's --recipe too


def define(fv: flags.FlagValues) -> None:
    """The recipe flags and their validators, then --recipe (the default recipe's values
    as their defaults), on `fv`."""
    for name in recipe.FIELDS:
        define_field(fv, name)
    command.define_recipe_flag(fv, "default", recipe.names(), RECIPE_HELP, __name__)
    flags.register_validator("recipe", lambda _: _check_combination(fv), flag_values=fv)


def define_field(fv: flags.FlagValues, name: str) -> None:
    """The flag of recipe field `name` and its validator, on `fv` (kerasnets-design takes
    --model alone, in the same words as the commands that train)."""
    kind, default, on = recipe.FIELD_TYPES[name], getattr(_DEFAULTS, name), dict(flag_values=fv)
    if name in recipe.CHOICES:
        flags.DEFINE_enum(name, default, list(recipe.CHOICES[name]), _HELP[name], **on)
        return
    described = f"{_HELP[name]} ({recipe.RANGES[name].text})" if name in recipe.RANGES else _HELP[name]
    define_flag = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float,
                   "bool": flags.DEFINE_bool, "str": flags.DEFINE_string}[kind]
    define_flag(name, default, described, **on)
    flags.register_validator(name, lambda value: _check_field(name, value), **on)


def _check_field(name: str, value) -> bool:
    try:
        recipe.check_field(name, value)
    except recipe.ConfigError as e:
        raise flags.ValidationError(str(e)) from None
    return True


def _check_combination(fv: flags.FlagValues) -> bool:
    """The whole config through recipe.check; the message says where each value came from."""
    try:
        config(fv)
    except recipe.ConfigError as e:
        if len(e.fields) == 1:
            return True  # one value out of its range: that flag's own validator says so
        origins = ", ".join(
            f"{recipe.flag(name, fv[name].value)} "
            f"{'given' if fv[name].present else 'from --recipe=' + fv['recipe'].value}"
            for name in e.fields)
        raise flags.ValidationError(f"{e} ({origins})") from None
    return True


def config(fv: flags.FlagValues = FLAGS) -> recipe.TrainConfig:
    """The parsed recipe flags as a TrainConfig (recipe.ConfigError if it cannot run)."""
    return recipe.TrainConfig(**{name: fv[name].value for name in recipe.FIELDS})


def read(name: str, *overrides: str) -> recipe.TrainConfig:
    """Recipe `name` (then `overrides`, flags such as "--seed=3") as kerasnets-train reads
    it, through these flags and validators, leaving absl's global FLAGS alone."""
    fv = flags.FlagValues()
    define(fv)
    fv(["recipe", f"--recipe={name}", *overrides])
    return config(fv)
