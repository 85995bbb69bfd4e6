"""A model named by reference: `PATH.py:FUNCTION` or `package.module:FUNCTION`.

Beside the built-in names (seed, default, wide, fast), every place that names a model
(--model, TrainConfig.model, a recipe flagfile, kerasnets.build_model) takes a
reference to a function of no arguments that returns the learner's own Keras model.
This module reads such a reference and imports its code; what the model must be is
checked where it is built (kerasnets.models.convnets.build_model).

The file is the user's code, run with the user's rights as any Python configuration
file is: importing it runs it. kerasnets imports only what a command line or a call
names (--model, --model_code, model_code=); it never runs code it finds inside a run
directory, whose recipe.json records the reference as text.

A run records a digest of what the reference builds (`digest`: the architecture's
config and the source file's bytes), so a killed run is resumed only with the code it
started with.

Free of Keras and TensorFlow (it checks the text of a reference in the recipe's checks,
before anything heavy loads); it imports kerasnets.errors only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Callable

from kerasnets import errors

BUILTIN_MODELS = ("seed", "default", "wide", "fast")  # convnets.BUILDERS (a test holds it)
FORMS = "PATH.py:FUNCTION or package.module:FUNCTION"


class ModelReferenceError(errors.KerasnetsError, ValueError):
    """A model reference that cannot be used: no such file, module or function, the
    function raised, or what it returned is not an MNIST model (one line)."""


def is_reference(name: str) -> bool:
    """Whether `name` is a reference (it has a colon) rather than a built-in name."""
    return ":" in name


def split(reference: str) -> tuple[str, str]:
    """(source, function) of "source:function"; the source may itself hold colons (a
    Windows drive), the function may not."""
    source, _, function = reference.rpartition(":")
    return source, function


def name_problem(name) -> str | None:
    """Why `name` is neither a built-in model nor a well-formed reference (the text
    only: whether the file exists is found when it is imported), or None."""
    allowed = f"one of {', '.join(BUILTIN_MODELS)}, or a reference {FORMS}"
    if not isinstance(name, str) or not (name in BUILTIN_MODELS or is_reference(name)):
        return f"must be {allowed}, not {name!r}"
    if name in BUILTIN_MODELS:
        return None
    source, function = split(name)
    if not function.isidentifier():
        return f"{name!r}: after the colon comes the function's name, not {function!r} ({FORMS})"
    if source.endswith(".py"):
        return None
    if not source or not all(part.isidentifier() for part in source.split(".")):
        return (f"{name!r}: before the colon comes a file ending in .py or a module's dotted "
                f"name, not {source!r} ({FORMS})")
    return None


def source_of(code: str) -> str:
    """The file or module of `code`: a reference, a PATH.py or a package.module."""
    return split(code)[0] if is_reference(code) else code


def import_source(code: str, flag: str = "--model") -> ModuleType:
    """The module of `code` (a reference, a PATH.py or a package.module), imported now:
    a file is executed afresh, so an edited file is read as it is. Keras classes it
    registers (keras.saving.register_keras_serializable) are then known to the loader.
    ModelReferenceError naming `flag` for a file or module that is missing or raises."""
    source = source_of(code)
    if source.endswith(".py"):
        path = os.path.abspath(source)
        if not os.path.isfile(path):
            raise ModelReferenceError(f"{flag}: {source}: no such file")
        stem = os.path.splitext(os.path.basename(path))[0]
        module_name = "kerasnets_user_code_" + "".join(c if c.isalnum() else "_" for c in stem)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as import does: dataclasses and pickling look here
        try:  # compiled here, so no __pycache__ is written beside the user's file
            with open(path, "rb") as f:
                code = compile(f.read(), path, "exec")
            exec(code, module.__dict__)
        except Exception as e:  # the user's code: its own error, in one line
            sys.modules.pop(module_name, None)
            raise ModelReferenceError(f"{flag}: importing {source} raised "
                                      f"{type(e).__name__}: {one_line(e)}") from None
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as e:
        if e.name and (source == e.name or source.startswith(e.name + ".")):
            raise ModelReferenceError(f"{flag}: no module named {source} (a file is named "
                                      "by its path ending in .py)") from None
        raise ModelReferenceError(f"{flag}: importing {source} raised ModuleNotFoundError: "
                                  f"{one_line(e)}") from None
    except Exception as e:
        raise ModelReferenceError(f"{flag}: importing {source} raised "
                                  f"{type(e).__name__}: {one_line(e)}") from None


def builder(reference: str, flag: str = "--model") -> Callable[..., object]:
    """The function `reference` names, its module imported (ModelReferenceError naming
    `flag` if it cannot be)."""
    problem = name_problem(reference)
    if problem or not is_reference(reference):
        raise ModelReferenceError(f"{flag} {problem or f'{reference!r} is not a reference'}")
    source, name = split(reference)
    module = import_source(reference, flag)
    function = getattr(module, name, None)
    if function is None:
        raise ModelReferenceError(f"{flag}: {source} has no function {name}")
    if not callable(function):
        raise ModelReferenceError(f"{flag}: {source}'s {name} is a "
                                  f"{type(function).__name__}, not a function")
    return function


def call(reference: str) -> object:
    """What the referenced function returns, called with no arguments; its own error,
    if it raises, as one ModelReferenceError line."""
    function = builder(reference)
    try:
        return function()
    except Exception as e:
        raise ModelReferenceError(f"--model: {reference} raised {type(e).__name__}: "
                                  f"{one_line(e)}") from None


def source_path(reference: str) -> str | None:
    """The file whose bytes the reference's digest covers (its .py file, or the
    module's file), or None for a module without one."""
    source = split(reference)[0]
    if source.endswith(".py"):
        return os.path.abspath(source)
    module = sys.modules.get(source)
    return getattr(module, "__file__", None)


def digest(reference: str, model_config: dict) -> dict:
    """What the reference builds, as recipe.json records it: sha256 of the architecture's
    config (layer names left out: Keras numbers unnamed layers in the order a process
    makes them) and of the source file's bytes."""
    path = source_path(reference)
    source = None
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            source = hashlib.sha256(f.read()).hexdigest()
    architecture = json.dumps(_without_names(model_config), sort_keys=True, default=str)
    return {"architecture": hashlib.sha256(architecture.encode()).hexdigest(), "source": source}


def digest_changes(recorded: dict, now: dict) -> list[str]:
    """What differs between two digests, in words ("its source file", "the architecture
    it builds")."""
    words = {"source": "its source file", "architecture": "the architecture it builds"}
    return [words[key] for key in ("source", "architecture") if recorded.get(key) != now.get(key)]


def _without_names(value):
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, (list, tuple)):
        return [_without_names(v) for v in value]
    return value


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + " ..." if len(text) > 300 else text or "(no message)"
