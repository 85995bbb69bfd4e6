"""kerasnets-serve in every runtime under concurrent clients: each request gets its own answer,
whether requests are batched together or not."""

import http.client
import json
import threading
import time

import numpy as np
import pytest
from kerasnets import export, runtimes
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
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
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
    assert [len(answers) for answers in found] == [REQUESTS_PER_CLIENT] * CLIENTS
    answers = [(i, got) for i, client in enumerate(found) for got in client]
    wrong = [got for i, got in answers if got != i]
    assert not wrong, (f"{len(wrong)} of {len(answers)} answers were not the client's own: "
                       f"{sum(g >= 0 for g in wrong)} another client's, {wrong.count(-2)} "
                       f"nobody's, {wrong.count(-1)} failed")
