"""Errors speak the caller's language: Python parameters in the library, options on the command line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from simrec.core.errors import InvalidArgumentError, MissingFileError, SimrecError, in_terms_of

PACKAGE = Path(__file__).resolve().parents[2] / "simrec"
COMMAND_LINE = PACKAGE / "cli"  # the package that parses, calls and prints the command line
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def test_in_terms_of_says_each_parameter_as_the_command_line_does():
    error = InvalidArgumentError(
        "Expected index_dir to name a folder; pass rebuild=True, or weights=PRESET_DIR for index_dir_old",
        parameters=("index_dir", "rebuild", "weights"),
    )
    names = {"index_dir": "--out", "rebuild": "--rebuild", "weights": "--weights"}
    assert in_terms_of(error, names) == (
        "Expected --out to name a folder; pass --rebuild, or --weights PRESET_DIR for index_dir_old"
    )
    assert str(error).startswith("Expected index_dir to name a folder")  # Python callers see their own words


def test_in_terms_of_leaves_words_that_are_not_the_errors_parameters():
    error = InvalidArgumentError("Expected model to be known; untrained weights", parameters=("model",))
    assert in_terms_of(error, {"model": "--model", "weights": "--weights"}) == (
        "Expected --model to be known; untrained weights"
    )
    assert in_terms_of(MissingFileError("no file model.keras"), {"model": "--model"}) == "no file model.keras"


def test_in_terms_of_leaves_paths_and_quoted_values_as_they_are():
    """A folder named like a parameter (``../shared/weights/``, ``out/``) is a value, never an option."""
    names = {"out": "--out", "weights": "--weights", "model": "--model"}
    error = InvalidArgumentError(
        "Expected out to end in .csv, got '/tmp/out/recs.txt'; weights /data/weights/x (model 'model')",
        parameters=("out", "weights", "model"),
    )
    assert in_terms_of(error, names) == (
        "Expected --out to end in .csv, got '/tmp/out/recs.txt'; --weights /data/weights/x (--model 'model')"
    )


@pytest.mark.parametrize("kind", [InvalidArgumentError, MissingFileError, SimrecError])
def test_parameters_default_to_none_and_built_in_bases_still_match(kind):
    error = kind("message", parameters=["n_neighbors"])
    assert error.parameters == ("n_neighbors",) and str(error) == "message"
    assert kind("message").parameters == ()


def test_command_line_options_are_named_only_by_the_command_line():
    """The library's messages name Python parameters; only the command line names its options."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(COMMAND_LINE):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [node for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)]
        standalone = {id(node.value) for node in body}  # docstrings, of modules, classes, functions and constants
        strings = [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        for node in strings:
            if id(node) in standalone:
                continue
            for flag in FLAG.findall(node.value):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {flag}")
    assert not found, "\n".join(found)
