"""The package's layers: every import points down, no module imports another in a circle.

import-linter checks the contracts in pyproject.toml; these tests run it (on the package, and on
copies with a broken contract planted, so the check is known to be live), check that the layout
page names every module, and that the tests mirror the package both ways.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
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


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """Run import-linter on the contracts of ``cwd``'s pyproject.toml; with ``pythonpath``, on that copy of simrec."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([lint, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_contract_is_kept():
    """import-linter itself, on pyproject.toml's contracts: layers (exhaustive), heavy libraries, no cycles."""
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", run.stdout), run.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/errors.py", "from simrec.app import indexing", "Every import points down the layers"),
        ("core/errors.py", "import keras", "Heavy libraries stay out of core"),
        ("search/exact.py", "from simrec.search import blend", "No import cycles between the modules of a layer"),
    ],
)
def test_a_broken_contract_fails_the_check(tmp_path, module, line, broken):
    """The check is live: an upward import, a heavy library low down, or a cycle in a planted copy fails it."""
    shutil.copytree(ROOT / "simrec", tmp_path / "simrec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "simrec" / module
    planted.write_text(planted.read_text() + f"\n\ndef _planted():\n    {line}  # noqa: F401\n")
    run = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert run.returncode != 0 and broken in run.stdout, run.stdout + run.stderr


def test_every_module_has_a_layer(graph, layers):
    for module in graph.modules - {"simrec"}:
        _layer_of(module, layers)


def _layout_diagram() -> str:
    """The package diagram of docs/layout.md (the first code block)."""
    return (ROOT / "docs" / "layout.md").read_text().split("```", 2)[1]


def test_the_layout_diagram_names_every_layer(layers):
    named = set(re.findall(r"[a-z_]+", _layout_diagram()))
    for names in layers:
        for name in names:
            assert name.removeprefix("simrec.") in named, name


def test_the_layout_diagram_names_every_module_of_the_lower_layers(graph):
    """A module added to core, search, pipeline, storage or app is named in the diagram beside its folder."""
    named = set(re.findall(r"[a-z_]+", _layout_diagram()))
    folders = ("core", "search", "pipeline", "storage", "app")
    modules = {m.split(".")[2] for m in graph.modules if m.count(".") == 2 and m.split(".")[1] in folders}
    assert modules and sorted(modules - named) == []


def test_the_tests_mirror_the_package():
    """Each folder of tests is named for a folder of the package; entry points and package-wide rules are on top."""
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    package = {p.name for p in (ROOT / "simrec").iterdir() if (p / "__init__.py").is_file()}
    assert folders and folders <= package, sorted(folders - package)


def _tested_modules() -> set[str]:
    """The modules some test names: by import, by dotted path, by test file name, or by a public name it defines."""
    tests = {p: p.read_text() for p in (ROOT / "tests").rglob("*.py")}
    text = "\n".join(tests.values())
    found = set()
    for source in (ROOT / "simrec").rglob("*.py"):
        if source.name == "__init__.py":
            continue
        dotted = ".".join(source.relative_to(ROOT).with_suffix("").parts)
        parent, _, name = dotted.rpartition(".")
        defined = [
            node.name
            for node in ast.parse(source.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")
        ]
        patterns = [rf"\b{re.escape(dotted)}\b", rf"from {re.escape(parent)} import [^\n]*\b{name}\b"]
        patterns += [rf"\b{re.escape(d)}\b" for d in defined]
        if name == "__main__":
            patterns.append(r'"-m", "simrec"')
        if any(p.name == f"test_{name}.py" for p in tests) or any(re.search(p, text) for p in patterns):
            found.add(dotted)
    return found


def test_every_module_has_tests(graph):
    """The other way round: no module of the package goes untested (named by no test at all)."""
    modules = {m for m in graph.modules if m != "simrec" and not (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    assert modules and sorted(modules - _tested_modules()) == []
