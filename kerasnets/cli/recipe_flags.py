"""The recipe flags: one absl flag per `kerasnets.recipe.TrainConfig` field, defined once.

Imported by every command that trains or times a recipe (kerasnets-train,
kerasnets-sweep, kerasnets-bench, the JAX-backend bench), which adopts them as
its key flags so its --help lists them. Their defaults are TrainConfig's; the
commands read a named recipe first (--recipe), so these defaults only fill in
what a recipe leaves out.
"""

from __future__ import annotations

from absl import flags

from kerasnets import models, recipe

FLAGS = flags.FLAGS
_D = recipe.TrainConfig()

def define(fv: flags.FlagValues) -> None:
    """The recipe flags and their validators, on `fv` (at import: absl's global FLAGS)."""
    _define_model_and_optimizer(fv)
    _define_data_and_runtime(fv)
    _register_validators(fv)


def _define_model_and_optimizer(fv: flags.FlagValues) -> None:
    on = dict(flag_values=fv)
    flags.DEFINE_enum("model", _D.model, list(models.BUILDERS), "Architecture (kerasnets.models).", **on)
    flags.DEFINE_integer("epochs", _D.epochs, "Epochs to train.", lower_bound=1, upper_bound=1000, **on)
    flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size.", lower_bound=1,
                         upper_bound=8192, **on)
    flags.DEFINE_enum("optimizer", _D.optimizer, list(recipe.OPTIMIZERS),
                      "sgd (with momentum) or adamw.", **on)
    flags.DEFINE_float("learning_rate", _D.learning_rate, "Peak learning rate (finite, > 0).", **on)
    flags.DEFINE_float("momentum", _D.momentum, "SGD momentum, in [0, 1).", lower_bound=0.0, **on)
    flags.DEFINE_bool("nesterov", _D.nesterov, "Nesterov momentum for --optimizer=sgd.", **on)
    flags.DEFINE_float("weight_decay", _D.weight_decay, "Decoupled weight decay.", lower_bound=0.0, **on)
    flags.DEFINE_enum("schedule", _D.schedule, list(recipe.SCHEDULES),
                      "constant, or cosine: linear warm-up then cosine decay to 0.", **on)
    flags.DEFINE_float("warmup_epochs", _D.warmup_epochs, "Warm-up length for --schedule=cosine.",
                       lower_bound=0.0, **on)


def _define_data_and_runtime(fv: flags.FlagValues) -> None:
    on = dict(flag_values=fv)
    flags.DEFINE_bool("augment", _D.augment, "Random rotation/shift/scale of training images.", **on)
    flags.DEFINE_float("rotation", _D.rotation, "Max rotation in degrees.", lower_bound=0.0,
                       upper_bound=180.0, **on)
    flags.DEFINE_float("shift", _D.shift, "Max shift in pixels.", lower_bound=0.0, upper_bound=14.0, **on)
    flags.DEFINE_float("scale", _D.scale, "Max relative scale change.", lower_bound=0.0,
                       upper_bound=0.5, **on)
    flags.DEFINE_integer("clean_epochs", _D.clean_epochs, "With --augment: train the last N epochs "
                         "on unaugmented images (0 = augment every epoch; < --epochs).",
                         lower_bound=0, **on)
    flags.DEFINE_enum("precision", _D.precision, list(recipe.PRECISIONS),
                      "auto = mixed_float16 on a GPU, float32 on CPU; the softmax is always float32.", **on)
    flags.DEFINE_enum("strategy", _D.strategy, list(recipe.STRATEGIES),
                      "tf.distribute strategy: auto (mirrored on several GPUs), default, mirrored, "
                      "multiworker (TF_CONFIG; see docs/training.md).", **on)
    flags.DEFINE_integer("seed", _D.seed, "Random seed.", lower_bound=0, **on)
    flags.DEFINE_bool("deterministic", _D.deterministic,
                      "Deterministic ops (identical reruns on the same CPU).", **on)
    flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution,
                         "Batches per compiled call; more means fewer Python round trips.",
                         lower_bound=1, upper_bound=1000, **on)
    flags.DEFINE_integer("intra_op_threads", _D.intra_op_threads,
                         "Threads per TensorFlow op (0 = TensorFlow's default: all cores).",
                         lower_bound=0, upper_bound=1024, **on)
    flags.DEFINE_integer("train_examples", _D.train_examples,
                         "Use the first N training images (0 = all 60,000).", lower_bound=0,
                         upper_bound=60000, **on)
    flags.DEFINE_integer("test_examples", _D.test_examples,
                         "Use the first N test images (0 = all 10,000).", lower_bound=0,
                         upper_bound=10000, **on)
    flags.DEFINE_integer("eval_every", _D.eval_every, "A test pass every N epochs (0 = only the "
                         "final model's, which always runs).", lower_bound=0, upper_bound=1000, **on)
    flags.DEFINE_float("stop_at_accuracy", _D.stop_at_accuracy, "Stop after the first tested epoch "
                       "whose test accuracy reaches this (0 = train every epoch). The schedule "
                       "stays that of --epochs: the run is the full run cut short.",
                       lower_bound=0.0, upper_bound=1.0, **on)


def _register_validators(fv: flags.FlagValues) -> None:
    on = dict(flag_values=fv)
    flags.register_validator("learning_rate", lambda v: 0 < v < float("inf"),
                             "--learning_rate must be a finite number > 0", **on)
    flags.register_validator("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1)", **on)
    flags.register_multi_flags_validator(
        ["clean_epochs", "epochs"], lambda v: v["clean_epochs"] < v["epochs"],
        "--clean_epochs must be smaller than --epochs (at least one epoch is augmented)", **on)
    flags.register_multi_flags_validator(
        ["stop_at_accuracy", "eval_every", "strategy"],
        lambda v: not v["stop_at_accuracy"] or (v["eval_every"] and v["strategy"] != "multiworker"),
        "--stop_at_accuracy needs test passes (--eval_every >= 1) and a single-process run "
        "(not --strategy=multiworker)", **on)
    flags.register_multi_flags_validator(
        ["eval_every", "strategy"], lambda v: v["eval_every"] == 1 or v["strategy"] != "multiworker",
        "--eval_every must be 1 with --strategy=multiworker (its loop tests every epoch)", **on)


define(FLAGS)


def config(fv: flags.FlagValues = FLAGS) -> recipe.TrainConfig:
    """The parsed recipe flags as a TrainConfig."""
    return recipe.TrainConfig(**{name: fv[name].value for name in recipe.FIELDS})


def read(name: str, *overrides: str) -> recipe.TrainConfig:
    """Recipe `name` (then `overrides`, flags such as "--seed=3") as kerasnets-train reads
    it, through these flags and validators, leaving absl's global FLAGS alone."""
    fv = flags.FlagValues()
    define(fv)
    fv(["recipe", f"--flagfile={recipe.recipe_path(name)}", *overrides])
    return config(fv)
