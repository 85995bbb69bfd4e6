"""The augmentation's setting and its ranges, free of TensorFlow: one rule per value.

`RANGES` is what each range of the random affine augmentation allows: the recipe's
--rotation, --shift and --scale (kerasnets.training.recipe takes them from here) and
`Augment`, which kerasnets.data.pipeline applies, hold to the same rule in the same words.
"""

from __future__ import annotations

import dataclasses

from kerasnets.checks import Range

# Degrees, pixels (an MNIST digit is 28 wide) and relative scale change: the largest each
# augmentation may draw, uniformly, either way.
RANGES = {"rotation": Range(0, 180), "shift": Range(0, 14), "scale": Range(0, 0.5)}
UNTIL_EPOCH = Range(0, integer=True)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Random affine augmentation ranges (uniform): degrees, pixels, relative scale, each
    within RANGES (ValueError when made otherwise).

    `until_epoch`: epochs from this one on (0-based) see clean images — a small
    model fits the real digits better when the last epochs are not augmented
    (docs/experiments.md); None augments every epoch.
    """

    rotation: float = 10.0
    shift: float = 2.0
    scale: float = 0.0
    until_epoch: int | None = None

    def __post_init__(self):
        refusal = next(filter(None, (RANGES[name].refusal(name, getattr(self, name))
                                     for name in RANGES)), None)
        if refusal is None and not (self.until_epoch is None
                                    or UNTIL_EPOCH.holds(self.until_epoch)):
            refusal = f"until_epoch must be None or {UNTIL_EPOCH.text}, not {self.until_epoch!r}"
        if refusal:
            raise ValueError(f"augmentation out of range: {refusal}")
