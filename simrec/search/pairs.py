"""Pairs of items whose vectors lie within a distance of each other, without an n x n matrix."""

from __future__ import annotations

import numpy as np

from simrec.search.base import NeighborsSearch


def close_pairs(
    search: NeighborsSearch, threshold: float, n_neighbors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of fitted items among each other's ``n_neighbors`` nearest within ``threshold``.

    The search answers every item's neighbors one block of items at a time (exact in
    blocks of bounded scratch memory, or the approximate structure), so memory holds one
    block and the pairs found, at most ``n_items * n_neighbors``, never ``n_items ** 2``.

    Args:
        search: A fitted search over the items (exact or approximate).
        threshold: Largest cosine distance of a pair.
        n_neighbors: Neighbors looked at per item (cut to ``n_items - 1``).

    Returns:
        ``(first, second, distances)``: int64 rows with ``first < second``, each pair
        once, and their float32 cosine distances, ordered by ``(first, second)``.

    Example:
        >>> first, second, distances = close_pairs(embedded.neighbors, 0.1, 10)  # doctest: +SKIP

    Raises:
        InvalidArgumentError: ``search`` is not fitted.
    """
    search.check_fitted()
    n_items = int(search.n_samples_fit_)
    k = min(int(n_neighbors), n_items - 1)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    if k < 1:
        return empty
    firsts, seconds, found = [], [], []
    for start, distances, indices in search.kneighbors_blocks(None, n_neighbors=k):
        rows = np.arange(start, start + len(distances))[:, None]
        keep = (distances <= threshold) & (indices >= 0)
        if not keep.any():
            continue
        pair_rows = np.broadcast_to(rows, indices.shape)[keep]
        firsts.append(np.minimum(pair_rows, indices[keep]))
        seconds.append(np.maximum(pair_rows, indices[keep]))
        found.append(distances[keep].astype(np.float32))
    if not firsts:
        return empty
    first, second, distance = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(found)
    key = first * n_items + second
    order = np.argsort(key, kind="stable")
    key, first, second, distance = key[order], first[order], second[order], distance[order]
    unique = np.ones(len(key), dtype=bool)
    unique[1:] = key[1:] != key[:-1]
    return first[unique], second[unique], np.maximum(distance[unique], 0.0)
