"""Failures a user meets: a full disk and a busy directory end in one line, and nothing is lost.

A full disk is tested twice: on a real small filesystem (a tmpfs, which needs root
and mount rights: skipped, saying why, where mounting is not allowed) and with
ENOSPC faked where the run writes (always runs).
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, error_lines

NO_SPACE = "no space left on the device of"
WHAT_TO_DO = "free some space and run the same command again"


def _disk_full_line(proc, command: str, where) -> str:
    """The one stderr line of a command stopped by a full disk (asserted), naming `where`."""
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{command}: error: {NO_SPACE} {where} while writing "), lines[0]
    assert WHAT_TO_DO in lines[0], lines[0]
    return lines[0]


def _scratch_files(directory) -> list[str]:
    """Half-written files and directories left under `directory` (hidden `.*tmp*` names)."""
    return [os.path.join(root, name) for root, dirs, files in os.walk(directory)
            for name in dirs + files if name.startswith(".") and "tmp" in name]


def test_a_full_disk_is_recognised_as_the_os_and_tensorflow_report_it():
    import errno

    import tensorflow as tf

    from kerasnets import errors

    assert errors.is_disk_full(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/f"))
    assert errors.is_disk_full(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/x/f"))
    assert not errors.is_disk_full(OSError(errno.EACCES, os.strerror(errno.EACCES), "/x/f"))
    assert not errors.is_disk_full(OSError("No space left on device"))  # no errno: not the OS's
    assert errors.is_disk_full(tf.errors.ResourceExhaustedError(
        None, None, "/x/saved_model.pb.tmp1; No space left on device"))
    assert not errors.is_disk_full(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert not errors.is_disk_full(ValueError("No space left on device"))
    full = errors.disk_full(OSError(errno.ENOSPC, "No space left on device"), "/x", "the files")
    assert isinstance(full, errors.KerasnetsError) and not errors.is_disk_full(full)
    assert str(full).startswith(f"{NO_SPACE} /x while writing the files; {WHAT_TO_DO}")


# --- a real small filesystem ---------------------------------------------------------

def _mount_or_skip(path, kib: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a small tmpfs to fill ({e}); the faked-ENOSPC tests still run")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (mount needs root and mount rights "
                    f"here: {(proc.stderr or proc.stdout).strip()}); the faked-ENOSPC tests "
                    "still run")


@contextlib.contextmanager
def small_filesystem(path, kib: int):
    """A tmpfs of `kib` KiB mounted at `path` for the block (the test is skipped when it
    cannot be mounted), always unmounted afterwards."""
    _mount_or_skip(path, kib)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _resize(path, kib: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={kib}k", str(path)], check=True,
                   capture_output=True, timeout=30)


def _train(model_dir, data_dir, timeout=240):
    return subprocess.run([sys.executable, "-m", "kerasnets.cli.train", "--recipe=smoke",
                           f"--model_dir={model_dir}", f"--data_dir={data_dir}"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_train_on_a_full_filesystem_stops_in_one_line_and_resumes_once_space_is_freed(
        real_mnist, smoke_run, tmp_path):
    # Room for the epoch-1 backup (one model.keras, with its optimizer state) and the
    # TensorBoard logs, not for the epoch-2 backup written beside it before epoch 1's goes.
    model_size = (smoke_run[0] / "model.keras").stat().st_size
    kib = (int(1.4 * model_size) + 64 * 1024) // 1024
    with small_filesystem(tmp_path / "small", kib) as small:
        model_dir = small / "run"
        full = _train(model_dir, real_mnist[1])
        _disk_full_line(full, "kerasnets-train", model_dir)
        assert not (model_dir / "results.json").exists()
        assert _scratch_files(model_dir) == []  # nothing half-written was left behind
        backup = model_dir / "backup" / "epoch-0001"
        assert sorted(os.listdir(model_dir / "backup")) == ["epoch-0001"]
        assert json.loads((backup / "state.json").read_text())["epochs_done"] == 1

        _resize(small, 4 * kib + 1024)  # space freed
        again = _train(model_dir, real_mnist[1])
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"resuming from {backup} (epoch 1 of 2 done)" in again.stdout
        results = json.loads((model_dir / "results.json").read_text())
        assert results["epochs"] == 2 and len(results["test_accuracy"]) == 2
        assert not (model_dir / "backup").exists()


def test_export_on_a_full_filesystem_leaves_no_version_and_works_once_space_is_freed(
        smoke_run, tmp_path):
    args = [sys.executable, "-m", "kerasnets.cli.export", f"--model_dir={smoke_run[0]}"]
    with small_filesystem(tmp_path / "small", 64) as small:  # a SavedModel is ~250 kB
        base = small / "mnist"
        full = subprocess.run(args + [f"--export_base={base}"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        _disk_full_line(full, "kerasnets-export", base)
        assert "SavedModel" in error_lines(full.stderr)[0]
        assert os.listdir(base) == []  # no version, no .export-tmp-*

        _resize(small, 2048)
        again = subprocess.run(args + [f"--export_base={base}"], cwd=REPO, capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        assert os.listdir(base) == ["1"]


# --- ENOSPC faked where the run writes --------------------------------------------------

# Runs `python -m <module> <args>` after making one write fail as a full disk does:
#   backup:      the second keras.Model.save (the epoch-2 backup) raises OSError(ENOSPC);
#   tensorboard: TensorFlow's event file writer fails with its own error (not an OSError)
#                carrying the OS's message, as it does on a full disk;
#   savedmodel:  the SavedModel writer writes part of it, then fails the same way.
# (TensorFlow's lazy imports put tf.summary's and tf.saved_model's functions back when
# they first run, so those are replaced at the last moment or one level up.)
_FAKE_FULL_DISK = r"""
import errno, os, runpy, sys
import keras
import tensorflow as tf

