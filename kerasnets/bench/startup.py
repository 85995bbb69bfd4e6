"""kerasnets-bench --what=startup: what each command costs to start, beside TensorFlow's import.

Every figure is a fresh process, as a person at a terminal or a server started by
a scaler pays it: each command's `--help`; `kerasnets-predict` of one image file
in each runtime; `kerasnets-serve` in each runtime from its start to the first
answered `:predict`, then its memory after 1,000 more requests. Wall seconds are
the median of `repeats` runs; memory is the process's peak resident set as the
kernel counts it (wait4's ru_maxrss for a command that exits, /proc's VmHWM
for the server while it runs). `python -c "import tensorflow"` is measured in the
same run, and each figure is also given as a share of its seconds.

The goals (GOALS) are those of the light paths: help, and predicting or serving
a LiteRT or ONNX file, never need TensorFlow. The TensorFlow runtime's rows have
no goal: they pay the import by design.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from kerasnets.bench import serve_load

LIGHT_RUNTIMES = ("onnx", "litert", "litert_int8")
SERVE_REQUESTS = 1000
# (largest share of the TensorFlow import's wall seconds, largest peak MB) per kind of row
GOALS = {"help": (1 / 5, 250), "predict": (1 / 5, 250), "serve": (1 / 3, 300)}
IMPORT_TENSORFLOW = (sys.executable, "-c", "import tensorflow")


def commands() -> list[str]:
    """The package's commands (kerasnets-NAME: NAME), from its installed console scripts."""
    return [entry.name.removeprefix("kerasnets-")
            for entry in importlib.metadata.entry_points(group="console_scripts")
            if entry.value.startswith("kerasnets.cli.")]


def module_command(name: str) -> tuple[str, ...]:
    """kerasnets-<name> as this Python runs it (the console script is the same module)."""
    return (sys.executable, "-m", f"kerasnets.cli.{name}")


# Runs a command and writes its wall seconds, peak resident KB and exit status to the file
# named first. A small launcher of its own, because the kernel counts into a process's peak
# the memory of the process it was spawned from (the benchmark holds TensorFlow).
_LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status)], f)
"""


def timed_process(argv: Sequence[str], timeout: float = 600) -> dict:
    """Runs argv to its end: wall seconds, peak resident MB, exit status and output."""
    with tempfile.TemporaryDirectory() as scratch:
        measured = os.path.join(scratch, "measured.json")
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, measured, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: stopped whole
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        with open(measured) as f:
            seconds, peak_kb, returncode = json.load(f)
    return dict(seconds=seconds, peak_mb=peak_kb / 1024, returncode=returncode,
                output=output.decode("utf-8", "replace"))


def _process_memory_mb(pid: int) -> float | None:
    """The process's peak resident MB so far (Linux's /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def serve_startup(model_base: str, runtime: str, body: bytes,
                  requests: int = SERVE_REQUESTS) -> dict:
    """kerasnets-serve in `runtime`: seconds from its start to the first answered :predict,
    and its peak resident MB after `requests` more single-image requests."""
    path = "/v1/models/mnist:predict"
    start = time.perf_counter()
    with serve_load.server_process(model_base, f"--runtime={runtime}") as (proc, url):
        connection = serve_load.connect(url)
        try:
            status, _ = serve_load.post(connection, path, body)
            seconds = time.perf_counter() - start
            statuses = {status} | {serve_load.post(connection, path, body)[0]
                                   for _ in range(requests)}
        finally:
            connection.close()
        peak_mb = _process_memory_mb(proc.pid)
    if statuses != {200}:
        raise RuntimeError(f"kerasnets-serve --runtime={runtime} answered {sorted(statuses)}")
    return dict(seconds=seconds, peak_mb=peak_mb)


def _median(runs: list[dict]) -> dict:
    """The runs' median seconds and their largest peak memory."""
    return dict(seconds=statistics.median(r["seconds"] for r in runs),
                peak_mb=max((r["peak_mb"] for r in runs if r["peak_mb"] is not None),
                            default=None))


def _checked(run: dict, what: str) -> dict:
    if run["returncode"] != (1 if what.endswith("--help") else 0):  # absl's --help exits 1
        raise RuntimeError(f"{what} exited with {run['returncode']}: {run['output'][-500:]}")
    return run


def bench_startup(version_dir: str, image_path: str, runtimes: Sequence[str],
                  repeats: int = 3, requests: int = SERVE_REQUESTS) -> list[dict]:
    """Rows of (what, kind, runtime, seconds, peak_mb), `import tensorflow` first; then
    each command's --help, a one-image prediction and a served first answer per runtime."""
    import numpy as np

    from kerasnets.data import images

    def measure(what: str, kind: str, runtime: str | None, argv: Sequence[str]) -> dict:
        runs = [_checked(timed_process(argv), what) for _ in range(repeats)]
        return dict(what=what, kind=kind, runtime=runtime, **_median(runs))

    rows = [measure("import tensorflow", "scale", None, IMPORT_TENSORFLOW)]
    for name in commands():
        rows.append(measure(f"kerasnets-{name} --help", "help", None,
                            (*module_command(name), "--help")))
    for runtime in runtimes:
        rows.append(measure(f"kerasnets-predict --runtime={runtime} (1 image)", "predict",
                            runtime, (*module_command("predict"), f"--model_path={version_dir}",
                                      f"--runtime={runtime}", image_path)))
    digit = images.to_mnist(images.load_image(image_path))
    body = json.dumps({"instances": np.asarray(digit)[None].tolist()}).encode()
    for runtime in runtimes:
        runs = [serve_startup(os.path.dirname(version_dir), runtime, body, requests)
                for _ in range(repeats)]
        rows.append(dict(what=f"kerasnets-serve --runtime={runtime} (first answer)",
                         kind="serve", runtime=runtime, requests=requests, **_median(runs)))
    return with_goals(rows)


def with_goals(rows: list[dict]) -> list[dict]:
    """Each row with its share of the TensorFlow import's seconds and, for a light path, its
    goal and whether it is met."""
    scale = next(r for r in rows if r["kind"] == "scale")["seconds"]
    out = []
    for row in rows:
        light = row["kind"] == "help" or row["runtime"] in LIGHT_RUNTIMES
        goal = GOALS.get(row["kind"]) if light else None
        share = row["seconds"] / scale
        met = (None if goal is None or row["peak_mb"] is None  # no memory figure: unknown
               else share <= goal[0] and row["peak_mb"] < goal[1])
        out.append(dict(row, share_of_import=round(share, 3), seconds=round(row["seconds"], 3),
                        peak_mb=None if row["peak_mb"] is None else round(row["peak_mb"], 1),
                        goal=None if goal is None else
                        f"<= 1/{round(1 / goal[0])} and < {goal[1]} MB", met=met))
    return out


def format_startup_table(rows: Sequence[dict]) -> str:
    width = max(len(r["what"]) for r in rows)
    head = (f"{'':<{width}} {'wall s':>7} {'x import':>8} {'peak MB':>8}  {'goal':<20} met")
    lines = [head]
    for r in rows:
        memory = "—" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['what']:<{width}} {r['seconds']:>7.2f} {r['share_of_import']:>8.2f} "
                     f"{memory:>8}  {r['goal'] or '':<20} {met}".rstrip())
    serve = [r for r in rows if r["kind"] == "serve"]
    if serve:
        lines.append(f"serve: seconds to its first answer; peak MB after "
                     f"{serve[0]['requests']:,} more requests")
    return "\n".join(lines)
