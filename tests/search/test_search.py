"""kerasnets-search on tiny trials: the space and its budget, a study's summary, the
count of trials with two workers at once and after a worker killed with SIGKILL, and
what is refused (one line each)."""

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pytest
from conftest import REPO, error_lines
from kerasnets.models import convnets, design, user_code
from kerasnets.search import run as search_run, spaces, study as studies, summary as summaries
from kerasnets.training import run_dir

# One tiny epoch per trial: 128 training images, 100 held out to select on.
TINY = ["--recipe=smoke", "--epochs=1", "--train_examples=128", "--test_examples=100",
        "--validation_examples=100"]
DEFAULT = dict(c1=8, c2=16, c3=16, c4=16, c5=12, pools="2,4", blur=True)


def search(*args, cwd=REPO, data_dir=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "kerasnets.cli.search", *TINY,
                           f"--data_dir={data_dir}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def popen(out_dir, data_dir, *args):
    return subprocess.Popen([sys.executable, "-m", "kerasnets.cli.search", *TINY,
                             f"--data_dir={data_dir}", f"--out_dir={out_dir}", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def trial_states(out_dir, study_name="kerasnets-search"):
    """{number: (state, user attributes)} of the study in out_dir/study.db, read with
    Optuna's own storage."""
    study = optuna.load_study(study_name=study_name,
                              storage=studies.default_storage(str(out_dir)))
    return {t.number: (t.state.name, t.user_attrs) for t in study.get_trials()}


def counted(states):
    return sorted(n for n, (state, attrs) in states.items()
                  if attrs.get(studies.CLAIMED) and state in ("COMPLETE", "PRUNED"))


def test_five_block_replays_our_default_and_knows_its_smallest_design():
    model = spaces.five_block(optuna.trial.FixedTrial(DEFAULT))
    card, ours = design.card(model), design.card(convnets.default_model())
    assert [(r["kind"], r["output_shape"], r["trainable_params"], r["macs"], r["receptive_field"])
            for r in card["layers"]] == [
        (r["kind"], r["output_shape"], r["trainable_params"], r["macs"], r["receptive_field"])
        for r in ours["layers"]]
    assert (card["trainable_params"], card["macs"]) == (7826, 1120152)
    # by hand, every block 4 wide: convs 9*1*4 + 4 * 9*4*4 (no bias), BatchNorm 2 per
    # channel, dense 4*10 + 10
    assert spaces.five_block_smallest_params() == 9 * 4 + 4 * 9 * 4 * 4 + 5 * 2 * 4 + 4 * 10 + 10
    # every pool placement leaves the last block at least 3x3, with and without blur
    for pools in spaces.POOLS:
        for blur in (True, False):
            model = spaces.five_block(optuna.trial.FixedTrial({**DEFAULT, "pools": pools,
                                                               "blur": blur}))
            last_conv = model.layers[-6]  # then BatchNorm, ReLU, pooling, dense, softmax
            assert type(last_conv).__name__ == "Conv2D" and min(last_conv.input.shape[1:3]) >= 3


@pytest.mark.parametrize("study, design_file", [("s1_default_e4_8k", "s1_best_design.py"),
                                                ("s2_fast_two_objectives", "s2_best_design.py")])
def test_the_shipped_best_designs_are_the_searches_best_trials(study, design_file):
    """docs/searches/ ships each measured search's best design as a --model; it builds
    the parameters and MACs its study recorded for that trial (docs/experiments.md
    sweeps them over seeds)."""
    with open(os.path.join(REPO, "docs", "searches", f"{study}.csv")) as f:
        best = [row for row in csv.DictReader(f) if row["best"] == "True"]
    assert len(best) == 1
    spec = os.path.join(REPO, "docs", "searches", design_file) + ":build"
    card = design.card(user_code.call(spec))
    assert (card["trainable_params"], card["macs"]) == (int(best[0]["trainable_params"]),
                                                        int(best[0]["macs"]))
    with open(os.path.join(REPO, "docs", "searches", design_file)) as f:
        assert f"PARAMS = {json.loads(best[0]['design'])!r}" in f.read()


@pytest.mark.parametrize("trained, over, first_line", [
    (1, 1, "study s: 1 trial trained, 1 design over --max_params=8,000 never trained, 0 failed"),
    (6, 5, "study s: 6 trials trained, 5 designs over --max_params=8,000 never trained, 0 failed"),
])
def test_the_closing_line_counts_in_words(trained, over, first_line):
    report = summaries.report(dict(study="s", trained=trained, over_budget=over,
                                   max_params=8000, failed=0, best=None, pareto_front=[]),
                              "/tmp/out")
    assert report.splitlines()[:2] == [first_line, "no trial completed: no best design"]


def test_the_split_is_fixed_and_disjoint_from_what_trials_train_on():
    x = np.arange(60_000).reshape(-1, 1, 1)
    data = ((x, x[:, 0, 0] % 10), (x[:10], x[:10, 0, 0]))
    (fit_x, _), (val_x, _) = search_run.validation_split(data, 10_000)
    (again, _), (val_again, _) = search_run.validation_split(data, 10_000)
    assert len(val_x) == 10_000 and len(fit_x) == 50_000
    assert not set(fit_x.ravel()) & set(val_x.ravel())
    assert sorted(np.concatenate([fit_x, val_x]).ravel()) == list(range(60_000))
    np.testing.assert_array_equal(val_x, val_again)
    np.testing.assert_array_equal(fit_x, again)


class _Trial:
    """What the pruning callback asks of an Optuna trial."""

    def __init__(self, prune_after):
        self.reported, self.prune_after = [], prune_after

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return len(self.reported) >= self.prune_after


def test_the_pruner_hears_each_epochs_validation_accuracy_and_stops_the_trial():
    trial = _Trial(prune_after=2)
    callback = search_run.prune_on_validation(trial)
    callback.on_epoch_end(0, {"val_accuracy": 0.5, "accuracy": 0.9})
    callback.on_epoch_end(1, {"accuracy": 0.9})  # no validation pass that epoch: nothing said
    with pytest.raises(optuna.TrialPruned, match="after epoch 3"):
        callback.on_epoch_end(2, {"val_accuracy": 0.625})
    assert trial.reported == [(1, 0.5), (3, 0.625)]


def test_what_counts_toward_the_studys_trials():
    """Claimed trials that run, completed or were pruned by the pruner count; failed ones
    (a dead worker's), designs over the budget and unclaimed trials do not."""
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    states = optuna.trial.TrialState
    made = {}
    for name, state, attrs in [
            ("complete", states.COMPLETE, {studies.CLAIMED: True}),
            ("pruned", states.PRUNED, {studies.CLAIMED: True}),
            ("running", states.RUNNING, {studies.CLAIMED: True}),
            ("failed", states.FAIL, {studies.CLAIMED: True}),
            ("over budget", states.PRUNED, {studies.OVER_BUDGET: True}),
            ("not needed", states.PRUNED, {}),
            ("unclaimed running", states.RUNNING, {})]:
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if state != states.RUNNING:
            study.tell(trial, 0.5 if state == states.COMPLETE else None, state=state)
        made[trial.number] = name
    done, running = studies.counted_trials(study)
    assert sorted(made[t.number] for t in done) == ["complete", "pruned"]
    assert [made[t.number] for t in running] == ["running"]


def test_a_study_trains_exactly_its_trials_within_the_budget(real_mnist, tmp_path):
    out = tmp_path / "search"
    proc = search("--max_params=5000", "--trials=3", f"--out_dir={out}",
                  data_dir=real_mnist[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    states = trial_states(out)
    trained = counted(states)
    assert len(trained) == 3 and summary["trained"] == 3
    # every trial's card was made; no design over the budget trained, each one recorded
    for number, (state, attrs) in states.items():
        assert attrs[studies.TRAINABLE_PARAMS] > 0 and attrs[studies.MACS] > 0
        if attrs[studies.TRAINABLE_PARAMS] > 5000:
            assert (state, attrs.get(studies.OVER_BUDGET), attrs.get(studies.CLAIMED)) == (
                "PRUNED", True, None)
            assert not (out / "trials" / f"trial-{number:04d}").exists()
    assert summary["over_budget"] == sum(bool(a.get(studies.OVER_BUDGET)) for _, a in states.values())
    # each trained trial is an ordinary run of its design, evaluated on the split
    for number in trained:
        model_dir = out / "trials" / f"trial-{number:04d}"
        recorded = run_dir.read_recipe_file(str(model_dir))
        assert recorded.sampled_design["params"] == next(
            r for r in summary["trials"] if r["trial"] == number)["design"]
        assert recorded.sampled_design["evaluated_on"] == "validation: 100 training images held out"
        assert recorded.config.learning_rate == recorded.sampled_design["params"]["learning_rate"]
        card = json.loads((model_dir / run_dir.DESIGN_FILE).read_text())
        assert card["trainable_params"] == states[number][1][studies.TRAINABLE_PARAMS] <= 5000
        results = json.loads((model_dir / "results.json").read_text())
        row = next(r for r in summary["trials"] if r["trial"] == number)
        assert row["validation_accuracy"] == pytest.approx(results["final_test_accuracy"], abs=1e-9)
    # the best: the most accurate trial, trained again and tested once
    rows = [r for r in summary["trials"] if r["state"] == "COMPLETE"]
    best = max(rows, key=lambda r: (r["validation_accuracy"], -r["trial"]))
    assert summary["best"]["trial"] == best["trial"]
    results = json.loads((out / "best" / "results.json").read_text())
    assert summary["best"]["test_accuracy"] == results["final_test_accuracy"]
    assert results["flags"]["test_examples"] == 100 and len(results["test_accuracy"]) == 1
    assert run_dir.read_recipe_file(str(out / "best")).sampled_design["evaluated_on"] == "test"
    lines = proc.stdout.splitlines()
    assert [line.split(" (#")[0] for line in lines if line.startswith("trial ")] == [
        "trial 1 of 3", "trial 2 of 3", "trial 3 of 3"]
    assert (out / "trials.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "summary.csv").read_text().count("\n") == len(states) + 1

    # the same command again: the study is complete, nothing more is trained
    again = search("--max_params=5000", "--trials=3", f"--out_dir={out}", data_dir=real_mnist[1])
    assert again.returncode == 0, again.stderr[-3000:]
    assert trial_states(out) == states
    assert not any(line.startswith(("trial ", "design ")) for line in again.stdout.splitlines())


def test_two_workers_at_once_train_exactly_the_studys_trials(real_mnist, tmp_path):
    out = tmp_path / "shared"
    workers = [popen(out, real_mnist[1], "--max_params=20000", "--trials=4", "--notrain_best")
               for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for _, e in outputs]
    states = trial_states(out)
    assert len(counted(states)) == 4
    assert sorted(os.listdir(out / "trials")) == [f"trial-{n:04d}" for n in counted(states)]
    # between them they printed each trained trial once
    printed = sorted(int(line.split("(#")[1].split(")")[0]) for o, _ in outputs
                     for line in o.splitlines() if line.startswith("trial "))
    assert printed == counted(states)


def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_study_finishes(real_mnist, tmp_path):
    out = tmp_path / "killed"
    args = ("--max_params=20000", "--trials=2", "--notrain_best", "--heartbeat_seconds=2",
            "--epochs=3")
    worker = popen(out, real_mnist[1], *args)
    try:
        deadline = time.time() + 300
        while not list((out / "trials").glob("trial-*/backup/epoch-0001/state.json")):
            assert worker.poll() is None and time.time() < deadline, worker.communicate()[1][-2000:]
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.communicate()
    killed = trial_states(out)
    assert [s for s, _ in killed.values()].count("RUNNING") == 1
    again = search(*args, f"--out_dir={out}", data_dir=real_mnist[1])
    assert again.returncode == 0, again.stderr[-3000:]
    states = trial_states(out)
    number = next(n for n, (s, _) in killed.items() if s == "RUNNING")
    assert states[number][0] == "FAIL"  # Optuna's heartbeat went stale
    assert len(counted(states)) == 2 and number not in counted(states)


NETWORKS = textwrap.dedent('''
    import keras
    from keras import layers


    def space(trial):
        width = trial.suggest_int("width", 2, 6)
        return keras.Sequential([
            keras.Input((28, 28, 1)), layers.Rescaling(1 / 255.0),
            layers.Conv2D(width, 3, activation="relu"), layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ])


    def unfinished(trial):
        trial.suggest_int("width", 2, 6)
        raise RuntimeError("not yet")
''')


def test_a_space_of_the_users_own_and_one_that_raises(real_mnist, tmp_path):
    (tmp_path / "spaces.py").write_text(NETWORKS)
    out = tmp_path / "mine"
    proc = search("--space=spaces.py:space", "--max_params=100", "--trials=2", "--notrain_best",
                  f"--out_dir={out}", cwd=tmp_path, data_dir=real_mnist[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for row in summary["trials"]:  # conv 9w + w, dense 10w + 10
        width = row["design"]["width"]
        assert row["trainable_params"] == 9 * width + width + 10 * width + 10
        assert row["over_budget"] == (row["trainable_params"] > 100)
    raising = search("--space=spaces.py:unfinished", "--max_params=100", "--trials=2",
                     f"--out_dir={tmp_path / 'raising'}", cwd=tmp_path, data_dir=real_mnist[1])
    assert raising.returncode == 1
    line = "--space: spaces.py:unfinished raised RuntimeError: not yet"
    assert [l for l in raising.stdout.splitlines() if l.startswith("trial #")] == [
        f"trial #{n} failed: {line}" for n in range(3)]
    assert error_lines(raising.stderr) == [
        f"kerasnets-search: error: 3 trials in a row failed, the last with: {line}"]


@pytest.mark.parametrize("args, message", [
    (["--space=wider"], "--space must be five_block, or a function of the trial"),
    (["--space=seed"], "--space must be five_block, or a function of the trial"),
    (["--space=nope.py:space"], "--space: nope.py: no such file"),
    (["--max_params=701"], "--max_params=701 is below the smallest five_block design (702 "
                           "trainable parameters: every block 4 wide); raise it"),
    (["--objectives=seconds"], "--objectives must be accuracy or accuracy,seconds"),
    (["--storage=mysql://u:secret@h/db"], "--storage must be a sqlite:///PATH or postgresql://"
                                          "USER:PASSWORD@HOST[:PORT]/DB URL, not "
                                          "'mysql://u:***@h/db'"),
    (["--model=seed"], "--model names one design; kerasnets-search samples its designs from "
                       "--space"),
])
def test_bad_input_is_one_line_and_writes_nothing(real_mnist, tmp_path, args, message):
    out = tmp_path / "out"
    proc = search("--max_params=8000", "--trials=2", f"--out_dir={out}", *args,
                  data_dir=real_mnist[1])
    assert proc.returncode == 1, proc.stdout
    lines = error_lines(proc.stderr)  # absl's flag errors add a line pointing to --helpshort
    assert message in lines[0] and (len(lines) == 1 or lines[1].startswith("Pass --helpshort"))
    assert "secret" not in proc.stderr
    assert not out.exists()


def test_a_directory_of_another_study_is_refused(real_mnist, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = search("--max_params=8000", "--trials=1", f"--out_dir={out}", data_dir=real_mnist[1])
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"kerasnets-search: error: --out_dir: {out} holds notes.txt but no search; choose an "
        "empty or new directory"]
    assert sorted(os.listdir(out)) == ["notes.txt"]
    (out / "notes.txt").unlink()
    (out / search_run.SEARCH_FILE).write_text(json.dumps({"study_name": "other", "storage": "x"}))
    proc = search("--max_params=8000", "--trials=1", f"--out_dir={out}", data_dir=real_mnist[1])
    assert proc.returncode == 1 and "holds the files of another study" in proc.stderr
    assert sorted(os.listdir(out)) == [search_run.SEARCH_FILE]


def test_a_study_joined_with_other_settings_is_refused(real_mnist, tmp_path):
    out = tmp_path / "study"
    settings = studies.Settings("five_block", 8000, 1, ("accuracy",), 100, {"epochs": 1})
    studies.open_study(studies.default_storage(str(out.mkdir() or out)), "kerasnets-search",
                       settings)
    (out / search_run.SEARCH_FILE).write_text(json.dumps(
        {"study_name": "kerasnets-search", "storage": studies.default_storage(str(out))}))
    proc = search("--max_params=9000", "--trials=1", f"--out_dir={out}", data_dir=real_mnist[1])
    assert proc.returncode == 1
    line, = error_lines(proc.stderr)
    assert line.startswith("kerasnets-search: error: --study_name: kerasnets-search in sqlite:///")
    assert "--max_params 8000 → 9000" in line and "give the same flags to join it" in line
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone() == (0,)


def test_two_objectives_keep_a_pareto_front(real_mnist, tmp_path):
    out = tmp_path / "pareto"
    proc = search("--objectives=accuracy,seconds", "--max_params=20000", "--trials=3",
                  "--notrain_best", f"--out_dir={out}", data_dir=real_mnist[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    complete = [r for r in summary["trials"] if r["state"] == "COMPLETE"]
    assert len(complete) == 3 and all(r["seconds_objective"] > 0 for r in complete)

    def dominated(r):
        return any(o["validation_accuracy"] >= r["validation_accuracy"]
                   and o["seconds_objective"] <= r["seconds_objective"]
                   and (o["validation_accuracy"], o["seconds_objective"]) !=
                   (r["validation_accuracy"], r["seconds_objective"]) for o in complete)

    assert summary["pareto_front"] == sorted(r["trial"] for r in complete if not dominated(r))
    # the best: the front's most accurate design, not tested (--notrain_best)
    front = [r for r in complete if r["trial"] in summary["pareto_front"]]
    assert summary["best"]["trial"] == max(front, key=lambda r: (r["validation_accuracy"],
                                                                  -r["trial"]))["trial"]
    assert summary["best"]["test_accuracy"] is None
    assert "Pareto front (accuracy, seconds)" in proc.stdout
