"""One worker of a search: trials until the study holds --trials of them, then the best
design trained once and tested once.

Each trial samples a design from the space, and its design card
(kerasnets.models.design) is computed before anything trains: a design over
--max_params is recorded as a pruned trial with `over_budget` and never trained, and
does not count toward --trials. A design within it claims one of the study's trials
(kerasnets.search.study) and trains as an ordinary run directory,
`<out_dir>/trials/trial-NNNN/`, on the training images less a validation split that
the study fixes (`validation_split`): selection never sees the test set. Its accuracy
on the split after each epoch goes to Optuna's pruner, which stops weak trials early
(single-objective searches: Optuna prunes only those).

With --objectives=accuracy,seconds a trial's second value is its training seconds, and
the study keeps the Pareto front of the two; the best design is the front's most
accurate one. The best design is trained at the end on all the training images and
tested once on the test set, into `<out_dir>/best/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from typing import Callable

import numpy as np

from kerasnets import errors, fileio
from kerasnets.search import spaces, study as studies
from kerasnets.training import recipe, run_dir

SPLIT_SEED = 0  # the validation split: the first examples of this permutation of 60,000
TRIALS_DIR = "trials"
BEST_DIR = "best"
SEARCH_FILE = "search.json"  # the study this directory belongs to
FAILURES_IN_A_ROW = 3        # trials failing one after another (the space raises) end the search
OVER_BUDGET_IN_A_ROW = 200   # designs over the budget one after another end the search
OBJECTIVES = ("accuracy", "seconds")


class SearchError(errors.KerasnetsError, ValueError):
    """A search that cannot start or go on (one line)."""


class TrialError(Exception):
    """One trial failed (its space raised, or its loss diverged): the trial is marked
    failed and the search goes on."""


def validation_split(data, validation_examples: int):
    """((x_fit, y_fit), (x_val, y_val)) of load_mnist()'s training images: the first
    `validation_examples` of a fixed permutation held out, the rest to train on."""
    (x_train, y_train), _ = data
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x_train))
    held, kept = order[:validation_examples], order[validation_examples:]
    return (x_train[kept], y_train[kept]), (x_train[held], y_train[held])


def objectives_problem(text: str) -> str | None:
    names = tuple(text.split(","))
    if names in (("accuracy",), OBJECTIVES):
        return None
    return f"--objectives must be accuracy or accuracy,seconds, not {text!r}"


def check_budget(space: spaces.Space, max_params: int) -> None:
    """SearchError when no design of `space` fits `max_params` (known for five_block)."""
    smallest = max_params and space.smallest_params and space.smallest_params()
    if smallest and max_params < smallest:
        raise SearchError(f"--max_params={max_params:,} is below the smallest {space.name} "
                          f"design ({smallest:,} trainable parameters: every block "
                          f"{spaces.WIDTHS[0]} wide); raise it")


def directory_problem(out_dir: str, url: str, study_name: str) -> str | None:
    """Why `out_dir` cannot be this study's directory (it holds another study's files,
    or files but no search), or None. Reads only."""
    if not os.path.isdir(out_dir):
        return None
    path = os.path.join(out_dir, SEARCH_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                theirs = json.load(f)
        except (OSError, ValueError):
            theirs = None
        mine = {"study_name": study_name, "storage": studies.shown(url)}
        if theirs != mine:
            return (f"--out_dir: {os.path.abspath(out_dir)} holds the files of another study "
                    f"({theirs}); choose another --out_dir")
        return None
    ours = {studies.DATABASE, studies.LOCK_FILE}  # and a worker's search.json being written
    taken = sorted(name for name in os.listdir(out_dir)
                   if name not in ours and not name.startswith(f".{SEARCH_FILE}.tmp"))
    if taken:
        return (f"--out_dir: {os.path.abspath(out_dir)} holds {', '.join(taken)} but no "
                "search; choose an empty or new directory")
    return None


def record_directory(out_dir: str, url: str, study_name: str) -> None:
    """search.json: the study `out_dir` belongs to (written once the study is open)."""
    path = os.path.join(out_dir, SEARCH_FILE)
    if not os.path.isfile(path):
        with fileio.atomic_file(path) as f:
            json.dump({"study_name": study_name, "storage": studies.shown(url)}, f, indent=2)


@dataclasses.dataclass
class Worker:
    """What one worker searches with, and how far it got."""

    space: spaces.Space
    settings: studies.Settings
    config: recipe.TrainConfig
    study: object
    lock: studies.ClaimLock
    out_dir: str
    split: tuple
    log: Callable[[str], None] = print
    heartbeat: int = 10
    failures: int = 0
    over_budget: int = 0

    @property
    def model_reference(self) -> str:
        """--model as a trial's recipe records it: the space's function."""
        return ("kerasnets.search.spaces:five_block" if self.space.name == spaces.FIVE_BLOCK
                else self.space.name)

    def objective(self, trial):
        """Samples, checks the budget, claims a trial of the study and trains it."""
        import optuna

        from kerasnets.models import design, user_code

        import keras

        keras.backend.clear_session()  # the designs of earlier trials are let go
        started = time.perf_counter()
        try:
            model = self.space.build(trial)
            config = self.space.recipe(trial, self.config)
        except user_code.ModelReferenceError as e:
            trial.set_user_attr(studies.ERROR, str(e))
            raise TrialError(str(e)) from None
        card = design.card(model)
        trial.set_user_attr(studies.TRAINABLE_PARAMS, card["trainable_params"])
        trial.set_user_attr(studies.MACS, card["macs"])
        if self.settings.max_params and card["trainable_params"] > self.settings.max_params:
            trial.set_user_attr(studies.OVER_BUDGET, True)
            raise optuna.TrialPruned("over budget")
        with self.lock.held():
            done, running = studies.counted_trials(self.study)
            if len(done) + len(running) >= self.settings.trials:
                raise optuna.TrialPruned("not needed")  # another worker took the last one
            trial.set_user_attr(studies.CLAIMED, True)
        model_dir = os.path.join(self.out_dir, TRIALS_DIR, f"trial-{trial.number:04d}")
        trial.set_user_attr(studies.RUN_DIR, os.path.abspath(model_dir))
        sampled = self.sampled_design(
            trial.number, dict(trial.params), model,
            f"validation: {len(self.split[1][0]):,} training images held out")
        single = len(self.settings.objectives) == 1
        # a validation pass every epoch where the pruner hears it (Optuna prunes
        # single-objective studies only); the recipe records it
        config = dataclasses.replace(config, model=self.model_reference, test_examples=0,
                                     eval_every=1 if single else config.eval_every)
        try:
            results = train(config, self.split, model_dir, sampled,
                            [prune_on_validation(trial)] if single else [])
        finally:
            trial.set_user_attr(studies.SECONDS, round(time.perf_counter() - started, 3))
        accuracy = results["final_test_accuracy"]
        return accuracy if single else (accuracy, float(sum(results["seconds_per_epoch"])))

    def sampled_design(self, number: int, params: dict, model,
                       evaluated_on: str) -> run_dir.Design:
        """Trial `number`'s design (its `params`, built as `model`) as a run trains and
        records it: rebuilt from the space by replaying the parameters."""
        import optuna

        from kerasnets.models import user_code

        return run_dir.Design(
            build=lambda: self.space.build(optuna.trial.FixedTrial(params)),
            record={"space": self.space.name, "params": params, "trial": number,
                    "study": self.study.study_name, "evaluated_on": evaluated_on},
            digest=user_code.digest(self.model_reference, model.get_config()))

    def _trial(self, numbers: list[int]):
        """The trial this worker ran (its number in `numbers`), as the study has it."""
        if not numbers:
            return None
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == numbers[0])

    def one_trial(self) -> None:
        """One trial through Optuna (its heartbeat under it), then its progress line."""
        import optuna

        numbers = []

        def objective(trial):
            numbers.append(trial.number)
            return self.objective(trial)

        stale = None
        try:
            self.study.optimize(objective, n_trials=1, catch=(TrialError,))
        except Exception as e:  # Optuna refuses to tell a trial another worker failed
            trial = self._trial(numbers)
            if trial is None or trial.state != optuna.trial.TrialState.FAIL or (
                    studies.storage_error(e) is not None):
                raise
            stale = (f"another worker marked it failed: its heartbeat was silent for "
                     f"{3 * self.heartbeat} s")
        trial = self._trial(numbers)
        error = stale or trial.user_attrs.get(studies.ERROR)
        self.failures = self.failures + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        self.over_budget = (self.over_budget + 1 if trial.user_attrs.get(studies.OVER_BUDGET)
                            else 0)
        self.log(progress_line(self.study, trial, self.settings, error))
        if self.failures >= FAILURES_IN_A_ROW:
            raise SearchError(f"{self.failures} trials in a row failed, the last with: {error}")
        if self.over_budget >= OVER_BUDGET_IN_A_ROW:
            raise SearchError(f"{self.over_budget} designs in a row were over --max_params="
                              f"{self.settings.max_params:,}; raise it or narrow the space")


def prune_on_validation(trial):
    """A Keras callback: each epoch's validation accuracy to Optuna, and the trial
    stopped (optuna.TrialPruned) when the pruner says so."""
    import keras
    import optuna

    class PruneOnValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy = (logs or {}).get("val_accuracy")
            if accuracy is None:
                return
            trial.report(float(accuracy), epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

    return PruneOnValidation()


def train(config: recipe.TrainConfig, data, model_dir: str, design: run_dir.Design,
          callbacks=(), overwrite: bool = False) -> dict:
    """fit.train for a sampled design, quietly; a diverging loss is the trial's failure."""
    from kerasnets.training import fit

    try:
        return fit.train(config, data, model_dir, log=lambda line: None, verbose=0,
                         extra_callbacks=callbacks, overwrite=overwrite, design=design)
    except fit.NanLossError as e:
        raise TrialError(str(e)) from None


