"""kerasnets-serve: TensorFlow Serving's REST API against a real server process on a free
127.0.0.1 port (stopped in every case by bench_serve.running_server)."""

import http.client
import json
import re
import threading
import time
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from conftest import error_lines, run_module
from kerasnets.data import images
from kerasnets.models import convnets
from kerasnets.serving import export
from kerasnets.bench import serve_load as bench_serve

import kerasnets

PREDICT = "/v1/models/mnist:predict"


@pytest.fixture(scope="module")
def served_base(smoke_run, tmp_path_factory):
    """An export base holding the smoke model as version 1."""
    base = tmp_path_factory.mktemp("served") / "mnist"
    export.export_version(kerasnets.load_model(str(smoke_run[0] / "model.keras")), str(base))
    return base


@pytest.fixture(scope="module")
def server(served_base):
    with bench_serve.running_server(str(served_base), "--max_request_bytes=65536") as url:
        yield url


@pytest.fixture(scope="module")
def roomy_server(served_base):
    """A server with the default --max_request_bytes (4 MiB), for bodies over 64 KiB."""
    with bench_serve.running_server(str(served_base)) as url:
        yield url


@pytest.fixture(scope="module")
def digits(real_mnist):
    (_, _), (x_test, y_test) = real_mnist[0]
    return x_test[:8], y_test[:8]


def connect(url):
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"
    return bench_serve.connect(url)


def request(url, method, path, body=None, content_type="application/json"):
    connection = connect(url)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def raw_request(url, method, path, body=None, content_type="application/json"):
    """(status, Content-Type, body bytes, seconds) without assuming the answer is JSON."""
    connection = connect(url)
    try:
        started = time.monotonic()
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        data = response.read()
        return (response.status, response.getheader("Content-Type"), data,
                time.monotonic() - started)
    finally:
        connection.close()


def signature_outputs(base, version, images):
    serve = tf.saved_model.load(str(base / str(version))).signatures["serving_default"]
    return {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}


def test_status_and_metadata_describe_the_served_version(server):
    assert request(server, "GET", "/v1/models/mnist") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK",
                                                          "error_message": ""}}]})
    assert request(server, "GET", "/v1/models/mnist/versions/1")[0] == 200
    status, meta = request(server, "GET", "/v1/models/mnist/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "mnist", "signature_name": "",
                                                    "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == [
        "-1", "28", "28"]
    assert signature["outputs"]["classes"]["dtype"] == "DT_INT64"
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == [
        "-1", "10"]


@pytest.mark.parametrize("path", [PREDICT, "/v1/models/mnist/versions/1:predict"])
def test_row_and_columnar_predictions_equal_the_signatures_outputs(server, served_base, digits,
                                                                   path):
    images, labels = digits
    expected = signature_outputs(served_base, 1, images)
    status, rows = request(server, "POST", path, json.dumps({"instances": images.tolist()}))
    assert status == 200 and len(rows["predictions"]) == 8
    assert [p["classes"] for p in rows["predictions"]] == expected["classes"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in rows["predictions"]],
                               expected["probabilities"], atol=1e-6)
    for inputs in ({"images": images.tolist()}, images.tolist()):  # named, or the only input
        status, columns = request(server, "POST", path, json.dumps({"inputs": inputs}))
        assert status == 200 and sorted(columns["outputs"]) == ["classes", "probabilities"]
        assert columns["outputs"]["classes"] == expected["classes"].tolist()
        np.testing.assert_allclose(columns["outputs"]["probabilities"],
                                   expected["probabilities"], atol=1e-6)
    assert np.mean(expected["classes"] == labels) >= 0.75  # a trained model (smoke: 0.925)


def test_the_documented_curl_body_works(server, digits):
    body = json.dumps({"instances": digits[0][:2].tolist()})  # docs/serving.md's request
    status, response = request(server, "POST", PREDICT, body)
    assert status == 200 and [p["classes"] for p in response["predictions"]] == [7, 2]


