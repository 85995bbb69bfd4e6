"""The draw-a-digit page in a real headless Chromium (Debian's chromium and its chromedriver,
driven by Selenium; nothing is downloaded): three digits drawn with pointer events."""

import math
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data import images
from kerasnets.serving import export
from kerasnets.bench import serve_load as bench_serve

import kerasnets
from conftest import WINDOW

# Strokes in canvas pixels (the pad is 280 x 280).
ONE = [[(140, 40), (140, 130), (140, 240)]]
ZERO = [[(140 + 55 * math.sin(2 * math.pi * k / 24), 140 - 95 * math.cos(2 * math.pi * k / 24))
         for k in range(25)]]
SEVEN = [[(70, 60), (140, 60), (210, 60)], [(210, 60), (180, 130), (150, 200), (130, 240)]]


@pytest.fixture(scope="module")
def page_server(smoke_run, tmp_path_factory):
    """The smoke model served, or KERASNETS_DRAW_MODEL_BASE (e.g. savedmodels/mnist) when set."""
    base = os.environ.get("KERASNETS_DRAW_MODEL_BASE")
    if not base:
        base = str(tmp_path_factory.mktemp("page") / "mnist")
        export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")), base)
    with bench_serve.running_server(base) as url:
        yield url, base


def draw(driver, strokes):
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By

    pad = driver.find_element(By.ID, "pad")
    for stroke in strokes:
        actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"))
        pointer = actions.pointer_action
        pointer.move_to(pad, int(stroke[0][0] - 140), int(stroke[0][1] - 140))
        pointer.pointer_down()
        for x, y in stroke[1:]:
            pointer.move_to(pad, int(x - 140), int(y - 140))
        pointer.pointer_up()
        actions.perform()


def settled(driver, strokes: int, timeout: float = 20) -> dict:
    """Waits until the page has drawn `strokes` strokes and its last request has answered;
    returns what it shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return {strokes: Number(document.body.dataset.strokes || 0), busy: classify.pending(),"
            " digit: document.getElementById('digit').textContent,"
            " bars: [...document.querySelectorAll('#bars .bar')].map("
            "   b => Number(b.dataset.probability)),"
            " top: [...document.querySelectorAll('#bars .bar.top')].map(b => Number(b.dataset.digit)),"
            " png: document.getElementById('pad').toDataURL('image/png')};")
        if state["strokes"] >= strokes and not state["busy"] and state["digit"].strip():
            time.sleep(0.2)  # a last request may have been queued by the final pointerup
            again = driver.execute_script("return classify.pending();")
            if not again:
                return state
        time.sleep(0.05)
    raise AssertionError(f"the page did not settle: {state}")


def test_drawing_three_digits_shows_the_models_predictions(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By

    url, base = page_server
    browser.get(url + "/")
    assert browser.title == "kerasnets: draw a digit"
    serve = tf.saved_model.load(export.latest_version_dir(base)).signatures["serving_default"]
    shown = []
    for strokes in (ONE, ZERO, SEVEN):
        browser.find_element(By.ID, "clear").click()
        before = int(browser.execute_script("return Number(document.body.dataset.strokes || 0)"))
        draw(browser, strokes)
        state = settled(browser, before + len(strokes))
        # What the page shows is the model's answer for exactly what was drawn, prepared as
        # kerasnets-predict prepares a file: decode the canvas's own PNG the same way.
        png = tf.io.decode_base64(state["png"].split(",", 1)[1].replace("+", "-").replace("/", "_"))
        prepared = images.to_mnist(images.decode_image(png.numpy()))
        probabilities = serve(images=tf.constant(prepared[None]))["probabilities"].numpy()[0]
        assert int(state["digit"]) == int(probabilities.argmax()) == state["top"][0]
        np.testing.assert_allclose(state["bars"], probabilities, atol=1e-6)
        assert abs(sum(state["bars"]) - 1) < 1e-4
        shown.append(int(state["digit"]))
        if os.environ.get("KERASNETS_DRAW_SCREENSHOT") and strokes is SEVEN:
            looked(browser)  # the inside view too
            try:
                browser.set_window_size(1180, 1500)
                browser.find_element(By.TAG_NAME, "body").screenshot(
                    os.environ["KERASNETS_DRAW_SCREENSHOT"])
            finally:
                browser.set_window_size(*WINDOW)
    assert shown == [1, 0, 7], shown


def looked(driver, timeout: float = 30) -> dict:
    """The page's last /inside answer, once no request for one is in flight or pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return Number(document.body.dataset.insides || 0) > 0 "
                                 "&& !look.pending()"):
            return driver.execute_script("return window.kerasnetsInside")
        time.sleep(0.05)
    raise AssertionError("the page showed no inside view")


