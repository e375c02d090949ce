"""Exceptions raised by simrec for problems a user can fix.

Every one derives from :class:`SimrecError`, so the command line can tell a user's
mistake (one line on stderr, exit status 2) from a bug (a traceback, exit status 1).
Those that mean the same as a built-in exception also derive from it, so
``except FileNotFoundError`` or ``pytest.raises(ValueError)`` keep working.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping


class SimrecError(Exception):
    """Base class for user-facing simrec errors (bad input, damaged index, ...).

    A message speaks the caller's language: it names Python parameters
    (``Expected n_neighbors to be a positive integer``, ``pass rebuild=True``), and lists
    them in ``parameters`` so the command line can say its own options instead
    (``-k``, ``--rebuild``; see :func:`in_terms_of`).

    Args:
        *args: The message (and any other arguments of the built-in exception).
        parameters: The names of the Python parameters the message names.

    Attributes:
        parameters: The names of the Python parameters the message names, in order.
    """

    def __init__(self, *args: object, parameters: Iterable[str] = ()) -> None:
        super().__init__(*args)
        self.parameters = tuple(parameters)


class InvalidArgumentError(SimrecError, ValueError):
    """An argument or option has a value simrec cannot use; the message names it."""


class MissingFileError(SimrecError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class NotWritableError(SimrecError, PermissionError):
    """An output file or folder cannot be written."""


class DiskFullError(NotWritableError):
    """The disk (or quota) has no room left for a write, or is read-only.

    Raised for ``ENOSPC``, ``EDQUOT`` and ``EROFS`` wherever simrec writes, so a full
    disk reads as a full disk, never as a damaged photo or a bug. The message names the
    folder or file and says what was kept.

    Attributes:
        os_error: The ``OSError`` that found no room, when there was one.
    """

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class UnknownProductError(SimrecError, KeyError):
    """A ``product_id`` that the catalog does not hold; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ImageDecodeError(SimrecError):
    """An image file could not be read as a picture.

    Attributes:
        path: The file that failed.
        reason: A short human-readable reason, e.g. ``"file is empty (0 bytes)"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path!r}: {reason}")


class UnsafeArchiveError(SimrecError):
    """A zip archive cannot be used at all (not a zip, or every entry refused)."""


class IndexIntegrityError(SimrecError):
    """A saved index is missing files, damaged, or does not match the extractor."""


class IndexLockedError(SimrecError):
    """Another process is writing the same index folder."""


class MissingDependencyError(SimrecError, ImportError):
    """An optional dependency (faiss, Ray, pyarrow) is not installed; the message says what to install."""


class DatabaseError(SimrecError):
    """A database cannot be used: unreachable, without pgvector, a permission missing, or tables of another shape.

    The message names the database (never its password) and what is wrong; nothing was written.
    """


def in_terms_of(error: SimrecError, names: Mapping[str, str]) -> str:
    """The error's message with each of its parameters said as ``names`` says it.

    Only whole words of the message's own wording are said anew: ``name=True`` becomes the
    bare name (a switch such as ``--rebuild``), ``name=VALUE`` becomes ``NAME VALUE``, and
    the name alone becomes ``NAME``. A word inside a path or a quoted value the message
    quotes (``'shop/out/x.txt'``) is left as it is, and so are parameters that ``names``
    does not hold.

    Args:
        error: The error; its ``parameters`` say which words of the message are parameters.
        names: What to say for each parameter, e.g. ``{"index_dir": "--out"}``.

    Returns:
        The message to show.

    Example:
        >>> error = InvalidArgumentError("pass rebuild=True with n_neighbors=5", parameters=("rebuild", "n_neighbors"))
        >>> in_terms_of(error, {"rebuild": "--rebuild", "n_neighbors": "-k"})
        'pass --rebuild with -k 5'
    """
    said = {parameter: names[parameter] for parameter in getattr(error, "parameters", ()) if parameter in names}
    if not said:
        return str(error)
    words = "|".join(re.escape(parameter) for parameter in sorted(said, key=len, reverse=True))
    # A parameter is a word that stands alone: after the start, a space or an opening bracket,
    # and before a space, the end, '=' or closing punctuation; never part of a path or a quote.
    pattern = re.compile(rf"(?:(?<=^)|(?<=[\s(\[]))({words})(?:(=True\b)|(=)|(?=$|[\s,;:)\]]|\.(?:\s|$)))")

    def say(match: re.Match) -> str:
        name = said[match.group(1)]
        return name + " " if match.group(3) else name

    return pattern.sub(say, str(error))
