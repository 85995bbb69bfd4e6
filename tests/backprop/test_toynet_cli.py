"""kerasnets-toynet as a user runs it: outputs, their schema, refusals of bad flags."""

import csv
import os

import numpy as np
import pytest
from absl import flags

from conftest import error_lines, run_module
from kerasnets.backprop import chain_rule, workbench
from kerasnets.backprop import toynet as setting
from kerasnets.cli import command, toynet


def test_command_writes_the_four_outputs_with_exact_values(tmp_path):
    out = tmp_path / "run"
    proc = run_module("toynet", f"--out_dir={out}", "--lrs=0.5,2.0", "--steps=20", "--nolog_scale")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["backprop.html", "backprop.xlsx", "lr_sweep.png",
                                       "sweep.csv"]
    assert (out / "lr_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "backprop.xlsx").read_bytes()[:2] == b"PK"

    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == ("lr", "step", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8",
                              "h1", "h2", "a_h1", "a_h2", "o1", "o2", "a_o1", "a_o2",
                              "E1", "E2", "E_total") + tuple(f"dE_dw{k}" for k in range(1, 9))
    assert len(rows) == 1 + 2 * 21
    assert [r[1] for r in rows[1:22]] == [str(k) for k in range(21)]
    # repr() round-trips: the CSV holds TensorFlow's float64 values bit for bit.
    e_total = {}
    for lr, block in ((0.5, rows[1:22]), (2.0, rows[22:])):
        expected = chain_rule.gradient_descent(chain_rule.ToyNet(), lr, 20).rows
        np.testing.assert_array_equal(np.array(block, dtype=np.float64), expected)
        e_total[lr] = [f"{v:.9f}" for v in expected[[0, 1, 20], chain_rule.COLUMNS.index("E_total")]]

    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["lr", "E_total@0", "E_total@1", "E_total@20"]
    assert e_total[0.5][0] == "0.242519857"  # the hand-checked initial loss
    assert lines[1].split()[:5] == ["0.5", *e_total[0.5], "—"]
    assert lines[2].split()[:5] == ["2", *e_total[2.0], "16"]


def test_flagfile_holds_the_course_setting(flag_values):
    flag_values(["toynet", "--flagfile=flags/toynet.flags", "--out_dir=/tmp/unused-kerasnets"])
    assert flag_values.lrs == ["0.1", "0.2", "0.5", "0.8", "1.0", "2.0"]
    assert flag_values.steps == 100
    assert (flag_values.i1, flag_values.i2, flag_values.t1, flag_values.t2) == (0.05, 0.1, 0.01, 0.99)
    assert [flag_values[w].value for w in chain_rule.WEIGHT_NAMES] == list(chain_rule.ToyNet().weights)


@pytest.mark.parametrize("arg, flag", [
    ("--lrs=0", "--lrs"), ("--lrs=0.5,-1", "--lrs"), ("--lrs=nan", "--lrs"),
    ("--lrs=inf", "--lrs"), ("--lrs=0.5,x", "--lrs"), ("--lrs=0.5,0.5", "--lrs"),
    ("--steps=0", "--steps"), ("--steps=100001", "--steps"),
    ("--t1=0", "--t1"), ("--t1=1", "--t1"), ("--t2=1.5", "--t2"), ("--t2=nan", "--t2"),
    ("--w3=inf", "--w3"), ("--i1=nan", "--i1"),
])
def test_bad_values_are_refused_naming_the_flag(flag_values, tmp_path, arg, flag):
    with pytest.raises(flags.IllegalFlagValueError, match=rf"{flag}\b.*must"):
        flag_values(["toynet", f"--out_dir={tmp_path / 'out'}", arg])


def test_bad_flag_exits_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = run_module("toynet", f"--out_dir={out}", "--steps=0")
    assert proc.returncode == 1 and proc.stdout == ""
    errors = error_lines(proc.stderr)
    assert errors[0] == ("FATAL Flags parsing error: flag --steps=0: "
                         "--steps must be an integer in [1, 100000], not 0")
    assert not out.exists() and os.listdir(tmp_path) == []


def test_non_empty_out_dir_is_kept_without_overwrite(tmp_path):
    (tmp_path / "sweep.csv").write_text("my results\n")
    proc = run_module("toynet", f"--out_dir={tmp_path}", "--steps=2")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr)[0] == (
        f"FATAL Flags parsing error: flags out_dir={tmp_path}, overwrite=False: --out_dir: "
        f"{tmp_path} is not empty; pass --overwrite to replace its files")
    assert (tmp_path / "sweep.csv").read_text() == "my results\n"
    assert os.listdir(tmp_path) == ["sweep.csv"]


