"""The commands' shape: --help describes each one, --recipe reads a named recipe first,
and a flag name means one thing in every command."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from conftest import COMMANDS, REPO, error_lines, run_module
from kerasnets.training import recipe
from kerasnets.cli import command, recipe_flags
# Each command's own flags (a sample that must appear) and whether it takes the recipe flags.
OWN_FLAGS = {
    "train": ("--model_dir", "--overwrite", "--export_base", "--collective_timeout"),
    "sweep": ("--seeds", "--out_dir", "--jobs"),
    "bench": ("--what", "--batch_sizes", "--timed_batches", "--calls", "--concurrency"),
    "export": ("--model_dir", "--export_base", "--version"),
    "predict": ("--model_path", "--top_k"),
    "serve": ("--model_base", "--model_name", "--host", "--port", "--max_request_bytes"),
    "toynet": ("--recipe", "--lrs", "--steps", "--w1", "--out_dir", "--log_scale"),
    "data": ("--data_dir", "--mnist_path", "--sample_png"),
    "design": ("--model", "--max_params", "--json"),
    "compare": ("--out_dir", "--json", "--overwrite"),
    "search": ("--space", "--max_params", "--trials", "--out_dir", "--storage", "--study_name",
               "--validation_examples", "--objectives"),
}
TAKES_RECIPES = ("train", "sweep", "bench", "search")


def test_the_commands_are_the_installed_console_scripts():
    assert sorted(COMMANDS) == ["bench", "compare", "data", "design", "export", "predict",
                                "search", "serve", "sweep", "toynet", "train"]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_describes_the_command_and_lists_its_flags(help_texts, name):
    text = help_texts[name]
    assert text.startswith(f"kerasnets-{name}: ")  # the command's own docstring first
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", text, re.MULTILINE))
    for flag in OWN_FLAGS[name]:
        assert flag[2:] in listed, (name, flag)
    recipe_fields = set(recipe.FIELDS)
    if name in TAKES_RECIPES:
        assert recipe_fields | {"recipe", "data_dir", "mnist_path"} <= listed, name
        assert "(default: 'default')" in text  # --recipe's default
        assert "(an integer in [1, 1000])" in text  # --epochs's range, from recipe.RANGES
    elif name == "design":  # the model alone, in the recipe's words
        assert recipe_fields & listed == {"model"}
    else:
        assert not recipe_fields & listed, name  # --model etc. mean the recipe's only
    # absl's own flags stay in --helpfull
    assert "--flagfile" not in listed and "--verbosity" not in listed


# Shared flags whose default is each command's own: the recipe it runs without --recipe,
# sweep's 8 seeds against bench's 5, serve's export base and runtime against predict's.
OWN_DEFAULTS = ("recipe", "seeds", "model_base", "runtime")


_HELP_ONLY = """
import sys
from kerasnets.cli import {command}
sys.argv = ["kerasnets-{command}", "--help"]
try:
    {command}.run()
except SystemExit:
    pass
