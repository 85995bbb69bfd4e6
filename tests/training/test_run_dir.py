"""A run directory's recorded recipe and what may continue in it (kerasnets.training.run_dir), with
no training: the files a run leaves are written by hand."""

import dataclasses
import json
import os

import pytest
from conftest import SMOKE, error_lines, run_module
from kerasnets.training import recipe, run_dir


def _record(model_dir, values):
    model_dir.mkdir(exist_ok=True)
    (model_dir / run_dir.RECIPE_FILE).write_text(json.dumps(values))


def test_the_same_recipe_may_continue_and_another_is_named_field_by_field(tmp_path):
    run_dir.start(str(tmp_path), SMOKE, overwrite=False, precision="float32")
    recorded = json.loads((tmp_path / run_dir.RECIPE_FILE).read_text())
    assert recorded == {**dataclasses.asdict(SMOKE), run_dir.RESOLVED_PRECISION: "float32"}
    assert run_dir.problem(str(tmp_path), SMOKE, overwrite=False) is None
    other = dataclasses.replace(SMOKE, nesterov=False, seed=4, target=0.95)
    assert run_dir.problem(str(tmp_path), other, overwrite=False) == (
        f"--model_dir: {tmp_path} holds a run of another recipe (--nesterov true → false, "
        "--seed 1 → 4, --target 0.9 → 0.95); resume it with --nesterov --seed=1 --target=0.9, "
        "or start afresh with --overwrite")
    # the flags it names give the recorded recipe back
    assert dataclasses.replace(other, nesterov=True, seed=1, target=0.9) == SMOKE


@pytest.mark.parametrize("content", [
    '{"model": "default", ', "\x00\xff not json", "[1, 2]",
    json.dumps({k: v for k, v in dataclasses.asdict(SMOKE).items() if k != "target"}),
    json.dumps({**dataclasses.asdict(SMOKE), "epochs": 0}),
    json.dumps({**dataclasses.asdict(SMOKE), "colour": "red"}),
])
def test_a_recipe_file_that_is_not_a_whole_recipe_is_one_error_not_a_guess(tmp_path, content):
    tmp_path.joinpath(run_dir.RECIPE_FILE).write_bytes(content.encode("latin-1"))
    with pytest.raises(run_dir.RunDirError, match=r"^--model_dir: .*recipe.json is not a recipe "
                                                  r"this kerasnets can read \(.*\); start afresh "
                                                  r"with --overwrite$"):
        run_dir.problem(str(tmp_path), SMOKE, overwrite=False)
    run_dir.start(str(tmp_path), SMOKE, overwrite=True, precision="float32", log=lambda line: None)
    assert json.loads((tmp_path / run_dir.RECIPE_FILE).read_text()) == {
        **dataclasses.asdict(SMOKE), run_dir.RESOLVED_PRECISION: "float32"}


def test_a_run_resumed_where_its_precision_means_another_is_refused_naming_it(tmp_path):
    """--precision=auto recorded as what it meant where the run started (mixed_float16 on a
    GPU): resuming where auto means float32 is refused, the backup untouched; --overwrite
    starts afresh, and a recipe.json from before (no resolved precision) still resumes."""
    run_dir.start(str(tmp_path), SMOKE, overwrite=False, precision="mixed_float16")
    backup = tmp_path / run_dir.BACKUP_DIR / "epoch-0001"
    backup.mkdir(parents=True)
    (backup / "state.json").write_text('{"epochs_done": 1, "history": []}')
    with pytest.raises(run_dir.RunDirError) as refused:
        run_dir.start(str(tmp_path), SMOKE, overwrite=False, precision="float32")
    assert str(refused.value) == (
        f"--model_dir: {tmp_path} holds a run trained in mixed_float16 (--precision=auto there); "
        "here it means float32: resume it where it means mixed_float16, or start afresh with "
        "--overwrite")
    assert (backup / "state.json").read_text() == '{"epochs_done": 1, "history": []}'
    run_dir.start(str(tmp_path), SMOKE, overwrite=False, precision="mixed_float16")  # same: on
    assert run_dir.read_recipe_file(str(tmp_path)) == run_dir.Recorded(SMOKE, "mixed_float16")
    _record(tmp_path, dataclasses.asdict(SMOKE))  # recorded without it
    run_dir.start(str(tmp_path), SMOKE, overwrite=False, precision="float32")
    assert run_dir.read_recipe_file(str(tmp_path)) == run_dir.Recorded(SMOKE, None)
    run_dir.start(str(tmp_path), SMOKE, overwrite=True, precision="float32", log=lambda line: None)
    assert run_dir.read_recipe_file(str(tmp_path)) == run_dir.Recorded(SMOKE, "float32")
    assert not backup.exists()
    _record(tmp_path, {**dataclasses.asdict(SMOKE), run_dir.RESOLVED_PRECISION: "auto"})
    with pytest.raises(run_dir.RunDirError, match="resolved_precision 'auto' is not a precision"):
        run_dir.recorded_recipe(str(tmp_path))


