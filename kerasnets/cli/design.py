r"""kerasnets-design: a model's design card, before it trains.

Builds --model (a built-in name, or your own PATH.py:FUNCTION or
package.module:FUNCTION, checked as kerasnets-train checks it) and prints its
layer table: each layer's name and kind, output shape, parameters (trainable and
not), multiply-accumulates, and the receptive field and jump (the product of the
strides) at its output; then the totals, and whether the last spatial layer's
receptive field covers the 28x28 digit. A layer the card cannot account for is
marked so. --max_params=N fails (exit 1) when the trainable parameters exceed N;
--json also prints the card as one JSON line (kerasnets-train writes the same card
as design.json into its run directory).

  kerasnets-design --model=seed
  kerasnets-design --model=my_net.py:build --max_params=8000
"""

from __future__ import annotations

import json
from typing import Sequence

from absl import app, flags

from kerasnets.cli import command, recipe_flags

FLAGS = flags.FLAGS

recipe_flags.define_field(FLAGS, "model")
flags.declare_key_flag("model")
command.define_budget_flag()
flags.declare_key_flag("max_params")
flags.DEFINE_bool("json", False, "Also print the results as one JSON line at the end.")


def design_command(model: str, max_params: int, as_json: bool) -> int:
    """Prints the card of `model`; 1 (and one error line) over a budget of `max_params`."""
    from kerasnets.models import convnets, design

    card = design.card(convnets.build_model(model))
    print(design.format_card(card), flush=True)
    if as_json:
        print(json.dumps(card), flush=True)
    problem = max_params and design.budget_problem(card, max_params)
    return command.fail(problem) if problem else 0


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return design_command(FLAGS.model, FLAGS.max_params, FLAGS.json)


def run():
    """Console-script entry point (kerasnets-design)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
