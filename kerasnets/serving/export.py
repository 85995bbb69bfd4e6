"""Export a trained model as one version for every runtime, in TensorFlow Serving's layout.

    savedmodels/<name>/1/saved_model.pb, variables/, ...   the SavedModel (always)
                         signature_def.json                its serving signature, for
                                                           servers without TensorFlow
                         model.onnx                        ONNX Runtime
                         model.tflite                      LiteRT, float32
                         model_int8.tflite                 LiteRT, int8 weights and activations
    savedmodels/<name>/2/...

`export_version(model, export_base)` writes the next integer version. The
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

The other formats are converted from that signature with the converters the
runtimes' makers ship (tf2onnx; tf.lite.TFLiteConverter), so each file keeps the
same inputs and outputs (kerasnets.serving.runtimes runs them). int8 is post-training
quantisation calibrated on training images the caller passes. By default a
version holds the SavedModel, ONNX and float LiteRT (DEFAULT_FORMATS): they need
nothing but the model; int8 is asked for, with its calibration images
(kerasnets-export --formats=...,litert_int8 loads MNIST for it).

`export_run(model_dir, export_base)` is the whole of kerasnets-export as one call:
it loads a training run's model.keras, exports it and, for int8, measures its
test accuracy beside the SavedModel's (kerasnets.cli.export only parses flags).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings
from typing import Callable, Sequence

from kerasnets import errors, fileio
from kerasnets.serving.contract import (FORMAT_FILES, INPUT_NAME, SIGNATURE, SIGNATURE_FILE,
                                         signature_problem)

FORMATS = ("saved_model", "onnx", "litert", "litert_int8")
DEFAULT_FORMATS = ("saved_model", "onnx", "litert")
ONNX_OPSET = 17
_VERSION = re.compile(r"^[0-9]+$")


class ExportFormatError(errors.KerasnetsError, ValueError):
    """Formats that cannot be written: unknown, without the SavedModel, or int8 without
    calibration images."""


def formats_problem(formats, calibration_images=None) -> str | None:
    """Why `formats` cannot be exported (given the calibration images), or None."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        return f"unknown format {unknown[0]!r}; the formats are {', '.join(FORMATS)}"
    if "saved_model" not in formats:
        return ("saved_model must be one of the formats: TensorFlow Serving loads it, and the "
                "other files are converted from it")
    if len(set(formats)) != len(formats):
        return "a format is named twice"
    if "litert_int8" in formats and calibration_images is None:
        return "litert_int8 needs calibration images (training images, uint8 [n, 28, 28])"
    return None


class VersionExistsError(errors.KerasnetsError, FileExistsError):
    """The version asked for exists: versions are never overwritten."""


def versions(export_base: str) -> list[int]:
    """The integer version directories under `export_base`, ascending."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(d) for d in os.listdir(export_base)
                  if _VERSION.match(d) and os.path.isdir(os.path.join(export_base, d)))


def latest_version_dir(export_base: str) -> str | None:
    """The newest (highest-numbered) version directory, or None: what a client naming
    only the export base gets, as TensorFlow Serving serves its newest version."""
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

    from kerasnets.models import convnets

    channel = convnets.add_channel_axis(model)
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


def export_version(model, export_base: str, version: int | None = None,
                   formats=DEFAULT_FORMATS, calibration_images=None) -> str:
    """Writes `model` as version `version` (default: next free) of `export_base`, holding
    the SavedModel and the other `formats`; returns its path.

    The version appears whole, every file in it, or not at all. Raises
    ExportFormatError (before writing anything) for formats that cannot be written,
    VersionExistsError if that version exists (versions are never replaced), and
    errors.NotAnMnistModelError (before writing anything) for a model that does not
    take 28x28 images or does not output 10 classes. Exports running at the same time
    into one `export_base` get distinct versions: the number is taken when the finished
    SavedModel is renamed into place, and a rename that finds its number taken moves on
    to the next one.
    """
    from kerasnets.models import convnets

    problem = convnets.mnist_model_problem(model)
    if problem:
        raise convnets.NotAnMnistModelError(f"the model is not an MNIST model: {problem}")
    problem = formats_problem(tuple(formats), calibration_images)
    if problem:
        raise ExportFormatError(problem)
    export_base = os.path.abspath(export_base)
    os.makedirs(export_base, exist_ok=True)
    if version is not None and os.path.exists(os.path.join(export_base, str(version))):
        raise VersionExistsError(f"{os.path.join(export_base, str(version))} exists; versions are "
                              "never overwritten")
    scratch = tempfile.mkdtemp(prefix=".export-tmp-", dir=export_base)
    try:
        write_archive(model, scratch)
        write_signature_def(scratch)
        write_converted(model, scratch, [f for f in formats if f != "saved_model"],
                        calibration_images)
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


def signature_def(version_dir: str) -> dict:
    """The SavedModel's serving SignatureDef as JSON (the metadata TensorFlow Serving
    reports), parsed from saved_model.pb with TensorFlow's protos."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return json_format.MessageToDict(proto.meta_graphs[0].signature_def[SIGNATURE],
                                     preserving_proto_field_name=True)


