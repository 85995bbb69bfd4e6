"""kerasnets-bench: each benchmark runs briefly and reports what its README table shows."""

import inspect
import json
import re

import pytest

from conftest import COMMANDS, error_lines, run_module
from kerasnets.serving import runtimes
from kerasnets.training import recipe, seed_sweep
from kerasnets.bench import run as bench_run, serve_load, startup, throughput


def _json_line(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _table(proc) -> str:
    """What the command printed before its JSON line."""
    return "\n".join(proc.stdout.splitlines()[:-1])


def test_input_bench_reports_every_configuration(real_mnist):
    proc = run_module("bench", "--what=input", "--batch_sizes=16,64", "--timed_batches=5",
                      f"--data_dir={real_mnist[1]}", "--json")
    out = _json_line(proc)
    assert [(r["augment"], r["batch_size"]) for r in out["results"]] == [
        (False, 16), (False, 64), (True, 16), (True, 64)]
    assert all(r["images"] == 5 * r["batch_size"] and r["images_per_second"] > 0
               for r in out["results"])
    assert _table(proc) == throughput.format_input_table(out["results"])  # the same rows


def test_a_notebook_runs_a_benchmark_with_one_call(real_mnist):
    """kerasnets.bench.run.bench is what the command calls: rows and the table text, and
    the keywords left out are the flags' defaults."""
    rows, table = bench_run.bench("input", recipe.load("smoke"), data_dir=str(real_mnist[1]),
                                  batch_sizes=[8], timed_batches=2)
    assert [(r["augment"], r["batch_size"], r["images"]) for r in rows] == [(False, 8, 16),
                                                                            (True, 8, 16)]
    assert table == throughput.format_input_table(rows)
    with pytest.raises(ValueError, match="unknown benchmark 'nope'; the benchmarks are input"):
        bench_run.bench("nope", recipe.load("smoke"))


def test_a_keyword_left_out_means_what_a_flag_left_out_means():
    """bench()'s keyword defaults are the defaults kerasnets-bench --help shows."""
    shown = {}
    for name, body in re.findall(r"^  --(?:\[no\])?(\w+):(.*?)(?=^  --|\Z)",
                                 run_module("bench", "--help").stdout, re.MULTILINE | re.DOTALL):
        default = re.search(r"\(default: '([^']*)'\)", " ".join(body.split()))
        if default:
            shown[name] = default.group(1)
    library = {name: p.default for name, p in inspect.signature(bench_run.bench).parameters.items()
               if p.kind is p.KEYWORD_ONLY}
    read = {"seeds": lambda v: tuple(seed_sweep.parse_seeds(v)),
            "concurrency": lambda v: tuple(int(c) for c in v.split(",")),
            "compare_torch": lambda v: v == "true"}
    for name in ("timed_batches", "repeats", "batchnorm", "compare_torch", "calls", "seeds",
                 "requests", "concurrency", "inference"):
        assert read.get(name, type(library[name]))(shown[name]) == library[name], name
    # None: the benchmark's own choice, as when the flag is not given
    assert library["batch_sizes"] is None and library["runtimes"] is None
    assert shown["batch_sizes"] == ",".join(map(str, bench_run.INPUT_BATCH_SIZES))


def test_inference_leaves_out_runtimes_whose_file_a_version_lacks(tmp_path):
    for runtime in ("tensorflow", "onnx"):
        (tmp_path / runtimes.FILES[runtime]).write_bytes(b"")
    said = []
    assert bench_run.present_runtimes(str(tmp_path), None,
                                      log=said.append) == ["tensorflow", "onnx"]
    assert said == [f"{r}: left out, {tmp_path} has no {runtimes.FILES[r]} (kerasnets-export "
                    f"--formats=saved_model,...,{r} writes it)" for r in ("litert", "litert_int8")]
    said.clear()  # asked for by name: all of them, a missing file being the runtime's error
    assert bench_run.present_runtimes(str(tmp_path), ["onnx", "litert"],
                                      log=said.append) == ["onnx", "litert"] and not said
    assert seed_sweep.child_data_flags("cache", None) == ["--data_dir=cache"]
    assert seed_sweep.child_data_flags(None, "m.npz") == ["--mnist_path=m.npz"]


def test_train_bench_reports_images_per_second(real_mnist):
    proc = run_module("bench", "--what=train", "--model=default", "--batch_size=16",
                      "--timed_batches=5", "--repeats=1", f"--data_dir={real_mnist[1]}", "--json")
    out = _json_line(proc)
    assert out["what"] == "train" and out["framework"] == "keras" and out["model"] == "default"
    assert (out["batch_size"], out["steps"]) == (16, 5)  # --batch_size, --timed_batches
    assert out["images_per_second"] > 0 and out["all_images_per_second"] == [
        out["images_per_second"]]
    assert len(out["results"]) == 1 and out["results"][0]["images_per_second"] == (
        out["images_per_second"])  # no PyTorch row without --compare_torch


def test_inference_bench_reports_every_runtime_side_by_side(real_mnist):
    """One run: each runtime of one exported version (an untrained model: accuracy is
    chance), and the Keras model called directly."""
    proc = run_module("bench", "--what=inference", "--calls=100", "--batch_sizes=1,8",
                      f"--data_dir={real_mnist[1]}", "--json")
    out = _json_line(proc)
    rows = {r["path"]: r for r in out["results"]}
    assert list(rows) == ["tensorflow", "onnx", "litert", "litert_int8", "keras model(x)"]
    for r in rows.values():
        assert r["calls"] == 100 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["images_per_second_batch_1"] > 0 and r["images_per_second_batch_8"] > 0
    # One untrained model in every runtime: the float ones score as the Keras model does (to
    # a few near-ties of its nearly flat outputs), int8 close to them; none far above chance
    # (a trained or another model, or labels read in another order, would not give this).
    reference = rows["keras model(x)"]["test_accuracy"]
    assert 0.0 < reference < 0.5
    for path in ("tensorflow", "onnx", "litert"):
        assert rows[path]["test_accuracy"] == pytest.approx(reference, abs=0.002), path
    assert rows["litert_int8"]["test_accuracy"] == pytest.approx(reference, abs=0.05)
    assert rows["tensorflow"]["p50_vs_tensorflow"] == 1.0
    assert rows["litert"]["p50_vs_tensorflow"] == pytest.approx(
        rows["tensorflow"]["p50_ms"] / rows["litert"]["p50_ms"], rel=0.01)
    assert rows["litert_int8"]["bytes"] < rows["litert"]["bytes"] < rows["tensorflow"]["bytes"]
    assert _table(proc) == throughput.format_inference_table(out["results"], [1, 8])
    assert "keras model(x)" in proc.stdout and "p50 x TF" in proc.stdout


def test_torch_comparison_needs_the_seed_model():
    proc = run_module("bench", "--what=train", "--model=default", "--compare_torch")
    assert proc.returncode == 1
    assert "--compare_torch needs --what=train --model=seed" in error_lines(proc.stderr)[0]


def test_the_first_epoch_at_a_target_skips_untested_epochs():
    """What results.json's first_epoch_at_target (read by the bench) is made of."""
    assert recipe.first_epoch_at([0.98, 0.993, 0.994, 0.995], 0.994) == 3
    assert recipe.first_epoch_at([0.98, None, None, 0.996], 0.994) == 4
    assert recipe.first_epoch_at([0.98, 0.99, None, 0.993], 0.994) is None


def test_speedups_compare_means_over_the_seeds_that_got_there():
    from kerasnets.bench import time_to_accuracy as bench_time
    rows = [dict(seed=s, final_test_accuracy=a, train_seconds=t, startup_seconds=5.0,
                 epoch_at_target=None, seconds_to_target=None)
            for s, a, t in ((0, 0.9941, 9.0), (1, 0.9939, 11.0))]
    report = dict(recipe="fast", target=0.994, rows=rows, **bench_time._stats(rows))
    default = [dict(epoch_at_target=e, seconds_to_target=t) for e, t in ((4, 33.0), (9, 75.0),
                                                                         (None, None))]
    report.update(pytorch_course_recipe=dict(epoch=11, seconds=200.0), default_recipe=default,
                  **bench_time.speedups(report, dict(epoch=11, seconds=200.0), default))
    # mean recipe time 10 s; default's mean over the two seeds that crossed: 54 s
    assert report["speedup_vs_pytorch"] == 20.0 and report["speedup_vs_default"] == 5.4
    assert report["default_seeds_at_target"] == 2
    text = bench_time.format_report(report)
    assert ("the default recipe to 99.4 % at the same seeds: epochs 4 (33.0 s), 9 (75.0 s), —; "
            "mean 54.0 s (2 of 3 seeds got there)") in text
    assert text.endswith("speed-up: 20.0x the course's recipe in PyTorch, 5.4x the default recipe")


def test_time_to_accuracy_bench_on_the_smoke_recipe(real_mnist, smoke_run):
    # The smoke recipe at seed 1 is the configuration of the smoke_run fixture
    # (tests/conftest.py): deterministic, so the bench's kerasnets-train process must give
    # exactly its figures. Those depend on the CPU's kernels (77.10 % after epoch 1 and
    # 92.50 % after epoch 2 on ours), so the target is set between this machine's two epochs,
    # where the bench has to find the crossing at epoch 2.
    _, smoke, _ = smoke_run
    first, second = smoke["test_accuracy"]
    target = round((first + second) / 2, 3)  # 0.848 on our CPU
    assert first < target <= second
    proc = run_module("bench", "--what=time_to_accuracy", "--recipe=smoke",
                      "--seeds=1", f"--target={target}", "--json", timeout=300,
                      env={"KERASNETS_DATA_DIR": str(real_mnist[1])})
    report = _json_line(proc)["results"][0]
    (row,) = report["rows"]
    assert row["seed"] == 1 and row["epochs"] == 2 and row["epoch_at_target"] == 2
    final = smoke["final_test_accuracy"]
    assert row["final_test_accuracy"] == final  # exactly the in-process run's
    assert 0.85 <= final <= 0.97  # a trained smoke model (chance is 0.10): ours 0.925
    assert 0 < row["seconds_to_target"] <= row["train_seconds"] + 0.01
    assert row["startup_seconds"] > 0
    assert report["mean_final_test_accuracy"] == report["worst_final_test_accuracy"] == final
    assert (f"final test accuracy {100 * final:.2f} ± 0.00 % (worst {100 * final:.2f} %)"
            in proc.stdout)


def test_time_to_accuracy_needs_a_good_recipe(tmp_path):
    (tmp_path / "bad.flags").write_text("--recipe=smoke\n--export_base=x\n")
    for args, message in (([f"--flagfile={tmp_path / 'bad.flags'}"], "Unknown command line flag 'export_base'"),
                          (["--recipe=smoke", "--seeds=2-1"], "runs backwards"),
                          (["--recipe=nope"], "value should be one of <default|fast|seed|smoke|wide>")):
        proc = run_module("bench", "--what=time_to_accuracy", *args)
        assert proc.returncode == 1 and message in error_lines(proc.stderr)[0], proc.stderr


def test_startup_bench_measures_each_command_in_a_fresh_process():
    proc = run_module("bench", "--what=startup", "--runtimes=tensorflow,litert", "--repeats=1",
                      "--json", timeout=600)
    out = _json_line(proc)
    rows = out["results"]
    assert [r["what"] for r in rows] == [
        "import tensorflow", *(f"kerasnets-{name} --help" for name in COMMANDS),
        "kerasnets-predict --runtime=tensorflow (1 image)",
        "kerasnets-predict --runtime=litert (1 image)",
        "kerasnets-serve --runtime=tensorflow (first answer)",
        "kerasnets-serve --runtime=litert (first answer)"]
    scale = rows[0]
    for r in rows:
        assert r["share_of_import"] == pytest.approx(r["seconds"] / scale["seconds"], abs=2e-3)
        heavy = r["runtime"] == "tensorflow" or r is scale
        assert (r["goal"] is None) == heavy and (r["met"] is None) == heavy, r
        # Memory, not time, is what a test can hold on any machine: a process that loads
        # TensorFlow peaks near the import's own figure, one that does not far below it.
        if heavy:
            assert r["peak_mb"] > 0.6 * scale["peak_mb"], r
        else:
            assert 10 < r["peak_mb"] < 0.4 * scale["peak_mb"], r
    assert _table(proc) == startup.format_startup_table(rows)


def test_a_startup_goal_is_met_only_within_its_time_share_and_memory():
    rows = [dict(what="import tensorflow", kind="scale", runtime=None, seconds=4.0, peak_mb=700),
            dict(what="a", kind="help", runtime=None, seconds=0.8, peak_mb=249),
            dict(what="b", kind="help", runtime=None, seconds=0.81, peak_mb=30),
            dict(what="c", kind="predict", runtime="onnx", seconds=0.1, peak_mb=250),
            dict(what="d", kind="serve", runtime="litert", seconds=1.3, peak_mb=299),
            dict(what="e", kind="serve", runtime="tensorflow", seconds=3.0, peak_mb=720)]
    goals = startup.with_goals(rows)
    assert [r["met"] for r in goals] == [None, True, False, False, True, None]
    assert [r["goal"] for r in goals][1:5] == ["<= 1/5 and < 250 MB"] * 3 + ["<= 1/3 and < 300 MB"]


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """An untrained `default` model exported with the default formats (no int8 file)."""
    from kerasnets.models import convnets
    from kerasnets.serving import export

    base = tmp_path_factory.mktemp("export") / "mnist"
    version = export.export_version(convnets.build_model("default"), str(base))
    assert sorted(r for r in runtimes.RUNTIMES if runtimes.has_file(version, r)) == [
        "litert", "onnx", "tensorflow"]
    return base, version


def test_serve_bench_on_a_default_export_measures_the_runtimes_it_has(default_export,
                                                                      real_mnist):
    """Without --runtimes: each runtime whose file the version has, with batching on and off,
    and one line for litert_int8, left out (it once tried every runtime and stopped)."""
    base, version = default_export
    proc = run_module("bench", "--what=serve", f"--model_base={base}", "--requests=10",
                      "--concurrency=1,2", f"--data_dir={real_mnist[1]}", "--json", timeout=600)
    out = _json_line(proc)
    assert [(r["runtime"], r["batching"], r["concurrency"]) for r in out["results"]] == [
        (runtime, batching, clients) for runtime in ("tensorflow", "onnx", "litert")
        for batching in (True, False) for clients in (1, 2)]
    for r in out["results"]:
        assert r["requests"] == 10 and r["errors"] == 0 and 0 < r["p50_ms"] <= r["p99_ms"], r
    lines = proc.stdout.splitlines()
    assert lines[0] == (f"litert_int8: left out, {version} has no model_int8.tflite "
                        "(kerasnets-export --formats=saved_model,...,litert_int8 writes it)")
    assert "\n".join(lines[1:-1]) == serve_load.format_serve_table(out["results"])


def test_serve_bench_stops_on_a_runtime_the_version_lacks(default_export, real_mnist):
    base, version = default_export
    proc = run_module("bench", "--what=serve", f"--model_base={base}", "--requests=10",
                      "--runtimes=litert,litert_int8", f"--data_dir={real_mnist[1]}")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [
        f"kerasnets-bench: error: {version} has no model_int8.tflite for --runtime=litert_int8; "
        "export it with kerasnets-export --formats=saved_model,litert_int8"]
