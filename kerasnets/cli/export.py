r"""kerasnets-export: a trained model as the next SavedModel version, for serving.

Loads --model_dir/model.keras and writes it under --export_base as the next
integer version (TensorFlow Serving's layout), with the serving_default
signature: images uint8 [batch, 28, 28] -> classes int64 [batch], probabilities
float32 [batch, 10]. The version appears whole or not at all; existing versions
are never touched.

  kerasnets-export --model_dir=runs/default --export_base=savedmodels/mnist
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app, flags, logging

from kerasnets import export
from kerasnets.cli import command

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "A kerasnets-train run directory (holding model.keras).")
flags.DEFINE_string("export_base", None,
                    "Directory of numbered versions, e.g. savedmodels/mnist.")
flags.DEFINE_integer("version", 0, "Version to write (0 = next free; existing ones are "
                     "never overwritten).", lower_bound=0)
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


def export_run(model_dir: str, export_base: str, version: int | None) -> int:
    """Loads the run's model.keras and exports it; prints where it went."""
    from kerasnets import models

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    export.tf_logger_quiet()
    model_path = os.path.join(model_dir, "model.keras")
    model = models.load_model(model_path)
    path = export.export_savedmodel(model, export_base, version)
    print(f"exported {model_path} to {path} (signature {export.SIGNATURE}: "
          f"{export.INPUT_NAME} uint8 [batch, 28, 28] -> classes int64, probabilities float32)")
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return export_run(FLAGS.model_dir, FLAGS.export_base, FLAGS.version or None)


def run():
    """Console-script entry point (kerasnets-export)."""
    command.run(main, __name__)


if __name__ == "__main__":
    run()
