"""What the service needs installed, checked before anything imports it.

This module imports nothing the service needs, so ``simrec serve`` can say in one line
which package is missing instead of failing on an ``import fastapi`` deep inside.
"""

from __future__ import annotations

import importlib

from simrec.core.errors import MissingDependencyError

SERVE_PACKAGES = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
    "fastapi-offline": ("fastapi_offline",),
}
"""The pip packages the service needs, each with the module names it may be imported as."""


def missing_packages() -> list[str]:
    """The pip packages of :data:`SERVE_PACKAGES` none of whose modules can be imported."""
    return [package for package, modules in SERVE_PACKAGES.items() if not any(map(_importable, modules))]


def check_dependencies() -> None:
    """Refuse to serve without the service's packages.

    Raises:
        MissingDependencyError: One or more are not installed; the message says what to install.
    """
    missing = missing_packages()
    if missing:
        raise MissingDependencyError(
            f"simrec serve needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install {' '.join(missing)} (or pip install -r requirements.txt)"
        )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
