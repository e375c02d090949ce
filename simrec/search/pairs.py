"""Pairs of items whose vectors lie within a distance of each other, without an n x n matrix."""

from __future__ import annotations

import numpy as np

from simrec.search.base import NeighborsSearch
from simrec.search.exact import CosineNeighbors


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


def mirrored_close_pairs(
    vectors: np.ndarray, mirrored: np.ndarray, threshold: float, n_neighbors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`close_pairs`, where an item may also match another's mirror image.

    Args:
        vectors: ``(n_items, dim)`` vectors.
        mirrored: ``(n_items, dim)``: each item's vector of its mirror image.
        threshold: Largest cosine distance of a pair.
        n_neighbors: Neighbors looked at per item, mirror images included.

    Returns:
        ``(first, second, distances)`` as :func:`close_pairs` gives them, each pair of
        items once at the smaller of its two distances (as they are, one mirrored); an
        item and its own mirror image are no pair.
    """
    n_items = len(vectors)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    if n_items < 2:
        return empty
    both = np.concatenate([vectors, mirrored]).astype(np.float32, copy=False)
    # A row of zeros (a photo of one colour) is at distance 1 from everything: no pair.
    inverse = np.linalg.norm(both, axis=1)
    inverse = np.divide(1.0, inverse, out=np.zeros_like(inverse), where=inverse > 0).astype(np.float32)
    search = CosineNeighbors(n_neighbors=1).fit(both, inverse_norms=inverse)
    first, second, distances = close_pairs(search, threshold, int(n_neighbors) + 1)
    first, second = first % n_items, second % n_items
    first, second = np.minimum(first, second), np.maximum(first, second)
    keep = first != second
    first, second, distances = first[keep], second[keep], distances[keep]
    order = np.lexsort((distances, second, first))  # by pair, the smaller distance first
    first, second, distances = first[order], second[order], distances[order]
    unique = np.ones(len(first), dtype=bool)
    unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[unique], second[unique], distances[unique]
