"""Export a trained model as a SavedModel in TensorFlow Serving's versioned layout.

    savedmodels/<name>/1/saved_model.pb, variables/, ...
    savedmodels/<name>/2/...

`export_savedmodel(model, export_base)` writes the next integer version. The
version directory is built aside (a hidden `.export-tmp-*` sibling, which
TensorFlow Serving ignores because its name is not an integer) and renamed
into place in one step, so a server watching `export_base` never sees a
partial version, even if the exporting process is killed. Existing versions
are never touched.

The `serving_default` signature takes what a client has — raw pixels — and does
all preprocessing in the graph:

    images         uint8   [batch, 28, 28]
 -> classes        int64   [batch]
    probabilities  float32 [batch, 10]   (float32 also for mixed-precision models)

Usage: kerasnets-export --model_dir=runs/default --export_base=savedmodels/mnist
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from typing import Sequence

from absl import app, flags, logging

from kerasnets import fileio

SIGNATURE = "serving_default"
INPUT_NAME = "images"
_VERSION = re.compile(r"^[0-9]+$")


def versions(export_base: str) -> list[int]:
    """The integer version directories under `export_base`, ascending."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(d) for d in os.listdir(export_base)
                  if _VERSION.match(d) and os.path.isdir(os.path.join(export_base, d)))


def latest_version_dir(export_base: str) -> str | None:
    found = versions(export_base)
    return os.path.join(export_base, str(found[-1])) if found else None


def export_base_problem(export_base: str) -> str | None:
    """Why versions cannot be written under `export_base`, or None if they can."""
    if export_base and os.path.isfile(os.path.join(export_base, "saved_model.pb")):
        return (f"{os.path.abspath(export_base)} is itself a SavedModel; --export_base is the "
                "directory that holds the numbered versions (e.g. savedmodels/mnist)")
    return fileio.output_dir_problem(export_base, overwrite=True)  # versions are added beside


def tf_logger_quiet() -> None:
    """TensorFlow's Python logger to warnings only (a SavedModel write logs at INFO)."""
    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")


def register_export_base_validator(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--export_base (kerasnets-export and kerasnets-train) must be a place for versions."""

    @flags.validator("export_base", flag_values=flag_values)
    def _export_base_is_writable(value) -> bool:
        problem = value and export_base_problem(value)
        if problem:
            raise flags.ValidationError(f"--export_base: {problem}")
        return True


def serving_archive(model):
    """A keras.export.ExportArchive whose serving_default takes uint8 [batch, 28, 28]."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        # The declared [None, 28, 28] is not enforced when a signature is called; this is,
        # with the message "Shape of tensor images [2,32,32] is not compatible with ...".
        images = tf.ensure_shape(images, [None, 28, 28], name="images")
        probabilities = tf.cast(model(tf.expand_dims(images, -1), training=False), tf.float32)
        return {"classes": tf.argmax(probabilities, axis=1, output_type=tf.int64),
                "probabilities": probabilities}

    archive.add_endpoint(
        name=SIGNATURE, fn=serve,
        input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT_NAME)])
    return archive


def export_savedmodel(model, export_base: str, version: int | None = None) -> str:
    """Writes `model` as version `version` (default: next free) of `export_base`; returns its path.

    Raises FileExistsError if that version exists (versions are never replaced).
    """
    export_base = os.path.abspath(export_base)
    os.makedirs(export_base, exist_ok=True)
    if version is None:
        version = (versions(export_base) or [0])[-1] + 1
    target = os.path.join(export_base, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"{target} exists; versions are never overwritten")
    scratch = tempfile.mkdtemp(prefix=f".export-tmp-{version}-", dir=export_base)
    try:
        serving_archive(model).write_out(scratch, verbose=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(scratch, 0o777 & ~umask)  # mkdtemp makes 0700; a server may run as another user
        os.rename(scratch, target)  # one step; fails rather than replace a version made meanwhile
    finally:
        if os.path.exists(scratch):
            shutil.rmtree(scratch, ignore_errors=True)
    return target


# --- kerasnets-export -----------------------------------------------------------------

FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from kerasnets import models

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs each step at INFO
    tf_logger_quiet()
    model_path = os.path.join(FLAGS.model_dir, "model.keras")
    try:
        model = models.load_model(model_path)
    except Exception as e:  # noqa: BLE001 -- any unreadable model: one line, not a traceback
        print(f"kerasnets-export: error: cannot load {model_path}: {e}", file=sys.stderr)
        return 1
    try:
        path = export_savedmodel(model, FLAGS.export_base, FLAGS.version or None)
    except FileExistsError as e:
        print(f"kerasnets-export: error: {e}", file=sys.stderr)
        return 1
    print(f"exported {model_path} to {path} (signature {SIGNATURE}: "
          f"{INPUT_NAME} uint8 [batch, 28, 28] -> classes int64, probabilities float32)")
    return 0


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "A kerasnets-train run directory (holding model.keras).")
    flags.DEFINE_string("export_base", None,
                        "Directory of numbered versions, e.g. savedmodels/mnist.")
    flags.DEFINE_integer("version", 0, "Version to write (0 = next free; existing ones are "
                         "never overwritten).", lower_bound=0)
    flags.mark_flags_as_required(["model_dir", "export_base"])
    flags.register_validator(
        "model_dir", lambda v: v is None or os.path.isfile(os.path.join(v, "model.keras")),
        "--model_dir must be a kerasnets-train run directory holding model.keras")
    register_export_base_validator()

    @flags.multi_flags_validator(["export_base", "version"])
    def _version_is_new(values) -> bool:
        if values["version"] and values["export_base"]:
            target = os.path.join(values["export_base"], str(values["version"]))
            if os.path.exists(target):
                raise flags.ValidationError(f"--version: {os.path.abspath(target)} exists; "
                                            "versions are never overwritten (omit --version "
                                            "for the next free one)")
        return True


def run():
    """Console-script entry point (kerasnets-export)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
