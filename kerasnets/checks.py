"""The rule a numeric value is held to, said once for every part that checks one.

`Range` is what a value allows (low and high, open or closed, integer or not, always
finite); `Range.text` says it as a help line does and `Range.refusal` as an error
does, so the library, its commands' flags and their help all use one set of words:

  --steps must be an integer in [1, 100000], not 0

Part 1's setting (kerasnets.backprop.toynet), the augmentation (kerasnets.data.pipeline)
and a training run's recipe (kerasnets.training.recipe) define their ranges with it.
Imports nothing of the package.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric field allows; `text` says it as a help line does."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        above = value > self.low if self.low_open or math.isinf(self.low) else value >= self.low
        below = value < self.high if self.high_open or math.isinf(self.high) else value <= self.high
        return math.isfinite(value) and above and below

    @property
    def text(self) -> str:
        kind = "an integer" if self.integer else "a finite number" if math.isinf(self.high) else "a number"
        if math.isinf(self.low) and math.isinf(self.high):
            return kind
        low = format(self.low, "g") if not self.integer else str(int(self.low))
        if math.isinf(self.high):
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        high = format(self.high, "g") if not self.integer else str(int(self.high))
        return (f"{kind} in {'(' if self.low_open else '['}{low}, {high}"
                f"{')' if self.high_open else ']'}")

    def refusal(self, name: str, value, why: str = "") -> str | None:
        """None if `value` is one the range holds, else the one line that refuses it:
        `--name must be <text>[ (why)], not <value>`."""
        if self.holds(value):
            return None
        return f"--{name} must be {self.text}{f' ({why})' if why else ''}, not {value!r}"


FINITE = Range(-math.inf)  # any finite number
