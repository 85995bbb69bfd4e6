"""backprop.html in a real headless Chromium: every value it shows is the library's.

The page computes in JavaScript (a third implementation, beside kerasnets.backprop.chain_rule and
the workbook's formulas); here it is held to kerasnets.backprop.chain_rule, itself checked against
tf.GradientTape, to 1e-12 after editing a weight and the learning rate and stepping 1 and
100 times. With KERASNETS_BACKPROP_SCREENSHOT set, the page after 100 steps is saved there:

  KERASNETS_BACKPROP_SCREENSHOT=docs/images/backprop_page.png \\
      .venv/bin/python -m pytest tests/backprop/test_backprop_page.py
"""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
from conftest import WINDOW
from kerasnets.backprop import chain_rule, html_page, toynet

LRS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0)  # flags/toynet.flags
STEPS = 100
TOLERANCE = 1e-12


@pytest.fixture
def page(browser, tmp_path):
    path = tmp_path / "backprop.html"
    html_page.write(str(path), toynet.ToyNet(), LRS, STEPS)
    browser.get(path.as_uri())
    return browser


def shown(driver) -> dict[str, float]:
    """Every value the page shows, by element id (each also as its exact data-value)."""
    return {k: float(v) for k, v in driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-value]')]"
        ".map(e => [e.id, e.getAttribute('data-value')]))").items()}


def series(driver) -> dict:
    """The chart's lines: each learning rate's E_total by step (keyed by the rate), and the
    learner's own run ("own-run")."""
    lines = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#study polyline')]"
        ".map(e => [e.getAttribute('data-lr') || e.id, JSON.parse(e.getAttribute('data-values'))]))")
    return {(k if k == "own-run" else float(k)): v for k, v in lines.items()}


def expected(net: toynet.ToyNet, lr: float, steps: int) -> dict[str, float]:
    """What the page must show after `steps` steps at `lr` from `net`: the library's row,
    and each chain-rule factor computed from it."""
    row = dict(zip(chain_rule.COLUMNS, chain_rule.gradient_descent(net, lr, steps).rows[-1]))
    w = [row[name] for name in toynet.WEIGHT_NAMES]
    values = {f"f-{name}": row[name] for name in toynet.FORWARD_NAMES}
    values.update({f"node-{name}": row[name] for name in
                   ("h1", "h2", "a_h1", "a_h2", "o1", "o2", "a_o1", "a_o2", "E_total")})
    values.update({"node-i1": net.i1, "node-i2": net.i2})
    values.update({f"edge-{name}": row[name] for name in toynet.WEIGHT_NAMES})
    values.update({f"g-{name}": row[f"dE_d{name}"] for name in toynet.WEIGHT_NAMES})
    delta_o1 = (row["a_o1"] - net.t1) * row["a_o1"] * (1 - row["a_o1"])
    delta_o2 = (row["a_o2"] - net.t2) * row["a_o2"] * (1 - row["a_o2"])
    slope = {a: row[a] * (1 - row[a]) for a in ("a_h1", "a_h2", "a_o1", "a_o2")}
    factors = {
        "w1": (delta_o1 * w[4] + delta_o2 * w[6], slope["a_h1"], net.i1),
        "w2": (delta_o1 * w[4] + delta_o2 * w[6], slope["a_h1"], net.i2),
        "w3": (delta_o1 * w[5] + delta_o2 * w[7], slope["a_h2"], net.i1),
        "w4": (delta_o1 * w[5] + delta_o2 * w[7], slope["a_h2"], net.i2),
        "w5": (row["a_o1"] - net.t1, slope["a_o1"], row["a_h1"]),
        "w6": (row["a_o1"] - net.t1, slope["a_o1"], row["a_h2"]),
        "w7": (row["a_o2"] - net.t2, slope["a_o2"], row["a_h1"]),
        "w8": (row["a_o2"] - net.t2, slope["a_o2"], row["a_h2"]),
    }
    for name, three in factors.items():
        values.update({f"g-{name}-f{j + 1}": v for j, v in enumerate(three)})
        assert np.prod(three) == pytest.approx(row[f"dE_d{name}"], abs=1e-15)  # the products
    return values


def assert_shows(driver, values: dict[str, float]) -> None:
    got = shown(driver)
    assert sorted(got) == sorted(values)  # nothing shown unchecked, nothing missing
    off = {k: (got[k], v) for k, v in values.items() if not abs(got[k] - v) <= TOLERANCE}
    assert not off, off


def assert_study(driver, net: toynet.ToyNet) -> None:
    lines = series(driver)
    assert sorted(k for k in lines if k != "own-run") == sorted(LRS)
    for run in chain_rule.sweep(net, LRS, STEPS):
        np.testing.assert_allclose(lines[run.lr], run.column("E_total"), rtol=0,
                                   atol=TOLERANCE)


