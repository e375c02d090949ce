"""The ``Raises:`` sections of simrec's docstrings are true.

The checker reads every module under ``simrec/`` with :mod:`ast`; it imports only ``simrec``
itself (which stays light) for its errors, and the module of a dotted name a section gives
(``fastapi.HTTPException``), so it is fast and needs no TensorFlow. The rules:

* A *public function* is a module-level function, or a method of a module-level class, whose
  name does not start with ``_``, in a class whose name does not start with ``_``. Dunder
  methods of such classes (``__init__``, ``__call__``, ...) count too; what ``__init__`` or a
  dataclass's ``__post_init__`` raises may be named in its own docstring or in the class docstring.
* It *raises directly* what a ``raise`` statement in its own body names, not counting nested
  functions, lambdas and classes: ``raise Name(...)``, ``raise Name``, ``raise module.Name(...)``,
  and ``raise factory(...)`` where ``factory`` is a simrec function annotated to return one
  exception class (``no_room_error(...) -> DiskFullError``). A bare ``raise`` and ``raise error``
  of a caught exception held in a variable re-raise what something else raised and are not
  counted, nor is ``raise AssertionError(...)``: like ``assert``, it marks a line that cannot be
  reached, never an error to catch.
* Every class a public function raises directly is named, by its own name, in its ``Raises:``
  section: a subclass is never covered by naming its base (``DiskFullError`` is named even where
  ``NotWritableError`` is too), because a reader looks for the class they catch.
* Every ``Raises:`` section, of any function or class, names one existing class a line, as
  ``Name: when``: a class of :mod:`simrec.core.errors`, a built-in exception, an exception class
  defined in simrec, or ``module.Name`` of an importable module.

What a function raises through the simrec functions it calls is named too where a user would
meet it; that part is read, not checked here.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import simrec.core.errors

PACKAGE = Path(__file__).resolve().parents[1] / "simrec"

_SECTION = re.compile(r"^(\s*)Raises:\s*$")
_ENTRY = re.compile(r"^([A-Za-z_][\w.]*): \S")
_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class Function:
    """One public function or method: where it is, what it raises directly, what its docstring names."""

    where: str
    raised: frozenset[str]
    documented: frozenset[str]


def raises_section(docstring: str | None) -> tuple[list[str], list[str]]:
    """The class names a docstring's ``Raises:`` section names, and its lines that name none.

    Args:
        docstring: The docstring, as ``ast.get_docstring`` returns it (or ``None``).

    Returns:
        ``(names, malformed)``: the names in order; the entry lines not of the form ``Name: when``.
    """
    names: list[str] = []
    malformed: list[str] = []
    lines = inspect.cleandoc(docstring or "").splitlines()
    for start, line in enumerate(lines):
        header = _SECTION.match(line)
        if not header:
            continue
        indent, entry_indent = len(header.group(1)), None
        for body in lines[start + 1 :]:
            if not body.strip():
                continue
            depth = len(body) - len(body.lstrip())
            if depth <= indent:
                break
            if entry_indent is None:
                entry_indent = depth
            if depth != entry_indent:
                continue  # the continuation of an entry
            entry = _ENTRY.match(body.strip())
            if entry:
                names.append(entry.group(1))
            else:
                malformed.append(body.strip())
    return names, malformed


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _own_raises(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.Raise]:
    found: list[ast.Raise] = []
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, _NESTED):
            continue
        if isinstance(node, ast.Raise):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def raised_classes(function: ast.FunctionDef | ast.AsyncFunctionDef, classes: set[str], factories: dict[str, str]):
    """The exception classes ``function`` raises directly, by the rules of this module's docstring.

    Args:
        function: The function's node.
        classes: Names of known exception classes (last dotted part).
        factories: Function name -> the exception class it is annotated to return.

    Returns:
        The set of class names, each as written after ``raise`` (``argparse.ArgumentTypeError``).
    """
    names = set()
    for node in _own_raises(function):
        if node.exc is None:
            continue  # a bare re-raise
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = _dotted(target)
        if name is None:
            continue
        last = name.rsplit(".", 1)[-1]
        if last == "AssertionError":
            continue  # an unreachable line, not an error to catch
        if last in factories and isinstance(node.exc, ast.Call):
            names.add(factories[last])
        elif last in classes or last[:1].isupper():
            names.add(name)
        # else: a caught exception held in a variable, raised again
    return names


def _exception_classes(trees: dict[str, ast.Module]) -> set[str]:
    known = {
        name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
    }
    known |= {name for name, value in vars(simrec.core.errors).items() if isinstance(value, type)}
    defined = [node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    grew = True
    while grew:  # a class deriving from a known exception class is one, transitively
        grew = False
        for node in defined:
            if node.name not in known and any((_dotted(base) or "").rsplit(".", 1)[-1] in known for base in node.bases):
                known.add(node.name)
                grew = True
    return known


def _factories(trees: dict[str, ast.Module], classes: set[str]) -> dict[str, str]:
    found = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.returns is not None:
                returned = _dotted(node.returns)
                if returned and returned.rsplit(".", 1)[-1] in classes:
                    found[node.name] = returned.rsplit(".", 1)[-1]
    return found


def public_functions(trees: dict[str, ast.Module], classes: set[str], factories: dict[str, str]) -> list[Function]:
    """Every public function and method of ``trees``, by the rules of this module's docstring.

    Args:
        trees: Module name -> its parsed source.
        classes: As :func:`raised_classes`.
        factories: As :func:`raised_classes`.

    Returns:
        One :class:`Function` each, in source order.
    """
    found = []

    def add(node, where: str, *extra_docs: str | None) -> None:
        documented = set()
        for doc in (ast.get_docstring(node), *extra_docs):
            documented |= set(raises_section(doc)[0])
        found.append(Function(where, frozenset(raised_classes(node, classes, factories)), frozenset(documented)))

    for module, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                add(node, f"{module}.{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for member in node.body:
                    if not isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                        continue
                    dunder = member.name.startswith("__") and member.name.endswith("__")
                    if member.name.startswith("_") and not dunder:
                        continue
                    class_doc = ast.get_docstring(node) if member.name in ("__init__", "__post_init__") else None
                    add(member, f"{module}.{node.name}.{member.name}", class_doc)
    return found


def _covered(raised: str, documented: frozenset[str]) -> bool:
    return raised in documented or raised.rsplit(".", 1)[-1] in {name.rsplit(".", 1)[-1] for name in documented}


def undocumented_raises(functions: list[Function]) -> list[str]:
    """``"where: Name"`` for each class raised directly but missing from the function's ``Raises:`` section."""
    return [f"{f.where}: {name}" for f in functions for name in sorted(f.raised) if not _covered(name, f.documented)]