BAD_REQUESTS = [
    ("POST", PREDICT, b"not json", 400, r"^JSON Parse error: "),
    ("POST", PREDICT, b"[1, 2]", 400, r"request body must be a JSON object"),
    ("POST", PREDICT, b"{}", 400, r"^Missing 'inputs' or 'instances' key$"),
    ("POST", PREDICT, b'{"instances": [], "inputs": []}', 400,
     r"^Not both 'inputs' and 'instances' can be set$"),
    ("POST", PREDICT, b'{"instances": []}', 400, r"^images: empty batch"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 32] * 32]}).encode(), 400,
     r"^images: shape \[1, 32, 32\] is not compatible with the signature's \[-1, 28, 28\]$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 28] * 27 + [[0] * 27]]}).encode(), 400,
     r"ragged"),
    ("POST", PREDICT, json.dumps({"instances": [[[300] * 28] * 28]}).encode(), 400,
     r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got 300$"),
    ("POST", PREDICT, json.dumps({"instances": [[[-1] * 28] * 28]}).encode(), 400,
     r"got -1$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0.5] * 28] * 28]}).encode(), 400,
     r"got 0\.5$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 27 + [256]] * 28]}).encode(), 400,
     r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got 256$"),
    ("POST", PREDICT, json.dumps({"instances": [[[255] * 27 + [-1]] * 28]}).encode(), 400,
     r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got -1$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 27 + [float("nan")]] * 28]}).encode(),
     400, r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got NaN$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 27 + [True]] * 28]}).encode(), 400,
     r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got true$"),
    ("POST", PREDICT, json.dumps({"instances": [[[0] * 27 + [3.0]] * 28]}).encode(), 400,
     r"^images: values must be integers 0\.\.255 \(uint8 pixels\); got 3\.0$"),
    ("POST", PREDICT, b'{"instances": "hello"}', 400,
     r'^images: expected a list of 28x28 images, got a string \("hello"\)$'),
    ("POST", PREDICT, b'{"instances": ' + b"[" * 500 + b"]" * 500 + b"}", 400,
     r"^images: nested 500 lists deep; expected a list of images, each 28 lists of 28 "
     r"integers$"),
    ("POST", PREDICT, b'{"instances": ' + b"[" * 30000 + b"]" * 30000 + b"}", 400,
     r"^JSON Parse error: nested 30,001 levels deep, too deep to parse; each image must be "
     r"28 lists of 28 integers$"),
    ("POST", PREDICT, json.dumps({"signature_name": "predict", "instances": []}).encode(), 400,
     r'^Serving signature name: "predict" not found in signature def$'),
    ("POST", PREDICT, b"[" + b"0," * 40000 + b"0]", 413,
     r"^request body of 80,003 bytes is over the limit of 65,536 bytes$"),
    ("POST", "/v1/models/other:predict", b"{}", 404,
     r"^Servable not found for request: Latest\(other\)$"),
    ("POST", "/v1/models/mnist/versions/7:predict", b"{}", 404,
     r"^Servable not found for request: Specific\(mnist, 7\)$"),
    ("GET", "/v1/models/other", None, 404, r"Latest\(other\)"),
    ("GET", PREDICT, None, 405, r"^Method Not Allowed: GET /v1/models/mnist:predict$"),
    ("GET", "/static/../../etc/passwd", None, 404, r"^Not Found: GET "),
    ("POST", "/draw", b"not an image", 400, r"^drawing: cannot decode"),
]


def test_every_bad_request_gets_one_4xx_and_the_server_keeps_answering(server, digits):
    good = json.dumps({"instances": digits[0][:1].tolist()})
    for method, path, body, status, message in BAD_REQUESTS:
        got, response = request(server, method, path, body)
        assert got == status and list(response) == ["error"], (path, (body or b"")[:40], response)
        assert re.search(message, response["error"]), (message, response["error"])
        assert "\n" not in response["error"]
        assert request(server, "POST", PREDICT, good)[0] == 200


