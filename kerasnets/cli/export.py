r"""kerasnets-export: a trained model as the next version, for serving in every runtime.

Loads --model_dir/model.keras and writes it under --export_base as the next
integer version (TensorFlow Serving's layout) holding the SavedModel and the
other --formats: model.onnx (ONNX Runtime), model.tflite (LiteRT) and
model_int8.tflite (LiteRT, int8, calibrated on training images; its size and
test accuracy are printed). Each keeps the serving signature: images uint8
[batch, 28, 28] -> classes int64 [batch], probabilities float32 [batch, 10].
The version appears whole, every file in it, or not at all; existing versions
are never touched.

  kerasnets-export --model_dir=runs/default --export_base=savedmodels/mnist
  kerasnets-export --model_dir=runs/default --export_base=savedmodels/mnist \
      --formats=saved_model,onnx,litert,litert_int8
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags, logging

from kerasnets.serving import export
from kerasnets.cli import command, data_flags

FLAGS = flags.FLAGS

flags.adopt_module_key_flags(data_flags)  # MNIST for litert_int8's calibration and accuracy

flags.DEFINE_string("model_dir", None, "A kerasnets-train run directory (its recipe.json, model.keras, history, results and "
                    "pictures).")
flags.DEFINE_string("export_base", None, "Directory of numbered versions (each a SavedModel with the other formats beside "
                    "it), e.g. savedmodels/mnist: the run's final model is exported into it.")
flags.DEFINE_integer("version", 0, "Version to write (0 = next free; existing ones are "
                     "never overwritten).", lower_bound=0)
flags.DEFINE_list("formats", list(export.DEFAULT_FORMATS), "What the version holds, beside "
                  f"the SavedModel: a comma list of {', '.join(export.FORMATS)}.")
flags.DEFINE_integer("calibration_images", 1000, "litert_int8: training images its "
                     "quantisation is calibrated on.", lower_bound=1, upper_bound=60000)
flags.register_validator("formats", lambda v: not export.formats_problem(v, calibration_images=()),
                         "--formats must be a comma list of distinct formats "
                         f"({', '.join(export.FORMATS)}) including saved_model")
flags.mark_flags_as_required(["model_dir", "export_base"])
flags.register_validator(
    "model_dir", lambda v: v is None or os.path.isfile(os.path.join(v, "model.keras")),
    "--model_dir must be a kerasnets-train run directory holding model.keras")
command.register_export_base_validator()
command.define_model_code_flag(__name__)


@flags.multi_flags_validator(["export_base", "version"])
def _version_is_new(values) -> bool:
    if values["version"] and values["export_base"]:
        target = os.path.join(values["export_base"], str(values["version"]))
        if os.path.exists(target):
            raise flags.ValidationError(f"--version: {os.path.abspath(target)} exists; "
                                        "versions are never overwritten (omit --version "
                                        "for the next free one)")
    return True


def main(argv: Sequence[str]) -> int:
    """Exports the run's model; the lines are export.export_run's. A model or data problem
    ends in one error line, through command.run."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    export.export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.version or None,
                      tuple(FLAGS.formats), FLAGS.calibration_images, FLAGS.data_dir,
                      FLAGS.mnist_path, log=print, model_code=FLAGS.model_code)
    return 0


def run():
    """Console-script entry point (kerasnets-export)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
