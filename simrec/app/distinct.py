"""Distinct results: the nearest products of which none is a duplicate of the query or of a better one.

The one home of ``distinct`` results: ``recommend(..., distinct=True)``, ``simrec query
--distinct``, ``simrec export --distinct`` and the service's ``distinct=true`` all call
:func:`distinct_neighbors` (or :func:`distinct_neighbors_many` for a block of products),
so they give the same products in the same order for the same index, whatever the load,
the search's block size or the BLAS threads:

1. **Candidates**: the query's ``2 * n_neighbors + 10`` nearest from the search, twice as
   many each time duplicates leave too few, up to the whole catalog.
2. **Exact distances**: the search's float32 distances depend on how it was asked (one
   query or a block, how many BLAS threads), so the candidates' distances are computed
   again, in float64, element by element with a fixed summation order
   (:func:`~simrec.embedded_catalog.pair_distances`): the same bits on every path. Results are ranked by them,
   distances within :data:`DISTANCE_TIE` of each other count as equal, and equal ones are
   ordered by catalog row. A candidate within a small margin of the last one fetched
   (another product the search did not return could rank before it) is not relied on:
   more are fetched.
3. **Keep rule**: going down that ranking, a candidate is dropped when it is a duplicate
   (:class:`~simrec.app.duplicates.DuplicateTest`) of the query product or of a result
   already kept. So of a group of copies the one nearest the query stays, and of equally
   near ones the lowest catalog row: a rule of the index and the query, not of the path.
   A photo query is not a catalog product: the catalog's copy of that photo is the best
   answer and stays; only its further copies go.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simrec.app.duplicates import DuplicateTest
from simrec.embedded_catalog import EmbeddedCatalog, gather_vectors, pair_distances, row_dots

DISTANCE_TIE = 1e-6
"""Distances closer than this are a tie, broken by catalog row (the lowest first)."""

_MARGIN = 1e-4  # the search's float32 error, and more: candidates this near the last fetched one wait for more
_BATCH = 64  # products whose candidates are scored at once by distinct_neighbors_many


def distinct_neighbors(
    test: DuplicateTest,
    neighbors: Any,
    n_neighbors: int,
    *,
    query_row: int | None = None,
    query_vector: np.ndarray | None = None,
    search_options: dict[str, Any] | None = None,
    first: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbors`` nearest products of which none is a duplicate of the query or of a higher-ranked one.

    Args:
        test: The index's :class:`DuplicateTest` (:func:`~simrec.app.duplicates.copy_test_for`).
        neighbors: The search (its ``kneighbors``): exact, approximate or the colour blend.
        n_neighbors: Results wanted.
        query_row: The query's catalog row (left out of its results), or None for a photo.
        query_vector: The photo query's vector, ``(dim,)``.
        search_options: Extra ``kneighbors`` arguments (the blend's ``colours``).
        first: The query's nearest neighbors as the caller already has them, ``(distances,
            indices)`` 1-D, best first, the query itself left out; used when they are enough.

    Returns:
        ``(distances, indices)``, 1-D float32 and int64, at most ``n_neighbors`` each (fewer
        only when the catalog runs out of distinct products). The distances are the exact
        ones of step 2 in the module docstring (blended above colour weight 0), rounded to
        float32 as the search's own are.
    """
    options = search_options or {}
    n_items = len(test.embedded)
    own = query_row is not None
    available = n_items - own
    fetch = min(available, 2 * n_neighbors + 10)
    vector = test.embedded.embeddings[query_row] if own else np.asarray(query_vector, dtype=np.float32).reshape(-1)
    while True:
        if first is not None and len(first[1]) >= fetch:
            rows = np.asarray(first[1][:fetch], dtype=np.int64)
        else:
            _, found = neighbors.kneighbors(vector, n_neighbors=min(n_items, fetch + own), **options)
            found = found[0]
            rows = found[(found != query_row) & (found >= 0)][:fetch] if own else found[found >= 0][:fetch]
        ranking, to_query = _scores(test.embedded, neighbors, rows[None], [query_row], vector[None], [options])
        kept, certain = _select(test, rows, ranking[0], to_query[0], n_neighbors, query_row, fetch >= available)
        if certain:
            return ranking[0][kept].astype(np.float32), rows[kept]
        fetch, first = min(available, 2 * fetch), None