def write_signature_def(version_dir: str) -> None:
    """signature_def.json beside the SavedModel, so that a server running the version on
    LiteRT or ONNX Runtime reports TensorFlow Serving's metadata without TensorFlow."""
    with open(os.path.join(version_dir, SIGNATURE_FILE), "w", encoding="utf-8") as f:
        json.dump(signature_def(version_dir), f, indent=2)  # the version is built aside


def read_signature_def(version_dir: str) -> dict:
    """The version's serving SignatureDef as JSON: from signature_def.json, or, for a version
    exported without it, parsed from saved_model.pb (which needs TensorFlow)."""
    path = os.path.join(version_dir, SIGNATURE_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    try:
        return signature_def(version_dir)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("tensorflow") or importlib.util.find_spec("tensorflow"):
            raise
        raise errors.ModelFileError(
            f"{version_dir} has no {SIGNATURE_FILE} and TensorFlow is not installed to read "
            "saved_model.pb; export the model again (kerasnets-export writes the file)") from None


def calibration_sample(train_images, count: int = 1000):
    """`count` of the training images, a seeded draw: litert_int8's calibration set."""
    import numpy as np

    return train_images[np.random.default_rng(0).permutation(len(train_images))[:count]]


def write_converted(model, version_dir: str, formats, calibration_images=None) -> None:
    """The other formats of a version, converted from its SavedModel, or, for a
    mixed-precision model, from a float32 twin's: the runtimes' converters have no
    float16/bfloat16 kernels for most ops (and a CPU or phone gains nothing from them)."""
    if not formats:
        return
    twin = float32_twin(model)
    if twin is model:
        for fmt in formats:
            convert(version_dir, fmt, calibration_images, version_dir)
        return
    source = tempfile.mkdtemp(prefix=".export-tmp-", dir=os.path.dirname(version_dir))
    try:
        write_archive(twin, source)
        for fmt in formats:
            convert(source, fmt, calibration_images, version_dir)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def float32_twin(model):
    """`model` itself when every layer computes in float32, else a float32 copy of it with
    the same weights (its variables are float32 either way)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def in_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    twin = keras.models.clone_model(model, clone_function=in_float32)
    twin.set_weights(model.get_weights())
    return twin


def convert(saved_model_dir: str, fmt: str, calibration_images=None,
            out_dir: str | None = None) -> str:
    """The SavedModel in `saved_model_dir` converted to `fmt` (onnx, litert, litert_int8),
    written into `out_dir` (default: beside it); returns the file's path."""
    import tensorflow as tf

    path = os.path.join(out_dir or saved_model_dir, FORMAT_FILES[fmt])
    try:
        if fmt == "onnx":
            write_onnx(saved_model_dir, path)
        else:
            content = litert_model(saved_model_dir,
                                   calibration_images if fmt == "litert_int8" else None)
            with open(path, "wb") as f:
                f.write(content)
    except (OSError, tf.errors.OpError) as e:
        if errors.is_disk_full(e):
            raise errors.disk_full(e, os.path.dirname(saved_model_dir), FORMAT_FILES[fmt]) from None
        raise
    return path


def write_onnx(saved_model_dir: str, path: str) -> None:
    """The serving signature as an ONNX model (tf2onnx), inputs and outputs named alike."""
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(saved_model_dir)  # holds the variables while converting
    signature = loaded.signatures[SIGNATURE]
    spec = [tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT_NAME)]
    tf2onnx.convert.from_function(tf.function(lambda images: signature(images=images)),
                                  input_signature=spec, opset=ONNX_OPSET, output_path=path)


