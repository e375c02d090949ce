"""One version number: the package's, the installed distribution's and the command line's agree."""

from __future__ import annotations

from importlib.metadata import version

import simrec
from simrec.cli import main
from simrec.core.version import __version__


def test_the_version_is_the_distributions(capsys):
    assert __version__ == simrec.__version__ == version("simrec")
    try:
        main(["--version"])
    except SystemExit:
        pass
    assert __version__ in capsys.readouterr().out
