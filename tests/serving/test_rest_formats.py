"""kerasnets.serving.rest_formats without a server: what a `:predict` body may hold, and the one-line
400 each malformed body gets (the HTTP side is in test_serve.py)."""

import json
import re
import time

import numpy as np
import pytest
from kerasnets.serving import rest_formats
from kerasnets.serving.rest_formats import RequestError

VALUES = r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got "


def image(last=0, fill=0):
    """One 28x28 image as JSON lists, every pixel `fill` but the last one."""
    rows = [[fill] * 28 for _ in range(28)]
    rows[-1][-1] = last
    return rows


def body(value, key="instances"):
    return json.dumps({key: value}).encode()  # NaN and Infinity are written as such


def refusal(raw):
    with pytest.raises(RequestError) as caught:
        rest_formats.parse_predict_request(raw)
    message = str(caught.value)
    assert caught.value.status == 400 and "\n" not in message, message
    return message


def deep(depth, leaf=0):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_a_body_nested_too_deep_to_parse_gets_a_400_naming_its_depth():
    raw = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.perf_counter()
    message = refusal(raw)
    assert time.perf_counter() - started < 5
    assert message == ("JSON Parse error: nested 100,001 levels deep, too deep to parse; "
                       "each image must be 28 lists of 28 integers")
    # Brackets inside strings are not nesting.
    raw = b'{"a": "[[[[{{", "instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert refusal(raw).startswith("JSON Parse error: nested 5,001 levels deep")
    assert refusal(raw.decode()).startswith("JSON Parse error: nested 5,001 levels deep")


@pytest.mark.parametrize("depth", [4, 50, 500])
def test_lists_nested_deeper_than_images_are_refused_before_numpy(depth):
    assert refusal(body(deep(depth))) == (f"images: nested {depth} lists deep; expected a list "
                                          "of images, each 28 lists of 28 integers")
    assert refusal(body({"images": deep(depth)}, "inputs")).startswith(
        f"images: nested {depth} lists deep")


def test_an_object_without_the_signatures_input_says_so():
    assert refusal(body({})) == "images: expected a list of 28x28 images, got an object"
    assert refusal(body({}, "inputs")) == "inputs: no 'images', the signature's input"
    assert refusal(body([{"images": image()}, {"pixels": image()}])) == \
        "instances: object 1 has no 'images', the signature's input"


def test_deep_lists_away_from_the_first_element_are_ragged():
    one = image()
    one[5][7] = deep(500)
    assert re.search(r"^images: the lists are ragged", refusal(body([one])))
    assert re.search(r"^images: the lists are ragged", refusal(body([image(), deep(500)])))


@pytest.mark.parametrize("value, named", [
    ("hello", 'a string ("hello")'), (5, "5"), (None, "null"), (True, "true"),
    (float("nan"), "NaN"), (1.5, "1.5")])
def test_instances_that_are_not_a_list_are_named(value, named):
    assert refusal(body(value)) == f"images: expected a list of 28x28 images, got {named}"
    assert refusal(body(value, "inputs")) == (f"images: expected a list of 28x28 images, "
                                              f"got {named}")