def test_overwrite_replaces_our_files_and_keeps_others(tmp_path):
    (tmp_path / "sweep.csv").write_text("old\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    runs = workbench.run_workbench(str(tmp_path), chain_rule.ToyNet(), [1.0], 3)
    assert (tmp_path / "sweep.csv").read_text().startswith("lr,step,w1")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert sorted(os.listdir(tmp_path)) == ["backprop.html", "backprop.xlsx", "lr_sweep.png",
                                            "notes.txt", "sweep.csv"]
    assert runs[0].rows.shape == (4, len(chain_rule.COLUMNS))


@pytest.mark.parametrize("make_target", ["under_a_file", "a_file"])
def test_out_dir_that_cannot_be_a_directory_is_refused(flag_values, tmp_path, make_target):
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "sub" if make_target == "under_a_file" else tmp_path / "f"
    with pytest.raises(flags.IllegalFlagValueError, match="--out_dir: .*not a directory"):
        flag_values(["toynet", f"--out_dir={target}"])


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(workbench.workbook, "write_workbook", broken)
    with pytest.raises(OSError, match="disk full"):
        workbench.run_workbench(str(tmp_path / "out"), chain_rule.ToyNet(), [1.0], 3)
    assert os.listdir(tmp_path) == []


def test_gradient_mismatch_exits_non_zero_with_one_line(flag_values, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(chain_rule, "hand_gradients", lambda w, f, net: 2 * chain_rule.tape_gradients(w, net))
    flag_values(["toynet", f"--out_dir={tmp_path / 'out'}", "--steps=2"])
    assert command.with_error_exit(toynet.main)(["toynet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("kerasnets-toynet: error: lr=0.1 step 0: hand-derived dE/dw1")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("arg, make", [
    ("--t1=2.0", lambda: setting.ToyNet(t1=2.0)),
    ("--t2=0.0", lambda: setting.ToyNet(t2=0.0)),
    ("--i2=nan", lambda: setting.ToyNet(i2=float("nan"))),
    ("--b1=inf", lambda: setting.ToyNet(b1=float("inf"))),
    ("--w8=-inf", lambda: setting.ToyNet(weights=(0.15, 0.2, 0.25, 0.3, 0.4, 0.45, 0.5,
                                                   float("-inf")))),
    ("--steps=100001", lambda: setting.check_steps(100_001)),
    ("--lrs=0.5,-1", lambda: setting.check_lrs(["0.5", "-1"])),
    ("--lrs=0.5,0.5", lambda: setting.check_lrs([0.5, 0.5])),
    ("--lrs=0.5,x", lambda: setting.check_lrs(["0.5", "x"])),
])
def test_python_and_the_command_refuse_a_setting_in_the_same_words(flag_values, tmp_path, arg,
                                                                  make):
    """The library's checks are the flags' checks: the Python call and the flag give one line."""
    with pytest.raises(setting.SettingError) as python:
        make()
    with pytest.raises(flags.IllegalFlagValueError) as command_line:
        flag_values(["toynet", f"--out_dir={tmp_path / 'out'}", arg])
    field = arg[2:].partition("=")[0]
    said, _, message = str(command_line.value).partition(": ")  # "flag --lrs=[...]: ..."
    assert said.startswith(f"flag --{field}=") and message == str(python.value)
    assert python.value.field == field


def test_the_setting_says_what_it_refuses():
    with pytest.raises(setting.SettingError) as e:
        setting.ToyNet(t1=2.0)
    assert str(e.value) == ("--t1 must be a number in (0, 1) (a sigmoid output never reaches 0 "
                            "or 1), not 2.0")
    with pytest.raises(ValueError, match=r"^--lrs must be distinct finite learning rates > 0, "
                                         r"e\.g\. 0\.1,0\.5,1\.0; it is empty$"):
        setting.check_lrs([])
    with pytest.raises(ValueError, match=r"^weights must hold 8 values w1\.\.w8, got 7$"):
        setting.ToyNet(weights=(0.1,) * 7)
    assert setting.check_lrs(["0.5", 2]) == [0.5, 2.0] and setting.check_steps(100_000) == 100_000
    assert setting.ToyNet(t1=0.5, i1=-3, b2=1e6).t1 == 0.5  # any finite input and bias


@pytest.mark.parametrize("call", [
    lambda: chain_rule.gradient_descent(chain_rule.ToyNet(), 0.0, 3),
    lambda: chain_rule.gradient_descent(chain_rule.ToyNet(), 0.5, -1),
    lambda: chain_rule.sweep(chain_rule.ToyNet(), [0.5], 0),  # a study takes steps
    lambda: chain_rule.sweep(chain_rule.ToyNet(), [0.5, 0.5], 3),
    lambda: workbench.run_workbench("never-written", chain_rule.ToyNet(), [float("inf")], 3),
])
def test_the_library_refuses_a_study_the_command_refuses(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(setting.SettingError, match=r"^--(lr|lrs|steps) must be"):
        call()
    assert os.listdir(tmp_path) == []
