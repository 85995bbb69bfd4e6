"""One exported version in every runtime: the same contract and the same answers on all
10,000 test digits in TensorFlow, ONNX Runtime and LiteRT (float and int8)."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import error_lines, run_module
from kerasnets.serving import contract, export, runtimes, versions

import kerasnets

FLOAT_RUNTIMES = ("onnx", "litert")


@pytest.fixture(scope="module")
def version(smoke_run, real_mnist, tmp_path_factory):
    """The smoke model exported with every format (int8 calibrated on 1,000 training images)."""
    (x_train, _), _ = real_mnist[0]
    model = kerasnets.load_model(str(smoke_run[0] / "model.keras"))
    base = tmp_path_factory.mktemp("runtimes") / "mnist"
    return export.export_version(model, str(base), formats=export.FORMATS,
                                 calibration_images=export.calibration_sample(x_train))


@pytest.fixture(scope="module")
def answers(version, real_mnist):
    """Every runtime's outputs on the 10,000 test digits."""
    _, (x_test, _) = real_mnist[0]
    return {runtime: runtimes.load(version, runtime)(x_test) for runtime in runtimes.RUNTIMES}


def test_the_version_holds_every_file(version):
    assert sorted(f for f in os.listdir(version) if os.path.isfile(os.path.join(version, f))) == [
        "fingerprint.pb", "model.onnx", "model.tflite", "model_int8.tflite", "saved_model.pb",
        "signature_def.json"]
    # the metadata a server on LiteRT or ONNX reports without TensorFlow: the SavedModel's own
    with open(os.path.join(version, contract.SIGNATURE_FILE)) as f:
        assert json.load(f) == export.signature_def(version)
    # int8 weights: about half the float file (the graph around them stays)
    assert os.path.getsize(os.path.join(version, "model_int8.tflite")) < 0.7 * os.path.getsize(
        os.path.join(version, "model.tflite"))


def test_every_file_keeps_the_signature_contract(version):
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    session = onnxruntime.InferenceSession(os.path.join(version, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert (image.name, image.type, image.shape[1:]) == ("images", "tensor(uint8)", [28, 28])
    assert isinstance(image.shape[0], str)  # the batch size is free
    assert {(o.name, o.type, len(o.shape)) for o in session.get_outputs()} == {
        ("classes", "tensor(int64)", 1), ("probabilities", "tensor(float)", 2)}
    for name in ("model.tflite", "model_int8.tflite"):
        interpreter = Interpreter(model_path=os.path.join(version, name))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["images"], "outputs": ["classes", "probabilities"]}}
        inputs = interpreter.get_signature_runner("serving_default").get_input_details()
        assert inputs["images"]["dtype"] == np.uint8
        assert list(inputs["images"]["shape_signature"]) == [-1, 28, 28]


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_any_batch_size_gives_the_contracts_types(version, real_mnist, batch):
    _, (x_test, _) = real_mnist[0]
    for runtime in runtimes.RUNTIMES:
        out = runtimes.load(version, runtime)(x_test[:batch])
        assert out["classes"].dtype == np.int64 and out["classes"].shape == (batch,), runtime
        assert out["probabilities"].dtype == np.float32, runtime
        assert out["probabilities"].shape == (batch, 10), runtime


@pytest.mark.parametrize("runtime", FLOAT_RUNTIMES)
def test_float_runtimes_answer_as_the_savedmodel_on_all_test_digits(answers, runtime):
    reference = answers["tensorflow"]
    np.testing.assert_array_equal(answers[runtime]["classes"], reference["classes"])
    np.testing.assert_allclose(answers[runtime]["probabilities"], reference["probabilities"],
                               rtol=0, atol=1e-4)


def test_int8_accuracy_is_within_a_tenth_of_a_percent_of_float(answers, real_mnist):
    _, (_, y_test) = real_mnist[0]
    accuracy = {r: float(np.mean(answers[r]["classes"] == y_test)) for r in answers}
    assert 0.8 < accuracy["tensorflow"] < 1.0  # a trained model (the smoke recipe)
    assert abs(accuracy["litert_int8"] - accuracy["tensorflow"]) <= 0.001, accuracy
    # quantised, not a copy: its probabilities move, a little
    difference = np.abs(answers["litert_int8"]["probabilities"] -
                        answers["tensorflow"]["probabilities"]).max()
    assert 1e-4 < difference < 0.5


