"""The stored nearest products of an index generation: two data files of its generation.

A commit that carries :class:`~simrec.search.stored.StoredNeighbors` writes them as
``neighbor_rows-GEN.npy`` (``(n_items, 2, K)`` int32) and ``neighbor_distances-GEN.npy``
(``(n_items, 2, K)`` float32) under the generation's new names, like every other data file,
and ``meta.json`` names them with a ``stored_neighbors`` entry (``n_neighbors``,
``colour_weight``). They are committed by the same rename of ``meta.json`` and removed with
their generation (see :mod:`simrec.storage.index_folder`), so a reader never sees stored
neighbors of another generation than its vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simrec.core.errors import IndexIntegrityError
from simrec.core.index_meta import IndexMeta
from simrec.search.stored import StoredNeighbors

ROLES = ("neighbor_rows", "neighbor_distances")
"""The data files of stored neighbors, by role in ``meta.json``."""


def writers(stored: StoredNeighbors | None) -> dict[str, Callable[[Any], None]]:
    """How to write each file of ``stored`` to an open binary handle (none without stored neighbors)."""
    if stored is None:
        return {}
    return {
        "neighbor_rows": lambda handle: np.save(handle, np.asarray(stored.rows, dtype=np.int32)),
        "neighbor_distances": lambda handle: np.save(handle, np.asarray(stored.distances, dtype=np.float32)),
    }


def describe(stored: StoredNeighbors | None) -> dict[str, Any] | None:
    """``meta.json``'s ``stored_neighbors`` entry for ``stored``."""
    if stored is None:
        return None
    return {"n_neighbors": stored.n_neighbors, "colour_weight": float(stored.colour_weight)}


def read_stored(
    index_dir: Path, meta: IndexMeta, files: dict[str, Any], read_array: Callable[[Path], np.ndarray]
) -> StoredNeighbors | None:
    """The stored neighbors ``meta.json`` names, checked against it, or None when it names none.

    Args:
        index_dir: The index folder.
        meta: Its ``meta.json``.
        files: ``meta.json``'s data files by role.
        read_array: Reads one ``.npy`` file (memory-mapped or not, as the index is opened).

    Raises:
        IndexIntegrityError: Only one of the files is named, ``meta.json`` does not describe them, or their
            shapes or types differ from what it says.
        FileNotFoundError: A named file is gone (a writer removed it after a newer commit).
    """
    named = [role for role in ROLES if role in files]
    if not named:
        return None
    entry = meta.stored_neighbors
    if len(named) != len(ROLES) or not isinstance(entry, dict) or not isinstance(entry.get("n_neighbors"), int):
        raise IndexIntegrityError(
            f"{index_dir} is inconsistent: meta.json names {', '.join(named)} without a complete stored_neighbors "
            "entry; embed the index again from its source (rebuild=True)",
            parameters=("rebuild",),
        )
    rows = read_array(index_dir / files["neighbor_rows"]["name"])
    distances = read_array(index_dir / files["neighbor_distances"]["name"])
    shape = (meta.count, 2, entry["n_neighbors"])
    if rows.shape != shape or distances.shape != shape or rows.dtype != np.int32 or distances.dtype != np.float32:
        raise IndexIntegrityError(
            f"{index_dir} is inconsistent: stored neighbors are {rows.dtype} {rows.shape} and {distances.dtype} "
            f"{distances.shape}, expected int32 and float32 {shape}; embed the index again from its source "
            "(rebuild=True)",
            parameters=("rebuild",),
        )
    return StoredNeighbors(rows, distances, float(entry.get("colour_weight", 0.0)))
