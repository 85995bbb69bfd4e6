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

A run of the learner's own model (--model=PATH.py:FUNCTION) also records a digest of
its code (the file's bytes, the architecture it builds): started again after the file
was edited, it is refused the same way, its backup untouched.

Both training loops (kerasnets.training.fit and kerasnets.training.distributed) start through
`start()`, which builds the model (so it loads Keras), and kerasnets-train asks `problem()`
before it loads anything; the rest imports no TensorFlow.
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
# Written last, when a run has finished (kerasnets.training.fit): its presence is what
# "finished" means, to kerasnets-train, kerasnets-sweep, kerasnets-compare and the benchmarks
RESULTS_FILE = "results.json"
# recipe.json's key beside the TrainConfig fields: what --precision (auto included) meant
# where the run started, so a resume where it means another precision is refused
RESOLVED_PRECISION = "resolved_precision"
# recipe.json's key for a referenced model (PATH.py:FUNCTION): the digest of what it built
# (kerasnets.models.user_code.digest), so a resume after the file was edited is refused
MODEL_DIGEST = "model_digest"
DESIGN_FILE = "design.json"  # the model's design card (kerasnets.models.design), at the start
# recipe.json's key for a model a search sampled (Design.record: the space, its parameters)
SAMPLED_DESIGN = "sampled_design"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"  # held while a run trains in the directory (fileio.exclusive_directory)
OUTPUT_FILES = ("model.keras", "history.csv", RESULTS_FILE, "curves.png",
                "misclassified.png", "confusion.png")
RUN_FILES = OUTPUT_FILES + ("tensorboard", BACKUP_DIR, RECIPE_FILE, DESIGN_FILE)  # what --overwrite removes


class RunDirError(errors.KerasnetsError, ValueError):
    """The directory holds a finished run, or a run of another recipe."""


@dataclasses.dataclass(frozen=True)
class Design:
    """A model given to a run instead of built from its --model (kerasnets.search: a
    design sampled from a space, which --model names): `build` makes it (no arguments,
    the same architecture each call), `record` says what it is in recipe.json (the
    space's parameters, what the run is evaluated on), `digest` is what it builds
    (kerasnets.models.user_code.digest)."""

    build: Callable[[], object]
    record: dict
    digest: dict


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What recipe.json holds: the recipe, the precision --precision resolved to where the
    run started (None for a run recorded before kerasnets recorded it), and a referenced
    model's digest (None for a built-in model)."""

    config: TrainConfig
    precision: str | None = None
    model_digest: dict | None = None
    sampled_design: dict | None = None


def recorded_recipe(model_dir: str) -> TrainConfig | None:
    """The recipe the run in `model_dir` recorded when it started, or None if none did;
    RunDirError for a file that is not a whole recipe (every field, each allowed)."""
    recorded = read_recipe_file(model_dir)
    return recorded and recorded.config


def read_recipe_file(model_dir: str) -> Recorded | None:
    """What the run in `model_dir` recorded in recipe.json, or None without one;
    RunDirError for a file that is not a whole recipe (every field, each allowed)."""
    path = os.path.join(model_dir, RECIPE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("it is not a JSON object")
        resolved = values.pop(RESOLVED_PRECISION, None)
        digest = values.pop(MODEL_DIGEST, None)
        sampled = values.pop(SAMPLED_DESIGN, None)
        if set(values) != set(recipe.FIELDS):
            raise ValueError("it does not name exactly the fields of TrainConfig")
        if resolved is not None and resolved not in recipe.PRECISIONS[1:]:
            raise ValueError(f"{RESOLVED_PRECISION} {resolved!r} is not a precision")
        if digest is not None and not isinstance(digest, dict):
            raise ValueError(f"{MODEL_DIGEST} is not a JSON object")
        if sampled is not None and not isinstance(sampled, dict):
            raise ValueError(f"{SAMPLED_DESIGN} is not a JSON object")
        return Recorded(TrainConfig(**values), resolved, digest, sampled)
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
               for name in (RECIPE_FILE, RESULTS_FILE)) or latest_backup(model_dir) is not None


def finished(model_dir: str) -> bool:
    """Whether `model_dir` holds a finished run (its RESULTS_FILE, written last)."""
    return os.path.isfile(os.path.join(model_dir, RESULTS_FILE))


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
    if finished(model_dir):
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
          log: Callable[[str], None] = print, design: Design | None = None) -> None:
    """Makes `model_dir` ready for `config`, whose --precision means `precision` here:
    checks a referenced model (built once and held to the MNIST-model contract, before
    anything is written), refuses the directory (RunDirError) as `problem()` says, or
    where the run there was trained in another precision or from other code (or another
    sampled `design`), removes an earlier run with `overwrite` (only a directory holding
    one: a user's own files are never taken for a run's), and records the recipe with
    its resolved precision, a referenced model's digest and a sampled design's record.

    TensorFlow's threads per op must be set before (building a model starts its runtime)."""
    digest = design.digest if design else model_digest(config.model)
    reason = problem(model_dir, config, overwrite) or (not overwrite and (
        precision_problem(model_dir, config, precision) or code_problem(model_dir, config, digest)
        or design_problem(model_dir, design)))
    if reason:
        raise RunDirError(reason)
    if overwrite and os.path.isdir(model_dir) and holds_run(model_dir):
        removed = [name for name in RUN_FILES if remove(os.path.join(model_dir, name))]
        log(f"--overwrite: removed the earlier run's {', '.join(removed)} from {model_dir}")
    os.makedirs(model_dir, exist_ok=True)
    if not os.path.isfile(os.path.join(model_dir, RECIPE_FILE)):
        recorded = {**dataclasses.asdict(recipe.as_run(config)), RESOLVED_PRECISION: precision}
        if digest:
            recorded[MODEL_DIGEST] = digest
        if design:
            recorded[SAMPLED_DESIGN] = design.record
        with fileio.atomic_file(os.path.join(model_dir, RECIPE_FILE)) as f:
            json.dump(recorded, f, indent=2)


