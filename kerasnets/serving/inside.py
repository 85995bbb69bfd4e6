"""What the network sees in one digit: each conv block's feature maps, a saliency map and the
layer table, for the draw page.

Everything here is read from the version's float LiteRT file (`model.tflite`, in
every version kerasnets-export writes by default), whatever runtime serves the
version, with interpreters of its own (the serving one is never resized or held), and
without TensorFlow. A LiteRT interpreter that keeps every intermediate tensor runs the
digit, and each CONV_2D op's output is a conv block's maps after its activation (the
converter fuses the ReLU into the conv, and a BatchNorm before the ReLU into the conv's
weights; the `seed` model's BatchNorm comes after its ReLU and stays an op of its own).
The layer table is that file's ops with their output shapes, the parameters the file
holds for each and each output's receptive field on the 28x28 input.

The saliency map is occlusion (Zeiler and Fergus, 2014): a PATCH x PATCH square of the
digit is set to 0 (no ink) at every position, all those images are classified in one
batch, and each pixel gets the mean drop of the predicted class's log-odds over the
squares that cover it. Occlusion rather than gradients because it needs forward passes
only: the same for every file a version holds (ONNX Runtime and LiteRT have no
gradients) and no TensorFlow; positive where ink held the answer up, negative where ink
spoke against it.
"""

from __future__ import annotations

import os
import struct
import threading

import numpy as np

from kerasnets import errors
from kerasnets.serving import contract, runtimes

PATCH = 4
# Plumbing around the network proper (the uint8 input made a float batch of maps): not
# rows of the layer table.
PLUMBING = ("EXPAND_DIMS", "CAST")


class InsideUnavailableError(errors.KerasnetsError, ValueError):
    """The version has no readable model.tflite to read the feature maps from."""


def _op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class Inside:
    """The LiteRT file of one version, opened to show its layers and feature maps."""

    def __init__(self, version_dir: str):
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter

        path = runtimes.file_path(version_dir, "litert")
        if not os.path.isfile(path):
            raise InsideUnavailableError(
                f"the feature maps are read from the version's {runtimes.FILES['litert']} "
                "(LiteRT, float), which this version has not: export it with kerasnets-export "
                "(its default formats include it)")
        try:
            with open(path, "rb") as f:
                model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
            # (LiteRT warns that keeping every tensor is for debugging: here, that is the point)
            self.interpreter = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
            self.runner = self.interpreter.get_signature_runner(contract.SIGNATURE)
            self.predict = runtimes.load(version_dir, "litert")  # for occlusion batches
            self.layers, self.map_tensors = _layer_table(model)
        except (ValueError, RuntimeError, IndexError, AttributeError, struct.error,
                errors.KerasnetsError) as e:  # not a flatbuffer, or not our signature
            raise InsideUnavailableError(f"cannot read {path} for the feature maps: {e}") from None
        self.lock = threading.Lock()

    def look(self, digit: np.ndarray) -> dict:
        """What the network sees in one uint8 [28, 28] digit, as JSON values: the model's
        probabilities and class, each conv block's maps ([channels][h][w]), the occlusion
        saliency ([28][28]) and the layer table."""
        probabilities = self.predict(occlusions(digit))["probabilities"]
        digit_class = int(np.argmax(probabilities[0]))
        return {"digit": digit_class, "probabilities": probabilities[0].tolist(),
                "layers": self.layers,
                "feature_maps": [m.tolist() for m in self.feature_maps(digit)],
                "saliency": {"method": "occlusion", "patch": PATCH, "of": "log-odds",
                             "values": saliency(probabilities, digit_class).tolist()}}

    def feature_maps(self, digit: np.ndarray) -> list[np.ndarray]:
        """Each conv block's maps after its activation for one uint8 [28, 28] digit, as
        float32 [channels, height, width]."""
        with self.lock:
            self.runner(**{contract.INPUT_NAME: np.asarray(digit, np.uint8)[None]})
            return [np.transpose(self.interpreter.get_tensor(i)[0], (2, 0, 1)).copy()
                    for i in self.map_tensors]


