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

The command line is kerasnets-export (kerasnets.cli.export).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile

from kerasnets import errors, fileio

SIGNATURE = "serving_default"
INPUT_NAME = "images"
_VERSION = re.compile(r"^[0-9]+$")


class VersionExistsError(errors.KerasnetsError, FileExistsError):
    """The version asked for exists: versions are never overwritten."""


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


def serving_archive(model):
    """A keras.export.ExportArchive whose serving_default takes uint8 [batch, 28, 28]."""
    import keras
    import tensorflow as tf

    from kerasnets import models

    channel = models.add_channel_axis(model)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        # The declared [None, 28, 28] is not enforced when a signature is called; this is,
        # with the message "Shape of tensor images [2,32,32] is not compatible with ...".
        images = tf.ensure_shape(images, [None, 28, 28], name="images")
        inputs = tf.expand_dims(images, -1) if channel else images
        probabilities = tf.cast(model(inputs, training=False), tf.float32)
        return {"classes": tf.argmax(probabilities, axis=1, output_type=tf.int64),
                "probabilities": probabilities}

    archive.add_endpoint(
        name=SIGNATURE, fn=serve,
        input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT_NAME)])
    return archive


def export_savedmodel(model, export_base: str, version: int | None = None) -> str:
    """Writes `model` as version `version` (default: next free) of `export_base`; returns its path.

    Raises VersionExistsError if that version exists (versions are never replaced), and
    models.NotAnMnistModelError (before writing anything) for a model that does not
    take 28x28 images or does not output 10 classes. Exports running at the same time
    into one `export_base` get distinct versions: the number is taken when the finished
    SavedModel is renamed into place, and a rename that finds its number taken moves on
    to the next one.
    """
    from kerasnets import models

    problem = models.mnist_model_problem(model)
    if problem:
        raise models.NotAnMnistModelError(f"the model is not an MNIST model: {problem}")
    export_base = os.path.abspath(export_base)
    os.makedirs(export_base, exist_ok=True)
    if version is not None and os.path.exists(os.path.join(export_base, str(version))):
        raise VersionExistsError(f"{os.path.join(export_base, str(version))} exists; versions are "
                              "never overwritten")
    scratch = tempfile.mkdtemp(prefix=".export-tmp-", dir=export_base)
    try:
        write_archive(model, scratch)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(scratch, 0o777 & ~umask)  # mkdtemp makes 0700; a server may run as another user
        number = version
        while True:
            if version is None:  # the next free number (never one already tried)
                number = max((versions(export_base) or [0])[-1], number or 0) + 1
            target = os.path.join(export_base, str(number))
            if _rename_unless_taken(scratch, target):
                return target
            if version is not None:
                raise VersionExistsError(f"{target} exists; versions are never overwritten")
    finally:
        if os.path.exists(scratch):
            shutil.rmtree(scratch, ignore_errors=True)


def write_archive(model, directory: str) -> None:
    """The SavedModel of `model` into `directory`; errors.DiskFullError when the disk fills
    (TensorFlow's file system reports it as its own error, with the OS's message)."""
    import tensorflow as tf

    try:
        serving_archive(model).write_out(directory, verbose=False)
    except (OSError, tf.errors.OpError) as e:  # TensorFlow's writer reports the OS's error
        if errors.is_disk_full(e):
            raise errors.disk_full(e, os.path.dirname(directory), "the SavedModel") from None
        raise


def signature_problem(signatures) -> str | None:
    """Why a loaded SavedModel's signatures are not kerasnets' serving signature, or None."""
    import tensorflow as tf

    if SIGNATURE not in signatures:
        return f"it has no {SIGNATURE} signature (it has: {', '.join(signatures) or 'none'})"
    signature = signatures[SIGNATURE]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    spec = inputs.get(INPUT_NAME)
    probabilities = outputs.get("probabilities")
    if (len(inputs) != 1 or spec is None or spec.dtype != tf.uint8
            or spec.shape.as_list() != [None, 28, 28]
            or probabilities is None or probabilities.shape.as_list() != [None, 10]):
        def describe(specs):
            return ", ".join(f"{k} {v.dtype.name} {v.shape.as_list()}" for k, v in specs.items())
        return (f"{SIGNATURE} takes {describe(inputs)} and returns {describe(outputs)}; needed: "
                f"{INPUT_NAME} uint8 [None, 28, 28] -> probabilities float32 [None, 10]")
    return None


def _rename_unless_taken(source: str, target: str) -> bool:
    """Renames `source` to `target` in one step; False if `target` exists (never replaced:
    os.rename fails onto a non-empty directory, and an existing empty one is left alone)."""
    if os.path.exists(target):
        return False
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True