print(sorted(m for m in ("tensorflow", "keras", "onnxruntime", "ai_edge_litert") if m in sys.modules))
"""


@pytest.mark.parametrize("name", COMMANDS)
def test_help_starts_without_tensorflow_keras_or_a_runtime(name):
    proc = subprocess.run([sys.executable, "-c", _HELP_ONLY.format(command=name)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith(f"kerasnets-{name}: "), proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "[]", proc.stdout.splitlines()[-1]


def test_a_flag_name_means_one_thing_in_every_command(help_texts):
    """Every flag two commands share has the same help text in both."""
    described: dict[str, dict[str, str]] = {}
    for name, text in help_texts.items():
        for flag, body in re.findall(r"^  --(?:\[no\])?(\w+):(.*?)(?=^  --|\Z)", text,
                                     re.MULTILINE | re.DOTALL):
            body = re.sub(r"^\s*<[\w|]+>:", "", body)  # an enum's choices may differ
            if flag in OWN_DEFAULTS:  # and some defaults are the command's own
                body = re.sub(r"\(default: .*?\)", "", body)
            described.setdefault(flag, {})[name] = " ".join(body.split())
    shared = {flag: by for flag, by in described.items() if len(by) > 1}
    assert {"model", "epochs", "data_dir", "seeds"} <= set(shared)
    for flag, by in shared.items():
        assert len(set(by.values())) == 1, (flag, by)


def parsed(*args: str):
    """The recipe flags of a fresh FlagValues after absl parses `args` (a command line)."""
    fv = flags.FlagValues()
    recipe_flags.define(fv)
    fv(["t", *args])
    return fv


def test_the_recipe_is_read_first_and_later_flags_override_it():
    # the last --recipe wins, as absl reads flags; the default only without one
    assert parsed("--recipe", "seed", "--recipe=wide").recipe == "wide"
    assert recipe_flags.config(parsed("--recipe", "seed", "--recipe=wide")) == recipe.load("wide")
    assert recipe_flags.config(parsed()) == recipe.load("default")
    # a flag given before --recipe is kept as well as one after it, and known as given
    fv = parsed("--epochs=3", "--recipe=seed", "--batch_size=64")
    assert recipe_flags.config(fv) == dataclasses.replace(recipe.load("seed"), epochs=3,
                                                          batch_size=64)
    assert fv["epochs"].present and fv["batch_size"].present and not fv["learning_rate"].present
    fast = recipe_flags.read("fast", "--epochs=2", "--clean_epochs=0")
    assert (fast.model, fast.epochs, fast.clean_epochs, fast.learning_rate) == ("fast", 2, 0, 0.2)
    assert fast == dataclasses.replace(recipe.load("fast"), epochs=2, clean_epochs=0)


def test_a_recipe_named_in_a_flagfile_or_a_nested_one_is_the_recipe(tmp_path):
    """--recipe works wherever absl reads flags: absl's parser reads the flagfiles, nested
    ones too, and the recipe's values are the defaults from where --recipe is parsed."""
    (tmp_path / "r.flags").write_text("--recipe=seed\n")
    (tmp_path / "outer.flags").write_text(f"--epochs=2\n--flagfile={tmp_path / 'r.flags'}\n")
    (tmp_path / "after.flags").write_text(f"--flagfile={tmp_path / 'r.flags'}\n--epochs=2\n")
    seed = recipe.load("seed")
    assert recipe_flags.config(parsed(f"--flagfile={tmp_path / 'r.flags'}")) == seed
    for outer in ("outer.flags", "after.flags"):
        fv = parsed(f"--flagfile={tmp_path / outer}")
        assert recipe_flags.config(fv) == dataclasses.replace(seed, epochs=2), outer
        assert fv["epochs"].present and not fv["learning_rate"].present
    # the command line after a flagfile still overrides it, and a later --recipe replaces it
    assert recipe_flags.config(parsed(f"--flagfile={tmp_path / 'r.flags'}", "--epochs=4")).epochs == 4
    assert recipe_flags.config(parsed(f"--flagfile={tmp_path / 'r.flags'}", "--recipe=wide")) == \
        recipe.load("wide")


def test_a_recipe_file_is_read_by_absl_and_refuses_what_it_cannot_hold(tmp_path):
    bad = {"--nope=1\n": "Unknown command line flag 'nope'", "--epochs=2\n--epochs=3\n":
           "--epochs is given twice", "--epochs=x\n": None}
    for text, message in bad.items():
        path = tmp_path / "bad.flags"
        path.write_text(text)
        if message is None:  # text, as written: the flag's own parser says what is wrong
            assert recipe.read_flagfile(str(path), recipe.FIELDS) == {"epochs": "x"}
            continue
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
            recipe.read_flagfile(str(path), recipe.FIELDS, recipe.BOOL_FIELDS)
    path.write_text("--noaugment\n--deterministic\n# a comment\n--model=seed\n")
    assert recipe.read_flagfile(str(path), recipe.FIELDS, recipe.BOOL_FIELDS) == {
        "augment": False, "deterministic": True, "model": "seed"}


def test_help_shows_what_a_run_will_use(tmp_path):
    """--help lists the named recipe's values as the defaults (default's without --recipe),
    a recipe named in a flagfile too."""
    (tmp_path / "r.flags").write_text("--recipe=seed\n")
    for args, values in (([], {"learning_rate": "0.2", "clean_epochs": "3", "epochs": "15",
                               "deterministic": "'true'"}),
                         (["--recipe=seed"], {"learning_rate": "0.01", "clean_epochs": "0",
                                              "epochs": "19", "batch_size": "32"}),
                         ([f"--flagfile={tmp_path / 'r.flags'}"],
                          {"learning_rate": "0.01", "epochs": "19", "batch_size": "32"})):
        proc = run_module("train", *args, "--help")
        for name, value in values.items():
            body = re.search(rf"^  --(?:\[no\])?{name}:(.*?)(?=^  --)", proc.stdout,
                             re.MULTILINE | re.DOTALL).group(1)
            assert re.search(rf"\(default: '?{value}'?\)", " ".join(body.split())), (args, name, body)


