"""Exact ranking of a search's best candidates, the same however they were found.

A float32 matrix product sums each dot product in an order its BLAS kernel picks: one
query (a matrix-vector product) and a block of queries (a matrix-matrix product) give the
same pair distances up to the last bits, so two ways of asking the same question could
order near-ties differently. Every exact search therefore ranks by *canonical* distances:
each candidate's distance is computed again from the stored float32 vectors in float64,
one pair at a time in a fixed order, and rounded to float32. The fast distances only pick
the candidates, and the candidates provably hold the true top ``k``:

* a float32 dot product of length ``d`` is off by at most ``γ_d Σ|x_i y_i|`` with
  ``γ_d = d u / (1 - d u)`` and ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical
  Algorithms*, 3.1), whatever order the kernel sums in; for unit vectors
  ``Σ|x_i y_i| <= 1``, so a fast distance and the canonical one differ by at most a
  known ``bound`` (:func:`cosine_bound`, :meth:`simrec.ColourBlendNeighbors.error_bound`);
* if ``t`` is the ``k``-th smallest canonical distance among some candidates, every item
  of the true top ``k`` has a canonical distance ``<= t`` and so a fast distance
  ``<= t + bound``: :func:`canonical_top_k` scores exactly every item under that line.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

UNIT_ROUNDOFF = 2.0**-24
"""``u``: the largest relative rounding error of one float32 operation."""

_EXTRA_CANDIDATES = 16  # looked at beyond k before the bound is checked: most queries need no second look


def cosine_bound(dim: int) -> float:
    """Most a float32 cosine distance over ``dim`` features can differ from the canonical one.

    The dot product (``γ_dim``), the scaling of the query and of the result by stored
    float32 inverse norms (the canonical distance divides by float64 norms), the
    subtraction from 1 and the final rounding each add a few ``u``.
    """
    d = dim + 12
    return 1.01 * d * UNIT_ROUNDOFF / (1.0 - d * UNIT_ROUNDOFF)


def canonical_cosine(fit_X: np.ndarray, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(len(rows),)`` float64 cosine distances of ``query`` to ``fit_X[rows]``, always computed the same way.

    A zero vector is at distance 1 from everything, as in the float32 search.

    Args:
        fit_X: ``(n_items, dim)`` float32 vectors.
        query: ``(dim,)`` float32 vector.
        rows: Candidate rows.
    """
    q = np.array(query, dtype=np.float64)
    items = np.asarray(fit_X[rows], dtype=np.float64)
    # One pairwise sum per row, in the same order whatever the other rows; norms from the vectors themselves.
    dots = (items * q).sum(axis=1)
    norms = np.sqrt((items * items).sum(axis=1)) * np.sqrt((q * q).sum())
    similarity = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return np.clip(1.0 - similarity, 0.0, 2.0)


def canonical_top_k(
    fast: np.ndarray,
    k: int,
    score: Callable[[np.ndarray], np.ndarray],
    bound: float,
    valid: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest items by canonical distance, ties by row number.

    Args:
        fast: ``(n_items,)`` fast distances of one query to every item; an item left out
            (the query itself) holds ``+inf``.
        k: Neighbors wanted, at most the finite entries of ``fast``.
        score: Canonical distances (float64) of given rows.
        bound: Most a fast distance can differ from the canonical one.
        valid: Number of finite entries of ``fast`` (default: counted).

    Returns:
        ``(distances, rows)``: float32 canonical distances, nearest first, and int64 rows.
    """
    n = int(np.isfinite(fast).sum()) if valid is None else valid
    m = min(n, k + _EXTRA_CANDIDATES)
    if m < len(fast):
        rows = np.argpartition(fast, m - 1)[:m]
    else:
        rows = np.arange(len(fast))
    rows = rows[np.isfinite(fast[rows])]
    distances = score(rows).astype(np.float32)
    order = np.lexsort((rows, distances))
    if len(rows) < n:
        line = float(distances[order[k - 1]]) + bound
        if float(fast[rows].max()) <= line:  # some item outside the candidates may still be under the line
            limit = np.float32(line)
            if float(limit) < line:  # rounded down: move up one step, so nothing under the line is missed
                limit = np.nextafter(limit, np.float32(np.inf))
            rows = np.flatnonzero(fast <= limit)
            distances = score(rows).astype(np.float32)
            order = np.lexsort((rows, distances))
    order = order[:k]
    return distances[order], rows[order].astype(np.int64)
