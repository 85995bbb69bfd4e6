"""The study: where it is stored, what it was started with, and who may train next.

A study lives in `<out_dir>/study.db` (SQLite, embedded: nothing to set up) unless
--storage names a database URL (`postgresql://user:password@host/db`), which workers on
several machines share. Optuna's heartbeat runs under every trial, so a trial whose
worker died (SIGKILL, a lost machine) is marked failed after `grace` seconds and no
longer counts.

--trials is the study's total. Two workers that each counted the trials and then
started one could train one trial too many; so a worker claims its trial under a lock
the storage gives every worker of the study: an advisory lock of the PostgreSQL server,
or for SQLite (whose workers share the directory) a file lock beside study.db. Under it
the trials that count are counted (`counted_trials`: claimed, and running, complete or
pruned by the pruner; failed ones and designs over the budget do not) and the trial is
claimed only while fewer than --trials count.

The settings the study was created with (space, budget, trials, objectives, the
validation split, the recipe) are its user attributes; a worker started with others is
refused, so one study never mixes two searches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from typing import Iterator

from kerasnets import errors

DATABASE = "study.db"
LOCK_FILE = ".study.lock"
SETTINGS = "kerasnets_settings"  # the study's user attribute holding its settings
# a trial's user attributes
CLAIMED = "claimed"          # it holds one of the study's --trials
OVER_BUDGET = "over_budget"  # its design was over --max_params: pruned, never trained
TRAINABLE_PARAMS = "trainable_params"
MACS = "macs"
SECONDS = "seconds"
ERROR = "error"              # why it failed (the space raised, the loss diverged)
RUN_DIR = "run_dir"


class StudyError(errors.KerasnetsError, ValueError):
    """A storage that cannot be reached or used, or a study of other settings."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a study is: the same for every worker of it."""

    space: str
    max_params: int
    trials: int
    objectives: tuple[str, ...]
    validation_examples: int
    recipe: dict

    def as_json(self) -> dict:
        return {**dataclasses.asdict(self), "objectives": list(self.objectives)}


def default_storage(out_dir: str) -> str:
    return "sqlite:///" + os.path.abspath(os.path.join(out_dir, DATABASE))


