"""Multi-worker training (tf.distribute.MultiWorkerMirroredStrategy) with two local workers."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, error_lines
from kerasnets.models import convnets
from kerasnets.training import distributed, fit, recipe, run_dir

WORKER_TIMEOUT = 240  # seconds for a whole smoke run of one worker


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(model_dir, cache_dir, *extra, ports=None):
    ports = ports or free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "kerasnets.cli.train", "--recipe=smoke",
             "--strategy=multiworker", f"--model_dir={model_dir}",
             f"--data_dir={cache_dir}", *extra],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs, ports


def finish(procs, timeout=WORKER_TIMEOUT):
    """(returncode, stdout, stderr) of each worker; every process is gone afterwards."""
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return outputs


def test_multiworker_two_local_workers_train_one_model(real_mnist, tmp_path):
    (chief, worker) = finish(start_workers(tmp_path, real_mnist[1])[0])
    assert chief[0] == 0 and worker[0] == 0, chief[2][-2000:] + worker[2][-2000:]
    assert "worker 1 of 2: done (the chief, worker 0, wrote the outputs)" in worker[1]
    fingerprints = [re.search(r"worker (\d): final weights (\w+), test accuracy ([\d.]+)", out)
                    for _, out, _ in (chief, worker)]
    assert [m.group(1) for m in fingerprints] == ["0", "1"]
    assert fingerprints[0].group(2) == fingerprints[1].group(2)  # synchronous: same weights

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["strategy"] == "MultiWorkerMirroredStrategy" and results["workers"] == 2
    assert results["replicas"] == 2
    assert results["train_loss"][1] < results["train_loss"][0]
    assert results["final_test_accuracy"] > 0.6  # the smoke run: 0.925 (chance: 0.10)
    # The chief's saved model holds the workers' final weights and scores what they scored.
    model = convnets.load_model(str(tmp_path / "model.keras"))
    assert distributed.weights_fingerprint(model) == fingerprints[1].group(2)
    (_, _), (x_test, y_test) = real_mnist[0]
    _, accuracy, _ = fit.evaluate(model, x_test[:1000], y_test[:1000])
    assert accuracy == pytest.approx(float(fingerprints[1].group(3)), abs=1e-4)
    assert accuracy == pytest.approx(results["test_accuracy"][-1], abs=1e-6)
    # Only the chief wrote files; the other worker's scratch directory is gone.
    assert sorted(os.listdir(tmp_path)) == sorted(run_dir.OUTPUT_FILES + (
        "tensorboard", run_dir.LOCK_FILE, run_dir.RECIPE_FILE, run_dir.DESIGN_FILE))
    # The smoke recipe asks for deterministic ops, which the collectives do not promise: each
    # worker says so, and every record holds what ran.
    for _, out, _ in (chief, worker):
        assert ("op determinism: off under --strategy=multiworker (its collective ops do not "
                "promise it); recipe.json and results.json record deterministic: false") in out
    assert results["flags"]["deterministic"] is False and results["flags"]["strategy"] == (
        "multiworker")
    recorded = json.loads((tmp_path / run_dir.RECIPE_FILE).read_text())
    assert recorded.pop(run_dir.RESOLVED_PRECISION) == results["precision"] == "float32"
    assert recorded == results["flags"]
    assert recipe.load("smoke").deterministic


def test_multiworker_without_tf_config_is_one_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "kerasnets.cli.train", "--recipe=smoke",
                           "--strategy=multiworker", f"--model_dir={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        "kerasnets-train: error: --strategy=multiworker needs the TF_CONFIG environment variable "
        "(see README: training on several machines)"]
    assert not (tmp_path / "run").exists()


def test_multiworker_killed_worker_stops_the_job_and_a_restart_resumes(real_mnist, tmp_path):
    procs, _ = start_workers(tmp_path, real_mnist[1], "--epochs=3", "--collective_timeout=30")
    try:
        deadline = time.time() + WORKER_TIMEOUT
        while not (tmp_path / ".worker-1" / "backup" / "epoch-0001" / "state.json").exists():
            assert procs[1].poll() is None and time.time() < deadline, "no epoch-1 backup"
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)  # worker 1 dies in epoch 2
        killed_at = time.time()
        (chief, _) = finish(procs, timeout=60)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert chief[0] == 2 and time.time() - killed_at < 60
    message = [line for line in error_lines(chief[2]) if line.startswith("kerasnets-train:")]
    assert len(message) == 1 and re.match(
        r"kerasnets-train: error: worker 0: lost contact with the cluster in epoch 2 \(\w+\); "
        r"restart every worker with the same command to resume from epoch 1", message[0])
    assert not (tmp_path / "results.json").exists()

    # Started again with another recipe: every worker refuses, before the cluster forms, and
    # the checkpoints stay as they were.
    checkpoints = {p: p.read_bytes() for p in tmp_path.rglob("*")
                   if p.is_file() and "backup" in p.parts}
    (chief, worker) = finish(start_workers(tmp_path, real_mnist[1], "--epochs=4")[0], timeout=120)
    for (code, out, err), where in ((chief, tmp_path), (worker, tmp_path / ".worker-1")):
        assert code == 1 and error_lines(err) == [
            f"kerasnets-train: error: --model_dir: {where} holds a run of another recipe "
            "(--epochs 3 → 4); resume it with --epochs=3, or start afresh with --overwrite"], err
    assert {p: p.read_bytes() for p in checkpoints} == checkpoints

    (chief, worker) = finish(start_workers(tmp_path, real_mnist[1], "--epochs=3")[0])
    assert chief[0] == 0 and worker[0] == 0, chief[2][-2000:]
    assert "worker 0: resuming from" in chief[1] and "(epoch 1 of 3 done)" in chief[1]
    assert "worker 1: resuming from" in worker[1]
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]
    assert not (tmp_path / ".worker-1").exists() and not (tmp_path / "backup").exists()
