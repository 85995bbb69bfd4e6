"""kerasnets-bench: each benchmark runs briefly and reports what its README table shows."""

import json

from conftest import error_lines, run_module


def _json_line(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_input_bench_reports_every_configuration(real_mnist):
    out = _json_line(run_module("bench", "--what=input", "--batch_sizes=16,64", "--steps=5",
                                f"--data_dir={real_mnist[1]}", "--json"))
    assert [(r["augment"], r["batch_size"]) for r in out["results"]] == [
        (False, 16), (False, 64), (True, 16), (True, 64)]
    assert all(r["images"] == 5 * r["batch_size"] and r["images_per_second"] > 0
               for r in out["results"])


def test_train_bench_reports_images_per_second(real_mnist):
    out = _json_line(run_module("bench", "--what=train", "--model=default", "--batch_size=16",
                                "--steps=5", "--repeats=1", f"--data_dir={real_mnist[1]}",
                                "--json"))
    assert out["what"] == "train" and out["framework"] == "keras" and out["model"] == "default"
    assert out["images_per_second"] > 0 and out["all_images_per_second"] == [
        out["images_per_second"]]


def test_inference_bench_reports_latency_and_throughput_per_path():
    out = _json_line(run_module("bench", "--what=inference", "--calls=100", "--batch_sizes=1,8",
                                "--json"))
    paths = [r["path"] for r in out["results"]]
    assert paths == ["savedmodel signature", "keras model(x)", "keras predict"]
    for r in out["results"]:
        assert r["calls"] == 100 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["images_per_second_batch_1"] > 0 and r["images_per_second_batch_8"] > 0


def test_torch_comparison_needs_the_seed_model():
    proc = run_module("bench", "--what=train", "--model=default", "--compare_torch")
    assert proc.returncode == 1
    assert "--compare_torch needs --what=train --model=seed" in error_lines(proc.stderr)[0]
