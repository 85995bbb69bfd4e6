"""What every kerasnets command shares: its start, its help, --recipe, and its error exit.

`run(main, __name__)` is each console script's entry point. It

* makes `--help` describe the command: absl prints the docstring of `__main__`
  and the key flags of `sys.argv[0]`, and a console script's `__main__` is the
  generated wrapper, so the command module's docstring and key flags (its own
  flags and the shared ones it adopts) are handed over to them. absl's own flags
  stay in `--helpfull`.
* declares --recipe (`define_recipe_flag`): wherever absl parses it (the command line,
  a flagfile, a flagfile inside one), the recipe's values become the defaults of the
  command's flags, so a flag given anywhere overrides the recipe and --help shows
  what the run will use. One parser reads all of it: absl's.
* gives the one error exit: a `KerasnetsError` (and a full disk, which any write
  may hit) ends the command with one line `<command>: error: <message>` and the
  error's exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Callable, Sequence

from absl import app, flags

from kerasnets import errors
from kerasnets.training import recipe

RECIPE_FLAG = "recipe"
# What the full install has and the serving install (requirements-serving.txt) has not.
FULL_INSTALL_ONLY = ("tensorflow", "keras", "tensorboard", "tf2onnx", "matplotlib", "xlsxwriter")


def program_name(module_name: str | None = None) -> str:
    """The command's name for its messages: `kerasnets-train` for kerasnets.cli.train (the
    module named, else the one running as __main__), another kerasnets module by its
    name, else the program's file name."""
    if module_name in (None, "__main__"):
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module_name = spec.name if spec is not None else None
    if module_name and module_name.startswith("kerasnets."):
        package, _, command_name = module_name.rpartition(".")
        return f"kerasnets-{command_name}" if package == "kerasnets.cli" else module_name
    return os.path.basename(sys.argv[0]) if sys.argv else "kerasnets"


def fail(message: str, status: int = 1, module_name: str | None = None) -> int:
    """Prints `<command>: error: <message>` to stderr; returns `status` for main to return."""
    print(f"{program_name(module_name)}: error: {message}", file=sys.stderr, flush=True)
    return status


class RecipeFlag(flags.EnumFlag):
    """--recipe=NAME, whose parsing sets the recipe's values as the other flags' defaults.

    absl parses it where it stands: on the command line or in any flagfile. A flag given
    anywhere keeps its value (set_default changes only a flag still at its default), a
    flag left out takes the recipe's and stays known (`fv[name].present` is 0) to come
    from it, and the last --recipe parsed wins."""

    def __init__(self, fv: flags.FlagValues, default: str, names: Sequence[str], help: str):
        super().__init__(RECIPE_FLAG, default, help, list(names))
        self.flag_values = fv

    def parse(self, argument) -> None:
        super().parse(argument)
        use_recipe(self.flag_values, self.value)


def define_recipe_flag(fv: flags.FlagValues, default: str, names: Sequence[str], help: str,
                       module_name: str) -> None:
    """--recipe on `fv` (for the command module `module_name`, which --help lists it
    under), after the flags it sets; the default recipe's values are the defaults until
    another --recipe is parsed."""
    flags.DEFINE_flag(RecipeFlag(fv, default, names, help), flag_values=fv,
                      module_name=module_name)
    use_recipe(fv, default)


def use_recipe(fv: flags.FlagValues, name: str) -> None:
    """Recipe `name`'s values as the defaults of `fv`'s flags (a flag the file names that
    `fv` lacks, or one named twice, is a ValueError naming the file)."""
    names = [n for n in fv if fv[n].name == n and n != RECIPE_FLAG]
    bools = [n for n in names if isinstance(fv[n], flags.BooleanFlag)]
    for flag_name, value in recipe.read_flagfile(recipe.recipe_path(name), names, bools).items():
        fv.set_default(flag_name, value)


def _describe_command(module_name: str) -> None:
    """Hands the command module's docstring and key flags to what absl's --help reads."""
    module = sys.modules[module_name]
    main_module = sys.modules["__main__"]
    if main_module is module:  # python -m kerasnets.cli.<command>: absl finds them itself
        return
    main_module.__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def with_error_exit(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """`main` whose package errors (and a full disk) end in one line and their exit status."""

    def guarded(argv: list[str]) -> int:
        try:
            return main(argv)
        except errors.KerasnetsError as e:
            return fail(str(e), e.exit_status, main.__module__)
        except ModuleNotFoundError as e:
            package = (e.name or "").partition(".")[0]
            if package not in FULL_INSTALL_ONLY or importlib.util.find_spec(package):
                raise  # another package, or one installed but broken: its own traceback
            return fail(f"this needs {package}, which is not installed: the serving install "
                        "(requirements-serving.txt) runs exported versions with --runtime=litert, "
                        "litert_int8 or onnx; install kerasnets with its dependencies for the rest",
                        1, main.__module__)
        except OSError as e:
            if not errors.is_disk_full(e):
                raise
            where = os.path.dirname(e.filename) if e.filename else "the output directory"
            return fail(str(errors.disk_full(e, where, "its files")), 1, main.__module__)

    return guarded


def run(main: Callable[[list[str]], int], module_name: str) -> None:
    """Console-script entry point of the command defined in module `module_name`."""
    _describe_command(module_name)
    app.run(with_error_exit(main), argv=sys.argv)


def define_model_code_flag(module_name: str) -> None:
    """--model_code (kerasnets-export, kerasnets-predict), for the command module
    `module_name`: the code a model.keras of the learner's own needs loaded first."""
    flags.DEFINE_string(
        "model_code", None, "The file (PATH.py) or module (package.module) defining the custom "
        "layers of a model of your own, imported before its model.keras loads (a --model "
        "reference PATH.py:FUNCTION is taken too). It is your code, run with your rights; "
        "nothing is ever imported from a run directory.", module_name=module_name)


def register_output_dir_validator(name: str) -> None:
    """--`name` must be a directory a command can write into (made when missing; one that
    holds files is the command's own to judge: a run to resume, a sweep's finished seeds,
    a search to carry on)."""
    from kerasnets import fileio

    def _writable(value) -> bool:
        problem = fileio.output_dir_problem(value, overwrite=True)
        if problem:
            raise flags.ValidationError(f"--{name}: {problem}")
        return True

    flags.register_validator(name, _writable)


def define_budget_flag() -> None:
    """--max_params (kerasnets-design, kerasnets-search), defined once: a design over it
    fails the card, and is never trained by a search."""
    flags.DEFINE_integer("max_params", 0, "A budget of trainable parameters: a design over it "
                         "is refused (kerasnets-design fails, kerasnets-search never trains "
                         "it); 0 = no budget.", lower_bound=0)


def register_export_base_validator() -> None:
    """--export_base (kerasnets-export, kerasnets-train) must be a place for new versions."""
    from kerasnets.serving import export

    @flags.validator("export_base")
    def _export_base_is_writable(value) -> bool:
        problem = value and export.export_base_problem(value)
        if problem:
            raise flags.ValidationError(f"--export_base: {problem}")
        return True


def check_seeds_flag(value: str) -> bool:
    """absl validator of a --seeds flag (kerasnets-sweep, kerasnets-bench)."""
    from kerasnets.training import seed_sweep

    try:
        seed_sweep.parse_seeds(value)
    except ValueError as e:
        raise flags.ValidationError(f"--seeds: {e}") from None
    return True
