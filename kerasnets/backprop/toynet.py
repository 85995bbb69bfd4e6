"""The 2-2-2 network's setting, free of TensorFlow: its inputs, targets, fixed biases and
initial weights (`ToyNet`), the names of every quantity the workbench records, and the
tolerance of the gradient check.

kerasnets.backprop.chain_rule computes with them in TensorFlow; kerasnets-toynet reads them to
define its flags, so its --help starts without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class ToyNet:
    """Inputs, targets, fixed biases and initial weights of the 2-2-2 network."""

    i1: float = 0.05
    i2: float = 0.1
    t1: float = 0.01
    t2: float = 0.99
    b1: float = 0.0
    b2: float = 0.0
    weights: tuple[float, ...] = (0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5, 0.55)

    def __post_init__(self):
        if len(self.weights) != 8:
            raise ValueError(f"weights must hold 8 values w1..w8, got {len(self.weights)}")