def litert_model(saved_model_dir: str, calibration_images=None) -> bytes:
    """The serving signature as a LiteRT flatbuffer; with `calibration_images`, quantised to
    int8 (weights and activations, calibrated on those images; float where an op has no
    int8 kernel). The input stays uint8 and the probabilities float32."""
    import numpy as np
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=[SIGNATURE])
    if calibration_images is not None:
        images = np.asarray(calibration_images, np.uint8)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({INPUT_NAME: images[i:i + 1]}
                                                    for i in range(len(images)))
    with warnings.catch_warnings():
        # calibration runs TensorFlow's own (deprecated) interpreter, which says so
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return converter.convert()


@dataclasses.dataclass(frozen=True)
class Exported:
    """What export_run wrote: the version directory and, when it holds litert_int8, that
    file's accuracy on MNIST's 10,000 test digits beside the SavedModel's (quantisation
    costs some; this says how much)."""

    path: str
    int8_accuracy: float | None = None
    savedmodel_accuracy: float | None = None


def export_run(model_dir: str, export_base: str, version: int | None = None,
               formats: Sequence[str] = DEFAULT_FORMATS, calibration_images: int = 1000,
               data_dir: str | None = None, mnist_path: str | None = None,
               log: Callable[[str], None] = print, model_code: str | None = None) -> Exported:
    """Exports `model_dir`/model.keras (a kerasnets-train run) as version `version` (None:
    the next free) of `export_base` in `formats`; logs where it went and each file's size.
    MNIST is loaded (data_dir, mnist_path: kerasnets.data.offline) only for litert_int8: its
    calibration images and the test digits its accuracy is measured on. `model_code`: the
    user's code a model of their own needs (convnets.load_model)."""
    from kerasnets.models import convnets

    tf_logger_quiet()  # SavedModel writing logs each step at INFO
    model_path = os.path.join(model_dir, "model.keras")
    model = convnets.load_model(model_path, model_code=model_code)
    mnist = _mnist_for_int8(formats, data_dir, mnist_path)
    calibration = calibration_sample(mnist[0][0], calibration_images) if mnist else None
    path = export_version(model, export_base, version, formats, calibration)
    log(f"exported {model_path} to {path} (signature {SIGNATURE}: "
        f"{INPUT_NAME} uint8 [batch, 28, 28] -> classes int64, probabilities float32)")
    accuracy = int8_accuracy(path, *mnist[1]) if mnist else {}
    for fmt in formats:
        if fmt != "saved_model":
            log(describe_file(path, fmt, accuracy))
    return Exported(path, accuracy.get("litert_int8"), accuracy.get("tensorflow"))


def _mnist_for_int8(formats: Sequence[str], data_dir: str | None, mnist_path: str | None):
    """MNIST's ((train), (test)) arrays when litert_int8 is asked for, else None."""
    if "litert_int8" not in formats:
        return None
    from kerasnets.data import offline

    return offline.load_mnist(data_dir, mnist_path)


def int8_accuracy(version_dir: str, x_test, y_test) -> dict[str, float]:
    """The version's litert_int8 file's accuracy and its SavedModel's, on the same images."""
    from kerasnets.serving import runtimes

    return {runtime: runtimes.accuracy(runtimes.load(version_dir, runtime), x_test, y_test)
            for runtime in ("litert_int8", "tensorflow")}


def describe_file(version_dir: str, fmt: str, accuracy: dict[str, float] | None = None) -> str:
    """`model.onnx: 44,196 bytes`, and for int8 (given its int8_accuracy) its test accuracy
    beside the SavedModel's."""
    path = os.path.join(version_dir, FORMAT_FILES[fmt])
    line = f"  {FORMAT_FILES[fmt]}: {os.path.getsize(path):,} bytes"
    if fmt == "litert_int8" and accuracy:
        line += (f", test accuracy {100 * accuracy['litert_int8']:.2f}% (SavedModel: "
                 f"{100 * accuracy['tensorflow']:.2f}%)")
    return line


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