def test_a_missing_runtime_file_is_reported_not_guessed(version, tmp_path):
    partial = tmp_path / "1"
    shutil.copytree(version, partial)
    os.remove(partial / "model.onnx")
    with pytest.raises(runtimes.MissingRuntimeFileError,
                       match=r"has no model.onnx for --runtime=onnx; export it with "
                             r"kerasnets-export --formats=saved_model,onnx"):
        runtimes.load(str(partial), "onnx")
    assert runtimes.load(str(partial), "litert")  # the others still load
    proc = run_module("predict", f"--model_path={partial}", "--runtime=onnx", "x.png")
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"kerasnets-predict: error: --model_path: {partial} has no model.onnx for "
        "--runtime=onnx; export it with kerasnets-export --formats=saved_model,onnx"]


def test_the_watcher_skips_versions_without_the_runtimes_file(version, tmp_path):
    base = tmp_path / "mnist"
    shutil.copytree(version, base / "1")
    shutil.copytree(version, base / "2")
    os.remove(base / "2" / "model.tflite")
    lines = []
    watcher = versions.ModelWatcher(str(base), log=lines.append, runtime="litert")
    watcher.poll()
    assert watcher.current.version == 1 and watcher.current.runtime == "litert"
    assert lines == ["kerasnets-serve: version 2 has no model.tflite; skipped (--runtime=litert)",
                     "kerasnets-serve: serving version 1"]
    watcher.poll()  # said once
    assert len(lines) == 2
    shutil.copytree(version, base / "3")  # a new version with the file: hot swap
    watcher.poll()
    assert watcher.current.version == 3 and lines[-1] == (
        "kerasnets-serve: serving version 3 (was 1)")


def test_export_refuses_impossible_formats_and_writes_nothing(smoke_run, tmp_path):
    for formats, message in (("saved_model,onnx,tflite", "--formats must be a comma list"),
                             ("onnx,litert", "including saved_model")):
        proc = run_module("export", f"--model_dir={smoke_run[0]}",
                          f"--export_base={tmp_path / 'mnist'}", f"--formats={formats}")
        lines = error_lines(proc.stderr)
        assert proc.returncode == 1 and message in lines[0], lines
        assert not (tmp_path / "mnist").exists()
    with pytest.raises(export.ExportFormatError, match="litert_int8 needs calibration images"):
        export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")),
                              str(tmp_path / "mnist"), formats=("saved_model", "litert_int8"))
    assert not (tmp_path / "mnist").exists()  # refused before anything was written


def test_the_documented_lines_run_each_file_in_its_runtime(version, real_mnist):
    """docs/serving.md's code blocks for the runtimes, run as written on this version."""
    import re

    from conftest import REPO

    with open(os.path.join(REPO, "docs", "serving.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Every runtime"):text.index("## Serving with TensorFlow Serving")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 4
    _, (x_test, y_test) = real_mnist[0]
    scope: dict = {}
    exec(blocks[0].replace('"savedmodels/mnist/1"', repr(version)), scope)
    scope["images"] = x_test[:64]
    for block in blocks[1:]:
        exec(block, scope)
    want = answers_of(version, x_test[:64])
    np.testing.assert_array_equal(scope["tf_out"]["classes"].numpy(), want)
    np.testing.assert_array_equal(scope["classes"], want)
    np.testing.assert_array_equal(scope["litert_out"]["classes"], want)


def answers_of(version: str, images: np.ndarray) -> np.ndarray:
    return runtimes.load(version, "tensorflow")(images)["classes"]


@pytest.mark.parametrize("runtime", runtimes.RUNTIMES)
def test_the_watcher_swaps_to_a_new_version_in_every_runtime(version, tmp_path, runtime):
    base = tmp_path / "mnist"
    shutil.copytree(version, base / "1")
    lines = []
    watcher = versions.ModelWatcher(str(base), log=lines.append, runtime=runtime)
    watcher.poll()
    assert (watcher.current.version, watcher.current.runtime) == (1, runtime)
    first = watcher.current
    shutil.copytree(version, base / "2")
    watcher.poll()
    assert watcher.current.version == 2 and lines[-1] == "kerasnets-serve: serving version 2 (was 1)"
    digits = np.zeros((2, 28, 28), np.uint8)
    np.testing.assert_array_equal(first.predict(digits)["classes"],
                                  watcher.current.predict(digits)["classes"])


def test_every_runtime_serves_the_same_answers_and_errors(version, real_mnist, tmp_path):
    """The same requests to a kerasnets-serve of each runtime, one after the other."""
    import json

    from kerasnets.bench import serve_load

    base = tmp_path / "mnist"
    shutil.copytree(version, base / "1")
    _, (x_test, _) = real_mnist[0]
    good = json.dumps({"instances": x_test[:4].tolist()}).encode()
    bad = json.dumps({"instances": [[[256] * 28] * 28]}).encode()
    answers = {}
    for runtime in runtimes.RUNTIMES:
        with serve_load.running_server(str(base), f"--runtime={runtime}") as url:
            connection = serve_load.connect(url)
            try:
                answers[runtime] = [serve_load.post(connection, "/v1/models/mnist:predict", body)
                                    for body in (good, bad)]
            finally:
                connection.close()
    reference = answers["tensorflow"]
    assert reference[0][0] == 200 and reference[1][0] == 400
    for runtime, ((status, body), error) in answers.items():
        assert status == 200 and error == reference[1], runtime  # the same error, word for word
        assert [p["classes"] for p in body["predictions"]] == [
            p["classes"] for p in reference[0][1]["predictions"]], runtime
        if runtime != "litert_int8":
            np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]],
                                       [p["probabilities"] for p in reference[0][1]["predictions"]],
                                       atol=1e-4)


