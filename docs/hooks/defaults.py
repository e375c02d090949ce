"""MkDocs hook: ``{{ defaults.NAME }}`` in a page is the value of ``simrec.core.defaults.NAME``.

Defaults are written once, in ``simrec/core/defaults.py``; the site says what the code does. A
name that does not exist there fails the build.
"""

from __future__ import annotations

import re

from simrec.core import defaults

_PLACEHOLDER = re.compile(r"\{\{\s*defaults\.([A-Z_]+)\s*\}\}")


def _value(match: re.Match) -> str:
    name = match.group(1)
    if not hasattr(defaults, name):
        raise ValueError(f"{{{{ defaults.{name} }}}}: simrec.core.defaults has no {name}")
    value = getattr(defaults, name)
    return f"{value:g}" if isinstance(value, float) else str(value)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return _PLACEHOLDER.sub(_value, markdown)