def tf_no_space(path):
    return tf.errors.ResourceExhaustedError(None, None, f"{path}; No space left on device")

where = sys.argv[1]
if where == "backup":
    save, saves = keras.Model.save, []
    def save_but_the_second(self, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(self, path, *args, **kwargs)
    keras.Model.save = save_but_the_second
elif where == "tensorboard":
    begin = keras.callbacks.TensorBoard.on_train_begin
    def on_train_begin(self, logs=None):
        def create_file_writer(logdir, *args, **kwargs):
            raise tf_no_space(os.path.join(logdir, "events.out.tfevents.0.v2"))
        tf.summary.create_file_writer = create_file_writer
        return begin(self, logs)
    keras.callbacks.TensorBoard.on_train_begin = on_train_begin
elif where == "savedmodel":
    from kerasnets.serving import export
    class FullDiskArchive:
        def write_out(self, directory, *args, **kwargs):
            os.makedirs(os.path.join(directory, "variables"))
            with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
                f.write(b"half a SavedModel")
            raise tf_no_space(os.path.join(directory, "variables", "variables.data-00000-of-00001"))
    export.serving_archive = lambda model: FullDiskArchive()
else:
    raise SystemExit(f"unknown write {where}")
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _with_full_disk(where: str, module: str, *args: str, timeout: float = 240):
    return subprocess.run([sys.executable, "-c", _FAKE_FULL_DISK, where, module, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_train_stopped_by_a_full_disk_at_a_backup_keeps_the_previous_one(real_mnist, tmp_path):
    model_dir = tmp_path / "run"
    proc = _with_full_disk("backup", "kerasnets.cli.train", "--recipe=smoke",
                           f"--model_dir={model_dir}", f"--data_dir={real_mnist[1]}")
    _disk_full_line(proc, "kerasnets-train", model_dir)
    assert "Epoch 2/2" in proc.stdout  # it failed part-way, at the end of epoch 2
    backup = model_dir / "backup" / "epoch-0001"
    assert sorted(os.listdir(model_dir / "backup")) == ["epoch-0001"]
    assert sorted(os.listdir(backup)) == ["model.keras", "state.json"]
    assert json.loads((backup / "state.json").read_text())["epochs_done"] == 1
    import zipfile
    with zipfile.ZipFile(backup / "model.keras") as archive:
        assert archive.testzip() is None  # whole
    assert not (model_dir / "results.json").exists()
    assert _scratch_files(model_dir) == []


def test_train_stopped_by_a_full_disk_in_tensorflows_writer_says_so_in_one_line(real_mnist,
                                                                             tmp_path):
    # TensorFlow reports a full disk as its own ResourceExhaustedError, not as an OSError.
    model_dir = tmp_path / "run"
    proc = _with_full_disk("tensorboard", "kerasnets.cli.train", "--recipe=smoke",
                           f"--model_dir={model_dir}", f"--data_dir={real_mnist[1]}")
    _disk_full_line(proc, "kerasnets-train", model_dir)
    assert not (model_dir / "results.json").exists()


def test_export_stopped_by_a_full_disk_leaves_no_version_and_no_scratch(smoke_run, tmp_path):
    base = tmp_path / "mnist"
    (base / "1").mkdir(parents=True)  # an existing version: left as it is
    (base / "1" / "saved_model.pb").write_bytes(b"version 1")
    proc = _with_full_disk("savedmodel", "kerasnets.cli.export", f"--model_dir={smoke_run[0]}",
                           f"--export_base={base}", timeout=120)
    assert "SavedModel" in _disk_full_line(proc, "kerasnets-export", base)
    assert os.listdir(base) == ["1"]  # no version 2, no .export-tmp-*
    assert (base / "1" / "saved_model.pb").read_bytes() == b"version 1"


# --- a busy directory ----------------------------------------------------------------

def test_a_second_sweep_on_an_out_dir_in_use_is_refused_at_once(real_mnist, tmp_path):
    out_dir = tmp_path / "sweep"
    # Long enough that the first is still running when the second is refused.
    args = [sys.executable, "-m", "kerasnets.cli.sweep", "--recipe=smoke", "--epochs=50",
            "--seeds=0", f"--out_dir={out_dir}", "--jobs=1"]
    env = dict(os.environ, KERASNETS_DATA_DIR=str(real_mnist[1]))
    lock = out_dir / ".sweep.lock"
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while f"(pid {first.pid})" not in (lock.read_text() if lock.exists() else ""):
            assert first.poll() is None, "the first sweep ended before holding its --out_dir"
            assert time.monotonic() < deadline, "the first sweep never locked its --out_dir"
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=60)
        seconds = time.monotonic() - started
        assert first.poll() is None  # the first sweep is still going
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the sweep and its kerasnets-train child
        first.wait(timeout=30)
    assert second.returncode == 1 and second.stdout == "", second.stderr[-3000:]
    assert seconds < 30  # refused at once, not after waiting for the lock
    assert re.fullmatch(
        rf"kerasnets-sweep: error: --out_dir: {re.escape(str(out_dir))} is in use by "
        rf"kerasnets-sweep \(started [-\d: ]+\) \(pid {first.pid}\); wait for it to finish or "
        "choose another directory", "\n".join(error_lines(second.stderr))), second.stderr