def test_predict_gives_the_same_lines_in_every_float_runtime(version, real_mnist, tmp_path):
    import tensorflow as tf

    _, (x_test, _) = real_mnist[0]
    for i in range(3):
        tf.io.write_file(str(tmp_path / f"d{i}.png"), tf.io.encode_png(x_test[i][..., None]))
    outputs = {}
    for runtime in runtimes.RUNTIMES:
        proc = run_module("predict", f"--model_path={version}", f"--runtime={runtime}",
                          *[str(tmp_path / f"d{i}.png") for i in range(3)])
        assert proc.returncode == 0, (runtime, proc.stderr[-2000:])
        outputs[runtime] = proc.stdout.splitlines()
    assert outputs["onnx"] == outputs["litert"] == outputs["tensorflow"]
    digits = [line.split(": ")[1].split()[0] for line in outputs["litert_int8"]]
    assert digits == [line.split(": ")[1].split()[0] for line in outputs["tensorflow"]]


def test_a_corrupt_runtime_file_is_one_line_and_the_server_starts_on_the_older_version(
        version, tmp_path):
    base = tmp_path / "mnist"
    shutil.copytree(version, base / "1")
    shutil.copytree(version, base / "2")
    (base / "2" / "model.tflite").write_bytes(b"not a flatbuffer")
    (base / "2" / "model.onnx").write_bytes(b"not a protobuf")
    for runtime, name in (("litert", "model.tflite"), ("onnx", "model.onnx")):
        proc = run_module("predict", f"--model_path={base / '2'}", f"--runtime={runtime}",
                          "x.png")
        lines = error_lines(proc.stderr)
        assert proc.returncode == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"kerasnets-predict: error: --model_path: cannot load "
                                   f"{base / '2' / name}: "), lines
    logged = []
    watcher = versions.ModelWatcher(str(base), log=logged.append, runtime="litert")
    watcher.load_first()  # version 2 fails to load: the server starts on version 1
    assert watcher.current.version == 1
    assert logged[0].startswith("kerasnets-serve: version 2 not loaded (cannot load ")
    assert logged[-1] == "kerasnets-serve: serving version 1"


def test_a_runtime_left_out_means_what_the_command_runs():
    """One default per question, named once: serving (the library's functions and
    kerasnets-serve) runs LiteRT; predicting (load_classifier, kerasnets-predict) runs
    the SavedModel, the one runtime that also takes a .keras file."""
    import inspect
    import re

    from kerasnets.serving import rest_api

    def default(function, name="runtime"):
        return inspect.signature(function).parameters[name].default

    assert (runtimes.SERVE_RUNTIME, runtimes.PREDICT_RUNTIME) == ("litert", "tensorflow")
    assert [default(f) for f in (rest_api.serve, versions.load_version, versions.ModelWatcher,
                                 runtimes.load)] == ["litert"] * 4
    assert default(versions.load_classifier) == "tensorflow"
    for command, expected in (("serve", "litert"), ("predict", "tensorflow")):
        text = " ".join(run_module(command, "--help").stdout.split())
        assert re.search(r"--runtime: <[^>]*>: What runs a version: .*?\(default: '(\w+)'\)",
                         text).group(1) == expected, command
