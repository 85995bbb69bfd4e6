"""The draw-a-digit page in a real headless Chromium (Debian's chromium and its chromedriver,
driven by Selenium; nothing is downloaded): three digits drawn with pointer events."""

import math
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from kerasnets import export, images
from kerasnets.bench import serve_load as bench_serve

import kerasnets

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
            "return {strokes: Number(document.body.dataset.strokes || 0), busy: inFlight || again,"
            " digit: document.getElementById('digit').textContent,"
            " bars: [...document.querySelectorAll('#bars .bar')].map("
            "   b => Number(b.dataset.probability)),"
            " top: [...document.querySelectorAll('#bars .bar.top')].map(b => Number(b.dataset.digit)),"
            " png: document.getElementById('pad').toDataURL('image/png')};")
        if state["strokes"] >= strokes and not state["busy"] and state["digit"].strip():
            time.sleep(0.2)  # a last request may have been queued by the final pointerup
            again = driver.execute_script("return inFlight || again;")
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
            browser.save_screenshot(os.environ["KERASNETS_DRAW_SCREENSHOT"])
    assert shown == [1, 0, 7], shown
