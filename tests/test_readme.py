"""README states only what the committed results say, and only commands that exist."""

import csv
import os
import re
import shlex

import pytest
from conftest import REPO
from kerasnets.training import recipe, seed_sweep

README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
SWEEPS = os.path.join(REPO, "docs", "sweeps")
TARGETS = {name: recipe.load(name).target for name in ("default", "wide")}  # the recipes'


def sweep_rows(recipe_name: str) -> list[dict]:
    """docs/sweeps/<recipe>_seeds_0-7.csv, the summary kerasnets-sweep wrote, as its rows."""
    with open(os.path.join(SWEEPS, f"{recipe_name}_seeds_0-7.csv")) as f:
        return [dict(seed=int(r["seed"]), last_three=[float(a) for a in r["last_three"].split()],
                     last_three_min=float(r["last_three_min"]), final=float(r["final"]),
                     meets_target=r["meets_target"] == "True") for r in csv.DictReader(f)]


def test_readme_fits_its_budget():
    assert len(README.encode("utf-8")) <= 15_000  # bytes: ±, × and — count twice or more


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_results_rows_are_the_recipes_seed_0_in_the_committed_sweeps(name):
    """The flagfiles train seed 0: their Results row is seed 0 of the sweep."""
    seed_0 = sweep_rows(name)[0]
    three = ", ".join(f"{100 * a:.2f}" for a in seed_0["last_three"])
    row = next(line for line in README.splitlines() if line.startswith(f"| `{name}` |"))
    assert f"| {three} % |" in row, row


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_sweep_lines_agree_with_the_committed_summaries(name):
    rows = sweep_rows(name)
    summary = seed_sweep.summarise(rows, TARGETS[name])
    mean, sd = 100 * summary["mean_last_three_min"], 100 * summary["sd_last_three_min"]
    bullet = next(line for line in README.splitlines() if line.startswith(f"* `{name}`:"))
    bullet_block = README[README.index(bullet):README.index(bullet) + 300]
    assert re.search(rf"{mean:.2f} ± {sd:.2f} %", bullet_block), bullet_block
    assert f"{summary['meet']} of {summary['seeds']}" in bullet_block
    if name == "default":  # the kerasnets-sweep paragraph quotes the command's own line
        assert f"`{seed_sweep.summary_line(summary)}`" in " ".join(README.split())


def test_the_make_run_transcript_ends_where_the_default_recipe_does():
    final = 100 * sweep_rows("default")[0]["final"]
    assert f"test accuracy {final:.2f}%" in README
    assert "kerasnets-train --recipe=default --model_dir=runs/default" in README


def test_every_command_in_readme_uses_flags_the_command_has(help_texts):
    """Each `kerasnets-<command> --flag` in README names a flag its --help lists
    (tests/test_cli.py checks the help texts themselves)."""
    used = re.findall(r"kerasnets-(\w+)((?: --[\w]+(?:=\S+)?)+)", README)
    assert len(used) >= 15
    for name, args in used:
        listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", help_texts[name], re.MULTILINE))
        for arg in shlex.split(args):
            assert arg[2:].split("=")[0] in listed, (name, arg)