def _exists(name: str, classes: set[str]) -> bool:
    if "." not in name:
        return name in classes
    module, _, attribute = name.rpartition(".")
    try:
        value = getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return False
    return isinstance(value, type) and issubclass(value, BaseException)


def bad_sections(trees: dict[str, ast.Module], classes: set[str]) -> list[str]:
    """``"where: problem"`` for each ``Raises:`` entry of any docstring that names no existing class."""
    problems = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
                continue
            where = f"{module}.{getattr(node, 'name', '')}".rstrip(".")
            names, malformed = raises_section(ast.get_docstring(node))
            problems += [f"{where}: {name} does not exist" for name in names if not _exists(name, classes)]
            problems += [f"{where}: not 'Name: when': {line!r}" for line in malformed]
    return problems


def parse_package(root: Path = PACKAGE) -> dict[str, ast.Module]:
    """Module name -> parsed source, for every ``.py`` file under ``root``."""
    trees = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return trees


@pytest.fixture(scope="module")
def package():
    trees = parse_package()
    classes = _exception_classes(trees)
    return trees, classes, public_functions(trees, classes, _factories(trees, classes))


def test_every_public_function_is_checked(package):
    """The walk sees the package's public API (a checker that sees nothing passes everything)."""
    trees, _, functions = package
    defined = {node.name for tree in trees.values() for node in tree.body if hasattr(node, "name")}
    assert set(simrec.__all__) - {"__version__"} <= defined
    checked = {f.where.rsplit(".", 1)[-1] for f in functions}
    assert {name for name in simrec.__all__ if name[:1].islower() and name != "__version__"} <= checked
    assert {"fit", "kneighbors", "row_of", "search", "__init__"} <= checked
    assert sum(bool(f.raised) for f in functions) > 40


def test_raises_sections_name_existing_classes(package):
    trees, classes, _ = package
    assert bad_sections(trees, classes) == []


def test_every_direct_raise_is_documented(package):
    _, _, functions = package
    assert undocumented_raises(functions) == []


SYNTHETIC = '''
import errno
from simrec.core.errors import DiskFullError, InvalidArgumentError, MissingFileError


def no_room(where) -> DiskFullError:
    return DiskFullError(where)


def documented(n):
    """Check n.

    Raises:
        InvalidArgumentError: ``n`` is negative.
    """
    if n < 0:
        raise InvalidArgumentError(n)
    if n > 10**9:
        raise AssertionError("unreachable")


def undocumented(path):
    """Open path; says nothing of its errors."""

    def inner():
        raise KeyError(path)  # a nested function's raise is not this one's

    try:
        return open(path)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise no_room(path) from error
        if error.errno == errno.ENOENT:
            raise MissingFileError(path) from None
        raise error


def wrong(n):
    """Check n.

    Raises:
        NoSuchError: never raised anywhere.
        ValueError, TypeError: two on one line.
    """


class Store:
    """A store.

    Raises:
        ValueError: ``size`` is negative.
    """

    def __init__(self, size):
        if size < 0:
            raise ValueError(size)

    def put(self, key):
        raise KeyError(key)

    def _private(self):
        raise RuntimeError
'''


def test_the_checker_reports_what_is_wrong():
    trees = {"synthetic": ast.parse(textwrap.dedent(SYNTHETIC))}
    classes = _exception_classes(trees)
    functions = public_functions(trees, classes, _factories(trees, classes))
    assert undocumented_raises(functions) == [
        "synthetic.undocumented: DiskFullError",
        "synthetic.undocumented: MissingFileError",
        "synthetic.Store.put: KeyError",
    ]
    assert bad_sections(trees, classes) == [
        "synthetic.wrong: NoSuchError does not exist",
        "synthetic.wrong: not 'Name: when': 'ValueError, TypeError: two on one line.'",
    ]


def test_raises_section_reads_entries_and_their_continuations():
    doc = """Do it.

    Raises:
        MissingFileError: The folder does not exist, or it
            holds no ``meta.json``.
        simrec.IndexIntegrityError: Damaged.

    Example:
        >>> do()  # doctest: +SKIP
    """
    assert raises_section(doc) == (["MissingFileError", "simrec.IndexIntegrityError"], [])