def _layer_table(model) -> tuple[list[dict], list[int]]:
    """(rows of the layer table, the tensor index of each conv block's output): the ops on
    the float data path (not the plumbing, nor the int32 arithmetic of shapes)."""
    from ai_edge_litert import schema_py_generated as schema

    names = _op_names()
    graph = model.subgraphs[0]
    rows, maps = [], []
    # The receptive field (pixels of the input one output sees; None: all of them) and the
    # distance in input pixels between neighbouring outputs.
    field, jump = 1, 1
    height = 28         # of the last [height, width, channels] map
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if kind in PLUMBING or graph.tensors[op.outputs[0]].type != schema.TensorType.FLOAT32:
            continue
        shape = [int(d) for d in graph.tensors[op.outputs[0]].shape[1:]]
        options = op.builtinOptions
        kernel = _kernel(kind, op, graph, options)
        if len(shape) == 3 and field is not None:
            # a map: its stride is the op's own, or (a reshape to space-to-depth, an
            # elementwise op) how much smaller it is than the last map
            stride = getattr(options, "strideH", None) or max(1, round(height / shape[0]))
            field, jump = field + ((kernel or stride) - 1) * jump, jump * stride
            height = shape[0]
        elif len(shape) < 3 and kind not in ("RESHAPE", "TRANSPOSE"):
            field = None  # pooled over the whole map, or after it: the whole digit
        activation = getattr(options, "fusedActivationFunction", 0)
        rows.append(dict(op=kind, activation="RELU" if activation == 1 else None,
                         output_shape=shape, receptive_field=field,
                         kernel=kernel, parameters=_parameters(op, graph, model)))
        if kind == "CONV_2D":
            maps.append(op.outputs[0])
            rows[-1]["feature_maps"] = len(maps) - 1
    return rows, maps


def _kernel(kind: str, op, graph, options) -> int | None:
    """The op's square kernel size, or None for an op without one."""
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return int(graph.tensors[op.inputs[1]].shape[1])
    if kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return int(options.filterHeight)
    return None


def _parameters(op, graph, model) -> int:
    """Elements of the op's constant float inputs (weights, biases) held in the file."""
    from ai_edge_litert import schema_py_generated as schema

    INT32 = schema.TensorType.INT32  # noqa: N806 -- shapes and axes, not parameters
    total = 0
    for index in op.inputs[1:]:
        if index < 0:
            continue
        tensor = graph.tensors[index]
        if (model.buffers[tensor.buffer].data is not None and tensor.type != INT32
                and len(tensor.shape)):  # not axes, shapes or scalar constants
            total += int(np.prod(tensor.shape))
    return total


def occlusions(digit: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """uint8 [1 + n, 28, 28]: the digit, then the digit with each patch x patch square (at
    every position, row by row) set to 0."""
    size = digit.shape[0]
    corners = _corners(size, patch)
    blanked = np.repeat(np.asarray(digit, np.uint8)[None], len(corners) + 1, axis=0)
    for k, (r, c) in enumerate(corners, start=1):
        blanked[k, r:r + patch, c:c + patch] = 0
    return blanked


def saliency(probabilities: np.ndarray, digit_class: int, patch: int = PATCH,
             size: int = 28) -> np.ndarray:
    """float32 [size, size] from the probabilities [1 + n, 10] of `occlusions`' images: per
    pixel, the mean drop of the answer's log-odds, log p - log(1 - p), over the squares
    that cover it. Log-odds, with 1 - p summed from the other classes, because a confident
    model's p is 1 to float32's precision while the others' small probabilities still
    move."""
    p = np.asarray(probabilities, np.float64)
    others = np.delete(p, digit_class, axis=1).sum(axis=1)
    tiny = np.finfo(np.float32).tiny  # a probability that underflowed to 0 counts as this
    odds = np.log(np.maximum(p[:, digit_class], tiny)) - np.log(np.maximum(others, tiny))
    drop, cover = np.zeros((size, size)), np.zeros((size, size))
    for k, (r, c) in enumerate(_corners(size, patch), start=1):
        drop[r:r + patch, c:c + patch] += odds[0] - odds[k]
        cover[r:r + patch, c:c + patch] += 1
    return (drop / cover).astype(np.float32)


def _corners(size: int, patch: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(size - patch + 1) for c in range(size - patch + 1)]