def design_problem(model_dir: str, design: Design | None) -> str | None:
    """Why the run in `model_dir` may not continue with `design` (it trained another
    sampled design, or none), or None."""
    recorded = read_recipe_file(model_dir) if os.path.isdir(model_dir) else None
    now = design.record if design else None
    if not recorded or recorded.sampled_design == now:
        return None
    return (f"--model_dir: {os.path.abspath(model_dir)} holds a run of another design "
            f"({json.dumps(recorded.sampled_design)}, not {json.dumps(now)}); start afresh "
            "with --overwrite, or choose another directory")


def model_digest(model: str) -> dict | None:
    """The digest of what a referenced model builds (kerasnets.models.user_code.digest),
    built and checked now; None for a built-in name (its code is the package's)."""
    from kerasnets.models import user_code

    if not user_code.is_reference(model):
        return None
    from kerasnets.models import convnets

    return user_code.digest(model, convnets.build_model(model).get_config())


def write_design(model_dir: str, model) -> None:
    """The design card of the run's model (kerasnets.models.design) as design.json, once:
    written from the model the run trains, before its first epoch."""
    path = os.path.join(model_dir, DESIGN_FILE)
    if not os.path.isfile(path):
        from kerasnets.models import design

        with fileio.atomic_file(path) as f:
            json.dump(design.card(model), f, indent=2)


def precision_problem(model_dir: str, config: TrainConfig, precision: str) -> str | None:
    """Why the run in `model_dir` may not continue where --precision={config.precision}
    means `precision` (it was trained in another one), or None."""
    recorded = read_recipe_file(model_dir) if os.path.isdir(model_dir) else None
    if not recorded or recorded.precision in (None, precision):
        return None
    return (f"--model_dir: {os.path.abspath(model_dir)} holds a run trained in "
            f"{recorded.precision} (--precision={config.precision} there); here it means "
            f"{precision}: resume it where it means {recorded.precision}, or start afresh with "
            "--overwrite")


def code_problem(model_dir: str, config: TrainConfig, digest: dict | None) -> str | None:
    """Why the run in `model_dir` may not continue with the referenced model's code as it
    is now (its digest `digest`): the file, or what it builds, changed since the run
    started. None for a built-in model, or code unchanged."""
    from kerasnets.models import user_code

    recorded = read_recipe_file(model_dir) if os.path.isdir(model_dir) else None
    if not recorded or digest is None or recorded.model_digest is None:
        return None
    changed = user_code.digest_changes(recorded.model_digest, digest)
    return changed and (
        f"--model_dir: {os.path.abspath(model_dir)} holds a run of --model={config.model} "
        f"whose code changed since it started ({' and '.join(changed)}); put the file back as "
        "it was to resume, or start afresh with --overwrite")


def remove(path: str) -> bool:
    """Removes a file or directory tree; whether there was one."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
    else:
        return False
    return True