def progress_line(study, trial, settings: studies.Settings, error: str | None = None) -> str:
    """What a worker prints after each of its trials (`error`: why it failed)."""
    import optuna

    attrs = trial.user_attrs
    params = attrs.get(studies.TRAINABLE_PARAMS)
    size = (f"{params:,} params, {attrs.get(studies.MACS) or 0:,} MACs" if params is not None
            else "no design")
    if attrs.get(studies.OVER_BUDGET):
        return (f"design #{trial.number}: {size}: over --max_params={settings.max_params:,}, "
                "not trained")
    if trial.state == optuna.trial.TrialState.FAIL:
        return f"trial #{trial.number} failed: {error or attrs.get(studies.ERROR)}"
    done, _ = studies.counted_trials(study)
    if not attrs.get(studies.CLAIMED):
        return f"design #{trial.number}: not trained (the study has its {settings.trials} trials)"
    head = f"trial {len(done)} of {settings.trials} (#{trial.number}): {size}"
    best = best_trial(study, settings)
    best_text = (f"best {100 * best.values[0]:.2f} % (#{best.number})" if best else "best -")
    if trial.state == optuna.trial.TrialState.PRUNED:
        last = max(trial.intermediate_values.items(), default=(0, math.nan))
        return (f"{head}, pruned after epoch {last[0]} (validation {100 * last[1]:.2f} %); "
                f"{best_text}")
    values = trial.values
    seconds = f", {values[1]:.1f} s" if len(values) > 1 else ""
    return f"{head}, validation {100 * values[0]:.2f} %{seconds}; {best_text}"


