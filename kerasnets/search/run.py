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
import math
import os
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
    if max_params and space.smallest_params is not None and max_params < space.smallest_params:
        raise SearchError(f"--max_params={max_params:,} is below the smallest {space.name} "
                          f"design ({space.smallest_params:,} trainable parameters: every "
                          f"block {spaces.WIDTHS[0]} wide); raise it")


def claim_directory(out_dir: str, url: str, study_name: str) -> None:
    """Makes `out_dir` the search's (search.json names its study), or refuses it when it
    holds another study's files."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, SEARCH_FILE)
    mine = {"study_name": study_name, "storage": studies.shown(url)}
    if os.path.isfile(path):
        import json

        try:
            with open(path) as f:
                theirs = json.load(f)
        except (OSError, ValueError):
            theirs = None
        if theirs != mine:
            raise SearchError(f"--out_dir: {os.path.abspath(out_dir)} holds the files of another "
                              f"study ({theirs}); choose another --out_dir")
        return
    taken = sorted(set(os.listdir(out_dir)) - {studies.DATABASE, studies.LOCK_FILE})
    if taken:
        raise SearchError(f"--out_dir: {os.path.abspath(out_dir)} holds {', '.join(taken)} but "
                          "no search; choose an empty or new directory")
    import json

    with fileio.atomic_file(path) as f:
        json.dump(mine, f, indent=2)


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
        params = dict(trial.params)
        sampled = run_dir.Design(
            build=lambda: self.space.build(optuna.trial.FixedTrial(params)),
            record={"space": self.space.name, "params": params, "trial": trial.number,
                    "study": self.study.study_name,
                    "evaluated_on": f"validation: {len(self.split[1][0]):,} training images "
                                    "held out"},
            digest=user_code.digest(self.model_reference, model.get_config()))
        callbacks = [] if len(self.settings.objectives) > 1 else [PruneOnValidation(trial)]
        try:
            results = train(dataclasses.replace(config, model=self.model_reference,
                                                test_examples=0),
                            self.split, model_dir, sampled, callbacks)
        finally:
            trial.set_user_attr(studies.SECONDS, round(time.perf_counter() - started, 3))
        accuracy = results["final_test_accuracy"]
        if len(self.settings.objectives) > 1:
            return accuracy, float(sum(results["seconds_per_epoch"]))
        return accuracy

    def one_trial(self) -> None:
        """One trial through Optuna (its heartbeat under it), then its progress line."""
        import optuna

        numbers = []

        def objective(trial):
            numbers.append(trial.number)
            return self.objective(trial)

        self.study.optimize(objective, n_trials=1, catch=(TrialError,))
        trial = next(t for t in self.study.get_trials(deepcopy=False) if t.number == numbers[0])
        attrs = trial.user_attrs
        self.failures = self.failures + 1 if trial.state == optuna.trial.TrialState.FAIL else 0
        self.over_budget = self.over_budget + 1 if attrs.get(studies.OVER_BUDGET) else 0
        self.log(progress_line(self.study, trial, self.settings))
        if self.failures >= FAILURES_IN_A_ROW:
            raise SearchError(f"{self.failures} trials in a row failed, the last with: "
                              f"{attrs.get(studies.ERROR)}")
        if self.over_budget >= OVER_BUDGET_IN_A_ROW:
            raise SearchError(f"{self.over_budget} designs in a row were over --max_params="
                              f"{self.settings.max_params:,}; raise it or narrow the space")


class PruneOnValidation:
    """A Keras callback: each epoch's validation accuracy to Optuna, and the trial
    stopped (optuna.TrialPruned) when the pruner says so."""

    def __new__(cls, trial):
        import keras
        import optuna

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                accuracy = (logs or {}).get("val_accuracy")
                if accuracy is None:
                    return
                trial.report(float(accuracy), epoch + 1)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        return _Callback()


def train(config: recipe.TrainConfig, data, model_dir: str, design: run_dir.Design,
          callbacks=(), overwrite: bool = False) -> dict:
    """fit.train for a sampled design, quietly; a diverging loss is the trial's failure."""
    from kerasnets.training import fit

    try:
        return fit.train(config, data, model_dir, log=lambda line: None, verbose=0,
                         extra_callbacks=callbacks, overwrite=overwrite, design=design)
    except fit.NanLossError as e:
        raise TrialError(str(e)) from None


def progress_line(study, trial, settings: studies.Settings) -> str:
    """What a worker prints after each of its trials."""
    import optuna

    attrs = trial.user_attrs
    params = attrs.get(studies.TRAINABLE_PARAMS)
    size = (f"{params:,} params, {attrs.get(studies.MACS) or 0:,} MACs" if params is not None
            else "no design")
    if attrs.get(studies.OVER_BUDGET):
        return (f"design #{trial.number}: {size}: over --max_params={settings.max_params:,}, "
                "not trained")
    if trial.state == optuna.trial.TrialState.FAIL:
        return f"trial #{trial.number} failed: {attrs.get(studies.ERROR)}"
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

    complete = [t for t in study.get_trials(deepcopy=False,
                                            states=(optuna.trial.TrialState.COMPLETE,))]
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


def train_best(worker: Worker, data, log: Callable[[str], None]) -> dict | None:
    """The best design trained on all the training images with the search's recipe and
    tested on the test set, into <out_dir>/best/ (resumed if killed; replaced when
    another design has become the best). Its results, or None with no complete trial."""
    import json

    import optuna

    from kerasnets.models import user_code

    best = best_trial(worker.study, worker.settings)
    if best is None:
        return None
    params = dict(best.params)
    config = worker.space.recipe(optuna.trial.FixedTrial(params), worker.config)
    config = dataclasses.replace(config, model=worker.model_reference)
    model = worker.space.build(optuna.trial.FixedTrial(params))
    sampled = run_dir.Design(
        build=lambda: worker.space.build(optuna.trial.FixedTrial(params)),
        record={"space": worker.space.name, "params": params, "trial": best.number,
                "study": worker.study.study_name, "evaluated_on": "test"},
        digest=user_code.digest(worker.model_reference, model.get_config()))
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
    url = storage or studies.default_storage(out_dir)
    problem = studies.storage_problem(url)
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
    claim_directory(out_dir, url, study_name)
    lock = studies.ClaimLock(url, study_name)
    study = studies.open_study(url, study_name, settings, heartbeat, lock)
    budget = f"within {max_params:,} trainable parameters" if max_params else "without a budget"
    log(f"MNIST: {source}; study {study_name} in {studies.shown(url)}: {trials} trials of "
        f"{space_name} {budget}, selected on {validation_examples:,} held-out training images")
    worker = Worker(space, settings, config, study, lock, out_dir,
                    validation_split(mnist, validation_examples), log)
    try:
        search(worker, wait_seconds=heartbeat)
        chosen = best_trial(study, settings)
        results = train_best(worker, mnist, log) if best else None
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
