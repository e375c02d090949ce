"""Exceptions raised by simrec for problems a user can fix."""

from __future__ import annotations

import os


class SimrecError(Exception):
    """Base class for user-facing simrec errors (bad input, damaged index, ...)."""


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