def best_trial(study, settings: studies.Settings):
    """The most accurate complete trial (of the Pareto front with two objectives), or None."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if len(settings.objectives) > 1:
        complete = study.best_trials
    return max(complete, key=lambda t: (t.values[0], -t.number))


def pareto_numbers(study, settings: studies.Settings) -> list[int]:
    if len(settings.objectives) < 2:
        return []
    return sorted(t.number for t in study.best_trials)


def search(worker: Worker, wait_seconds: float, max_wait_rounds: int = 10_000) -> None:
    """Trials until the study counts --trials finished ones. While the trials still
    needed are running elsewhere it waits (a dead worker's trial fails once its
    heartbeat is stale, and is then trained again here)."""
    for _ in range(max_wait_rounds):
        with worker.lock.held():
            studies.fail_stale(worker.study)
            done, running = studies.counted_trials(worker.study)
        if len(done) >= worker.settings.trials:
            return
        if len(done) + len(running) >= worker.settings.trials:
            time.sleep(wait_seconds)
            continue
        worker.one_trial()
    raise SearchError("the study's last trials stayed running elsewhere for too long")


BEST_TRAINER = "best_trained_by"  # the study's user attribute: which worker tests the best


def claims_best(worker: Worker) -> dict | None:
    """Whether this worker trains and tests the best design: the first worker to ask
    does, once per study (so the test set is used once), and so does the same directory
    on the same host later when the one that claimed it is gone; returns None then, else
    the claim that stands."""
    mine = {"host": socket.gethostname(), "out_dir": os.path.abspath(worker.out_dir),
            "pid": os.getpid()}
    with worker.lock.held():
        theirs = worker.study.user_attrs.get(BEST_TRAINER)
        if theirs and theirs != mine and not (
                (theirs["host"], theirs["out_dir"]) == (mine["host"], mine["out_dir"])
                and not _alive(theirs["pid"])):
            return theirs
        worker.study.set_user_attr(BEST_TRAINER, mine)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train_best(worker: Worker, best, data, log: Callable[[str], None]) -> dict | None:
    """The best design (trial `best`) trained on the recipe's training images with the
    search's recipe and tested on the test set, into <out_dir>/best/ (resumed if killed),
    by one worker of the study. Its results, or None with no complete trial or where
    another worker tests it."""
    import optuna

    if best is None:
        return None
    other = claims_best(worker)
    if other:
        log(f"the best design (#{best.number}) is trained and tested by the worker on "
            f"{other['host']} in {other['out_dir']}")
        return None
    params = dict(best.params)
    config = worker.space.recipe(optuna.trial.FixedTrial(params), worker.config)
    config = dataclasses.replace(config, model=worker.model_reference)
    sampled = worker.sampled_design(
        best.number, params, worker.space.build(optuna.trial.FixedTrial(params)), "test")
    model_dir = os.path.join(worker.out_dir, BEST_DIR)
    recorded = run_dir.read_recipe_file(model_dir) if os.path.isdir(model_dir) else None
    if recorded and recorded.sampled_design == sampled.record and run_dir.finished(model_dir):
        with open(os.path.join(model_dir, run_dir.RESULTS_FILE)) as f:
            return json.load(f)
    replace = bool(recorded) and recorded.sampled_design != sampled.record
    log(f"training the best design (#{best.number}) on the recipe's training images (the "
        f"validation split included), then testing it once: {model_dir}")
    return train(config, data, model_dir, sampled, overwrite=replace)


def run_search(space_name: str, max_params: int, trials: int, out_dir: str,
               config: recipe.TrainConfig, storage: str | None = None,
               study_name: str = "kerasnets-search", validation_examples: int = 10_000,
               objectives: str = "accuracy", data_dir: str | None = None,
               mnist_path: str | None = None, best: bool = True, heartbeat: int = 10,
               log: Callable[[str], None] = print) -> dict:
    """kerasnets-search as one call: checks everything it can before the first trial,
    joins or creates the study, trains trials until the study holds `trials`, then (with
    `best`) trains and tests the best design, and writes the summary. Returns it."""
    from kerasnets.data import offline
    from kerasnets.search import summary as summaries

    problem = objectives_problem(objectives)
    if problem:
        raise SearchError(problem)
    url = storage or studies.default_storage(out_dir)  # (out_dir is made when the study opens)
    problem = storage and studies.storage_problem(storage)
    if problem:
        raise SearchError(problem)
    space = spaces.load(space_name)
    check_budget(space, max_params)
    mnist, source = offline.resolve_mnist(data_dir, mnist_path)
    if not 0 < validation_examples < len(mnist[0][0]):
        raise SearchError(f"--validation_examples must be in [1, {len(mnist[0][0]) - 1:,}], "
                          f"not {validation_examples:,}")
    settings = studies.Settings(space_name, max_params, trials, tuple(objectives.split(",")),
                                validation_examples, dataclasses.asdict(recipe.as_run(config)))
    problem = directory_problem(out_dir, url, study_name)
    if problem:
        raise SearchError(problem)
    if url == studies.default_storage(out_dir):
        os.makedirs(out_dir, exist_ok=True)  # the database lives in it
    lock = studies.ClaimLock(url, study_name)
    study = studies.open_study(url, study_name, settings, heartbeat, lock)
    os.makedirs(out_dir, exist_ok=True)
    record_directory(out_dir, url, study_name)
    budget = f"within {max_params:,} trainable parameters" if max_params else "without a budget"
    log(f"MNIST: {source}; study {study_name} in {studies.shown(url)}: {trials} trials of "
        f"{space_name} {budget}, selected on {validation_examples:,} held-out training images")
    worker = Worker(space, settings, config, study, lock, out_dir,
                    validation_split(mnist, validation_examples), log, heartbeat)
    try:
        search(worker, wait_seconds=heartbeat)
        chosen = best_trial(study, settings)
        results = train_best(worker, chosen, mnist, log) if best else None
        summary = summaries.summarise(study, settings, chosen, results,
                                      pareto_numbers(study, settings), url)
    except Exception as e:
        lost = studies.storage_error(e)
        if lost is None:
            raise
        raise studies.StudyError(
            f"lost the study's storage {studies.shown(url)} ({studies.storage_reason(lost)}): "
            "the trials it finished are kept; start the same command again when it is "
            "back") from None
    summaries.write(out_dir, summary)
    log(summaries.report(summary, out_dir))
    return summary
