"""The examples in docstrings run: each module below has examples that are not skipped."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "simrec.core.validation",
    "simrec.search.exact",
    "simrec.app.evaluate",
    "simrec.embedded_catalog",
    "simrec.pipeline.embedding",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example that runs"
    assert result.failed == 0


def test_embedded_catalog_is_not_compared_by_value(embedded):
    """Two loaded copies are different objects; == never compares DataFrames element by element."""
    import copy

    other = copy.copy(embedded)
    assert embedded == embedded
    assert embedded != other
    assert len({embedded, other}) == 2  # hashable by identity, so caches can be keyed on it
