"""The package's layers: every import points down, no module imports another in a circle.

import-linter checks the contracts in pyproject.toml (CI runs ``lint-imports``); these tests
build the same import graph with grimp, counting imports inside functions and under
``TYPE_CHECKING``, so they fail when an import points up.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grimp
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("simrec", cache_dir=None)


@pytest.fixture(scope="module")
def layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[f"simrec.{name.strip()}" for name in layer.split("|")] for layer in contract["layers"]]


def _layer_of(module: str, layers: list[list[str]]) -> int:
    for level, names in enumerate(layers):
        if any(module == name or module.startswith(name + ".") for name in names):
            return level
    raise AssertionError(f"{module} has no layer in pyproject.toml")


def test_every_import_points_down(graph, layers):
    upward = []
    for importer in sorted(graph.modules):
        if importer == "simrec":
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported == "simrec":
                upward.append(f"{importer} -> simrec (the package root imports every module)")
                continue
            top, bottom = _layer_of(importer, layers), _layer_of(imported, layers)
            siblings = top == bottom and _branch(importer, layers[top]) != _branch(imported, layers[top])
            if bottom < top or siblings:
                upward.append(f"{importer} -> {imported}")
    assert upward == []


def _branch(module: str, names: list[str]) -> str:
    return next(name for name in names if module == name or module.startswith(name + "."))


def test_no_import_cycles(graph):
    assert _cycles({m: graph.find_modules_directly_imported_by(m) for m in graph.modules}) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layer_check_finds_an_upward_import(tmp_path, layers, monkeypatch):
    package = tmp_path / "simrec"
    for source in (ROOT / "simrec").rglob("*.py"):
        target = package / source.relative_to(ROOT / "simrec")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    errors = package / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _up():\n    from simrec.app import indexing  # noqa: F401\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    for name in [m for m in sys.modules if m == "simrec" or m.startswith("simrec.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(AssertionError, match=r"simrec\.core\.errors -> simrec\.app\.indexing"):
        test_every_import_points_down(grimp.build_graph("simrec", cache_dir=None), layers)


def test_every_module_has_a_layer(graph, layers):
    for module in graph.modules - {"simrec"}:
        _layer_of(module, layers)


def test_the_readme_diagram_names_every_layer(layers):
    readme = (ROOT / "README.md").read_text()
    diagram = readme.split("## How the code is laid out", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"[a-z_]+", diagram))
    for names in layers:
        for name in names:
            assert name.removeprefix("simrec.") in named, name


def test_the_readme_diagram_names_every_module_of_the_lower_layers(graph):
    """A module added to core, search, pipeline, storage or app is named in the diagram beside its folder."""
    readme = (ROOT / "README.md").read_text()
    diagram = readme.split("## How the code is laid out", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"[a-z_]+", diagram))
    folders = ("core", "search", "pipeline", "storage", "app")
    modules = {m.split(".")[2] for m in graph.modules if m.count(".") == 2 and m.split(".")[1] in folders}
    assert modules and sorted(modules - named) == []


def test_the_tests_mirror_the_package():
    """Each folder of tests is named for a folder of the package; entry points and package-wide rules are on top."""
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    package = {p.name for p in (ROOT / "simrec").iterdir() if (p / "__init__.py").is_file()}
    assert folders and folders <= package, sorted(folders - package)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)