def test_a_value_the_user_never_gave_is_named_as_the_recipes(tmp_path):
    proc = run_module("train", f"--model_dir={tmp_path / 'run'}", "--epochs=1")
    assert proc.returncode == 1 and not (tmp_path / "run").exists()
    assert error_lines(proc.stderr)[0] == (
        "FATAL Flags parsing error: flag --recipe=default: --clean_epochs must be smaller than "
        "--epochs (at least one epoch is augmented) (--clean_epochs=3 from --recipe=default, "
        "--epochs=1 given)")


def test_every_recipe_is_installed_names_every_field_and_parses_the_same_both_ways():
    """A recipe names every field, so a changed default never changes a recorded recipe;
    the library and the command line read it alike; TrainConfig() is the default recipe."""
    for name in recipe.names():
        assert set(recipe.read_flagfile(recipe.recipe_path(name), recipe.FIELDS,
                                        recipe.BOOL_FIELDS)) == set(recipe.FIELDS), name
        assert recipe_flags.read(name) == recipe.load(name), name
    assert recipe.TrainConfig() == recipe.load("default")
    targets = {name: recipe.load(name).target for name in recipe.names()}
    assert targets == {"default": 0.995, "fast": 0.994, "seed": 0.994, "smoke": 0.9, "wide": 0.996}
    assert os.path.samefile(recipe.recipe_path("toynet"), os.path.join(REPO, "flags", "toynet.flags"))
    with pytest.raises(ValueError, match="unknown recipe 'nope'; the recipes are default, fast"):
        recipe.recipe_path("nope")


def test_as_flags_gives_back_the_same_config():
    config = dataclasses.replace(recipe_flags.read("default"), learning_rate=1e-5, seed=7,
                                 augment=False)
    assert recipe_flags.read("smoke", *recipe.as_flags(config)) == config


def test_an_unknown_recipe_gets_one_line_listing_the_names(tmp_path):
    proc = run_module("train", "--recipe=big", f"--model_dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert "--recipe=big: value should be one of <default|fast|seed|smoke|wide>" in (
        error_lines(proc.stderr)[0])
    assert not (tmp_path / "run").exists()


def test_train_with_the_recipe_in_a_flagfile_trains_that_recipe(real_mnist, tmp_path):
    """A flagfile holding only --recipe=seed: the run is seed's (lr 0.01, batch 32), cut to
    one epoch on 512 images by the flags given beside it."""
    (tmp_path / "r.flags").write_text("--recipe=seed\n")
    cut = ("--epochs=1", "--clean_epochs=0", "--train_examples=512", "--test_examples=200")
    run = tmp_path / "fr"
    proc = run_module("train", f"--flagfile={tmp_path / 'r.flags'}", f"--model_dir={run}",
                      f"--data_dir={real_mnist[1]}", *cut)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recorded = json.loads((run / "recipe.json").read_text())
    assert recorded.pop("resolved_precision") == "float32"  # auto, on a CPU
    assert recorded == dataclasses.asdict(recipe.as_run(recipe_flags.read("seed", *cut)))
    assert (recorded["model"], recorded["learning_rate"], recorded["batch_size"]) == ("seed", 0.01, 32)


def test_train_without_a_recipe_trains_the_default_recipe(real_mnist, tmp_path):
    """The run's recorded flags are default.flags' (lr 0.2, deterministic, ...) with only the
    given flags changed: a one-epoch, 512-image cut of it."""
    cut = ("--epochs=1", "--clean_epochs=0", "--train_examples=512", "--test_examples=200")
    proc = run_module("train", f"--model_dir={tmp_path}", f"--data_dir={real_mnist[1]}", *cut)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["flags"] == dataclasses.asdict(recipe_flags.read("default", *cut))
    assert results["flags"]["learning_rate"] == 0.2 and results["flags"]["deterministic"]
