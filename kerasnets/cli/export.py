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

from kerasnets import export
from kerasnets.cli import command, data_flags

FLAGS = flags.FLAGS

flags.adopt_module_key_flags(data_flags)  # MNIST for litert_int8's calibration and accuracy

flags.DEFINE_string("model_dir", None, "A kerasnets-train run directory (holding model.keras).")
flags.DEFINE_string("export_base", None,
                    "Directory of numbered versions, e.g. savedmodels/mnist.")
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


@flags.multi_flags_validator(["export_base", "version"])
def _version_is_new(values) -> bool:
    if values["version"] and values["export_base"]:
        target = os.path.join(values["export_base"], str(values["version"]))
        if os.path.exists(target):
            raise flags.ValidationError(f"--version: {os.path.abspath(target)} exists; "
                                        "versions are never overwritten (omit --version "
                                        "for the next free one)")
    return True


def export_run(model_dir: str, export_base: str, version: int | None, formats: Sequence[str],
               calibration_images: int, data_dir: str | None, mnist_path: str | None) -> int:
    """Loads the run's model.keras and exports it; prints where it went and each file."""
    from kerasnets import models

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    export.tf_logger_quiet()
    model_path = os.path.join(model_dir, "model.keras")
    model = models.load_model(model_path)
    mnist = None
    if "litert_int8" in formats:
        from kerasnets import data
        mnist = data.load_mnist(data_dir, mnist_path)
    calibration = (export.calibration_sample(mnist[0][0], calibration_images)
                   if mnist is not None else None)
    path = export.export_savedmodel(model, export_base, version, formats, calibration)
    print(f"exported {model_path} to {path} (signature {export.SIGNATURE}: "
          f"{export.INPUT_NAME} uint8 [batch, 28, 28] -> classes int64, probabilities float32)")
    for fmt in formats:
        if fmt != "saved_model":
            print(describe_file(path, fmt, mnist))
    return 0


def describe_file(version_dir: str, fmt: str, mnist) -> str:
    """`model.onnx: 44,196 bytes`, and for int8 its test accuracy beside the SavedModel's."""
    from kerasnets import runtimes

    path = os.path.join(version_dir, export.FORMAT_FILES[fmt])
    line = f"  {export.FORMAT_FILES[fmt]}: {os.path.getsize(path):,} bytes"
    if fmt == "litert_int8" and mnist is not None:
        x_test, y_test = mnist[1]
        accuracy = {runtime: float((runtimes.load(version_dir, runtime)(x_test)["classes"]
                                    == y_test).mean()) for runtime in ("litert_int8", "tensorflow")}
        line += (f", test accuracy {100 * accuracy['litert_int8']:.2f}% (SavedModel: "
                 f"{100 * accuracy['tensorflow']:.2f}%)")
    return line


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.version or None,
                      tuple(FLAGS.formats), FLAGS.calibration_images, FLAGS.data_dir,
                      FLAGS.mnist_path)


def run():
    """Console-script entry point (kerasnets-export)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
