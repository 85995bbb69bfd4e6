"""TensorFlow Serving's REST JSON formats for the kerasnets signature, free of any HTTP.

`parse_predict_request` and `format_predict_response` implement the `:predict`
formats (row: "instances" -> "predictions"; columnar: "inputs" -> "outputs") for
the signature images uint8 [batch, 28, 28] -> classes, probabilities;
`version_status` and `metadata` the status and metadata responses. A request
TensorFlow Serving would refuse raises RequestError with its HTTP status and, where
TensorFlow Serving has one, its wording.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

import numpy as np
import orjson

from kerasnets.errors import KerasnetsError
from kerasnets.serving import contract


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
                contract.SIGNATURE: model.signature_def}}}}


def parse_predict_request(body: bytes | str) -> tuple[np.ndarray, bool]:
    """The images of a `:predict` body and whether it used the row ("instances") format.

    Raises RequestError with TensorFlow Serving's wording where it has one. The body is
    parsed by orjson (a fifth of Python's json's time on a one-image request); a body it
    refuses, and any request refused, is read again by Python's json, which the answers
    are worded on: it reads NaN and Infinity (refused as pixels), says where a text is not
    JSON, and keeps an integer past 64 bits an integer (orjson makes it a float).
    """
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return predict_request(json_loads(body), body)
    try:
        return predict_request(request, body)
    except RequestError:
        return predict_request(json_loads(body), body)


def json_loads(body: bytes | str) -> Any:
    """The body as Python's json reads it; a RequestError (400) for one that is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"JSON Parse error: {e}") from None
    except RecursionError:  # Python's parser recurses once per nested list or object
        raise RequestError(f"JSON Parse error: nested {_nesting_depth(body):,} levels deep, "
                           "too deep to parse; each image must be 28 lists of 28 "
                           "integers") from None


def predict_request(request: Any, body: bytes | str) -> tuple[np.ndarray, bool]:
    """parse_predict_request on the body's parsed JSON value (`body`: its text)."""
    if not isinstance(request, dict):
        raise RequestError("JSON Value: the request body must be a JSON object")
    name = request.get("signature_name", contract.SIGNATURE)
    if not isinstance(name, str):
        raise RequestError(f"'signature_name' key must be a string value, got "
                           f"{_describe(name)}")
    if name != contract.SIGNATURE:
        raise RequestError(f"Serving signature name: {_quoted(name)} not found in signature def")
    if "instances" in request and "inputs" in request:
        raise RequestError("Not both 'inputs' and 'instances' can be set")
    if "instances" in request:
        values, row = request["instances"], True
        if isinstance(values, list) and values and isinstance(values[0], dict):
            missing = [i for i, v in enumerate(values)
                       if isinstance(v, dict) and contract.INPUT_NAME not in v]
            if missing:
                raise RequestError(f"instances: object {missing[0]} has no "
                                   f"{contract.INPUT_NAME!r}, the signature's input")
            values = [v[contract.INPUT_NAME] if isinstance(v, dict) else v for v in values]
    elif "inputs" in request:
        values, row = request["inputs"], False
        if isinstance(values, dict):
            unknown = sorted(set(values) - {contract.INPUT_NAME})
            if unknown:
                raise RequestError(f"input {unknown[0]!r} is not an input of the signature "
                                   f"(it takes {contract.INPUT_NAME!r})")
            if contract.INPUT_NAME not in values:
                raise RequestError(f"inputs: no {contract.INPUT_NAME!r}, the signature's input")
            values = values[contract.INPUT_NAME]
    else:
        raise RequestError("Missing 'inputs' or 'instances' key")
    tokens = ("true", "false") if isinstance(body, str) else (b"true", b"false")
    return images_from_json(values, may_hold_bools=any(t in body for t in tokens)), row


