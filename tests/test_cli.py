"""The commands' shape: --help describes each one, --recipe reads a named recipe first,
and a flag name means one thing in every command."""

import dataclasses
import json
import os
import re

import pytest
from conftest import COMMANDS, REPO, error_lines, run_module
from kerasnets import recipe
from kerasnets.cli import command, recipe_flags
# Each command's own flags (a sample that must appear) and whether it takes the recipe flags.
OWN_FLAGS = {
    "train": ("--model_dir", "--overwrite", "--export_base", "--collective_timeout"),
    "sweep": ("--seeds", "--out_dir", "--jobs", "--target"),
    "bench": ("--what", "--batch_sizes", "--timed_batches", "--calls", "--concurrency"),
    "export": ("--model_dir", "--export_base", "--version"),
    "predict": ("--model_path", "--top_k"),
    "serve": ("--model_base", "--model_name", "--host", "--port", "--max_request_bytes"),
    "toynet": ("--recipe", "--lrs", "--steps", "--w1", "--out_dir", "--log_scale"),
    "data": ("--data_dir", "--mnist_path", "--sample_png"),
}
TAKES_RECIPES = ("train", "sweep", "bench")


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
        assert "(an integer in the range [1, 1000])" in text  # --epochs's range
    else:
        assert not recipe_fields & listed, name  # --model etc. mean the recipe's only
    # absl's own flags stay in --helpfull
    assert "--flagfile" not in listed and "--verbosity" not in listed


def test_a_flag_name_means_one_thing_in_every_command(help_texts):
    """Every flag two commands share has the same help text in both."""
    described: dict[str, dict[str, str]] = {}
    for name, text in help_texts.items():
        for flag, body in re.findall(r"^  --(?:\[no\])?(\w+):(.*?)(?=^  --|\Z)", text,
                                     re.MULTILINE | re.DOTALL):
            described.setdefault(flag, {})[name] = " ".join(body.split())
    shared = {flag: by for flag, by in described.items() if len(by) > 1}
    assert {"model", "epochs", "data_dir", "seeds"} <= set(shared)
    for flag, by in shared.items():
        if flag in ("recipe", "model_dir", "out_dir", "export_base", "overwrite", "target",
                    "model_base", "seeds", "inference", "runtime"):
            continue  # same meaning, worded for the command (what --recipe, --out_dir, ... hold)
        assert len(set(by.values())) == 1, (flag, by)


def test_the_recipe_is_read_first_and_later_flags_override_it():
    assert command.expand_recipe(["kerasnets-train", "--recipe=fast", "--epochs=2"], None) == [
        "kerasnets-train", f"--flagfile={recipe.recipe_path('fast')}", "--recipe=fast",
        "--epochs=2"]
    # the last --recipe wins, as absl reads flags; the default only without one
    assert command.expand_recipe(["t", "--recipe", "seed", "--recipe=wide"], "default")[1] == (
        f"--flagfile={recipe.recipe_path('wide')}")
    assert command.expand_recipe(["t", "--model_dir=x"], "default")[1] == (
        f"--flagfile={recipe.recipe_path('default')}")
    assert command.expand_recipe(["t", "--model_dir=x"], None) == ["t", "--model_dir=x"]
    assert command.expand_recipe(["kerasnets-toynet", "--recipe=toynet"], None)[1] == (
        f"--flagfile={recipe.recipe_path('toynet')}")
    # an unknown name is left to absl's enum check
    assert command.expand_recipe(["t", "--recipe=nope"], "default") == ["t", "--recipe=nope"]
    fast = recipe_flags.read("fast", "--epochs=2", "--clean_epochs=0")
    assert (fast.model, fast.epochs, fast.clean_epochs, fast.learning_rate) == ("fast", 2, 0, 0.2)


def test_every_recipe_is_installed_and_parses():
    for name in recipe.names():
        config = recipe_flags.read(name)
        assert config.model in ("seed", "default", "wide", "fast"), name
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


def test_train_without_a_recipe_trains_the_default_recipe(real_mnist, tmp_path):
    """The run's recorded flags are default.flags' (lr 0.2, deterministic, ...) with only the
    given flags changed: a one-epoch, 512-image cut of it."""
    cut = ("--epochs=1", "--clean_epochs=0", "--train_examples=512", "--test_examples=200")
    proc = run_module("train", f"--model_dir={tmp_path}", f"--data_dir={real_mnist[1]}", *cut)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["flags"] == dataclasses.asdict(recipe_flags.read("default", *cut))
    assert results["flags"]["learning_rate"] == 0.2 and results["flags"]["deterministic"]
