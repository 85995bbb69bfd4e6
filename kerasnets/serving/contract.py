"""What an exported version is, for everything that writes, reads or serves one.

A version directory (savedmodels/<name>/<n>/) holds the SavedModel with the
`serving_default` signature (uint8 pixels `images` [batch, 28, 28] in; `classes` and
`probabilities` out), its SignatureDef as JSON for servers without TensorFlow, and the
files converted from it for the other runtimes. kerasnets.serving.export writes these
names and kerasnets.serving.runtimes reads them: both take them from here, so neither
needs the other to know what a version holds.
"""

from __future__ import annotations

SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAMES = ("classes", "probabilities")
FORMAT_FILES = {"onnx": "model.onnx", "litert": "model.tflite", "litert_int8": "model_int8.tflite"}
SIGNATURE_FILE = "signature_def.json"  # the serving SignatureDef as JSON, beside the SavedModel


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
