"""A long-lived reader that follows an index folder's commits.

:func:`~simrec.storage.index_folder.load_index` gives a snapshot: the generation committed
when it was called, whatever is committed later. A :class:`IndexFollower` keeps the
generation it opened and, on :meth:`~IndexFollower.refresh`, looks at ``meta.json`` (at most
once per ``poll_seconds``). When a writer has committed a new generation, it opens that
one beside the current one, prepares it (``prepare``, e.g. a service's lookup tables),
and only then makes it current, in one assignment: a caller that took ``current`` keeps
a whole, consistent generation for as long as it holds it, and the next caller gets the new
one. Opening needs no lock and never waits for a writer.

A generation's memory-mapped vectors stay readable after the writer removes their files (the
operating system keeps a removed file's data while it is mapped), and its photos stay in
the photo store until the commit after next (:mod:`simrec.storage.photo_store`), so a
follower that refreshes at least once between two commits never loses a photo.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from simrec.core.deprecation import renamed_attribute, renamed_keyword
from simrec.core.errors import IndexIntegrityError, MissingFileError
from simrec.embedded_catalog import EmbeddedCatalog
from simrec.storage.index_folder import META_FILE, load_index

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Generation(Generic[T]):
    """One committed generation of an index, opened.

    Attributes:
        name: Its name in the folder (``000003-1f2e3d4c``), or None for a first-format index.
        embedded: The index as loaded.
        prepared: What ``prepare`` made of it (the :class:`EmbeddedCatalog` itself by default).
    """

    name: str | None
    embedded: EmbeddedCatalog
    prepared: T

    generation = renamed_attribute("generation", "name")

    def __len__(self) -> int:
        return len(self.embedded)


class IndexFollower(Generic[T]):
    """Follow the commits of one index folder.

    Args:
        index_dir: The index folder.
        mmap: Memory-map the vectors (see :func:`simrec.load_index`).
        poll_seconds: Least time between two looks at ``meta.json``.
        prepare: Called with each newly opened :class:`EmbeddedCatalog`, before it becomes
            current; its result is ``current.prepared``.

    Raises:
        MissingFileError: The folder does not exist.
        IndexIntegrityError: It holds no complete index.

    Example:
        >>> follower = IndexFollower("data/index")  # doctest: +SKIP
        >>> embedded = follower.snapshot()  # the newest committed generation, checked at most once a second
    """

    @renamed_keyword("directory", "index_dir")
    def __init__(
        self,
        index_dir: str | os.PathLike,
        *,
        mmap: bool = True,
        poll_seconds: float = POLL_SECONDS,
        prepare: Callable[[EmbeddedCatalog], T] | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.mmap = mmap
        self.poll_seconds = poll_seconds
        self._prepare: Callable[[EmbeddedCatalog], Any] = prepare or (lambda embedded: embedded)
        self._lock = threading.Lock()
        self._stamp = _stamp(self.index_dir)
        self._refused: tuple[int, int, int] | None = None  # the ``meta.json`` last refused, said once
        self._current = self._open()
        self._checked = time.monotonic()

    @property
    def current(self) -> Generation[T]:
        """The generation being followed now, without looking for a newer one."""
        return self._current

    def snapshot(self) -> EmbeddedCatalog:
        """The newest committed generation: :meth:`refresh`, then ``current.embedded``."""
        self.refresh()
        return self._current.embedded

    def refresh(self, *, force: bool = False) -> bool:
        """Move to the newest committed generation, if there is one; True when it moved.

        Looks at ``meta.json`` at most once per ``poll_seconds`` unless ``force``. While
        another thread is opening a new generation this returns at once (False), and callers
        keep the current one. A generation that cannot be opened (a damaged file) is logged
        once and skipped: the current one stays, and the next refreshes try again quietly
        until a new commit (which is logged again if it cannot be opened either).
        """
        now = time.monotonic()
        if not force and now - self._checked < self.poll_seconds:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._checked = now
            stamp = _stamp(self.index_dir)
            if stamp is None or stamp == self._stamp:  # no ``meta.json`` now: nothing newer to open
                return False
            try:
                opened = self._open()
            except (MissingFileError, IndexIntegrityError, OSError) as error:
                said = stamp == self._refused  # the same broken commit, already said
                log = logger.debug if said else logger.warning
                log("%s: keeping generation %s: %s", self.index_dir, self._current.name, error)
                self._refused = stamp
                return False
            self._stamp = stamp
            if opened.name == self._current.name and opened.name is not None:
                return False
            self._current = opened  # one assignment: every caller sees the old generation or the new one
            logger.info("%s: now at generation %s (%d items)", self.index_dir, opened.name, len(opened.embedded))
            return True
        finally:
            self._lock.release()

    def _open(self) -> Generation[T]:
        embedded = load_index(self.index_dir, mmap=self.mmap)
        return Generation(embedded.meta.generation, embedded, self._prepare(embedded))


@renamed_keyword("directory", "index_dir")
def follow_index(
    index_dir: str | os.PathLike, *, mmap: bool = True, poll_seconds: float = POLL_SECONDS
) -> IndexFollower[EmbeddedCatalog]:
    """Open an index folder and follow its commits: ``follower.snapshot()`` is always the newest generation.

    For a long-lived reader (a worker, a notebook kept open while the shop re-indexes).
    Call ``snapshot()`` once per unit of work and use what it returns throughout, so
    each unit is answered wholly from one generation.

    Raises:
        MissingFileError: The folder does not exist.
        IndexIntegrityError: It holds no complete index.

    Example:
        >>> follower = simrec.follow_index("data/index")  # doctest: +SKIP
        >>> simrec.recommend(follower.snapshot(), product_id="red/shirt_1")  # doctest: +SKIP
    """
    return IndexFollower(index_dir, mmap=mmap, poll_seconds=poll_seconds)


def _stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """What changes when a commit renames a new ``meta.json`` into place: inode, modification time, size."""
    try:
        status = os.stat(index_dir / META_FILE)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def __getattr__(name: str) -> Any:
    """``Version``, the former name of :class:`Generation`, with a ``FutureWarning``."""
    if name == "Version":
        warnings.warn("simrec.storage.following.Version is now Generation; Version will be removed", FutureWarning, 2)
        return Generation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
