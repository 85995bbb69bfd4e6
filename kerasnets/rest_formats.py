"""TensorFlow Serving's REST JSON formats for the kerasnets signature, free of any HTTP.

`parse_predict_request` and `format_predict_response` implement the `:predict`
formats (row: "instances" -> "predictions"; columnar: "inputs" -> "outputs") for
the signature images uint8 [batch, 28, 28] -> classes, probabilities;
`version_status` and `metadata` the status and metadata responses. A request
TensorFlow Serving would refuse raises RequestError with its HTTP status and, where
TensorFlow Serving has one, its wording.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kerasnets import export
from kerasnets.errors import KerasnetsError


class RequestError(KerasnetsError, ValueError):
    """A request TensorFlow Serving would refuse: `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def version_status(model) -> dict:
    """GET /v1/models/<name>: TensorFlow Serving's GetModelStatus response."""
    return {"model_version_status": [{
        "version": str(model.version), "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}


def metadata(name: str, model) -> dict:
    """GET /v1/models/<name>/metadata: TensorFlow Serving's GetModelMetadata response."""
    return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": {
                export.SIGNATURE: model.signature_def}}}}


def parse_predict_request(body: bytes) -> tuple[np.ndarray, bool]:
    """The images of a `:predict` body and whether it used the row ("instances") format.

    Raises RequestError with TensorFlow Serving's wording where it has one.
    """
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"JSON Parse error: {e}") from None
    if not isinstance(request, dict):
        raise RequestError("JSON Value: the request body must be a JSON object")
    name = request.get("signature_name", export.SIGNATURE)
    if name != export.SIGNATURE:
        raise RequestError(f'Serving signature name: "{name}" not found in signature def')
    if "instances" in request and "inputs" in request:
        raise RequestError("Not both 'inputs' and 'instances' can be set")
    if "instances" in request:
        values, row = request["instances"], True
        if isinstance(values, list) and values and isinstance(values[0], dict):
            values = [v.get(export.INPUT_NAME) if isinstance(v, dict) else v for v in values]
    elif "inputs" in request:
        values, row = request["inputs"], False
        if isinstance(values, dict):
            unknown = sorted(set(values) - {export.INPUT_NAME})
            if unknown:
                raise RequestError(f"input {unknown[0]!r} is not an input of the signature "
                                   f"(it takes {export.INPUT_NAME!r})")
            values = values.get(export.INPUT_NAME)
    else:
        raise RequestError("Missing 'inputs' or 'instances' key")
    return images_from_json(values), row


def images_from_json(values: Any) -> np.ndarray:
    """JSON lists -> uint8 [batch, 28, 28], refusing anything TensorFlow Serving would not
    convert losslessly to the signature's uint8 input."""
    if not isinstance(values, list) or not values:
        raise RequestError(f"{export.INPUT_NAME}: empty batch; send at least one 28x28 image")
    try:
        array = np.asarray(values)
    except ValueError:
        raise RequestError(f"{export.INPUT_NAME}: the lists are ragged; each image must be 28 "
                           "lists of 28 integers") from None
    if array.ndim == 2:
        array = array[None]  # one image given without its batch axis
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise RequestError(f"{export.INPUT_NAME}: shape {list(array.shape)} is not compatible "
                           f"with the signature's [-1, 28, 28]")
    if array.dtype.kind not in "iu":
        raise RequestError(f"{export.INPUT_NAME}: values must be integers 0..255 (uint8 "
                           f"pixels); got {array.dtype.name} values")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise RequestError(f"{export.INPUT_NAME}: values must be integers 0..255 (uint8 "
                           f"pixels); got {low if low < 0 else high}")
    return array.astype(np.uint8)


def format_predict_response(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """Row format: one object per image holding every output; columnar: one list per output."""
    lists = {name: value.tolist() for name, value in sorted(outputs.items())}
    if not row:
        return {"outputs": lists}
    n = len(next(iter(lists.values())))
    return {"predictions": [{name: lists[name][i] for name in lists} for i in range(n)]}

