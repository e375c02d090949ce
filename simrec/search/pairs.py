"""Pairs of items whose vectors lie within a distance of each other, without an n x n matrix."""

from __future__ import annotations

import numpy as np

from simrec.core.errors import InvalidArgumentError
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


def mirrored_close_pairs(
    search: NeighborsSearch, mirrored: np.ndarray, threshold: float, n_neighbors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`close_pairs`, where an item may also match another's mirror image.

    Each item's ``n_neighbors`` nearest other items are looked at twice: as they are (the
    search's own items), and nearest to the item's mirror image (``mirrored`` as queries).
    An item and its own mirror image are no pair, so a symmetric item loses no neighbor to it.

    Args:
        search: A fitted search over the items' vectors (exact or approximate).
        mirrored: ``(n_items, dim)``: each item's vector of its mirror image.
        threshold: Largest cosine distance of a pair.
        n_neighbors: Other items looked at per item and per orientation.

    Returns:
        ``(first, second, distances)`` as :func:`close_pairs` gives them, each pair of
        items once, at the smaller of its two distances (as they are, one mirrored).

    Raises:
        InvalidArgumentError: ``search`` is not fitted, or ``mirrored`` does not match its items.
    """
    search.check_fitted()
    n_items = int(search.n_samples_fit_)
    if np.shape(mirrored) != (n_items, search.n_features_in_):
        raise InvalidArgumentError(
            f"Expected mirrored of shape ({n_items}, {search.n_features_in_}), got {np.shape(mirrored)}"
        )
    firsts, seconds, found = list(close_pairs(search, threshold, n_neighbors)), [], []
    k = min(int(n_neighbors), n_items - 1) + 1  # the item's own mirror image may come first
    if k > 1:
        for start, distances, indices in search.kneighbors_blocks(np.asarray(mirrored, np.float32), n_neighbors=k):
            rows = np.broadcast_to(np.arange(start, start + len(distances))[:, None], indices.shape)
            keep = (distances <= threshold) & (indices >= 0) & (indices != rows)
            seconds.append(np.minimum(rows[keep], indices[keep]))
            found.append((np.maximum(rows[keep], indices[keep]), distances[keep].astype(np.float32)))
    first = np.concatenate([firsts[0], *seconds])
    second = np.concatenate([firsts[1], *(pair[0] for pair in found)])
    distance = np.concatenate([firsts[2], *(pair[1] for pair in found)])
    order = np.lexsort((distance, second, first))  # by pair, the smaller distance first
    first, second, distance = first[order], second[order], distance[order]
    unique = np.ones(len(first), dtype=bool)
    unique[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[unique].astype(np.int64), second[unique].astype(np.int64), np.maximum(distance[unique], 0.0)
