"""A run directory (kerasnets-train's --model_dir): the recipe it records, who holds it,
and the one way a run is started, resumed or replaced in it.

A run records its whole recipe (every TrainConfig field, as it runs) in recipe.json
before its first epoch. Started again:

* with the same recipe, it resumes from its newest backup (kerasnets.training);
* with a recipe that differs in any field, it is refused in one line naming each
  differing flag (old → new) and both ways on: the old flags, or --overwrite. A
  resumed backup carries its compiled optimizer and schedule, so continuing it
  under other flags would train one recipe and record another;
* with `overwrite`, the earlier run's files (partial or finished) are removed first
  and the run starts afresh.

Both training loops (kerasnets.training and kerasnets.distributed) start through
`start()`, and kerasnets-train asks `problem()` before it loads anything. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable

from kerasnets import errors, fileio, recipe
from kerasnets.recipe import TrainConfig

RECIPE_FILE = "recipe.json"
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
    path = os.path.join(model_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict) or set(values) != set(recipe.FIELDS):
            raise ValueError("it does not name exactly the fields of TrainConfig")
        return TrainConfig(**values)
    except (OSError, ValueError, TypeError) as e:  # ConfigError, JSON and Unicode errors too
        raise RunDirError(f"--model_dir: {path} is not a recipe this kerasnets can read ({e}); "
                          "start afresh with --overwrite") from None


def latest_backup(model_dir: str) -> str | None:
    """The newest complete backup directory of the run in `model_dir` (one written after
    each epoch by kerasnets.training.write_backup, for both loops), or None."""
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


def start(model_dir: str, config: TrainConfig, overwrite: bool,
          log: Callable[[str], None] = print) -> None:
    """Makes `model_dir` ready for `config`: refuses it (RunDirError) as `problem()` says,
    removes an earlier run with `overwrite` (only a directory holding one: a user's own
    files are never taken for a run's), and records the recipe."""
    reason = problem(model_dir, config, overwrite)
    if reason:
        raise RunDirError(reason)
    if overwrite and os.path.isdir(model_dir) and holds_run(model_dir):
        removed = [name for name in RUN_FILES if remove(os.path.join(model_dir, name))]
        log(f"--overwrite: removed the earlier run's {', '.join(removed)} from {model_dir}")
    os.makedirs(model_dir, exist_ok=True)
    if not os.path.isfile(os.path.join(model_dir, RECIPE_FILE)):
        with fileio.atomic_file(os.path.join(model_dir, RECIPE_FILE)) as f:
            json.dump(dataclasses.asdict(recipe.as_run(config)), f, indent=2)


def remove(path: str) -> bool:
    """Removes a file or directory tree; whether there was one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    else:
        return False
    return True


def train_and_export(config: TrainConfig, model_dir: str, data_dir: str | None = None,
                     mnist_path: str | None = None, overwrite: bool = False,
                     export_base: str | None = None, collective_timeout: float = 120.0,
                     log: Callable[[str], None] = print) -> dict | None:
    """kerasnets-train as one call: holds `model_dir` (a second run on it is refused), trains
    `config` into it (on the TF_CONFIG cluster with --strategy=multiworker), and with
    `export_base` exports the final model as the next version. Returns the results dict
    (None on a multi-worker job's other workers, whose outputs the chief writes)."""
    model_dir = os.path.abspath(model_dir)
    lock_dir, cluster = model_dir, None
    if config.strategy == "multiworker":
        from kerasnets import distributed
        cluster = distributed.cluster_spec()
        if cluster[1]:  # a non-chief worker works in its own subdirectory
            lock_dir = distributed.worker_dir(model_dir, cluster[1])
    with fileio.exclusive_directory(lock_dir, "kerasnets-train", LOCK_FILE, "--model_dir"):
        # before anything loads; another worker also reads the chief's directory, where it
        # shares it, so a finished job is refused by every worker, not only the chief
        reason = problem(lock_dir, config, overwrite) or (
            lock_dir != model_dir and problem(model_dir, config, overwrite))
        if reason:
            raise RunDirError(reason)
        return _train_and_export(config, model_dir, cluster, data_dir, mnist_path, overwrite,
                                 export_base, collective_timeout, log)


def _train_and_export(config: TrainConfig, model_dir: str, cluster: tuple[int, int] | None,
                      data_dir: str | None, mnist_path: str | None, overwrite: bool,
                      export_base: str | None, collective_timeout: float,
                      log: Callable[[str], None]) -> dict | None:
    from kerasnets import data, export, models

    strategy = None
    if cluster is not None:
        from kerasnets import distributed
        strategy = distributed.start_cluster(config, collective_timeout)
    mnist, source = data.resolve_mnist(data_dir, mnist_path)
    log(f"MNIST: {source}")
    if strategy is None:
        from kerasnets import training
        results = training.train(config, mnist, model_dir, log=log, overwrite=overwrite)
    else:
        results = distributed.train_multiworker(config, mnist, model_dir, strategy, log=log,
                                                overwrite=overwrite)
        if results is None:
            workers, index = cluster
            log(f"worker {index} of {workers}: done (the chief, worker 0, wrote the outputs)")
            return None
    log(f"wrote {model_dir}: {', '.join(OUTPUT_FILES)}, tensorboard/ "
        f"(best test accuracy {100 * results['best_test_accuracy']:.2f}%)")
    if export_base:
        export.tf_logger_quiet()
        model = models.load_model(os.path.join(model_dir, "model.keras"))
        log(f"exported version {export.export_version(model, export_base)}")
    return results
