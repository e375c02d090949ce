"""Making writes durable: fsync of files and folders, tolerant of filesystems that refuse.

Some filesystems (Google Drive in Colab, other FUSE and network mounts) refuse an fsync
of a folder or an advisory lock with ``EINVAL``, ``ENOTSUP``/``EOPNOTSUPP`` or ``ENOLCK``.
simrec then goes on, warns once per process and guarantee, and logs it: the write still
commits with one atomic rename, but a power cut may lose the last commit. Any other error
stops the write.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

REFUSED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOLCK})
"""Error numbers that mean "this filesystem does not do that", not "this write failed"."""

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
