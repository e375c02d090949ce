"""Making writes durable: fsync of files and folders, tolerant of filesystems that refuse.

Every file simrec writes is created with :class:`NewFile`, whose bytes all go through
``os.write``: a full disk surfaces as ``OSError(ENOSPC)`` at the write that found no room,
never as a silent short write, and :func:`no_room_error` turns it into one
:class:`~simrec.core.errors.DiskFullError` message wherever it happens.

Some filesystems (Google Drive in Colab, other FUSE and network mounts) refuse an fsync
of a folder or an advisory lock with ``EINVAL``, ``ENOTSUP``/``EOPNOTSUPP`` or ``ENOLCK``.
simrec then goes on, warns once per process and guarantee, and logs it: the write still
commits with one atomic rename, but a power cut may lose the last commit. Any other error
stops the write.
"""

from __future__ import annotations

import errno
import io
import logging
import os
from pathlib import Path

from simrec.core.errors import DiskFullError

logger = logging.getLogger(__name__)

REFUSED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOLCK})
"""Error numbers that mean "this filesystem does not do that", not "this write failed"."""

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""Error numbers that mean "this disk takes no more writes": full, over its quota, or read-only."""

_NO_ROOM_WORDS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk is full for this user (its quota)",
    errno.EROFS: "the disk is read-only",
}

_warned: set[str] = set()


def warn_unsupported(what: str, path: str | os.PathLike, error: OSError) -> None:
    """Warn once per process that ``path``'s filesystem cannot guarantee ``what``."""
    if what in _warned:
        logger.info("%s: %s not supported here (%s)", path, what, error.strerror or error)
        return
    _warned.add(what)
    logger.warning(
        "the filesystem of %s does not support %s (%s); going on without it, so this filesystem cannot guarantee %s",
        path,
        what,
        error.strerror or error,
        _CONSEQUENCE.get(what, "it"),
    )


_CONSEQUENCE = {
    "folder fsync": "that the last commit survives a power cut (a crash of simrec itself is still safe)",
    "file locks": "that two writers of the same index are kept apart: run one 'simrec index' at a time",
}


def fsync_file(handle) -> None:
    """Flush a written file object to disk."""
    handle.flush()
    os.fsync(handle.fileno())


def fsync_folder(path: str | os.PathLike) -> None:
    """Make a rename or removal inside ``path`` durable (skipped, with a warning, where refused)."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as error:
        if error.errno in REFUSED:
            warn_unsupported("folder fsync", path, error)
            return
        raise
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in REFUSED:
            raise
        warn_unsupported("folder fsync", path, error)
    finally:
        os.close(descriptor)


def is_no_room(error: BaseException) -> bool:
    """Whether ``error`` says the disk takes no more writes (:data:`NO_ROOM`)."""
    return isinstance(error, OSError) and error.errno in NO_ROOM


def no_room_error(where: str | os.PathLike, error: OSError, kept: str = "") -> DiskFullError:
    """The one message for a full disk: ``cannot write IDX: the disk is full (No space left on device)``.

    Args:
        where: The folder or file being written.
        error: The ``OSError`` whose ``errno`` is in :data:`NO_ROOM`.
        kept: What was left as it was, e.g. ``"the previous generation is unchanged"``.

    Example:
        >>> str(no_room_error("idx", OSError(errno.ENOSPC, "No space left on device")))
        'cannot write idx: the disk is full (No space left on device); free some space and run it again'
    """
    words = _NO_ROOM_WORDS.get(error.errno, "the disk takes no more writes")
    advice = "free some space and run it again" if error.errno != errno.EROFS else "write somewhere else"
    message = f"cannot write {os.fspath(where)}: {words} ({error.strerror or error})"
    return DiskFullError(f"{message}; {kept + '; ' if kept else ''}{advice}", error)


class NewFile(io.RawIOBase):
    """A new file opened for writing (an existing one is an error), every byte through ``os.write``.

    ``numpy``, ``pyarrow`` and ``pandas`` write to it like to any binary file; wrap it in
    ``io.BufferedWriter`` for many small writes. A write the kernel takes only partly is
    continued until every byte is written, so a disk that fills up raises ``ENOSPC``
    (never "N requested and M written"). :meth:`sync` flushes it to disk.

    Raises:
        FileExistsError: ``path`` already exists (it is never overwritten).

    Example:
        >>> import tempfile
        >>> with NewFile(os.path.join(tempfile.mkdtemp(), "x.bin")) as handle:
        ...     handle.write(b"abc")
        3
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.name = os.fspath(path)
        self._descriptor = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._position = 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._descriptor

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        """Write every byte of ``data``; return how many (all of them).

        Raises:
            OSError: The disk takes no more (``ENOSPC``, also when the kernel takes nothing and says nothing).
        """
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            written = os.write(self._descriptor, view)
            if written <= 0:  # the kernel took nothing and said nothing: only a full disk does that
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
            view = view[written:]
        self._position += total
        return total

    def sync(self) -> None:
        """Make every byte written so far durable."""
        os.fsync(self._descriptor)

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()
            finally:
                os.close(self._descriptor)