def test_pixels_0_and_255_are_accepted_exactly(server, served_base):
    pixels = np.zeros((2, 28, 28), np.uint8)
    pixels[0, 10:18, 12:16] = 255
    pixels[1] = 255
    pixels[1, 0, 0] = 0
    expected = signature_outputs(served_base, 1, pixels)
    status, rows = request(server, "POST", PREDICT, json.dumps({"instances": pixels.tolist()}))
    assert status == 200
    assert [p["classes"] for p in rows["predictions"]] == expected["classes"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in rows["predictions"]],
                               expected["probabilities"], atol=1e-5)  # all-255: large sums


def test_a_body_100000_lists_deep_gets_a_json_400_and_the_server_stays_healthy(roomy_server,
                                                                               digits):
    good = json.dumps({"instances": digits[0][:1].tolist()})
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for _ in range(2):
        status, content_type, data, _ = raw_request(roomy_server, "POST", PREDICT, deep)
        assert (status, content_type) == (400, "application/json"), (status, data[:200])
        assert json.loads(data) == {"error": "JSON Parse error: nested 100,001 levels deep, "
                                             "too deep to parse; each image must be 28 lists "
                                             "of 28 integers"}
        status, response = request(roomy_server, "POST", PREDICT, good)
        assert status == 200 and response["predictions"][0]["classes"] == 7