def images_from_json(values: Any, may_hold_bools: bool = True) -> np.ndarray:
    """JSON lists -> uint8 [batch, 28, 28] (or one [28, 28] image without its batch axis),
    refusing anything TensorFlow Serving would not convert to the signature's uint8 input.

    Pixels must be JSON integers 0..255. Like TensorFlow Serving (which takes a uint8
    value only where rapidjson's IsInt() holds), numbers written with a fraction or an
    exponent are refused even when integral (3.0, 1e2), and so are true/false, NaN and
    Infinity: Python's json reads those as floats and bools, which numpy would quietly
    turn into pixels (True -> 1) or reject only as a wrong dtype. `may_hold_bools=False`
    (the JSON text has no true/false) skips the scan that finds bools among integers.
    """
    name = contract.INPUT_NAME
    if not isinstance(values, list):
        raise RequestError(f"{name}: expected a list of 28x28 images, got {_describe(values)}")
    if not values:
        raise RequestError(f"{name}: empty batch; send at least one 28x28 image")
    depth = _first_depth(values)  # cheap (one list per level) and bounded by the parser's depth
    if depth > 3:
        raise RequestError(f"{name}: nested {depth:,} lists deep; expected a list of images, "
                           "each 28 lists of 28 integers")
    try:
        array = np.asarray(values)  # deeper lists elsewhere: ValueError (ragged)
    except ValueError:
        raise RequestError(f"{name}: the lists are ragged; each image must be 28 lists of 28 "
                           "integers") from None
    if array.ndim == 2:
        array, values = array[None], [values]  # one image given without its batch axis
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise RequestError(f"{name}: shape {list(array.shape)} is not compatible "
                           f"with the signature's [-1, 28, 28]")
    # Regular [batch][28][28] lists now, their leaves JSON scalars. An integer dtype means
    # integers only, except that numpy turns [0, true] into int64 [0, 1]: then (or for any
    # other dtype) the leaves' types are scanned.
    def pixels():
        return itertools.chain.from_iterable(itertools.chain.from_iterable(values))
    if ((array.dtype.kind not in "iu" or may_hold_bools)
            and set(map(type, pixels())) != {int}):
        bad = next(p for p in pixels() if type(p) is not int)
        raise RequestError(f"{name}: values must be integers 0..255 (uint8 pixels); got "
                           f"{_describe(bad)}")
    low, high = int(array.min()), int(array.max())  # int64, uint64 or (huge) Python ints
    if low < 0 or high > 255:
        raise RequestError(f"{name}: values must be integers 0..255 (uint8 "
                           f"pixels); got {low if low < 0 else high}")
    return array.astype(np.uint8)


def _first_depth(value: Any) -> int:
    """How many lists are nested along the first elements: [[[0]]] -> 3, [[]] -> 2."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _nesting_depth(body: bytes | str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), counted
    without parsing it: for the message about a body too deep to parse."""
    text = body.encode("utf-8", "replace") if isinstance(body, str) else bytes(body)
    codes = np.frombuffer(_JSON_STRING.sub(b'""', text), np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def _describe(value: Any) -> str:
    """A JSON value as a message names it: NaN, true, null, 1.5, a string, a list, ..."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return ("-Infinity" if value < 0 else "Infinity") if math.isinf(value) else repr(value)
    if isinstance(value, int):  # at most 4,300 digits: Python's json refuses longer ones
        text = str(value)
        return text if len(text) <= 40 else f"an integer of {len(text):,} digits"
    if isinstance(value, str):
        return f"a string ({_quoted(value)})"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


def _quoted(text: str, limit: int = 40) -> str:
    """A client's string in a one-line message: JSON-quoted, cut after `limit` characters."""
    return json.dumps(text[:limit] + ("..." if len(text) > limit else ""))


def format_predict_response(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """Row format: one object per image holding every output; columnar: one list per output."""
    lists = {name: value.tolist() for name, value in sorted(outputs.items())}
    if not row:
        return {"outputs": lists}
    n = len(next(iter(lists.values())))
    return {"predictions": [{name: lists[name][i] for name in lists} for i in range(n)]}

