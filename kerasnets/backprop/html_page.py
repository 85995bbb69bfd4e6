"""backprop.html: the 2-2-2 network in a browser, to edit and step, one file that opens offline.

The page (kerasnets/backprop/backprop.html, shipped with the package) draws the network with
its weights and node values, shows E1, E2, E_total and every dE_total/dw1..dw8 as
its chain-rule product with the number of each factor (docs/backprop.md's
derivation), lets the learner edit the inputs, targets, biases, weights and the
learning rate, step once or N times, and plots E_total by step for the study's
learning rates. It computes in JavaScript with the same operations, in the same
order, as kerasnets.backprop.chain_rule, a third implementation beside the library and the
workbook's formulas, held to the library by tests/backprop/test_backprop_page.py in Chromium.

`render` fills in the setting of a run; kerasnets-toynet writes the page beside its
workbook. It has no external script, style, font or request.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
from typing import Sequence

from kerasnets.backprop.toynet import ToyNet, check_field, check_lrs, check_steps

PAGE_FILE = "backprop.html"
STEP_LR = 0.5  # the page's own learning rate to step with, at first (the course's)


def render(net: ToyNet, lrs: Sequence[float], steps: int, lr: float = STEP_LR) -> str:
    """The page's HTML for `net`, with the study's learning rates and steps, held to the
    study's checks (toynet.SettingError, a ValueError, as kerasnets-toynet's flags say),
    and the page's own learning rate `lr` to the same rule as each of them."""
    rates = check_lrs(lrs)
    check_steps(steps)
    check_field("lr", lr)
    settings = dict(dataclasses.asdict(net), weights=list(net.weights), lrs=rates,
                    steps=steps, lr=float(lr))
    page = importlib.resources.files(__package__).joinpath(PAGE_FILE).read_text("utf-8")
    # JSON numbers only (no NaN: the page would not parse it); inside <script>, "</" would
    # end the element early.
    text = json.dumps(settings, allow_nan=False).replace("</", "<\\/")
    return page.replace("{{SETTINGS}}", text)


def write(path: str, net: ToyNet, lrs: Sequence[float], steps: int,
          lr: float = STEP_LR) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(net, lrs, steps, lr))
