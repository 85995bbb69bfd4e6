"""kerasnets-bench --what=serve: a real kerasnets-serve process under load from local clients.

`running_server()` starts `kerasnets-serve` on a free port of 127.0.0.1 and stops it
in every case; `load()` sends N single-image `:predict` requests from C client
threads, each on its own keep-alive connection, and reports latency percentiles,
images/s and errors. `bench_serve()` does both for each --batching setting, so the
two are compared in one run on the same machine.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from typing import Iterator, Sequence

import numpy as np

from kerasnets import errors

URL_LINE = re.compile(r" on (http://[^ ]+) \(REST")


SERVE_COMMAND = (sys.executable, "-m", "kerasnets.cli.serve")


@contextlib.contextmanager
def running_server(model_base: str, *args: str, startup_timeout: float = 180,
                   command: Sequence[str] = SERVE_COMMAND, cwd: str | None = None,
                   env: dict | None = None) -> Iterator[str]:
    """Yields the base URL of a kerasnets-serve process (`command`: this Python's, or an
    installed kerasnets-serve) on a free 127.0.0.1 port; the process is stopped (SIGTERM,
    then SIGKILL) when the block ends, whatever happens in it."""
    with server_process(model_base, *args, startup_timeout=startup_timeout, command=command,
                        cwd=cwd, env=env) as (_, url):
        yield url


@contextlib.contextmanager
def server_process(model_base: str, *args: str, startup_timeout: float = 180,
                   command: Sequence[str] = SERVE_COMMAND, cwd: str | None = None,
                   env: dict | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """running_server, yielding (the process, its base URL): for what is measured from
    outside it (its memory)."""
    stderr = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [*command, f"--model_base={model_base}", "--port=0", "--host=127.0.0.1", *args],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=cwd, env=env)
    try:
        url = _wait_for_url(proc, startup_timeout, stderr)
        yield proc, url
    finally:
        stderr.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


class ServerStartError(errors.KerasnetsError, RuntimeError):
    """kerasnets-serve exited, or printed no URL in time; the message ends with its error."""


def _wait_for_url(proc: subprocess.Popen, timeout: float, stderr) -> str:
    found: list[str] = []

    def read():
        for line in proc.stdout:
            match = URL_LINE.search(line)
            if match:
                found.append(match.group(1))
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        stderr.seek(0)
        said = [line for line in stderr.read().splitlines() if "error" in line.lower()]
        raise ServerStartError(f"kerasnets-serve did not start (exit status {proc.poll()}): "
                               f"{said[-1] if said else f'no URL within {timeout:.0f} s'}")
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return found[0]


def _drain(stream) -> None:
    """Reads the server's later lines (version switches) so its pipe never fills."""
    try:
        for _ in stream:
            pass
    except (ValueError, OSError):  # closed when the server is stopped
        pass


def connect(url: str, timeout: float = 60) -> http.client.HTTPConnection:
    """A keep-alive connection to a server's base URL (http://host:port, as the start line
    prints it)."""
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def post(connection: http.client.HTTPConnection, path: str, body: bytes,
         content_type: str = "application/json") -> tuple[int, dict]:
    """One POST on a keep-alive connection: (status, parsed JSON body)."""
    connection.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def load(url: str, path: str, body: bytes, requests: int, concurrency: int,
         images_per_request: int = 1) -> dict:
    """`requests` POSTs of `body` to `url + path` from `concurrency` threads."""
    latencies: list[float] = []
    errors = [0]
    next_request = iter(range(requests))
    lock = threading.Lock()

    def client():
        connection = connect(url)
        mine = []
        try:
            while True:
                with lock:
                    if next(next_request, None) is None:
                        break
                start = time.perf_counter()
                try:
                    status, _ = post(connection, path, body)
                    ok = status == 200
                except (OSError, http.client.HTTPException, ValueError):
                    ok = False
                    connection.close()
                mine.append(time.perf_counter() - start)
                if not ok:
                    with lock:
                        errors[0] += 1
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return dict(requests=requests, concurrency=concurrency, errors=errors[0],
                p50_ms=round(float(np.percentile(ms, 50)), 2),
                p99_ms=round(float(np.percentile(ms, 99)), 2),
                images_per_second=round(requests * images_per_request / elapsed))


def bench_serve(requests: int, concurrencies: Sequence[int], model_base: str | None = None,
                batching: Sequence[bool] = (True, False),
                runtimes: Sequence[str] = ("tensorflow", "litert"),
                inference: str = "auto", mnist=None) -> list[dict]:
    """Single-image requests (a real test digit, row format) at each concurrency, for each
    runtime and --batching setting, one server after the other in one run, each serving
    the newest version. Without `model_base`, an untrained `default` model is exported
    with every format (serving speed does not depend on the weights' values). A runtime
    whose file the newest version lacks is refused (runtimes.MissingRuntimeFileError, one
    line) before any server starts: an older version's file is never measured instead."""
    from kerasnets.data import offline
    from kerasnets.models import convnets
    from kerasnets import errors
    from kerasnets.serving import export, runtimes as runtime_files

    mnist = mnist or offline.load_mnist()
    body = json.dumps({"instances": mnist[1][0][:1].tolist()}).encode()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        if model_base is None:
            model_base = os.path.join(scratch, "mnist")
            export.tf_logger_quiet()
            export.export_version(convnets.build_model("default"), model_base,
                                  formats=export.FORMATS,
                                  calibration_images=export.calibration_sample(mnist[0][0]))
        newest = export.latest_version_dir(model_base)
        if newest is None:
            raise errors.ModelFileError(f"--model_base: {model_base} holds no version")
        for runtime in runtimes:
            if not runtime_files.has_file(newest, runtime):
                runtime_files.load(newest, runtime)  # raises MissingRuntimeFileError, one line
        for runtime in runtimes:
            for batched in batching:
                with running_server(model_base, f"--batching={str(batched).lower()}",
                                    f"--runtime={runtime}", f"--inference={inference}") as url:
                    path = "/v1/models/mnist:predict"
                    load(url, path, body, 100, 4)  # warm-up: traces, connections
                    for c in concurrencies:
                        results.append(dict(runtime=runtime, batching=batched,
                                            **load(url, path, body, requests, c)))
    return results


def format_serve_table(results: Sequence[dict]) -> str:
    head = (f"{'runtime':>11} {'batching':>8} {'clients':>7} {'requests':>8} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'images/s':>9} {'errors':>6}")
    rows = [f"{r['runtime']:>11} {'on' if r['batching'] else 'off':>8} {r['concurrency']:>7} "
            f"{r['requests']:>8} "
            f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['images_per_second']:>9,} "
            f"{r['errors']:>6}" for r in results]
    return "\n".join([head, *rows])
