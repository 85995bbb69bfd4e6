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
import time
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
    """The recipe the run in `model_dir` recorded when it started, or None if none did."""
    path = os.path.join(model_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        values = json.load(f)
    try:
        return TrainConfig(**values)
    except (TypeError, recipe.ConfigError) as e:
        raise RunDirError(f"--model_dir: {path} is not a recipe of this version of kerasnets "
                          f"({e}); start afresh with --overwrite") from None


def problem(model_dir: str, config: TrainConfig, overwrite: bool) -> str | None:
    """Why `config` may not train into `model_dir` (one line), or None if it may."""
    if overwrite or not os.path.isdir(model_dir):
        return None
    where = os.path.abspath(model_dir)
    if os.path.isfile(os.path.join(model_dir, "results.json")):
        return (f"--model_dir: {where} holds a finished run; pass --overwrite to replace it, "
                "or choose another directory")
    old, new = recorded_recipe(model_dir), recipe.as_run(config)
    changed = recipe.differences(old, new) if old else []
    if not changed:
        return None
    show = lambda value: json.dumps(value)  # noqa: E731  (true, 0.05, "sgd")
    listed = ", ".join(f"--{name} {show(getattr(old, name))} → {show(getattr(new, name))}"
                       for name in changed)
    return (f"--model_dir: {where} holds a run of another recipe ({listed}); resume it with "
            f"{' '.join(recipe.as_flags(old, changed))}, or start afresh with --overwrite")


def start(model_dir: str, config: TrainConfig, overwrite: bool,
          log: Callable[[str], None] = print) -> None:
    """Makes `model_dir` ready for `config`: refuses it (RunDirError) as `problem()` says,
    removes an earlier run with `overwrite`, and records the recipe."""
    reason = problem(model_dir, config, overwrite)
    if reason:
        raise RunDirError(reason)
    if overwrite:
        removed = [name for name in RUN_FILES if remove(os.path.join(model_dir, name))]
        if removed:
            log(f"--overwrite: removed the earlier run's {', '.join(removed)} from {model_dir}")
    os.makedirs(model_dir, exist_ok=True)
    if recorded_recipe(model_dir) is None:
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


def lock_owner(command: str) -> str:
    """What the lock file says about its holder."""
    return f"{command} (started {time.strftime('%Y-%m-%d %H:%M:%S')})"


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
    try:
        with fileio.exclusive_directory(lock_dir, lock_owner("kerasnets-train"), LOCK_FILE):
            reason = problem(lock_dir, config, overwrite)  # before anything loads
            if reason:
                raise RunDirError(reason)
            return _train_and_export(config, model_dir, cluster, data_dir, mnist_path,
                                     overwrite, export_base, collective_timeout, log)
    except fileio.DirectoryInUseError as e:
        raise fileio.DirectoryInUseError(f"--model_dir: {e}") from None


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
        log(f"exported SavedModel {export.export_version(model, export_base)}")
    return results