def shown(url: str) -> str:
    """`url` as messages show it: its password replaced by ***."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: say it as given, less what follows a :
        return url.split("@")[-1] if "@" in url else url


def storage_problem(url: str) -> str | None:
    """Why `url` is not a storage --storage takes, or None (for SQLite: its folder must
    exist)."""
    if url.startswith("sqlite:///"):
        folder = os.path.dirname(os.path.abspath(url[len("sqlite:///"):]))
        if not os.path.isdir(folder):
            return f"--storage: {url}: no such directory {folder}"
        return None
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return None
    return (f"--storage must be a sqlite:///PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DB "
            f"URL, not {shown(url)!r}")


@contextlib.contextmanager
def experimental_allowed() -> Iterator[None]:
    """Optuna's heartbeat is marked experimental; its warning is not the user's business."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def open_study(url: str, name: str, settings: Settings, heartbeat: int = 10,
               lock: ClaimLock | None = None):
    """The study `name` in `url`, created with `settings` or joined if it holds the same
    ones; StudyError (one line, the URL without its password) if the storage cannot be
    reached, or the study there was started with other settings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial says it
    directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
    lock = lock or ClaimLock(url, name)
    try:
        with lock.held(), experimental_allowed():
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                engine_kwargs=({"connect_args": {"timeout": 60}} if url.startswith("sqlite")
                               else {"pool_pre_ping": True,
                                     "connect_args": {"connect_timeout": 10}}))
            study = optuna.create_study(
                storage=storage, study_name=name, load_if_exists=True, directions=directions,
                sampler=optuna.samplers.TPESampler(seed=None),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))
            recorded = study.user_attrs.get(SETTINGS)
            if recorded is None:
                study.set_user_attr(SETTINGS, settings.as_json())
                recorded = settings.as_json()
    except Exception as e:
        lost = storage_error(e)
        if lost is None:
            raise
        raise StudyError(f"--storage: cannot use {shown(url)}: {storage_reason(lost)}") from None
    if recorded != settings.as_json():
        raise StudyError(f"--study_name: {name} in {shown(url)} is a study of other settings "
                         f"({settings_changes(recorded, settings.as_json())}); give the same "
                         "flags to join it, or another --study_name")
    return study


def settings_changes(old: dict, new: dict) -> str:
    """Each setting that differs, as `--name old → new` (the recipe's fields by name)."""
    flat_old = {**{k: v for k, v in old.items() if k != "recipe"}, **old.get("recipe", {})}
    flat_new = {**{k: v for k, v in new.items() if k != "recipe"}, **new.get("recipe", {})}
    return ", ".join(f"--{k} {json.dumps(flat_old.get(k))} → {json.dumps(flat_new.get(k))}"
                     for k in sorted(set(flat_old) | set(flat_new))
                     if flat_old.get(k) != flat_new.get(k))


def storage_error(error: BaseException | None) -> BaseException | None:
    """The error in `error`'s chain (its causes and the errors it was raised while
    handling) that says the storage could not be reached or used: SQLAlchemy's, the
    database driver's, or a missing driver; None if there is none. The chain is
    followed because Optuna may raise another error while it handles a lost connection."""
    import optuna

    try:
        import sqlalchemy.exc
    except ImportError:
        return None
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return error
        if isinstance(error, (sqlalchemy.exc.NoSuchModuleError, ImportError)) and (
                "psycopg" in str(error) or "DB access module" in str(error)):
            return error
        if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is None:
            return error
        error = error.__cause__ or error.__context__
    return None


def storage_reason(error: BaseException) -> str:
    """The first line of the driver's own words for `error` (a storage_error: no URL, no
    password)."""
    if isinstance(error, ImportError) or "DB access module" in str(error):
        return "PostgreSQL needs its driver, psycopg (pip install 'kerasnets[postgresql]')"
    cause = getattr(error, "orig", None) or error.__cause__ or error
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


class ClaimLock:
    """Held by one worker of the study at a time: PostgreSQL's advisory lock on the
    study's name (on a connection of its own), or for SQLite an exclusive file lock
    beside the database. Workers also open the study under it, since two creating its
    tables at once would collide."""

    def __init__(self, url: str, study_name: str):
        self.url = url
        self.key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big",
                                  signed=True)
        self.engine = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.url.startswith("sqlite"):
            path = os.path.join(os.path.dirname(self.url[len("sqlite:///"):]), LOCK_FILE)
            with open(path, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return
        import sqlalchemy

        if self.engine is None:
            self.engine = sqlalchemy.create_engine(
                self.url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
        with self.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": self.key})
                connection.commit()


def counted_trials(study) -> tuple[list, list]:
    """(the claimed trials that finished, complete or pruned; those still running)."""
    import optuna

    states = optuna.trial.TrialState
    claimed = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(CLAIMED)]
    done = [t for t in claimed if t.state in (states.COMPLETE, states.PRUNED)]
    running = [t for t in claimed if t.state == states.RUNNING]
    return done, running


def fail_stale(study) -> None:
    """Marks failed the running trials whose worker stopped sending heartbeats."""
    import optuna

    with experimental_allowed():
        optuna.storages.fail_stale_trials(study)


def heartbeat_excepthook(fallback):
    """A threading.excepthook for a search's process: Optuna's heartbeat thread dies with a
    traceback when the storage goes away, while the worker's own thread reports the same
    loss in one line; that thread's storage errors are left to it, the rest to `fallback`."""

    def hook(args):
        thread = getattr(args.thread, "name", "") or ""
        if "_record_heartbeat" in thread and storage_error(args.exc_value) is not None:
            return
        fallback(args)

    return hook