def distinct_neighbors_many(
    test: DuplicateTest,
    neighbors: Any,
    n_neighbors: int,
    query_rows: np.ndarray,
    first: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`distinct_neighbors` of many catalog products at once: the same answers, scored in batches.

    Args:
        test: The index's :class:`DuplicateTest`.
        neighbors: The search the candidates came from.
        n_neighbors: Results wanted per product.
        query_rows: ``(n_queries,)`` catalog rows.
        first: ``(n_queries, fetch)`` each product's nearest others, best first (as
            ``kneighbors_blocks`` gives them, each product left out of its own).

    Returns:
        One ``(distances, indices)`` per query row, as :func:`distinct_neighbors` returns it.
    """
    embedded = test.embedded
    query_rows = np.asarray(query_rows, dtype=np.int64)
    first = np.asarray(first, dtype=np.int64)
    available = len(embedded) - 1
    complete = first.shape[1] >= available
    blend = _is_blend(neighbors)
    answers: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(query_rows), _BATCH):
        rows = query_rows[start : start + _BATCH]
        candidates = first[start : start + _BATCH]
        options = [{"colours": embedded.colours[row]} if blend else {} for row in rows]
        ranking, to_query = _scores(embedded, neighbors, candidates, rows, embedded.embeddings[rows], options)
        for i, row in enumerate(rows.tolist()):
            kept, certain = _select(test, candidates[i], ranking[i], to_query[i], n_neighbors, row, complete)
            if certain and (candidates[i] >= 0).all():
                answers.append((ranking[i][kept].astype(np.float32), candidates[i][kept]))
            else:  # too many duplicates among the first candidates: look further, as one query does
                answers.append(
                    distinct_neighbors(test, neighbors, n_neighbors, query_row=row, search_options=options[i])
                )
    return answers


def _select(
    test: DuplicateTest,
    rows: np.ndarray,
    ranking: np.ndarray,
    to_query: np.ndarray,
    n_neighbors: int,
    query_row: int | None,
    complete: bool,
) -> tuple[np.ndarray, bool]:
    """Positions kept, in rank order, and whether the answer can be relied on.

    ``rows`` are candidates in the search's order; ``ranking`` their exact distances (the
    ranking), ``to_query`` their cosine distances to the query product (for the copy test).
    """
    order = np.lexsort((rows, np.round(ranking / DISTANCE_TIE)))
    limit = ranking.max(initial=0.0) - _MARGIN  # beyond it, a product not fetched might rank first
    embedded = test.embedded
    # Pairs clearly farther apart than the copy threshold need no exact distance: a float32
    # estimate decides them, the same way on every path (its error is far below the margin).
    units = np.asarray(embedded.embeddings[np.sort(rows)], dtype=np.float32)[np.argsort(np.argsort(rows))]
    units *= embedded.neighbors._inv_norms[rows, None]
    near = (1.0 - units @ units.T) <= test.threshold + _MARGIN
    kept: list[int] = []
    for position in order.tolist():
        if len(kept) >= n_neighbors:
            break
        if not complete and ranking[position] >= limit:
            return np.asarray(kept, dtype=np.int64), False
        row = int(rows[position])
        if query_row is not None and (
            row == query_row
            or (
                (to_query[position] <= test.threshold or test.same_bytes(query_row, row))
                and test.is_copy(query_row, row, float(to_query[position]))
            )
        ):
            continue
        close = [k for k in kept if near[k, position] or test.same_bytes(int(rows[k]), row)]
        if close:
            others = rows[close]
            between = pair_distances(embedded, others, np.full(len(close), row))
            if any(test.is_copy(int(o), row, float(d)) for o, d in zip(others.tolist(), between.tolist())):
                continue
        kept.append(position)
    certain = complete or len(kept) >= n_neighbors
    return np.asarray(kept, dtype=np.int64), certain


def _scores(
    embedded: EmbeddedCatalog,
    neighbors: Any,
    rows: np.ndarray,
    query_rows: list[int | None] | np.ndarray,
    query_vectors: np.ndarray,
    options: list[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray]:
    """``(ranking, cosine)``: ``(n_queries, fetch)`` float64 exact distances of each query's candidates.

    ``ranking`` is the blended distance for the colour blend, else the cosine distance.
    """
    rows = np.asarray(rows, dtype=np.int64)
    inverse = embedded.neighbors._inv_norms.astype(np.float64)
    queries = np.asarray(query_vectors, dtype=np.float32).astype(np.float64)
    query_inverse = np.array(
        [
            inverse[row] if row is not None else 1.0 / max(float(np.sqrt(row_dots(q[None], q[None])[0])), 1e-30)
            for row, q in zip(query_rows, queries)
        ]
    )
    spread = np.broadcast_to(queries[:, None, :], (*rows.shape, queries.shape[1]))
    dots = row_dots(gather_vectors(embedded, rows), spread)
    cosine = np.clip(1.0 - dots * (inverse[rows] * query_inverse[:, None]), 0.0, 2.0)
    if not _is_blend(neighbors):
        return cosine, cosine
    ranking = np.stack([neighbors.rescore(r, c, o["colours"]) for r, c, o in zip(rows, cosine, options)])
    return ranking, cosine


def _is_blend(neighbors: Any) -> bool:
    return hasattr(neighbors, "rescore")
