"""Build or remove the approximate-search structure of an index folder (``simrec ann``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from simrec.app.precompute import with_stored_neighbors
from simrec.core.errors import InvalidArgumentError
from simrec.search.approximate import ANN_TYPES, build_ann, import_faiss, serialize
from simrec.storage.index_folder import load_index, read_meta, save_index
from simrec.storage.locking import writer_lock


def attach_ann(
    index_dir: str | os.PathLike,
    ann_type: str,
    *,
    seed: int = 0,
    **params: Any,
) -> dict[str, Any] | None:
    """Build (or with ``ann_type="none"`` remove) the ann structure of an index folder and commit it.

    The structure is committed with the index's own ``meta.json``: whatever stops the
    writer, the folder loads as before or with the complete new structure.

    Args:
        index_dir: The index folder.
        ann_type: ``"hnsw"``, ``"ivf-flat"``, ``"ivf-pq"`` or ``"none"``.
        seed: Seed of the training sample and held-back queries.
        **params: See :func:`default_params`.

    Returns:
        The ``meta.json`` ``ann`` entry, or None when removed.

    Raises:
        MissingDependencyError: faiss is not installed.
        InvalidArgumentError: Unknown type or unfit parameters.
        MissingFileError: The folder does not exist, or holds no ``meta.json``.
        IndexIntegrityError: The index is damaged.
        IndexLockedError: Another process is writing the folder.
        NotWritableError: The folder cannot be written.
        DiskFullError: The disk has no room left (or is read-only); the previous generation is kept.
    """
    index_dir = Path(index_dir)
    if ann_type != "none":
        if ann_type not in ANN_TYPES:
            raise InvalidArgumentError(
                f"Expected ann_type in {(*ANN_TYPES, 'none')}, got {ann_type!r}", parameters=("ann_type",)
            )
        import_faiss()
    read_meta(index_dir)  # a missing or foreign folder is reported before the lock file is made
    with writer_lock(index_dir):
        embedded = load_index(index_dir, mmap=True)
        if ann_type == "none":
            embedded.set_ann(None, None)
        else:
            index, info = build_ann(embedded.embeddings, embedded.inverse_norms, ann_type=ann_type, seed=seed, **params)
            embedded.set_ann(serialize(index), info)
            del index
        save_index(with_stored_neighbors(embedded), index_dir)
    return None if ann_type == "none" else info
