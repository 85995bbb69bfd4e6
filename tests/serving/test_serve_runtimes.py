"""kerasnets-serve in every runtime under concurrent clients: each request gets its own answer,
whether requests are batched together or not."""

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from kerasnets.serving import export, runtimes
from kerasnets.bench import serve_load

import kerasnets

PREDICT = "/v1/models/mnist:predict"
CLIENTS = 16
REQUESTS_PER_CLIENT = 50   # 800 in all
TOLERANCE = 1e-5           # a row's probabilities alone and within a batch (float32 kernels)


@pytest.fixture(scope="module")
def every_format_base(smoke_run, real_mnist, tmp_path_factory):
    """An export base holding the smoke model as version 1, in every format (int8 too)."""
    base = tmp_path_factory.mktemp("every_format") / "mnist"
    (x_train, _), _ = real_mnist[0]
    export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")), str(base),
                          formats=export.FORMATS,
                          calibration_images=export.calibration_sample(x_train))
    return base


def own_answers(url: str, digits: np.ndarray, expected: np.ndarray) -> list[list[int]]:
    """One thread per digit, client i sending digit i REQUESTS_PER_CLIENT times on its own
    keep-alive connection: per client, for each answer the index of the expected
    probabilities it equals within TOLERANCE (i for its own answer), -2 for none of them,
    -1 for a failed request."""
    found: list[list[int]] = [[] for _ in digits]
    start = threading.Barrier(len(digits))

    def client(i: int):
        body = json.dumps({"instances": digits[i:i + 1].tolist()}).encode()
        connection = serve_load.connect(url)
        start.wait(timeout=60)
        try:
            for _ in range(REQUESTS_PER_CLIENT):
                try:
                    status, answer = serve_load.post(connection, PREDICT, body)
                except (OSError, http.client.HTTPException, ValueError):
                    found[i].append(-1)
                    connection.close()
                    continue
                if status != 200:
                    found[i].append(-1)
                    continue
                got = np.asarray(answer["predictions"][0]["probabilities"])
                distance = np.abs(expected - got).max(axis=1)
                nearest = int(np.argmin(distance))
                found[i].append(nearest if distance[nearest] <= TOLERANCE else -2)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(digits))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 240
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "clients still waiting after 240 s"
    return found


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no_batching"])
@pytest.mark.parametrize("runtime", runtimes.RUNTIMES)
def test_sixteen_concurrent_clients_each_get_their_own_digits_answer(every_format_base,
                                                                    real_mnist, runtime,
                                                                    batching):
    (_, _), (x_test, _) = real_mnist[0]
    digits = x_test[:CLIENTS]
    version = str(every_format_base / "1")
    expected = runtimes.load(version, runtime)(digits)["probabilities"]
    # Each digit's answer is far from every other digit's: a mix-up cannot pass as noise.
    gaps = np.abs(expected[:, None] - expected[None]).max(axis=2) + np.eye(CLIENTS)
    assert gaps.min() > 1e-3, gaps.min()
    with serve_load.running_server(str(every_format_base), f"--runtime={runtime}",
                                   f"--batching={str(batching).lower()}") as url:
        found = own_answers(url, digits, expected)
        if batching:  # what the network sees, beside this runtime
            drawing = io.BytesIO()
            Image.fromarray(digits[0]).save(drawing, "PNG")
            connection = serve_load.connect(url)
            try:
                status, seen = serve_load.post(connection, "/inside", drawing.getvalue(),
                                               "image/png")
            finally:
                connection.close()
            assert status == 200, seen
            assert [len(maps) for maps in seen["feature_maps"]] == [8, 16, 16, 16, 12]
    assert [len(answers) for answers in found] == [REQUESTS_PER_CLIENT] * CLIENTS
    answers = [(i, got) for i, client in enumerate(found) for got in client]
    wrong = [got for i, got in answers if got != i]
    assert not wrong, (f"{len(wrong)} of {len(answers)} answers were not the client's own: "
                       f"{sum(g >= 0 for g in wrong)} another client's, {wrong.count(-2)} "
                       f"nobody's, {wrong.count(-1)} failed")


