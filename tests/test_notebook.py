"""notebooks/tour.ipynb: it runs top to bottom in a fresh kernel, and the committed copy
is the output of such a run."""

import importlib.util
import json
import os

import nbformat
import numpy as np
import pytest

from conftest import REPO

TOUR = os.path.join(REPO, "notebooks", "tour.ipynb")


def _executor():
    spec = importlib.util.spec_from_file_location(
        "execute", os.path.join(REPO, "notebooks", "execute.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_gradient_descent(lr: float, steps: int) -> float:
    """E_total after `steps` updates of the 2-2-2 network at the course's setting, in plain
    numpy with the chain rule written out again (independent of kerasnets.backprop.chain_rule)."""
    i = np.array([0.05, 0.1])
    t = np.array([0.01, 0.99])
    w_hidden = np.array([[0.15, 0.2], [0.25, 0.3]])   # rows: h1 <- (w1, w2), h2 <- (w3, w4)
    w_out = np.array([[0.4, 0.45], [0.5, 0.55]])      # rows: o1 <- (w5, w6), o2 <- (w7, w8)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for _ in range(steps + 1):
        a_h = sig(w_hidden @ i)
        a_o = sig(w_out @ a_h)
        loss = 0.5 * np.sum((t - a_o) ** 2)
        delta_o = (a_o - t) * a_o * (1 - a_o)
        delta_h = (w_out.T @ delta_o) * a_h * (1 - a_h)
        w_out, w_hidden = w_out - lr * np.outer(delta_o, a_h), w_hidden - lr * np.outer(delta_h, i)
    return loss  # the loss at the weights after `steps` updates


def test_the_tour_runs_top_to_bottom_and_computes_the_right_things(real_mnist, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("KERASNETS_TOUR_QUICK", "1")
    monkeypatch.setenv("KERASNETS_TOUR_OUT", str(tmp_path))
    monkeypatch.setenv("KERASNETS_DATA_DIR", str(real_mnist[1]))
    notebook = nbformat.read(TOUR, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("print(json.dumps(TOUR))"))
    notebook.cells[1].source = "import json\n" + notebook.cells[1].source
    path = tmp_path / "tour.ipynb"
    nbformat.write(notebook, str(path))
    done = _executor().execute(str(path), timeout=300)
    assert "quick run" in done.cells[1].outputs[0]["text"]
    tour = json.loads(done.cells[-1].outputs[0]["text"])

    assert tour["one_step_max_rel_difference"] <= 1e-10   # hand = tape (measured 5.8e-16)
    assert tour["study_max_rel_difference"] <= 1e-10
    final = {float(lr): e for lr, e in tour["study_final_E_total"].items()}
    assert sorted(final) == [0.1, 0.2, 0.5, 0.8, 1.0, 2.0]
    for lr, e in final.items():  # 20 steps in quick mode
        assert e == pytest.approx(toy_gradient_descent(lr, 20), rel=1e-9), lr
    assert tour["precision"] == "float32"            # auto on a CPU
    # 2,048 images, 2 epochs: measured 0.925 on our CPU; a range (chance is 0.10), since
    # other CPUs' kernels give slightly different figures
    assert tour["final_test_accuracy"] >= 0.85
    assert tour["signature_equals_keras"] is True
    assert tour["drawn_digit"] == tour["drawn_digit_keras"]
    # the learner's own network: its card worked out by hand (4 convs and a dense layer;
    # receptive field 3, 5, pool 6, 10, pool 12, 20), then compared with the default run
    params = 80 + (8 * 9 * 16 + 16) + (16 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + 330
    macs = 26 * 26 * 8 * 9 + 24 * 24 * 16 * 72 + 10 * 10 * 16 * 144 + 3 * 3 * 32 * 144 + 320
    assert tour["my_net_card"] == {"trainable_params": params, "macs": macs,
                                   "receptive_field": 20}
    assert tour["compared"] == [[f"{tmp_path / 'my_net.py'}:build", params], ["default", 7826]]
    assert sorted(os.listdir(tmp_path)) == [
        "backprop.html", "backprop.xlsx", "compare", "lr_sweep.png", "model", "my_net.py",
        "my_net_run", "savedmodels", "sweep.csv", "tour.ipynb"]


def test_the_committed_tour_is_a_full_run_top_to_bottom():
    notebook = nbformat.read(TOUR, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    for cell in code:
        assert cell.outputs, cell.source[:80]  # every code cell of the tour shows something
        for output in cell.outputs:
            assert output.output_type != "error", output
            assert "Traceback" not in output.get("text", ""), output["text"]
    assert code[0].outputs[0]["text"].startswith("full run")
    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # digits, lr study, curves, misclassified, the drawn digit