def _png_bomb(width, height, rows):
    """A grey PNG claiming width x height pixels whose IDAT is one deflate stream of `rows`
    zero rows (~1/1000 of their size): a small file that inflates to rows*width bytes."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    compressor, block = zlib.compressobj(9), b"\x00" * ((width + 1) * 1000)
    data = b"".join(compressor.compress(block) for _ in range(rows // 1000))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", data + compressor.flush()) + chunk(b"IEND", b""))


def test_draw_refuses_a_png_claiming_400_megapixels_from_its_header(roomy_server, digits):
    # Its data stops 1,000 rows short: decoding it would inflate 380 MB (seconds) and then
    # fail as "cannot decode", so the pixel-limit answer shows the header was read first.
    bomb = _png_bomb(20_000, 20_000, rows=19_000)
    assert images.image_size(bomb) == (20_000, 20_000)
    assert 300_000 < len(bomb) < 4 << 20, len(bomb)  # ~0.4 MB: under the server's limit
    status, content_type, data, seconds = raw_request(roomy_server, "POST", "/draw", bomb,
                                                      "image/png")
    assert (status, content_type) == (400, "application/json"), (status, data[:200])
    assert json.loads(data) == {"error": "drawing: 20000x20000 pixels is over the limit of "
                                         "40,000,000 (40 megapixels); scale the image down"}
    assert seconds < 2, f"{seconds:.2f} s: the image was decoded"
    good = json.dumps({"instances": digits[0][:1].tolist()})
    assert request(roomy_server, "POST", PREDICT, good)[0] == 200


def test_a_drawing_is_prepared_as_kerasnets_predict_prepares_a_file(server, served_base,
                                                                    tmp_path):
    page = np.full((140, 120, 1), 240.0)            # a dark "1" on a light page, off-centre
    page[15:125, 40:52] = 20.0
    png = tf.io.encode_png(page.astype(np.uint8)).numpy()
    (tmp_path / "one.png").write_bytes(png)
    status, drawn = request(server, "POST", "/draw", png, "image/png")
    assert status == 200 and drawn["version"] == "1"
    prepared = images.to_mnist(images.load_image(str(tmp_path / "one.png")))  # the CLI's path
    np.testing.assert_array_equal(np.asarray(drawn["prepared"], np.uint8), prepared)
    expected = signature_outputs(served_base, 1, prepared[None])
    assert drawn["digit"] == int(expected["classes"][0])
    np.testing.assert_allclose(drawn["probabilities"], expected["probabilities"][0], atol=1e-6)
    blank = tf.io.encode_png(np.full((50, 50, 1), 255, np.uint8)).numpy()
    assert request(server, "POST", "/draw", blank, "image/png") == (
        400, {"error": "drawing: no digit found: the image is blank"})


def test_a_version_exported_under_load_loses_no_request(served_base, digits, tmp_path):
    import shutil
    base = tmp_path / "mnist"
    shutil.copytree(served_base, base)
    images = digits[0][:1]
    body = json.dumps({"instances": images.tolist()}).encode()
    answers = []           # (started after version 2 was seen?, status, probabilities)
    seen_v2, stop = threading.Event(), threading.Event()

    def client(url):
        connection = connect(url)
        try:
            while not stop.is_set():
                after = seen_v2.is_set()
                try:
                    status, response = bench_serve.post(connection, PREDICT, body)
                    answers.append((after, status, response["predictions"][0]["probabilities"]))
                except (OSError, http.client.HTTPException, ValueError) as e:
                    answers.append((after, repr(e), None))
                    connection.close()
        finally:
            connection.close()

    with bench_serve.running_server(str(base), "--poll_seconds=0.1") as url:
        clients = [threading.Thread(target=client, args=(url,)) for _ in range(8)]
        for c in clients:
            c.start()
        try:
            deadline = time.monotonic() + 120
            while len(answers) < 300:  # the load is running
                assert time.monotonic() < deadline
                time.sleep(0.01)
            export.export_version(convnets.build_model("wide"), str(base))  # untrained: differs
            while request(url, "GET", "/v1/models/mnist")[1]["model_version_status"][0][
                    "version"] != "2":
                assert time.monotonic() < deadline, "version 2 was never served"
                time.sleep(0.02)
            seen_v2.set()
            switched_at = len(answers)
            while len(answers) < switched_at + 500:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            stop.set()
            for c in clients:
                c.join(timeout=60)
        assert request(url, "POST", "/v1/models/mnist/versions/1:predict", body)[0] == 404
    v1 = signature_outputs(base, 1, images)["probabilities"][0]
    v2 = signature_outputs(base, 2, images)["probabilities"][0]
    assert len(answers) >= 1000 and [a for a in answers if a[1] != 200] == []
    versions = [1 if np.allclose(p, v1, atol=1e-6) else 2 if np.allclose(p, v2, atol=1e-6)
                else None for _, _, p in answers]
    assert None not in versions                      # every answer is one version's, whole
    assert versions.count(1) >= 300 and versions.count(2) >= 500
    assert all(v == 2 for (after, _, _), v in zip(answers, versions) if after)


@pytest.mark.parametrize("args, message", [
    (["--model_base={empty}"], r"--model_base: .* holds no numbered SavedModel version"),
    (["--model_base={missing}"], r"--model_base: .* is not a directory"),
    (["--port=70000"], r"--port"),
    (["--model_name=a/b"], r"--model_name must be letters, digits"),
    (["--max_request_bytes=100"], r"--max_request_bytes"),
])
def test_bad_flags_get_one_line(served_base, tmp_path, args, message):
    args = [a.format(empty=tmp_path, missing=tmp_path / "nope") for a in args]
    if not any(a.startswith("--model_base") for a in args):
        args.append(f"--model_base={served_base}")
    proc = run_module("serve", *args, timeout=120)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and re.search(message, lines[0]), lines
    assert lines[0].startswith("FATAL Flags parsing error")


def test_serve_bench_reports_latency_throughput_and_errors(served_base):
    proc = run_module("bench", "--what=serve", "--requests=20", "--concurrency=1,3",
                      "--runtimes=tensorflow,litert", f"--model_base={served_base}", "--json",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    rows = [(r["runtime"], r["batching"], r["concurrency"]) for r in out["results"]]
    assert rows == [(runtime, batching, clients) for runtime in ("tensorflow", "litert")
                    for batching in (True, False) for clients in (1, 3)]
    for r in out["results"]:
        assert r["requests"] == 20 and r["errors"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["images_per_second"] > 0
