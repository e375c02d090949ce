"""One writer per index folder: an OS file lock that dies with its holder.

``fcntl.flock`` on ``.simrec-lock`` inside the folder: the operating system releases it
when the holder exits or is killed, so a crashed writer never leaves the folder locked.
Readers never take it. The thread that holds it may take it again (re-entrant); another
thread of the same process is refused like another process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from simrec.core.durability import REFUSED, is_no_room, no_room_error, warn_unsupported
from simrec.core.errors import IndexLockedError, MissingFileError, NotWritableError

LOCK_FILE = ".simrec-lock"
_held: dict[str, tuple[int, int]] = {}  # folder -> (thread holding it, depth), for re-entry by that thread
_guard = threading.Lock()
_descriptors: set[int] = set()  # the lock files this process holds open


def _forget_inherited_locks() -> None:
    """In a forked child: close the lock files inherited from the parent.

    A flock belongs to the open file, which a fork shares: a child that a library forks while
    the parent writes (OpenVINO's usage statistics do, for one) would otherwise hold the lock
    after the parent has finished, and the next writer would be refused.
    """
    for descriptor in list(_descriptors):
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _descriptors.clear()
    _held.clear()


os.register_at_fork(after_in_child=_forget_inherited_locks)


@contextlib.contextmanager
def writer_lock(index_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the folder's writer lock for the block.

    Raises:
        IndexLockedError: Another process, or another thread of this one, holds it.
        MissingFileError: The folder does not exist.
        NotWritableError: The lock file cannot be created there.
        DiskFullError: The disk has no room left for the lock file (or is read-only).
    """
    index_dir = Path(index_dir)
    key = str(index_dir.resolve())
    me = threading.get_ident()
    with _guard:
        owner, depth = _held.get(key, (me, 0))
        if owner != me:
            raise IndexLockedError(
                f"another thread of this process is writing the index {index_dir}; wait for it to finish"
            )
        _held[key] = (me, depth + 1)
    try:
        if depth:  # re-entry by the thread that holds it
            yield
        else:
            with _os_lock(index_dir):
                yield
    finally:
        with _guard:
            if depth:
                _held[key] = (me, depth)
            else:
                del _held[key]


@contextlib.contextmanager
def _os_lock(index_dir: Path) -> Iterator[None]:
    import fcntl

    try:
        descriptor = os.open(index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise MissingFileError(f"index folder not found: {index_dir}") from None
    except OSError as error:
        if is_no_room(error):
            raise no_room_error(index_dir, error) from None
        raise NotWritableError(f"cannot write the index folder {index_dir}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
                raise IndexLockedError(
                    f"another simrec process (pid {holder}) is writing the index {index_dir}; "
                    "wait for it to finish (readers are not affected)"
                ) from None
            if error.errno not in REFUSED:
                raise
            warn_unsupported("file locks", index_dir, error)
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        except OSError as error:
            if not is_no_room(error):
                raise
            raise no_room_error(index_dir, error) from None
        _descriptors.add(descriptor)
        yield
    finally:
        _descriptors.discard(descriptor)
        os.close(descriptor)  # closing releases the lock