# Runs `python -c THIS module args...` as `python -m module args...`, and at exit writes the
# heavy modules it loaded to the file named by $LOADED_MODULES_FILE. (uvicorn hands SIGTERM
# back to the handler it found once it has shut down: this one exits through atexit.)
_REPORTING_LOADED_MODULES = """
import atexit, json, os, runpy, signal, sys
HEAVY = ("tensorflow", "keras")
def report():
    with open(os.environ["LOADED_MODULES_FILE"], "w") as f:
        json.dump(sorted(m for m in HEAVY if m in sys.modules), f)
atexit.register(report)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def loaded_heavy_modules(path) -> list[str]:
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("runtime", ["onnx", "litert", "litert_int8"])
def test_predict_and_serve_on_a_light_runtime_never_load_tensorflow(every_format_base, real_mnist,
                                                                   tmp_path, runtime):
    (_, _), (x_test, _) = real_mnist[0]
    Image.fromarray(x_test[0]).save(tmp_path / "seven.png")
    version = str(every_format_base / "1")
    expected = runtimes.load(version, runtime)(x_test[:1])["classes"][0]
    env = {**os.environ, "LOADED_MODULES_FILE": str(tmp_path / "predict.json")}
    proc = subprocess.run([sys.executable, "-c", _REPORTING_LOADED_MODULES,
                           "kerasnets.cli.predict", f"--model_path={every_format_base}",
                           f"--runtime={runtime}", str(tmp_path / "seven.png")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"{tmp_path / 'seven.png'}: {expected} (p=")
    assert loaded_heavy_modules(tmp_path / "predict.json") == []

    env["LOADED_MODULES_FILE"] = str(tmp_path / "serve.json")
    command = (sys.executable, "-c", _REPORTING_LOADED_MODULES, "kerasnets.cli.serve")
    with serve_load.running_server(str(every_format_base), f"--runtime={runtime}",
                                   command=command, env=env) as url:
        connection = serve_load.connect(url)
        try:
            body = json.dumps({"instances": x_test[:1].tolist()}).encode()
            status, answer = serve_load.post(connection, PREDICT, body)
            assert status == 200 and answer["predictions"][0]["classes"] == expected
            drawing = (tmp_path / "seven.png").read_bytes()
            status, drawn = serve_load.post(connection, "/draw", drawing, "image/png")
            assert status == 200 and drawn["digit"] == expected, drawn
            status, seen = serve_load.post(connection, "/inside", drawing, "image/png")
            assert status == 200 and seen["digit"] == expected, seen.get("error")
            assert [len(maps) for maps in seen["feature_maps"]] == [8, 16, 16, 16, 12]
            connection.request("GET", "/v1/models/mnist/metadata")
            metadata = json.loads(connection.getresponse().read())
            signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
            assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
        finally:
            connection.close()
    assert loaded_heavy_modules(tmp_path / "serve.json") == []  # written as the server stopped


def test_the_inside_view_of_a_version_without_a_readable_litert_file_says_so(smoke_run,
                                                                            real_mnist,
                                                                            tmp_path):
    base = tmp_path / "mnist"
    export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")), str(base),
                          formats=("saved_model", "onnx"))
    (_, _), (x_test, _) = real_mnist[0]
    drawing = io.BytesIO()
    Image.fromarray(x_test[0]).save(drawing, "PNG")
    with serve_load.running_server(str(base), "--runtime=onnx") as url:
        connection = serve_load.connect(url)
        try:
            status, answer = serve_load.post(connection, "/inside", drawing.getvalue(), "image/png")
            assert (status, answer) == (409, {"error": (
                "inside: the feature maps are read from the version's model.tflite (LiteRT, "
                "float), which this version has not: export it with kerasnets-export (its "
                "default formats include it)")})
            status, drawn = serve_load.post(connection, "/draw", drawing.getvalue(), "image/png")
            assert status == 200 and drawn["digit"] == 7  # the rest still answers
            (base / "1" / "model.tflite").write_bytes(b"not a flatbuffer")  # a corrupt one
            status, answer = serve_load.post(connection, "/inside", drawing.getvalue(), "image/png")
            assert status == 409 and answer["error"].startswith(
                f"inside: cannot read {base / '1' / 'model.tflite'} for the feature maps: "), answer
            assert serve_load.post(connection, "/draw", drawing.getvalue(), "image/png")[0] == 200
        finally:
            connection.close()
