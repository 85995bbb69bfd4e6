"""The tree is the architecture: subpackages along the data's way, no import circle.

Every module's imports are read with `ast` (function-local imports included, as they
run as surely as the others, only later), so a circle hidden inside a function is
found as well as one at the top of a file.
"""

import ast
import pathlib

import pytest

from conftest import REPO

PACKAGE = pathlib.Path(REPO) / "kerasnets"

# Lower units first: a module may import its own unit and any unit of a lower rank.
# cli and bench are the front ends (kerasnets.cli.bench runs kerasnets.bench, and
# bench's own command, jax_backend, takes cli's flag definitions): nothing in the
# library imports either.
RANKS = {
    "kerasnets.errors": 0, "kerasnets.checks": 0,
    "kerasnets.fileio": 1, "kerasnets.plots": 1,
    "kerasnets.backprop": 2,
    "kerasnets.data": 2,
    "kerasnets.models": 3,
    "kerasnets.serving": 4,
    "kerasnets.training": 5,
    "kerasnets.search": 6,
    "kerasnets.cli": 7, "kerasnets.bench": 7,
}
FRONT_ENDS = {"kerasnets.cli", "kerasnets.bench"}
PART_2 = {"kerasnets.data", "kerasnets.models", "kerasnets.serving", "kerasnets.training"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: pathlib.Path, name: str, modules) -> set[str]:
    """The package's modules that `name` (at `path`) imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[:len(name.split(".")) - node.level + is_package]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def unit(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_circle_anywhere_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle_through_a_function_local_import(tmp_path):
    """The finder on a graph read from files: a planted circle b -> c -> b is found, and the
    same files without it are clean (so the test above can fail)."""
    a = "from kerasnets.x import b\n"
    b = "from kerasnets.x import c\n"
    c = "def f():\n    from kerasnets.x import b\n"
    modules = {"kerasnets.x.a": a, "kerasnets.x.b": b, "kerasnets.x.c": c}
    graph = {}
    for name, text in modules.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        graph[name] = imports(path, name, modules)
    assert graph == {"kerasnets.x.a": {"kerasnets.x.b"}, "kerasnets.x.b": {"kerasnets.x.c"},
                     "kerasnets.x.c": {"kerasnets.x.b"}}
    assert find_cycle(graph) == ["kerasnets.x.b", "kerasnets.x.c", "kerasnets.x.b"]
    graph["kerasnets.x.c"] = set()
    assert find_cycle(graph) is None


def test_relative_imports_are_resolved_like_absolute_ones(tmp_path):
    modules = {"kerasnets.x": "", "kerasnets.x.a": "", "kerasnets.x.b": "", "kerasnets.y": ""}
    path = tmp_path / "b.py"
    path.write_text("from . import a\nfrom .. import y\n")
    assert imports(path, "kerasnets.x.b", modules) == {"kerasnets.x.a", "kerasnets.y"}
    init = tmp_path / "__init__.py"
    init.write_text("from . import a\n")
    assert imports(init, "kerasnets.x", modules) == {"kerasnets.x.a"}


def test_every_module_belongs_to_a_ranked_unit():
    units = {unit(m) for m in package_modules()} - {"kerasnets"}
    assert units <= set(RANKS), sorted(units - set(RANKS))


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_a_lower_unit_never_imports_a_higher_one(module):
    if module == "kerasnets":
        return  # the public API's facade: it imports nothing until a name is asked for
    own = unit(module)
    wrong = sorted(m for m in import_graph()[module]
                   if unit(m) != own and not RANKS[unit(m)] < RANKS[own]
                   and not (own in FRONT_ENDS and unit(m) in FRONT_ENDS))
    assert not wrong, f"{module} (rank {RANKS[own]}) imports {wrong}"


def test_the_layers_named_in_the_architecture_hold():
    graph = import_graph()
    edges = {(unit(a), unit(b)) for a, deps in graph.items() for b in deps}
    library = {u for u in RANKS if u not in FRONT_ENDS}
    assert not {(a, b) for a, b in edges if a in library and b in FRONT_ENDS}
    assert ("kerasnets.serving", "kerasnets.training") not in edges
    assert ("kerasnets.data", "kerasnets.models") not in edges
    assert not {(a, b) for a, b in edges if a == "kerasnets.backprop" and b in PART_2}
    assert not {(a, b) for a, b in edges if a in PART_2 and b == "kerasnets.backprop"}
    # the graph is real: the edges the package is built on are seen
    assert {("kerasnets.training", "kerasnets.serving"), ("kerasnets.serving", "kerasnets.models"),
            ("kerasnets.cli", "kerasnets.bench"), ("kerasnets.models", "kerasnets.errors")} <= edges


def test_at_most_six_modules_at_the_top_and_each_subpackage_says_what_it_holds():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init} has no docstring"
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.name != "__init__.py")
        assert "import" in doc, f"{init}: say what it may import"
        missing = [m for m in modules if m not in doc]
        assert not missing, f"{init}'s docstring names not {missing}"
