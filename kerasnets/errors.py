"""The package's own error types: what a command reports in one line and exits on.

Every error a user can cause or fix (a bad data file, a model that is not an
MNIST model, a busy directory, a full disk, ...) derives from `KerasnetsError`,
so the command-line front ends catch exactly these, in one place
(`kerasnets.cli.command`), and let anything else (a bug) show its traceback.
Each also derives from the built-in type it was before (ValueError,
RuntimeError, OSError), so code written against those keeps working.
"""

from __future__ import annotations

import errno
import os
import sys


class KerasnetsError(Exception):
    """An expected failure: its message says what was wrong and what to do.

    `exit_status` is what a command exits with when it stops on this error.
    """

    exit_status = 1


class ModelFileError(KerasnetsError, ValueError):
    """A model file that cannot be read: missing, not a .keras file, corrupt or unsafe."""


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The model file does not exist."""


class NotAnMnistModelError(KerasnetsError, ValueError):
    """A model that does not take 28x28 grey images or does not output 10 classes."""


class DiskFullError(KerasnetsError, OSError):
    """A write failed because its filesystem is full (ENOSPC) or over quota (EDQUOT)."""


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is an OSError for a full filesystem or an exhausted quota, or
    TensorFlow's wrapping of one: a tf.errors.OpError (ResourceExhaustedError, from a
    SavedModel, checkpoint or TensorBoard event file write) that carries the OS's message."""
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL_ERRNOS
    tf = sys.modules.get("tensorflow")  # not imported: the error cannot be TensorFlow's
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    return (op_error is not None and isinstance(error, op_error)
            and any(os.strerror(code) in str(error) for code in _DISK_FULL_ERRNOS))


def disk_full(error: BaseException, path: str, what: str) -> DiskFullError:
    """The one-line DiskFullError for `error` (the OS's, or TensorFlow's wrapping of it)
    while writing `what` under `path`."""
    return DiskFullError(
        f"no space left on the device of {path} while writing {what}; free some "
        "space and run the same command again (nothing finished was lost or half-written)")