def keras_feature_maps(model, digit) -> list[np.ndarray]:
    """Each conv block's output after its ReLU, by the Keras model: [channels, h, w]."""
    import keras

    relus = [layer.output for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    outputs = keras.Model(model.inputs, relus)([np.asarray(digit, np.float32)[None, ..., None]])
    return [np.transpose(np.asarray(o)[0], (2, 0, 1)) for o in outputs]


@pytest.fixture(scope="module")
def smoke_server(smoke_run, tmp_path_factory):
    """The smoke model served (its Keras model is the reference for the inside view)."""
    base = str(tmp_path_factory.mktemp("inside") / "mnist")
    export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")), base)
    with bench_serve.running_server(base) as url:
        yield url


def test_a_stroke_shows_the_conv_blocks_maps_of_the_keras_model(browser, smoke_server,
                                                                  smoke_run):
    from selenium.webdriver.common.by import By

    browser.get(smoke_server + "/")
    browser.find_element(By.ID, "clear").click()
    draw(browser, SEVEN)
    result = looked(browser)
    model = kerasnets.load_model(str(smoke_run[0] / "model.keras"))
    expected = keras_feature_maps(model, result["prepared"])
    assert [np.shape(m) for m in result["feature_maps"]] == [m.shape for m in expected]
    for got, want in zip(result["feature_maps"], expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    shown = browser.execute_script("return document.querySelectorAll('#maps canvas').length")
    assert shown == sum(m.shape[0] for m in expected) == 8 + 16 + 16 + 16 + 12
    unlabelled = browser.execute_script(  # every drawing on the page says what it shows
        "return [...document.querySelectorAll('canvas')].filter(c => !c.getAttribute('aria-label')"
        " || c.getAttribute('role') !== 'img').length")
    assert unlabelled == 0 and browser.execute_script(
        "return document.querySelectorAll('[tabindex]').length") == 0
    # The layer table: the LiteRT file's ops, the conv blocks' shapes and receptive fields
    # as kerasnets.models.convnets documents them for `default`.
    convs = [layer for layer in result["layers"] if layer["op"] == "CONV_2D"]
    assert [c["output_shape"] for c in convs] == [list(m.shape[1:]) + [m.shape[0]]
                                                  for m in expected]
    assert [c["receptive_field"] for c in convs] == [3, 5, 12, 16, 30]
    assert browser.execute_script("return document.querySelectorAll('#layers tbody tr').length") \
        == len(result["layers"])
    # The prediction is the model's; occlusion only matters where there is ink to blank.
    probabilities = model.predict(np.asarray(result["prepared"])[None, ..., None], verbose=0)[0]
    assert result["digit"] == int(probabilities.argmax())
    np.testing.assert_allclose(result["probabilities"], probabilities, atol=1e-5)
    saliency, ink = np.asarray(result["saliency"]["values"]), np.asarray(result["prepared"]) > 0
    near_ink = np.zeros_like(ink)
    for r, c in zip(*np.nonzero(ink)):
        near_ink[max(0, r - 3):r + 4, max(0, c - 3):c + 4] = True
    assert np.abs(saliency[~near_ink]).max() < 1e-6 and saliency[ink].max() > 0


@pytest.mark.parametrize("body, error", [
    ("blank", "drawing: no digit found: the image is blank"),
    (b"not a png", "drawing: cannot decode: not a PNG, JPEG, GIF or BMP image, or corrupt"),
])
def test_a_blank_or_malformed_drawing_gets_a_json_400(smoke_server, body, error):
    import json

    if body == "blank":
        body = tf.io.encode_png(np.full((50, 50, 1), 255, np.uint8)).numpy()
    connection = bench_serve.connect(smoke_server)
    try:
        connection.request("POST", "/inside", body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        assert (response.status, response.getheader("Content-Type")) == (400, "application/json")
        assert json.loads(response.read()) == {"error": error}
    finally:
        connection.close()
