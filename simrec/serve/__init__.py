"""Serve one index over HTTP: a JSON API and a web page, with FastAPI on uvicorn.

``simrec serve INDEX_DIR`` runs :func:`create_app` under uvicorn. The index is opened
read-only and memory-mapped; nothing is ever written to its folder. ``create_app``
imports FastAPI when it is first asked for, so ``import simrec`` never does, and
:mod:`simrec.serve.dependencies` can say which package is missing before anything needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from simrec.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'simrec.serve' has no attribute {name!r}")
