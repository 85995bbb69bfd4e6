"""kerasnets-compare on two real finished runs: each row's figures as the run's own files
say them, the CSV, the picture, --json, what is refused; and a run's HParams read back."""

import csv
import dataclasses
import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
from conftest import REPO, SMOKE, error_lines, run_module
from kerasnets.training import compare, fit, hparams, recipe
from kerasnets.training.compare import CompareError

# Two tiny runs: the course's model tested every epoch against a low target, and the
# default model tested only at epoch 2 and at the end (epoch 1 untested).
CONFIGS = {
    "seed-run": dataclasses.replace(SMOKE, model="seed", epochs=3, train_examples=512,
                                    test_examples=200, target=0.3),
    "default-run": dataclasses.replace(SMOKE, model="default", epochs=3, train_examples=512,
                                       test_examples=200, eval_every=2),
}
DESIGN = dict(trainable_params=12345, params=13000, macs=678901, receptive_field=22,
              covers_digit=False, layers=[])


@pytest.fixture(scope="module")
def runs(real_mnist, tmp_path_factory):
    """{name: (run_dir, config, results)}: the first run as one from before design.json
    (none in it), the second with a design.json of known values."""
    root = tmp_path_factory.mktemp("compare")
    made = {}
    for name, config in CONFIGS.items():
        run_dir = root / name
        results = fit.train(config, real_mnist[0], str(run_dir), log=lambda line: None,
                            verbose=0)
        made[name] = (run_dir, config, results)
    design = made["seed-run"][0] / compare.DESIGN_FILE
    if design.exists():
        design.unlink()
    (made["default-run"][0] / compare.DESIGN_FILE).write_text(json.dumps(DESIGN))
    return made


def history_csv(run_dir) -> list[dict]:
    """history.csv's rows, numbers parsed (None for an untested epoch)."""
    with open(run_dir / "history.csv") as f:
        return [{k: None if v == "None" else float(v) for k, v in row.items()}
                for row in csv.DictReader(f)]


