"""Store every product's nearest products with each committed generation, so id queries need no scan.

A shop's product pages ask "similar to product X" for catalog products over and over, and
the answer changes only when the index does. So a commit of ``simrec index``, ``simrec
colours`` or ``simrec ann`` computes, for every product, its
:data:`~simrec.core.defaults.STORED_NEIGHBORS` nearest other products at the index's
default colour weight by the exact search, as ranked and with duplicates left out, and
stores them in the generation (:mod:`simrec.storage.stored_neighbors`). :func:`recommend`,
``simrec query --id`` and the service then look up any id query for ``k <= K`` at that
weight; anything else scans as before.

The lists are computed by the same code that answers a scan: the exact search's
all-products blocks (:meth:`~simrec.search.base.NeighborsSearch.kneighbors_blocks`, memory
bounded as in ``simrec export``), whose canonical ranking gives the same neighbors and
distances as one query at a time (:mod:`simrec.search.rerank`), and
:func:`~simrec.app.distinct.distinct_neighbors_many` for the distinct lists. Every commit
computes them all again: the blend's scales come from a sample of the whole catalog, so
any change of products can change every blended distance, and the cost is measured in
``benchmarks/precompute.py`` (``docs/precomputed.md``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from simrec.app.distinct import distinct_neighbors_many
from simrec.app.duplicates import copy_test_for
from simrec.core.defaults import STORE_NEIGHBORS_UP_TO, STORED_NEIGHBORS
from simrec.core.validation import check_n_neighbors
from simrec.embedded_catalog import EmbeddedCatalog, default_colour_weight, neighbors_for
from simrec.search.stored import StoredNeighbors
from simrec.storage.index_folder import load_index, read_meta, save_index
from simrec.storage.locking import writer_lock

logger = logging.getLogger(__name__)


def compute_stored_neighbors(
    embedded: EmbeddedCatalog, n_neighbors: int = STORED_NEIGHBORS, *, verbose: bool = False
) -> StoredNeighbors:
    """Every product's ``n_neighbors`` nearest other products at the index's default colour weight.

    Args:
        embedded: The index (its exact search is used, even when it has an ann structure).
        n_neighbors: ``K``; fewer when the catalog has fewer other products.
        verbose: Show a progress bar.

    Returns:
        :class:`~simrec.search.stored.StoredNeighbors` whose first ``k`` rows of each list
        equal ``recommend(embedded, product_id=..., n_neighbors=k)`` (and ``distinct=True``).

    Raises:
        InvalidArgumentError: ``n_neighbors`` below 1, or an index of fewer than two products.
    """
    from tqdm.auto import tqdm

    check_n_neighbors(n_neighbors)
    n_items = len(embedded)
    k = min(n_neighbors, n_items - 1)
    weight = default_colour_weight(embedded)
    search = neighbors_for(embedded, weight)
    test = copy_test_for(embedded)
    fetch = min(n_items - 1, 2 * k + 10)  # what distinct_neighbors looks at first
    rows = np.full((n_items, 2, k), -1, dtype=np.int32)
    distances = np.full((n_items, 2, k), np.nan, dtype=np.float32)
    with tqdm(total=n_items, unit="product", desc="stored neighbors", disable=not verbose) as progress:
        for start, found, indices in search.kneighbors_blocks(n_neighbors=fetch):
            stop = start + len(found)
            rows[start:stop, 0], distances[start:stop, 0] = indices[:, :k], found[:, :k]
            answers = distinct_neighbors_many(test, search, k, np.arange(start, stop), indices)
            for row, (best, kept) in enumerate(answers, start=start):
                rows[row, 1, : len(kept)], distances[row, 1, : len(kept)] = kept, best
            progress.update(len(found))
    return StoredNeighbors(rows, distances, weight)


def with_stored_neighbors(
    embedded: EmbeddedCatalog, store: bool | None = None, n_neighbors: int = STORED_NEIGHBORS, verbose: bool = False
) -> EmbeddedCatalog:
    """``embedded`` with stored neighbors for its next commit, as the policy says.

    Args:
        embedded: The version about to be committed.
        store: True: always; False: never (any it carries are dropped); None (default):
            for catalogs of up to :data:`~simrec.core.defaults.STORE_NEIGHBORS_UP_TO` products.
        n_neighbors: ``K``.
        verbose: Show a progress bar.

    Returns:
        ``embedded`` itself, its ``stored_neighbors`` set (kept when they already fit: the same
        ``K`` and the default colour weight of these vectors).
    """
    if store is None:
        store = 2 <= len(embedded) <= STORE_NEIGHBORS_UP_TO
    if not store or len(embedded) < 2:
        embedded.stored_neighbors = None
        return embedded
    current = embedded.stored_neighbors
    fits = current is not None and current.n_neighbors == min(n_neighbors, len(embedded) - 1)
    if fits and current.colour_weight == default_colour_weight(embedded):
        return embedded
    started = time.perf_counter()
    embedded.stored_neighbors = compute_stored_neighbors(embedded, n_neighbors, verbose=verbose)
    logger.info(
        "stored the %d nearest products of %d products in %.1fs",
        embedded.stored_neighbors.n_neighbors,
        len(embedded),
        time.perf_counter() - started,
    )
    return embedded


def store_neighbors(
    index_dir: str | os.PathLike, n_neighbors: int = STORED_NEIGHBORS, *, store: bool = True, verbose: bool = False
) -> EmbeddedCatalog:
    """Commit a new generation of an index folder with (or, ``store=False``, without) stored neighbors.

    For indexes written by :func:`simrec.save_vectors` or above
    :data:`~simrec.core.defaults.STORE_NEIGHBORS_UP_TO` products, which commit without them:
    ``simrec neighbors INDEX_DIR``.

    Args:
        index_dir: The index folder.
        n_neighbors: ``K``.
        store: False removes them.
        verbose: Show a progress bar.

    Returns:
        The new generation, loaded.

    Raises:
        MissingFileError: The folder does not exist, or holds no ``meta.json``.
        IndexIntegrityError: The index is damaged.
        IndexLockedError: Another process is writing the folder.
        NotWritableError: The folder cannot be written.
        DiskFullError: The disk has no room left (or is read-only); the previous generation is kept.
        InvalidArgumentError: ``n_neighbors`` below 1.
    """
    index_dir = Path(index_dir)
    check_n_neighbors(n_neighbors)
    read_meta(index_dir)  # a missing or foreign folder is reported before the lock file is made
    with writer_lock(index_dir):
        embedded = load_index(index_dir, mmap=True)
        save_index(with_stored_neighbors(embedded, store, n_neighbors, verbose), index_dir)
        del embedded
    return load_index(index_dir, mmap=True)