def test_a_backup_without_a_recorded_recipe_is_not_resumed_under_a_guess(tmp_path):
    backup = tmp_path / run_dir.BACKUP_DIR / "epoch-0002"
    backup.mkdir(parents=True)
    (backup / "state.json").write_text('{"epochs_done": 2, "history": []}')
    assert run_dir.problem(str(tmp_path), SMOKE, overwrite=False) == (
        f"--model_dir: {tmp_path} holds a partial run whose recipe is unknown (no recipe.json); "
        "start afresh with --overwrite, or choose another directory")
    lines = []
    run_dir.start(str(tmp_path), SMOKE, overwrite=True, precision="float32", log=lines.append)
    assert lines == [f"--overwrite: removed the earlier run's backup from {tmp_path}"]
    assert sorted(os.listdir(tmp_path)) == [run_dir.RECIPE_FILE]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_files_with_a_runs_names_are_refused_never_taken(tmp_path, overwrite):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "mine.txt").write_text("a user's file")
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "notes.txt").write_text("mine too")
    with pytest.raises(run_dir.RunDirError) as refused:
        run_dir.start(str(tmp_path), SMOKE, overwrite=overwrite, precision="float32", log=print)
    assert str(refused.value) == (
        f"--model_dir: {tmp_path} holds tensorboard, backup but no kerasnets run (no "
        "recipe.json); a run writes those names: move them, or choose another directory")
    assert sorted(os.listdir(tmp_path)) == ["backup", "notes.txt", "tensorboard"]
    assert (tmp_path / "backup" / "mine.txt").read_text() == "a user's file"


def test_a_directory_of_other_files_takes_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run_dir.start(str(tmp_path), SMOKE, overwrite=True, precision="float32", log=print)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", run_dir.RECIPE_FILE]


def test_a_finished_run_is_kept_unless_overwrite(tmp_path):
    _record(tmp_path, dataclasses.asdict(SMOKE))
    assert not run_dir.finished(str(tmp_path))
    (tmp_path / "results.json").write_text("{}")
    assert run_dir.RESULTS_FILE == "results.json" and run_dir.finished(str(tmp_path))
    assert "holds a finished run; pass --overwrite" in run_dir.problem(str(tmp_path), SMOKE, False)
    run_dir.start(str(tmp_path), SMOKE, overwrite=True, precision="float32", log=lambda line: None)
    assert not (tmp_path / "results.json").exists()


def test_multiworker_records_op_determinism_off():
    config = dataclasses.replace(SMOKE, strategy="multiworker")
    assert config.deterministic and not recipe.as_run(config).deterministic
    assert recipe.as_run(SMOKE) is SMOKE


@pytest.mark.parametrize("module, args, line", [
    ("train", ["--recipe=toynet"], "--recipe=toynet: value should be one of "
                                   "<default|fast|seed|smoke|wide>"),
    ("toynet", ["--recipe=smoke"], "--recipe=smoke: value should be one of <toynet>"),
    ("export", ["--recipe=default"], "Unknown command line flag 'recipe'"),
])
def test_a_recipe_of_another_command_is_one_line(tmp_path, module, args, line):
    proc = run_module(module, *args, f"--out_dir={tmp_path / 'o'}" if module == "toynet" else
                      f"--model_dir={tmp_path / 'o'}", timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert line in error_lines(proc.stderr)[0]
    assert not (tmp_path / "o").exists()
