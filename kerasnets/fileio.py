"""Atomic outputs: results appear whole or not at all, and are never clobbered unasked.

Every command writes into a temporary sibling of its target and renames it into
place at the end, so a crash, a kill or a bad value found late leaves either
nothing or the previous results, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Iterator

from kerasnets.errors import KerasnetsError


def output_dir_problem(path: str, overwrite: bool) -> str | None:
    """Why `path` cannot receive a command's outputs, or None if it can.

    It must be a directory that is empty (or absent, with a writable nearest
    existing ancestor); a non-empty one only with `overwrite`.
    """
    if not path:
        return "must name a directory"
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{path} exists and is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        if os.listdir(path) and not overwrite:
            return f"{path} is not empty; pass --overwrite to replace its files"
        return None
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create {path}: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path}: {parent} is not writable"
    return None


@contextlib.contextmanager
def atomic_output_dir(path: str) -> Iterator[str]:
    """Yields a scratch directory beside `path`; on success its files move into `path`.

    A new `path` appears by one rename of the whole directory. An existing one
    (which the caller has checked may be written) receives each file by an
    atomic `os.replace`, so a reader sees old or new files, never partial ones.
    On error the scratch directory is removed and `path` is untouched.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield scratch
        try:
            os.rename(scratch, path)  # fails if path exists (and is non-empty)
            return
        except OSError:
            if not os.path.isdir(path):
                raise
        for name in sorted(os.listdir(scratch)):
            target = os.path.join(path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(scratch, name), target)
        os.rmdir(scratch)
    finally:
        if os.path.exists(scratch):
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator:
    """Opens a temporary file beside `path`; renamed onto `path` when the block succeeds."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-",
                               dir=os.path.dirname(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DirectoryInUseError(KerasnetsError, RuntimeError):
    """Another live process holds the directory's lock."""


@contextlib.contextmanager
def exclusive_directory(path: str, command: str, lock_name: str = ".lock",
                        flag: str | None = None) -> Iterator[None]:
    """Holds an OS-level lock on `path` (created if missing) for the duration of the block.

    The lock is `fcntl.flock` on `<path>/<lock_name>`: the kernel releases it when the
    holder exits in any way (kill -9 included), so a stale lock file never blocks a
    later run. A second process is refused at once with DirectoryInUseError naming
    the holder (the `command`, when it started and its process id, as the holder wrote
    them into the file), the message led by `flag` (the option naming `path`) if given.
    The lock file stays (removing it would race with a process about to lock it).
    """
    import fcntl

    os.makedirs(path, exist_ok=True)
    lock_path = os.path.join(path, lock_name)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            raise DirectoryInUseError(
                f"{flag + ': ' if flag else ''}{os.path.abspath(path)} is in use by {holder}; "
                "wait for it to finish or choose another directory") from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"{command} (started {started}) (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
