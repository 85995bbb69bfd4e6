"""The design spaces a search samples from: `five_block`, or a function of the user's.

A space is a function of one Optuna trial that returns a Keras model, sampling its
choices with `trial.suggest_*` (define-by-run: what it samples may depend on what it
sampled before). Replayed with `optuna.trial.FixedTrial(params)` it builds the same
design again, which is how a trial's run and the final run rebuild it.

`five_block` is our own design family (kerasnets.models.convnets: `default` and `wide`
are two of its members): five 3x3 conv-BatchNorm-ReLU blocks, two 2x2 max-pools,
global average pooling and one dense layer. It samples

  c1 .. c5        each block's width, from WIDTHS
  pools           after which blocks the two pools stand: 2,4 (ours), 2,3, 3,4 or 1,4
  blur            whether the pools are anti-aliased (convnets.blur_pool) or plain
  learning_rate   the recipe's peak learning rate, log-uniform in LEARNING_RATES

Pools and blur hold no trainable parameters, so the smallest design is every block at
the narrowest width: a budget below it is refused before any trial (`smallest_params`).

A user's space, `PATH.py:FUNCTION` or `package.module:FUNCTION`, samples what it likes
and keeps the recipe's learning rate; its models are held to the contract every model
of the package keeps (kerasnets.models.convnets.checked_model).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from kerasnets.models import user_code
from kerasnets.models.user_code import ModelReferenceError

FIVE_BLOCK = "five_block"
WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32)
# after which blocks the two pools stand (each leaves the fifth block at least 3x3)
POOLS = {"2,4": (2, 4), "2,3": (2, 3), "3,4": (3, 4), "1,4": (1, 4)}
LEARNING_RATES = (0.05, 0.4)
FORMS = f"{FIVE_BLOCK}, or a function of the trial PATH.py:FUNCTION or package.module:FUNCTION"


@dataclasses.dataclass(frozen=True)
class Space:
    """A design space: `name` as --space gives it, `build(trial)` the model a trial
    samples, `recipe(trial, config)` the recipe it trains with (the space may sample
    recipe values), and `smallest_params()`, the smallest design's trainable parameters,
    where known (a function: building that design draws initializer seeds, which only
    the budget check should pay, never a run that builds a design from this space)."""

    name: str
    build: Callable[[object], object]
    recipe: Callable[[object, object], object]
    smallest_params: Callable[[], int] | None


def name_problem(name) -> str | None:
    """Why `name` is not a space --space can take (its text only), or None."""
    if name == FIVE_BLOCK:
        return None
    problem = user_code.name_problem(name)
    if problem is None and not user_code.is_reference(name):  # a built-in model's name
        return f"must be {FORMS}, not {name!r} (a model name is a single design)"
    return problem and f"must be {FORMS}, not {name!r}"


def load(name: str) -> Space:
    """The space `name` names, its code imported (ModelReferenceError in one line if it
    cannot be)."""
    problem = name_problem(name)
    if problem:
        raise ModelReferenceError(f"--space {problem}")
    if name == FIVE_BLOCK:
        return Space(FIVE_BLOCK, five_block, five_block_recipe, five_block_smallest_params)
    function = user_code.builder(name, "--space")
    return Space(name, lambda trial: _user_design(function, name, trial),
                 lambda trial, config: config, None)


def _user_design(function, name: str, trial):
    from kerasnets.models import convnets

    try:
        model = function(trial)
    except Exception as e:  # the user's code: its own error, in one line
        import optuna

        if isinstance(e, optuna.TrialPruned):
            raise
        raise ModelReferenceError(f"--space: {name} raised {type(e).__name__}: "
                                  f"{user_code.one_line(e)}") from None
    return convnets.checked_model(model, name, "--space")


def five_block(trial):
    """One design of the five_block family, sampled by `trial` (the module docstring)."""
    widths = tuple(trial.suggest_categorical(f"c{block}", WIDTHS) for block in range(1, 6))
    pools = trial.suggest_categorical("pools", tuple(POOLS))
    blur = trial.suggest_categorical("blur", (True, False))
    return five_block_design(widths, POOLS[pools], blur)


def five_block_recipe(trial, config):
    """`config` with the peak learning rate `trial` samples."""
    rate = trial.suggest_float("learning_rate", *LEARNING_RATES, log=True)
    return dataclasses.replace(config, learning_rate=rate)


def five_block_design(widths: tuple[int, ...], pools: tuple[int, int], blur: bool):
    """Five conv-BN-ReLU blocks of `widths`, a 2x2 max-pool after each block in `pools`
    (anti-aliased with `blur`), global average pooling, a dense layer and the softmax:
    with widths (8, 16, 16, 16, 12), pools (2, 4) and blur, the `default` model's
    architecture."""
    import keras
    from keras import layers

    from kerasnets.models import convnets

    stack = [keras.Input(convnets.INPUT_SHAPE, name="images"), convnets.normalize()]
    for block, width in enumerate(widths, start=1):
        stack += convnets.conv_bn_relu(width)
        if block in pools:
            stack += convnets.blur_pool() if blur else convnets.max_pool()
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(10), convnets.probabilities()]
    return keras.Sequential(stack, name=FIVE_BLOCK)


def five_block_smallest_params() -> int:
    """The trainable parameters of the smallest five_block design: every block at the
    narrowest width (pools and blur hold none)."""
    from kerasnets.models import convnets

    model = five_block_design((WIDTHS[0],) * 5, POOLS["2,4"], True)
    return convnets.count_params(model)[0]
