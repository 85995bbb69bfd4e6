"""kerasnets-sweep: real kerasnets-train runs per seed, the summary read back from them,
resume after a kill, and bad values refused before anything is written."""

import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, error_lines, run_module
from kerasnets.training import fit, recipe
from kerasnets.training import seed_sweep as sweep


@pytest.fixture(scope="module")
def smoke_sweep(real_mnist, tmp_path_factory):
    """flags/smoke.flags at seeds 0 and 1 (the data dir from the environment)."""
    out_dir = tmp_path_factory.mktemp("sweep") / "smoke"
    env = dict(os.environ, KERASNETS_DATA_DIR=str(real_mnist[1]))
    proc = subprocess.run([sys.executable, "-m", "kerasnets.cli.sweep", "--recipe=smoke",
                           "--seeds=0-1", f"--out_dir={out_dir}", "--target=0.85"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out_dir, proc.stdout


def test_the_summary_holds_each_seeds_own_figures(smoke_sweep, smoke_run):
    out_dir, stdout = smoke_sweep
    assert sorted(os.listdir(out_dir)) == [".sweep.lock", "logs", "seed-0", "seed-1", "seeds.png",
                                           "summary.csv", "summary.json"]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [r["seed"] for r in summary["rows"]] == [0, 1]
    for row in summary["rows"]:
        results = json.loads((out_dir / f"seed-{row['seed']}" / "results.json").read_text())
        assert results["flags"]["seed"] == row["seed"]  # the sweep's seed, not the flagfile's 1
        assert row["last_three"] == results["test_accuracy"][-3:]  # two epochs: both
        assert row["last_three_min"] == min(results["test_accuracy"][-3:])
        assert row["best"] == results["best_test_accuracy"]
        assert row["final"] == results["final_test_accuracy"]
        # the sweep's --target=0.85 is the recipe's: results.json holds it and its first epoch
        assert results["target"] == summary["target"] == 0.85
        first, second = results["test_accuracy"]
        assert row["first_epoch_at_target"] == (1 if first >= 0.85 else 2 if second >= 0.85
                                                else None)
        assert row["seconds"] == round(sum(results["seconds_per_epoch"]), 1)
        assert row["meets_target"] == (min(results["test_accuracy"][-3:]) >= 0.85)
    # seed 1 is the smoke configuration itself (tests/conftest.py): a deterministic run, so
    # the sweep's kerasnets-train process repeats the smoke_run fixture's figures exactly.
    # Those depend on the CPU's kernels (77.10 % and 92.50 % on ours): ranges for both
    # seeds, as in test_training.py's test_the_smoke_model_learns (chance is 0.10).
    _, smoke, _ = smoke_run
    assert summary["rows"][1]["last_three"] == smoke["test_accuracy"]
    assert summary["rows"][1]["final"] == smoke["final_test_accuracy"]
    for row in summary["rows"]:
        first, second = row["last_three"]
        assert 0.6 <= first <= 0.9 and 0.85 <= second <= 0.97, row
    minima = [r["last_three_min"] for r in summary["rows"]]
    assert summary["mean_last_three_min"] == pytest.approx(sum(minima) / 2)
    # Whether a seed meets 85 % in both epochs depends on its epoch 1 (0 of 2 on our CPU).
    meet = sum(r["meets_target"] for r in summary["rows"])
    assert summary["meet"] == meet
    with open(out_dir / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["seed"]) for r in table] == [0, 1]
    assert float(table[1]["last_three_min"]) == summary["rows"][1]["last_three_min"]
    assert (out_dir / "seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert f"{meet} of 2 seeds meet the target 85.00 %" in stdout


def test_seeds_are_a_range_a_list_or_one_and_anything_else_is_named():
    assert sweep.parse_seeds("1,4,9") == [1, 4, 9]
    assert sweep.parse_seeds("5") == [5]
    assert sweep.parse_seeds("0-1,5") == [0, 1, 5]
    for bad, why in (("", "is not a range like 0-7"), ("1-", "is not a range"),
                     ("-1", "is not a range"), ("1,1", "names a seed twice"),
                     ("x", "is not a range"), ("5-3", "runs backwards; write 3-5")):
        with pytest.raises(ValueError, match=f"^'{bad}' {why}"):
            sweep.parse_seeds(bad)


def test_epochs_without_a_test_pass_are_skipped_in_the_last_three(tmp_path):
    """--eval_every leaves untested epochs as None in results.json: the row takes the last
    three epochs that were tested (one, the final model's, with --eval_every=0)."""
    def row(test_accuracy):
        run = tmp_path / "seed-3"
        run.mkdir(exist_ok=True)
        (run / "results.json").write_text(json.dumps(dict(
            test_accuracy=test_accuracy, best_test_accuracy=max(a for a in test_accuracy if a),
            final_test_accuracy=test_accuracy[-1], first_epoch_at_target=None,
            seconds_per_epoch=[2.0] * len(test_accuracy))))
        return sweep.seed_row(str(tmp_path), 3, 0.994)

    only_final = row([None, None, 0.9942])
    assert only_final["last_three"] == [0.9942] and only_final["last_three_min"] == 0.9942
    assert only_final["meets_target"] and only_final["seconds"] == 6.0
    every_second = row([None, 0.990, None, 0.993, None, 0.9945])
    assert every_second["last_three"] == [0.990, 0.993, 0.9945]
    assert every_second["last_three_min"] == 0.990 and not every_second["meets_target"]


@pytest.mark.parametrize("content, reason", [
    ("same", None),
    ("target", "another recipe (--target 0.95 → 0.9); sweep with --target=0.95, or choose "
               "another --out_dir"),
    ("scale", "a recipe this kerasnets cannot read (no whole recipe.json); choose another "
              "--out_dir"),
    ("extra", "a recipe this kerasnets cannot read (no whole recipe.json); choose another "
              "--out_dir"),
    (None, "a recipe this kerasnets cannot read (no whole recipe.json); choose another "
           "--out_dir"),
])
def test_a_finished_seeds_recipe_is_read_as_kerasnets_train_reads_it(tmp_path, content, reason):
    """The sweep reads a finished seed's recipe from its recipe.json through run_dir's reader
    (the one kerasnets-train resumes by), not from results.json: results.json's "flags" here
    say another recipe, and are not what decides."""
    from kerasnets.training import run_dir

    config = recipe.load("smoke")
    seed = sweep.seed_dir(str(tmp_path), 0)
    os.makedirs(seed)
    ran = recipe.as_run(dataclasses.replace(config, seed=0, target=0.95 if content == "target"
                                            else config.target))
    values = {**dataclasses.asdict(ran), run_dir.RESOLVED_PRECISION: "float32",
              **({"scale": 0.7} if content == "scale" else {}),
              **({"colour": "red"} if content == "extra" else {})}
    if content:
        with open(os.path.join(seed, run_dir.RECIPE_FILE), "w") as f:
            json.dump(values, f)
    with open(os.path.join(seed, run_dir.RESULTS_FILE), "w") as f:
        json.dump({"flags": dict(dataclasses.asdict(config), seed=0, epochs=99)}, f)
    assert sweep.finished(str(tmp_path), 0) and not sweep.finished(str(tmp_path), 1)
    said = sweep.other_recipe(str(tmp_path), 0, config)
    assert said == (reason and f"--out_dir: {seed} holds a finished run of {reason}")


def test_a_sweep_killed_after_one_seed_skips_it_when_started_again(real_mnist, tmp_path):
    out_dir = tmp_path / "sweep"
    args = [sys.executable, "-m", "kerasnets.cli.sweep", "--recipe=smoke",
            "--seeds=2-3", f"--out_dir={out_dir}", "--jobs=1"]
    env = dict(os.environ, KERASNETS_DATA_DIR=str(real_mnist[1]))
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out_dir / "seed-2" / "results.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "seed 2 never finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the training of seed 3
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = (out_dir / "seed-2" / "results.json").stat().st_mtime_ns
    assert not (out_dir / "summary.json").exists()
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"seed 2: finished earlier ({out_dir / 'seed-2'}), skipped" in again.stdout
    assert "seed 3: training into" in again.stdout
    assert (out_dir / "seed-2" / "results.json").stat().st_mtime_ns == first
    rows = json.loads((out_dir / "summary.json").read_text())["rows"]
    assert [r["seed"] for r in rows] == [2, 3]


@pytest.mark.parametrize("args, message", [
    (["--seeds=3-1"], r"--seeds: '3-1' runs backwards; write 1-3"),
    (["--seeds=a"], r"--seeds: 'a' is not a range like 0-7"),
    (["--jobs=0"], r"--jobs=0: 0 is not a positive integer"),
    (["--out_dir={file}"], r"--out_dir: .* exists and is not a directory"),
    (["--recipe=nope"], r"--recipe=nope: value should be one of <default\|fast\|seed\|smoke\|wide>"),
    (["--flagfile={with_model_dir}"], r"Unknown command line flag 'model_dir'"),
    (["--recipe=smoke", "--epochs=0"], r"--epochs"),
    (["--target=2"], r"--target must be a number in \(0, 1\], not 2.0"),
])
def test_bad_values_get_one_line_and_nothing_is_written(tmp_path, args, message):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad.flags").write_text("--flagfile=flags/smoke.flags\n--model_dir=runs/x\n")
    values = dict(file=tmp_path / "a_file", with_model_dir=tmp_path / "bad.flags",
                  missing=tmp_path / "nope.flags")
    args = [a.format(**values) for a in args]
    if not any(a.startswith(("--flagfile", "--recipe")) for a in args):
        args.insert(0, "--recipe=smoke")
    if not any(a.startswith("--out_dir") for a in args):
        args.append(f"--out_dir={tmp_path / 'out'}")
    proc = run_module("sweep", *args, timeout=120)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and lines[0].startswith("FATAL Flags parsing error"), lines
    assert re.search(message, lines[0]), lines[0]
    assert sorted(os.listdir(tmp_path)) == ["a_file", "bad.flags"]  # nothing written


def test_a_target_is_met_at_the_test_sets_resolution():
    assert recipe.reaches(0.9959999918937683, 0.996)   # 9960/10000 as float32
    assert not recipe.reaches(0.9958999752998352, 0.996)
    assert recipe.reaches(0.995, 0.995) and not recipe.reaches(0.99499, 0.995)
    # the same comparison wherever a target is checked
    assert recipe.first_epoch_at([0.99, 0.9959999918937683], 0.996) == 2
    assert fit.reached([{"test_accuracy": 0.9959999918937683}], 0.996)


def test_seed_specs():
    assert sweep.parse_seeds("0-7") == list(range(8))


def test_a_sweep_started_again_with_another_recipe_is_refused_not_mixed(smoke_sweep, real_mnist):
    """Finished seeds of --target=0.85 do not join a summary of --target=0.9."""
    out_dir, _ = smoke_sweep
    before = (out_dir / "summary.json").read_bytes()
    proc = run_module("sweep", "--recipe=smoke", "--seeds=0-1", f"--out_dir={out_dir}",
                      "--target=0.9", f"--data_dir={real_mnist[1]}", timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [
        f"kerasnets-sweep: error: --out_dir: {out_dir / 'seed-0'} holds a finished run of "
        "another recipe (--target 0.85 → 0.9); sweep with --target=0.85, or choose another "
        "--out_dir"]
    assert (out_dir / "summary.json").read_bytes() == before
