"""A run directory (kerasnets-train's --model_dir): the recipe it records, who holds it,
and the one way a run is started, resumed or replaced in it.

A run records its whole recipe (every TrainConfig field, as it runs) in recipe.json
before its first epoch. Started again:

* with the same recipe, it resumes from its newest backup (kerasnets.training.fit);
* with a recipe that differs in any field, it is refused in one line naming each
  differing flag (old → new) and both ways on: the old flags, or --overwrite. A
  resumed backup carries its compiled optimizer and schedule, so continuing it
  under other flags would train one recipe and record another;
* with `overwrite`, the earlier run's files (partial or finished) are removed first
  and the run starts afresh.

Both training loops (kerasnets.training.fit and kerasnets.training.distributed) start through
`start()`, and kerasnets-train asks `problem()` before it loads anything. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable

from kerasnets import errors, fileio
from kerasnets.training import recipe
from kerasnets.training.recipe import TrainConfig

RECIPE_FILE = "recipe.json"
# recipe.json's key beside the TrainConfig fields: what --precision (auto included) meant
# where the run started, so a resume where it means another precision is refused
RESOLVED_PRECISION = "resolved_precision"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"  # held while a run trains in the directory (fileio.exclusive_directory)
OUTPUT_FILES = ("model.keras", "history.csv", "results.json", "curves.png",
                "misclassified.png", "confusion.png")
RUN_FILES = OUTPUT_FILES + ("tensorboard", BACKUP_DIR, RECIPE_FILE)  # what --overwrite removes


class RunDirError(errors.KerasnetsError, ValueError):
    """The directory holds a finished run, or a run of another recipe."""


def recorded_recipe(model_dir: str) -> TrainConfig | None:
    """The recipe the run in `model_dir` recorded when it started, or None if none did;
    RunDirError for a file that is not a whole recipe (every field, each allowed)."""
    recorded = read_recipe_file(model_dir)
    return recorded and recorded[0]


def read_recipe_file(model_dir: str) -> tuple[TrainConfig, str | None] | None:
    """(the recorded recipe, the precision it resolved to where it started: None for a run
    recorded before kerasnets recorded it), or None without a recipe.json."""
    path = os.path.join(model_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("it is not a JSON object")
        resolved = values.pop(RESOLVED_PRECISION, None)
        if set(values) != set(recipe.FIELDS):
            raise ValueError("it does not name exactly the fields of TrainConfig")
        if resolved is not None and resolved not in recipe.PRECISIONS[1:]:
            raise ValueError(f"{RESOLVED_PRECISION} {resolved!r} is not a precision")
        return TrainConfig(**values), resolved
    except (OSError, ValueError, TypeError) as e:  # ConfigError, JSON and Unicode errors too
        raise RunDirError(f"--model_dir: {path} is not a recipe this kerasnets can read ({e}); "
                          "start afresh with --overwrite") from None


def latest_backup(model_dir: str) -> str | None:
    """The newest complete backup directory of the run in `model_dir` (one written after
    each epoch by kerasnets.training.fit.write_backup, for both loops), or None."""
    root = os.path.join(model_dir, BACKUP_DIR)
    if not os.path.isdir(root):
        return None
    done = sorted(d for d in os.listdir(root)
                  if d.startswith("epoch-") and os.path.isfile(os.path.join(root, d, "state.json")))
    return os.path.join(root, done[-1]) if done else None


def holds_run(model_dir: str) -> bool:
    """Whether `model_dir` holds a kerasnets-train run (what --overwrite may remove)."""
    return any(os.path.isfile(os.path.join(model_dir, name))
               for name in (RECIPE_FILE, "results.json")) or latest_backup(model_dir) is not None


def differences_text(old: TrainConfig, new: TrainConfig) -> tuple[str, str] | None:
    """(each field that differs as `--name old → new`, values as JSON: true, 0.05, "sgd";
    the flags that give the old values back), or None if none differs."""
    changed = recipe.differences(old, new)
    if not changed:
        return None
    return (", ".join(f"--{name} {json.dumps(getattr(old, name))} → "
                      f"{json.dumps(getattr(new, name))}" for name in changed),
            " ".join(recipe.as_flags(old, changed)))


def problem(model_dir: str, config: TrainConfig, overwrite: bool) -> str | None:
    """Why `config` may not train into `model_dir` (one line), or None if it may."""
    if not os.path.isdir(model_dir):
        return None
    where = os.path.abspath(model_dir)
    if not holds_run(model_dir):  # a run would write these names over, or later remove them
        taken = [name for name in RUN_FILES if os.path.lexists(os.path.join(model_dir, name))]
        if taken:
            return (f"--model_dir: {where} holds {', '.join(taken)} but no kerasnets run (no "
                    f"{RECIPE_FILE}); a run writes those names: move them, or choose another "
                    "directory")
        return None
    if overwrite:
        return None
    if os.path.isfile(os.path.join(model_dir, "results.json")):
        return (f"--model_dir: {where} holds a finished run; pass --overwrite to replace it, "
                "or choose another directory")
    old = recorded_recipe(model_dir)
    if old is None:
        if latest_backup(model_dir):
            return (f"--model_dir: {where} holds a partial run whose recipe is unknown (no "
                    f"{RECIPE_FILE}); start afresh with --overwrite, or choose another directory")
        return None
    changed = differences_text(old, recipe.as_run(config))
    return changed and (f"--model_dir: {where} holds a run of another recipe ({changed[0]}); "
                        f"resume it with {changed[1]}, or start afresh with --overwrite")


def start(model_dir: str, config: TrainConfig, overwrite: bool, precision: str,
          log: Callable[[str], None] = print) -> None:
    """Makes `model_dir` ready for `config`, whose --precision means `precision` here:
    refuses it (RunDirError) as `problem()` says or where the run there was trained in
    another precision, removes an earlier run with `overwrite` (only a directory holding
    one: a user's own files are never taken for a run's), and records the recipe with
    its resolved precision."""
    reason = problem(model_dir, config, overwrite) or (
        not overwrite and precision_problem(model_dir, config, precision))
    if reason:
        raise RunDirError(reason)
    if overwrite and os.path.isdir(model_dir) and holds_run(model_dir):
        removed = [name for name in RUN_FILES if remove(os.path.join(model_dir, name))]
        log(f"--overwrite: removed the earlier run's {', '.join(removed)} from {model_dir}")
    os.makedirs(model_dir, exist_ok=True)
    if not os.path.isfile(os.path.join(model_dir, RECIPE_FILE)):
        with fileio.atomic_file(os.path.join(model_dir, RECIPE_FILE)) as f:
            json.dump({**dataclasses.asdict(recipe.as_run(config)), RESOLVED_PRECISION: precision},
                      f, indent=2)


def precision_problem(model_dir: str, config: TrainConfig, precision: str) -> str | None:
    """Why the run in `model_dir` may not continue where --precision={config.precision}
    means `precision` (it was trained in another one), or None."""
    recorded = read_recipe_file(model_dir) if os.path.isdir(model_dir) else None
    if not recorded or recorded[1] in (None, precision):
        return None
    return (f"--model_dir: {os.path.abspath(model_dir)} holds a run trained in {recorded[1]} "
            f"(--precision={config.precision} there); here it means {precision}: resume it where "
            f"it means {recorded[1]}, or start afresh with --overwrite")


def remove(path: str) -> bool:
    """Removes a file or directory tree; whether there was one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    else:
        return False
    return True
