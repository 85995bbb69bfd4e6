r"""kerasnets-toynet: the backprop workbench (a 2-2-2 sigmoid network) on the command line.

Trains the network by plain gradient descent at each learning rate of --lrs,
checks the hand-derived chain-rule gradients against tf.GradientTape at every
step, and writes into --out_dir: sweep.csv (every step's weights, forward pass,
loss and gradients), lr_sweep.png (E_total against step), backprop.xlsx (the
same computation as live spreadsheet formulas, with charts) and backprop.html (the
network to edit and step in a browser, offline: every chain-rule factor's number).

  kerasnets-toynet --recipe=toynet --out_dir=runs/toynet
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from absl import app, flags

from kerasnets import fileio
from kerasnets.backprop import toynet as setting
from kerasnets.training import recipe
from kerasnets.cli import command, recipe_flags

FLAGS = flags.FLAGS
_DEFAULT = setting.ToyNet()
_RANGES = setting.RANGES

flags.DEFINE_list("lrs", ["0.1", "0.2", "0.5", "0.8", "1.0", "2.0"],
                  f"Comma-separated learning rates: {setting.LRS_TEXT}.")
flags.DEFINE_integer("steps", 100, f"Gradient-descent updates per learning rate "
                     f"({_RANGES['steps'].text}).")
for _name in ("i1", "i2"):
    flags.DEFINE_float(_name, getattr(_DEFAULT, _name), f"Input {_name} ({_RANGES[_name].text}).")
for _name in ("t1", "t2"):
    flags.DEFINE_float(_name, getattr(_DEFAULT, _name), f"Target {_name} ({_RANGES[_name].text}: "
                       f"{setting.TARGET_WHY}).")
for _name, _value in zip(setting.WEIGHT_NAMES, _DEFAULT.weights):
    flags.DEFINE_float(_name, _value, f"Initial weight {_name} ({_RANGES[_name].text}).")
for _name in ("b1", "b2"):
    flags.DEFINE_float(_name, 0.0, f"Bias {_name}, held fixed during training "
                       f"({_RANGES[_name].text}).")
flags.DEFINE_string("out_dir", None, "Directory of the command's outputs (the files are listed above).")
flags.DEFINE_bool("overwrite", False, "Start afresh: replace what an earlier run of the command left in the output "
                  "directory instead of refusing.")
flags.DEFINE_bool("log_scale", True, "Plot E_total on a log scale (plot and summary chart).")
flags.mark_flag_as_required("out_dir")
command.define_recipe_flag(FLAGS, "toynet", recipe.names("toynet"), recipe_flags.RECIPE_HELP,
                           __name__)


def parse_lrs(values: Sequence[str]) -> list[float]:
    """--lrs as floats (kerasnets.backprop.toynet.check_lrs: SettingError saying what is wrong)."""
    return setting.check_lrs(values)


def _validator(check: Callable, name: str) -> Callable:
    """An absl validator of flag `name` that calls the library's `check` and says what it says."""

    def valid(value) -> bool:
        try:
            check(name, value)
        except setting.SettingError as e:
            raise flags.ValidationError(str(e)) from None
        return True

    return valid


flags.register_validator("lrs", _validator(lambda _, value: setting.check_lrs(value), "lrs"))
for _name in ("steps", "i1", "i2", "t1", "t2", "b1", "b2") + setting.WEIGHT_NAMES:
    flags.register_validator(_name, _validator(setting.check_field, _name))


@flags.multi_flags_validator(["out_dir", "overwrite"])
def _check_out_dir(values) -> bool:
    problem = fileio.output_dir_problem(values["out_dir"], values["overwrite"])
    if problem:
        raise flags.ValidationError(f"--out_dir: {problem}")
    return True


def toynet(out_dir: str, net: setting.ToyNet, lrs: Sequence[float], steps: int,
           log_scale: bool) -> int:
    """Runs the workbench and prints its table and files."""
    from kerasnets.backprop import workbench  # TensorFlow: loaded once the flags are known good

    runs = workbench.run_workbench(out_dir, net, lrs, steps, log_scale)
    print(workbench.format_table(runs))
    print(f"hand-derived gradients = tf.GradientTape at every step (relative difference "
          f"<= {setting.GRADIENT_RTOL:g})")
    for name in ("sweep.csv", "lr_sweep.png", "backprop.xlsx", "backprop.html"):
        print(f"wrote {os.path.join(os.path.abspath(out_dir), name)}")
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    net = setting.ToyNet(i1=FLAGS.i1, i2=FLAGS.i2, t1=FLAGS.t1, t2=FLAGS.t2, b1=FLAGS.b1,
                          b2=FLAGS.b2, weights=tuple(FLAGS[w].value for w in setting.WEIGHT_NAMES))
    return toynet(FLAGS.out_dir, net, parse_lrs(FLAGS.lrs), FLAGS.steps, FLAGS.log_scale)


def run():
    """Console-script entry point (kerasnets-toynet)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