@pytest.mark.parametrize("pixel, named", [
    (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
    (1.5, "1.5"), (3.0, "3.0"), (255.0, "255.0"), (100.0, "100.0"),
    (True, "true"), (False, "false"), (None, "null"), ("5", 'a string ("5")'),
    ({}, "an object"), (256, "256"), (-1, "-1"), (1000, "1000"),
    (2**63, str(2**63)), (2**70, str(2**70)), (-(2**70), str(-(2**70))),
])
def test_a_pixel_that_is_not_an_integer_0_to_255_is_refused_by_name(pixel, named):
    assert re.search(VALUES + re.escape(named) + "$", refusal(body([image(pixel)]))), named
    # wherever it is, whatever the others are, and in either format
    assert refusal(body([image(), image(pixel, 7)])).endswith(f"; got {named}")
    assert refusal(body({"images": image(pixel)}, "inputs")).endswith(f"; got {named}")
    assert refusal(body([{"images": image(pixel)}])).endswith(f"; got {named}")


def test_json_literals_nan_and_1e2_are_refused_as_written():
    raw = json.dumps({"instances": [image()]}).encode()
    for literal, named in ((b"NaN", "NaN"), (b"-Infinity", "-Infinity"), (b"1e2", "100.0"),
                           (b"true", "true"), (b"-0.0", "-0.0")):
        forged = raw.replace(b"0]]]}", literal + b"]]]}")
        assert forged != raw
        assert refusal(forged) == f"images: values must be integers 0..255 (uint8 pixels); " \
                                  f"got {named}"


def test_all_boolean_images_are_refused():
    assert refusal(body([[[True] * 28] * 28])).endswith("; got true")
    assert refusal(body([[[False] * 28] * 28])).endswith("; got false")


def test_the_boundaries_0_and_255_are_kept_exactly():
    for fill, last in ((0, 255), (255, 0), (0, 0), (255, 255)):
        images, row = rest_formats.parse_predict_request(body([image(last, fill)]))
        assert row and images.dtype == np.uint8 and images.shape == (1, 28, 28)
        assert images[0, 0, 0] == fill and images[0, -1, -1] == last


def test_the_edges_of_uint8_are_refused_not_wrapped():
    assert refusal(body([image(256)])) == \
        "images: values must be integers 0..255 (uint8 pixels); got 256"
    assert refusal(body([image(-1)])) == \
        "images: values must be integers 0..255 (uint8 pixels); got -1"
    assert refusal(body([image(-1, 255), image(256)])).endswith("; got -1")


def test_a_string_that_mentions_true_does_not_change_the_answer():
    raw = json.dumps({"instances": [image(9)], "note": "true false"}).encode()
    images, _ = rest_formats.parse_predict_request(raw)
    assert images[0, -1, -1] == 9


def test_without_true_or_false_in_the_text_floats_and_others_are_still_refused():
    for pixel in (3.0, float("nan"), None, "7", 300):
        with pytest.raises(RequestError):
            rest_formats.images_from_json([image(pixel)], may_hold_bools=False)
    assert rest_formats.images_from_json([image(7)], may_hold_bools=False)[0, -1, -1] == 7


def test_good_requests_in_every_format_are_unchanged():
    pixels = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    for raw, row in ((body(pixels.tolist()), True),
                     (body([{"images": p} for p in pixels.tolist()]), True),
                     (body({"images": pixels.tolist()}, "inputs"), False),
                     (body(pixels.tolist(), "inputs"), False),
                     (body(pixels[0].tolist()), True)):  # one image without its batch axis
        images, got_row = rest_formats.parse_predict_request(raw)
        assert got_row == row and images.dtype == np.uint8
        np.testing.assert_array_equal(images, pixels[:len(images)])


def test_signature_name_must_be_a_string_and_is_echoed_on_one_line():
    assert refusal(json.dumps({"signature_name": [[1]], "instances": []}).encode()) == \
        "'signature_name' key must be a string value, got a list"
    assert refusal(b'{"signature_name": ' + b"[" * 500 + b"]" * 500 + b', "instances": []}') \
        == "'signature_name' key must be a string value, got a list"
    message = refusal(json.dumps({"signature_name": "x\n" * 1000, "instances": []}).encode())
    assert message.startswith('Serving signature name: "x\\nx\\n') and len(message) < 200


def test_the_other_refusals_keep_their_wording():
    assert refusal(b"not json").startswith("JSON Parse error: ")
    assert refusal(b'{"instances": []}') == \
        "images: empty batch; send at least one 28x28 image"
    assert refusal(body([[[0] * 32] * 32])) == \
        "images: shape [1, 32, 32] is not compatible with the signature's [-1, 28, 28]"
    assert refusal(body([[[0] * 28] * 27 + [[0] * 27]])).startswith(
        "images: the lists are ragged")


def _outcome(parse, body):
    try:
        images, row = parse(body)
        return "images", images.tolist(), row
    except RequestError as e:
        return "refused", str(e), e.status


PIXELS = json.dumps(image(last=7))


@pytest.mark.parametrize("text", [
    f'{{"instances": [{PIXELS}]}}', f' {{"inputs" : {{"images": {PIXELS}}} }} ',
    f'{{"instances": [{PIXELS}], "instances": [{PIXELS}, {PIXELS}]}}',
    f'{{"instances": [{PIXELS}], "note": 18446744073709551616}}',
    f'{{"instances": [{PIXELS}], "s": "\\u00e9\\ud83d\\ude00", "t": "\\ud800"}}',
    f'\ufeff{{"instances": [{PIXELS}]}}', f'{{"instances": [{PIXELS}]}} x',
    PIXELS.replace("7", "18446744073709551616"), PIXELS.replace("7", "-9223372036854775809"),
    PIXELS.replace("7", "9" * 30), PIXELS.replace("7", "NaN"), PIXELS.replace("7", "1e400"),
    PIXELS.replace("7", "7.0"), PIXELS.replace("7", "true"),
    '{"signature_name": 1' + "0" * 25 + "}",
    '{"instances": []}', "[" * 500 + "]" * 500, "[" * 5000 + "]" * 5000, "", "not json",
])
def test_a_body_gets_what_pythons_json_reading_gets(text):
    """orjson parses first; a body it refuses, and any refusal, are read by Python's json:
    the same images or the same refusal as Python's json alone gives."""
    for body in (text.encode("utf-8", "surrogatepass"), text):
        expected = _outcome(lambda b: rest_formats.predict_request(rest_formats.json_loads(b), b),
                            body)
        assert _outcome(rest_formats.parse_predict_request, body) == expected, expected
