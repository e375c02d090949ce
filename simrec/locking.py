"""One writer per index folder: an OS file lock that dies with its holder.

``fcntl.flock`` on ``.simrec-lock`` inside the folder: the operating system releases it
when the holder exits or is killed, so a crashed writer never leaves the folder locked.
Readers never take it. Within one process the lock is re-entrant.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from simrec.durability import REFUSED, warn_unsupported
from simrec.errors import IndexLockedError

LOCK_FILE = ".simrec-lock"
_held: dict[str, int] = {}  # folder -> depth, for re-entry in this process


@contextlib.contextmanager
def writer_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's writer lock for the block.

    Raises:
        IndexLockedError: Another process holds it.
    """
    import fcntl

    directory = Path(directory)
    key = str(directory.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    descriptor = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
                raise IndexLockedError(
                    f"another simrec process (pid {holder}) is writing the index {directory}; "
                    "wait for it to finish (readers are not affected)"
                ) from None
            if error.errno not in REFUSED:
                raise
            warn_unsupported("file locks", directory, error)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(descriptor)  # closing releases the lock