def expected_row(run_dir, design: dict | None) -> dict:
    """The row, worked out here from history.csv, results.json and recipe.json."""
    history = history_csv(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    model = json.loads((run_dir / "recipe.json").read_text())["model"]
    tested = [(int(h["epoch"]), h["test_accuracy"]) for h in history
              if h["test_accuracy"] is not None]
    first = next((e for e, a in tested if round(a, 6) >= round(results["target"], 6)), None)
    return dict(
        run=str(run_dir), model=model,
        trainable_params=design["trainable_params"] if design else results["trainable_params"],
        macs=design["macs"] if design else None, epochs=len(history),
        final_test_accuracy=results["final_test_accuracy"],
        last_three_min=min(a for _, a in tested[-3:]), target=results["target"],
        first_epoch_at_target=first,
        seconds_to_target=sum(h["seconds"] for h in history[:first]) if first else None,
        gap=results["final_train_accuracy"] - results["final_test_accuracy"])


def run_dirs(runs) -> list[str]:
    return [str(runs[name][0]) for name in CONFIGS]


def test_each_row_holds_its_runs_own_figures(runs):
    rows = compare.compare(run_dirs(runs))
    assert [r["run"] for r in rows] == run_dirs(runs)  # the order given
    assert [tuple(r) for r in rows] == [compare.COLUMNS] * 2
    seed_row, default_row = rows
    seed_dir, default_dir = (runs[name][0] for name in CONFIGS)
    assert seed_row == expected_row(seed_dir, None)
    assert default_row == expected_row(default_dir, DESIGN)
    # what the expectations rest on, said plainly
    seed_results = runs["seed-run"][2]
    assert seed_row["model"] == "seed" and default_row["model"] == "default"
    assert seed_row["trainable_params"] == seed_results["trainable_params"] == 19130
    assert seed_row["macs"] is None  # no design.json: an older run
    assert (default_row["trainable_params"], default_row["macs"]) == (12345, 678901)
    assert seed_row["epochs"] == default_row["epochs"] == 3
    assert seed_row["last_three_min"] == min(seed_results["test_accuracy"])  # all three tested
    # epoch 1 untested: the last three tested epochs are 2 and 3
    default_results = runs["default-run"][2]
    assert default_results["test_accuracy"][0] is None
    assert default_row["last_three_min"] == min(default_results["test_accuracy"][1:])
    assert default_row["gap"] == (default_results["final_train_accuracy"]
                                  - default_results["final_test_accuracy"])
    assert (seed_row["target"], default_row["target"]) == (0.3, 0.9)
    # the course's model passes 30 % within three epochs of 512 images (chance is 10 %)
    reached = [epoch for epoch, a in enumerate(seed_results["test_accuracy"], 1) if a >= 0.3]
    assert reached and seed_row["first_epoch_at_target"] == reached[0]
    assert seed_row["seconds_to_target"] == pytest.approx(
        sum(seed_results["seconds_per_epoch"][:seed_row["first_epoch_at_target"]]))
    assert compare.read_run(str(seed_dir)) == seed_row


def test_the_table_shows_each_run_and_a_dash_for_what_a_run_lacks(runs):
    rows = compare.compare(run_dirs(runs))
    lines = compare.format_table(rows).splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["run", "model", "params"]
    seed_line, default_line = lines[1:]
    assert seed_line.split()[:4] == [rows[0]["run"], "seed", "19,130", "—"]
    assert default_line.split()[:4] == [rows[1]["run"], "default", "12,345", "678,901"]
    assert f"{100 * rows[0]['final_test_accuracy']:.2f}" in seed_line
    assert f"{100 * rows[1]['gap']:+.2f}" in default_line


def test_the_csv_and_the_picture(runs, tmp_path):
    out_dir = tmp_path / "out"
    rows = compare.compare_and_write(run_dirs(runs), str(out_dir), overwrite=False)
    assert sorted(os.listdir(out_dir)) == ["compare.csv", "compare.png"]  # nothing else left
    with open(out_dir / "compare.csv") as f:
        table = list(csv.DictReader(f))
    assert [tuple(r) for r in table] == [compare.COLUMNS] * 2
    for row, line in zip(rows, table):
        for column in compare.COLUMNS:
            value = row[column]
            if value is None:
                assert line[column] == "", column
            elif isinstance(value, str):
                assert line[column] == value, column
            else:
                assert float(line[column]) == value, column  # floats written exactly
    png = (out_dir / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert 800 <= width <= 1600 and 300 <= height <= 800, (width, height)
    assert 15_000 < len(png) < 1_000_000


def test_compare_csv_and_png_are_replaced_only_with_overwrite(runs, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "compare.csv").write_text("old")
    with pytest.raises(CompareError, match=r"^--out_dir: .* holds compare.csv; pass "
                                           r"--overwrite to replace them"):
        compare.compare_and_write(run_dirs(runs), str(out_dir), overwrite=False)
    assert (out_dir / "compare.csv").read_text() == "old"
    assert sorted(os.listdir(out_dir)) == ["compare.csv", "notes.txt"]
    compare.compare_and_write(run_dirs(runs), str(out_dir), overwrite=True)
    assert (out_dir / "compare.csv").read_text().startswith(",".join(compare.COLUMNS))
    assert sorted(os.listdir(out_dir)) == ["compare.csv", "compare.png", "notes.txt"]


@pytest.fixture
def not_runs(runs, tmp_path):
    """{what: (directory, the message's tail)}: directories compare must refuse."""
    started = tmp_path / "started"
    started.mkdir()
    shutil.copy(runs["seed-run"][0] / "recipe.json", started / "recipe.json")
    garbled = tmp_path / "garbled"
    shutil.copytree(runs["seed-run"][0], garbled)
    (garbled / "results.json").write_text("{not json")
    short = tmp_path / "short"
    shutil.copytree(runs["seed-run"][0], short)
    results = json.loads((short / "results.json").read_text())
    (short / "results.json").write_text(json.dumps(dict(results, test_accuracy=[0.5])))
    return {
        "unfinished": (started, "not a finished run (recipe.json but no results.json: "
                                "kerasnets-train with its recipe finishes it)"),
        "missing": (tmp_path / "nope", "no such directory"),
        "garbled": (garbled, "results.json cannot be read ("),
        "short": (short, "results.json has no test_accuracy list of its 3 epochs"),
    }


@pytest.mark.parametrize("what", ["unfinished", "missing", "garbled", "short"])
def test_a_directory_that_is_not_a_finished_run_is_refused_naming_it(runs, not_runs, tmp_path,
                                                                      what):
    bad, message = not_runs[what]
    out_dir = tmp_path / "out"
    with pytest.raises(CompareError) as caught:
        compare.compare_and_write([str(runs["seed-run"][0]), str(bad)], str(out_dir), False)
    assert str(caught.value).startswith(f"{bad}: {message}") and "\n" not in str(caught.value)
    assert not out_dir.exists()  # every run is read before anything is written


def test_the_command_refuses_a_run_that_is_not_finished_in_one_line(runs, not_runs, tmp_path):
    for what in ("unfinished", "missing"):
        bad, message = not_runs[what]
        proc = run_module("compare", str(runs["seed-run"][0]), str(bad),
                          f"--out_dir={tmp_path / 'out'}", timeout=120)
        assert proc.returncode == 1 and proc.stdout == ""
        assert error_lines(proc.stderr) == [f"kerasnets-compare: error: {bad}: {message}"]
        assert not (tmp_path / "out").exists()


def test_the_command_end_to_end(runs, tmp_path):
    out_dir = tmp_path / "out"
    args = [sys.executable, "-m", "kerasnets.cli.compare", *run_dirs(runs),
            f"--out_dir={out_dir}", "--json"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    rows = compare.compare(run_dirs(runs))
    assert lines[:3] == compare.format_table(rows).splitlines()
    assert lines[3] == f"wrote {out_dir / 'compare.csv'}, compare.png"
    assert json.loads(lines[4]) == {"runs": json.loads(json.dumps(rows))}
    assert len(lines) == 5
    assert sorted(os.listdir(out_dir)) == ["compare.csv", "compare.png"]
    before = (out_dir / "compare.png").read_bytes()
    # again without --overwrite: refused in one line, the files kept; with it, replaced
    again = subprocess.run(args[:-1], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and again.stdout == ""
    assert error_lines(again.stderr) == [
        f"kerasnets-compare: error: --out_dir: {out_dir} holds compare.csv and compare.png; "
        "pass --overwrite to replace them, or choose another directory"]
    assert (out_dir / "compare.png").read_bytes() == before
    replaced = subprocess.run([*args[:-1], "--overwrite"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert replaced.stdout.splitlines()[:3] == lines[:3]  # no JSON line without --json


def test_the_command_refuses_no_run_directories_with_its_usage(tmp_path):
    proc = run_module("compare", f"--out_dir={tmp_path / 'out'}", timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr) == [
        "kerasnets-compare: error: no run directories given; usage: kerasnets-compare "
        "RUN_DIR [RUN_DIR ...] --out_dir=DIR [--json] [--overwrite]"]
    assert not (tmp_path / "out").exists()


_HELP_ONLY = """
import sys
from kerasnets.cli import compare
sys.argv = ["kerasnets-compare", "--help"]
try:
    compare.run()
except SystemExit:
    pass
print(sorted(m for m in ("tensorflow", "keras", "matplotlib") if m in sys.modules))
"""


def test_help_describes_the_command_without_tensorflow_keras_or_matplotlib():
    proc = subprocess.run([sys.executable, "-c", _HELP_ONLY], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.startswith("kerasnets-compare: finished runs side by side."), proc.stderr
    for flag in ("--out_dir", "--[no]json", "--[no]overwrite"):
        assert f"\n  {flag}:" in proc.stdout, flag
    assert proc.stdout.splitlines()[-1] == "[]"


# --- HParams --------------------------------------------------------------------------

def read_events(log_dir) -> tuple[dict, dict]:
    """(the hparams of the session written in log_dir, {scalar tag: (step, value)}), read
    with TensorBoard's own event loader and HParams metadata parser."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    files = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))
    assert len(files) == 1, files
    session, scalars = None, {}
    for event in event_file_loader.EventFileLoader(files[0]).Load():
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin == metadata.PLUGIN_NAME:
                session = metadata.parse_session_start_info_plugin_data(
                    value.metadata.plugin_data.content)
            elif plugin == "scalars":
                scalars[value.tag] = (event.step, float(tensor_util.make_ndarray(value.tensor)))
    assert session is not None
    found = {}
    for name, v in session.hparams.items():
        kind = v.WhichOneof("kind")
        found[name] = getattr(v, kind)
    return found, scalars


def test_hparams_holds_the_recipe_and_the_final_figures(runs, tmp_path):
    _, config, results = runs["default-run"]
    hparams.write(str(tmp_path / "tb"), config, results)
    found, scalars = read_events(tmp_path / "tb")
    assert found == dataclasses.asdict(config)  # every field (ints as TensorBoard's numbers)
    assert set(found) == set(recipe.FIELDS)
    assert isinstance(found["nesterov"], bool) and isinstance(found["model"], str)
    assert found["eval_every"] == 2 and found["learning_rate"] == config.learning_rate
    want = dict(final_test_accuracy=results["final_test_accuracy"],
                final_train_accuracy=results["final_train_accuracy"],
                final_test_loss=results["final_test_loss"],
                best_test_accuracy=results["best_test_accuracy"],
                trainable_params=results["trainable_params"],
                seconds=sum(results["seconds_per_epoch"]))
    assert set(scalars) == set(want)
    for name, value in want.items():
        step, logged = scalars[name]
        assert step == 3 and logged == pytest.approx(value, rel=1e-6), name  # float32 scalars
