"""The 2-2-2 network's setting, free of TensorFlow: its inputs, targets, fixed biases and
initial weights (`ToyNet`), the study's learning rates and steps, the names of every
quantity the workbench records, and the tolerance of the gradient check.

`ToyNet` refuses an impossible value when it is made (SettingError), and `check_lrs` and
`check_steps` the study's, so a setting built in Python is held to the same rules, in
the same words, as one read from the command line: kerasnets-toynet's flags take their
ranges from `RANGES` and their validators call these checks.

kerasnets.backprop.chain_rule computes with them in TensorFlow; kerasnets-toynet reads them to
define its flags, so its --help starts without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from kerasnets import errors
from kerasnets.checks import FINITE, Range

WEIGHT_NAMES = tuple(f"w{k}" for k in range(1, 9))
FORWARD_NAMES = ("h1", "h2", "a_h1", "a_h2", "o1", "o2", "a_o1", "a_o2", "E1", "E2", "E_total")
GRADIENT_NAMES = tuple(f"dE_d{w}" for w in WEIGHT_NAMES)
# One row per (lr, step): the weights at that step, the forward pass and the
# gradients computed at those weights. sweep.csv and the workbook use these names.
COLUMNS = ("lr", "step") + WEIGHT_NAMES + FORWARD_NAMES + GRADIENT_NAMES

# Why 1e-10: hand and tape run the same float64 arithmetic in a different order,
# so they agree to ~1e-15. The classic slip of using a_h1 in dE/dw3 is only
# 2.6e-4 relative at the defaults, which a loose 1e-4 tolerance would let through.
GRADIENT_RTOL = 1e-10


MAX_STEPS = 100_000
TARGET_RANGE = Range(0, 1, low_open=True, high_open=True)
TARGET_WHY = "a sigmoid output never reaches 0 or 1"
# What each value allows: the setting's (every one finite), the study's learning rates
# (each; "lr") and its steps
RANGES = {**{name: FINITE for name in ("i1", "i2", "b1", "b2") + WEIGHT_NAMES},
          "t1": TARGET_RANGE, "t2": TARGET_RANGE,
          "lr": Range(0, low_open=True), "steps": Range(1, MAX_STEPS, integer=True)}
LRS_TEXT = "distinct finite learning rates > 0, e.g. 0.1,0.5,1.0"


class SettingError(errors.KerasnetsError, ValueError):
    """A value of the 2-2-2 network's setting or study that cannot run; `field` names it
    (a flag of kerasnets-toynet)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_field(name: str, value) -> None:
    """SettingError unless `value` is one `name` (a key of RANGES) allows."""
    refusal = RANGES[name].refusal(name, value, TARGET_WHY if name in ("t1", "t2") else "")
    if refusal:
        raise SettingError(refusal, name)


def check_lrs(lrs: Iterable) -> list[float]:
    """The study's learning rates as floats (numbers, or their text as --lrs gives it);
    SettingError unless they are one or more distinct finite numbers > 0."""
    rates = []
    for value in lrs:
        try:
            rate = float(value) if isinstance(value, str) else value
        except ValueError:
            rate = None
        if not RANGES["lr"].holds(rate):
            raise SettingError(f"--lrs must be {LRS_TEXT}; it has {value!r}", "lrs")
        rates.append(float(rate))
    if not rates:
        raise SettingError(f"--lrs must be {LRS_TEXT}; it is empty", "lrs")
    twice = next((r for k, r in enumerate(rates) if r in rates[:k]), None)
    if twice is not None:
        raise SettingError(f"--lrs must be {LRS_TEXT}; it repeats {twice!r}", "lrs")
    return rates


def check_steps(steps) -> int:
    """`steps` (gradient-descent updates per learning rate); SettingError unless it is an
    integer in 1..MAX_STEPS."""
    check_field("steps", steps)
    return steps


@dataclasses.dataclass(frozen=True)
class ToyNet:
    """Inputs, targets, fixed biases and initial weights of the 2-2-2 network; an
    impossible value (RANGES) raises SettingError when it is made."""

    i1: float = 0.05
    i2: float = 0.1
    t1: float = 0.01
    t2: float = 0.99
    b1: float = 0.0
    b2: float = 0.0
    weights: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55)

    def __post_init__(self):
        if len(self.weights) != len(WEIGHT_NAMES):
            raise SettingError(f"weights must hold 8 values w1..w8, got {len(self.weights)}",
                               "weights")
        for name in ("i1", "i2", "t1", "t2", "b1", "b2"):
            check_field(name, getattr(self, name))
        for name, value in zip(WEIGHT_NAMES, self.weights):
            check_field(name, value)