def edit(driver, field: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, field)
    box.clear()
    box.send_keys(text, Keys.TAB)  # leaving the field fires its change event


def click(driver, button: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, button).click()


def test_the_page_opens_with_the_workbench_setting(page):
    assert page.title == "kerasnets: backpropagation through the 2-2-2 network"
    assert_shows(page, expected(toynet.ToyNet(), html_page.STEP_LR, 0))
    assert shown(page)["f-E_total"] == pytest.approx(0.242519857, abs=1e-9)  # kerasnets-toynet's
    assert_study(page, toynet.ToyNet())


def test_an_edited_weight_and_rate_stepped_1_and_100_times_equal_the_library(page):
    edit(page, "w5", "0.42")
    edit(page, "lr", "0.7")
    net = dataclasses.replace(toynet.ToyNet(), weights=(0.15, 0.2, 0.25, 0.3, 0.42, 0.45, 0.5, 0.55))
    assert_shows(page, expected(net, 0.7, 0))
    assert_study(page, net)  # the study restarts from the edited weights
    click(page, "step1")
    assert_shows(page, expected(net, 0.7, 1))
    edit(page, "n", "99")
    click(page, "stepn")
    assert_shows(page, expected(net, 0.7, STEPS))
    assert page.find_element("id", "status").get_attribute("data-step") == "100"
    np.testing.assert_allclose(series(page)["own-run"],
                               chain_rule.gradient_descent(net, 0.7, STEPS).column("E_total"),
                               rtol=0, atol=TOLERANCE)
    if os.environ.get("KERASNETS_BACKPROP_SCREENSHOT"):
        try:
            page.set_window_size(1240, 1900)
            page.find_element("tag name", "main").screenshot(
                os.environ["KERASNETS_BACKPROP_SCREENSHOT"])
        finally:
            page.set_window_size(*WINDOW)


def test_a_rate_not_above_0_or_an_empty_field_changes_nothing_and_is_marked(page):
    before = shown(page)
    edit(page, "lr", "-1")
    assert page.find_element("id", "lr").get_attribute("aria-invalid") == "true"
    edit(page, "w2", "")
    assert page.find_element("id", "w2").get_attribute("aria-invalid") == "true"
    click(page, "step1")
    assert_shows(page, expected(toynet.ToyNet(), html_page.STEP_LR, 1))
    assert shown(page) != before


def test_every_control_is_labelled_and_in_document_order(page):
    unlabelled = page.execute_script(
        "return [...document.querySelectorAll('input')].filter(i => i.labels.length !== 1)"
        ".map(i => i.id)")
    assert unlabelled == []
    assert page.execute_script("return document.querySelectorAll('[tabindex]').length") == 0
    assert page.execute_script("return [...document.querySelectorAll('svg')]"
                               ".every(s => s.getAttribute('role') === 'img' && s.querySelector('title'))")


def test_the_file_opens_offline_with_nothing_to_fetch(tmp_path):
    html = html_page.render(toynet.ToyNet(), LRS, STEPS)
    assert not re.search(r"<script[^>]+src=|<link|<img|@import|url\(|<iframe", html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    settings = json.loads(re.search(r'id="settings">(.*?)</script>', html, re.DOTALL).group(1))
    assert settings["lrs"] == list(LRS) and settings["steps"] == STEPS


def test_a_long_study_still_draws_every_curve(browser, tmp_path):
    """30,000 steps at six rates (180,006 losses): min and max are taken in a loop, not by
    spreading the values into Math.min, which throws past ~120,000 arguments."""
    path = tmp_path / "long.html"
    html_page.write(str(path), toynet.ToyNet(), LRS, 30_000)
    browser.get(path.as_uri())
    lines = series(browser)
    assert sorted(lines) == sorted(LRS) and all(len(v) == 30_001 for v in lines.values())
    np.testing.assert_allclose(lines[2.0][-1], chain_rule.gradient_descent(
        toynet.ToyNet(), 2.0, 30_000).column("E_total")[-1], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("lrs, steps", [((0.5, float("nan")), 10), ((0.5, 0.0), 10),
                                        ((), 10), ((0.5,), 0), (("0.5</script>",), 10)])
def test_a_setting_the_page_cannot_hold_is_refused(lrs, steps):
    with pytest.raises(toynet.SettingError, match=r"^--(lrs|steps) must be "):
        html_page.render(toynet.ToyNet(), lrs, steps)


def test_a_target_that_makes_the_loss_infinite_keeps_the_page_working(page):
    edit(page, "t1", "1e300")  # E1 = ½(1e300 − a_o1)² overflows: no finite loss to scale by
    assert page.find_element("id", "status").text.startswith("step 0: E_total = Infinity")
    edit(page, "t1", "0.01")
    click(page, "step1")
    assert_shows(page, expected(toynet.ToyNet(), html_page.STEP_LR, 1))
