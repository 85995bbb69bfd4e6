"""One exported version in every runtime: TensorFlow, ONNX Runtime and LiteRT (float, int8).

A version directory written by kerasnets.serving.export holds the SavedModel and, converted
from it, `model.onnx`, `model.tflite` and `model_int8.tflite`, each with the serving
signature's contract: `images` uint8 [batch, 28, 28] in; `classes` int64 [batch] and
`probabilities` float32 [batch, 10] out. `load(version_dir, runtime)` gives the same
function over any of them, so kerasnets-predict and kerasnets-serve answer alike
whatever runs the model. A version without the runtime's file is reported
(MissingRuntimeFileError), never replaced by another runtime's file.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

import numpy as np

from kerasnets import errors
from kerasnets.serving.contract import (FORMAT_FILES, INPUT_NAME, OUTPUT_NAMES, SIGNATURE,
                                         signature_problem)

RUNTIMES = ("tensorflow", "onnx", "litert", "litert_int8")
# What runs a served version when no runtime is named: kerasnets-serve's --runtime default,
# and the default of every serving function (rest_api.serve, versions.load_version,
# versions.ModelWatcher, load here): LiteRT answers one image several times faster than
# the SavedModel (docs/serving.md) and needs no TensorFlow.
SERVE_RUNTIME = "litert"
# What runs a model for kerasnets-predict (its --runtime default, versions.load_classifier's):
# the SavedModel, the one runtime that also runs a .keras file (in Keras), which predict takes.
PREDICT_RUNTIME = "tensorflow"
FILES = {"tensorflow": "saved_model.pb", **FORMAT_FILES}  # the file each runtime loads

Predict = Callable[[np.ndarray], dict]  # uint8 [n, 28, 28] -> {"classes", "probabilities"}


class MissingRuntimeFileError(errors.KerasnetsError, FileNotFoundError):
    """The version directory has no file for the runtime asked for."""


def file_path(version_dir: str, runtime: str) -> str:
    """Where `runtime`'s file of a version lives (it may not exist)."""
    return os.path.join(version_dir, FILES[runtime])


def has_file(version_dir: str, runtime: str) -> bool:
    return os.path.isfile(file_path(version_dir, runtime))


def load(version_dir: str, runtime: str = SERVE_RUNTIME) -> Predict:
    """The version's model in `runtime`, as a function of uint8 images [n, 28, 28].

    Raises MissingRuntimeFileError when the version has no file for the runtime.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; the runtimes are {', '.join(RUNTIMES)}")
    path = file_path(version_dir, runtime)
    if not os.path.isfile(path):
        raise MissingRuntimeFileError(
            f"{version_dir} has no {FILES[runtime]} for --runtime={runtime}; export it with "
            f"kerasnets-export --formats=saved_model,{runtime if runtime != 'tensorflow' else ''}"
            .rstrip(","))
    loader = {"tensorflow": _tensorflow, "onnx": _onnx, "litert": _litert,
              "litert_int8": _litert}[runtime]
    return loader(version_dir if runtime == "tensorflow" else path)


def accuracy(predict: Predict, images: np.ndarray, labels: np.ndarray) -> float:
    """The share of `images` whose predicted class is its label."""
    return float(np.mean(predict(images)["classes"] == labels))


def _outputs(classes, probabilities) -> dict:
    return {"classes": np.asarray(classes, np.int64),
            "probabilities": np.asarray(probabilities, np.float32)}


def _tensorflow(version_dir: str) -> Predict:
    import tensorflow as tf

    try:
        signatures = tf.saved_model.load(version_dir).signatures
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise errors.ModelFileError(f"cannot load {version_dir}: {e}") from None
    problem = signature_problem(signatures)
    if problem:
        raise errors.NotAnMnistModelError(f"{version_dir} is not a kerasnets SavedModel: "
                                          f"{problem}")
    signature = signatures[SIGNATURE]

    def predict(images: np.ndarray) -> dict:
        out = signature(**{INPUT_NAME: tf.constant(images, tf.uint8)})
        return _outputs(out["classes"].numpy(), out["probabilities"].numpy())

    return predict


def _contract_problem(inputs: dict, outputs: set) -> str | None:
    """Why a file's inputs ({name: (dtype, shape)}) and output names are not the serving
    signature's, or None."""
    image = inputs.get(INPUT_NAME)
    if (len(inputs) != 1 or image is None or image[0] != "uint8"
            or list(image[1])[1:] != [28, 28] or outputs != set(OUTPUT_NAMES)):
        return (f"it takes {inputs} and returns {sorted(outputs)}; needed: {INPUT_NAME} uint8 "
                f"[batch, 28, 28] -> {', '.join(OUTPUT_NAMES)}")
    return None


def _checked(path: str, problem: str | None) -> None:
    if problem:
        raise errors.NotAnMnistModelError(f"{path} is not a kerasnets model: {problem}")


def _onnx(path: str) -> Predict:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own untyped errors
        raise errors.ModelFileError(f"cannot load {path}: {e}") from None
    _checked(path, _contract_problem(
        {i.name: (i.type.removeprefix("tensor(").rstrip(")"), i.shape)
         for i in session.get_inputs()}, {o.name for o in session.get_outputs()}))

    def predict(images: np.ndarray) -> dict:
        classes, probabilities = session.run(list(OUTPUT_NAMES),
                                             {INPUT_NAME: np.asarray(images, np.uint8)})
        return _outputs(classes, probabilities)

    return predict


def _litert(path: str) -> Predict:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=path)
        runner = interpreter.get_signature_runner(SIGNATURE)
    except (ValueError, RuntimeError) as e:  # a file that is not a flatbuffer, no signature
        raise errors.ModelFileError(f"cannot load {path}: {e}") from None
    details = runner.get_input_details()
    _checked(path, _contract_problem(
        {name: (np.dtype(d["dtype"]).name, d["shape_signature"]) for name, d in details.items()},
        set(runner.get_output_details())))
    lock = threading.Lock()  # an interpreter runs one call at a time

    def predict(images: np.ndarray) -> dict:
        with lock:
            out = runner(**{INPUT_NAME: np.asarray(images, np.uint8)})
        return _outputs(out["classes"], out["probabilities"])

    return predict
