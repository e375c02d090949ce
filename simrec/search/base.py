"""The ``kneighbors`` skeleton that exact, blended and approximate search share.

scikit-learn writes ``kneighbors`` once (``KNeighborsMixin``) for every algorithm; here
:class:`NeighborsSearch` does the same: it checks the arguments (one message for each
mistake, from :mod:`simrec.core.validation`), asks the subclass for blocks of answers and
assembles them. A subclass only says how to answer one block of queries.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

import numpy as np

from simrec.core.errors import InvalidArgumentError
from simrec.core.validation import as_matrix, check_enough_items, check_n_neighbors

Blocks = Iterator[tuple[int, np.ndarray, np.ndarray]]


class NeighborsSearch(abc.ABC):
    """k-nearest-neighbor search over fitted vectors, answered in blocks of queries.

    Subclasses set ``n_neighbors``, ``n_samples_fit_`` and ``n_features_in_`` when fitted
    and implement :meth:`_blocks`. ``kneighbors(X=None)`` leaves each fitted item out of
    its own neighbors; results are nearest first, float32 distances and int64 rows, equal
    distances ordered by row number.
    """

    n_neighbors: int
    _fit_hint = "call fit(embeddings) first"

    def kneighbors(
        self,
        X: np.ndarray | None = None,
        n_neighbors: int | None = None,
        return_distance: bool = True,
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Find the nearest fitted items.

        Args:
            X: ``(n_queries, dim)`` or ``(dim,)`` query vectors. ``None`` queries every
                fitted item, leaving each one out of its own neighbors.
            n_neighbors: Neighbors per query (default: the constructor's).
            return_distance: Also return the distances.

        Returns:
            ``(distances, indices)``, each ``(n_queries, n_neighbors)``, nearest first:
            float32 cosine distances and int64 row numbers of the fitted items. Only
            ``indices`` if ``return_distance`` is False. Equal distances are ordered
            by row number.

        Raises:
            InvalidArgumentError: Not fitted, ``n_neighbors`` out of range, or queries of
                the wrong dimension or with NaN or infinite values.
        """
        X, k = self._check_query(X, n_neighbors)
        return self._gather(self._blocks(X, k), self._n_queries(X), k, return_distance)

    def kneighbors_blocks(self, X: np.ndarray | None = None, n_neighbors: int | None = None) -> Blocks:
        """Find the nearest fitted items one block of queries at a time.

        The same search as :meth:`kneighbors` (which is built on it), for callers that
        write results out as they come: memory stays bounded by one block whatever the
        number of queries.

        Yields:
            ``(start, distances, indices)``: the answers for query rows
            ``start : start + len(distances)``, as in :meth:`kneighbors`.

        Raises:
            InvalidArgumentError: As :meth:`kneighbors`, before the first block.
        """
        X, k = self._check_query(X, n_neighbors)
        return self._blocks(X, k)

    @abc.abstractmethod
    def _blocks(self, X: np.ndarray | None, k: int, *extra: Any) -> Blocks:
        """Answers for checked queries (None: every fitted item, each left out of its own)."""

    def _is_fitted(self) -> bool:
        return hasattr(self, "n_samples_fit_")

    def check_fitted(self) -> None:
        """Refuse to answer before :meth:`fit`.

        Raises:
            InvalidArgumentError: Not fitted yet; the message says how to fit it.
        """
        if not self._is_fitted():
            raise InvalidArgumentError(f"This {type(self).__name__} is not fitted yet: {self._fit_hint}")

    def _check_query(self, X: object, n_neighbors: object) -> tuple[np.ndarray | None, int]:
        """The checked queries (float32, 2-D) and ``k``, or the one error for each mistake."""
        self.check_fitted()
        k = check_n_neighbors(self.n_neighbors if n_neighbors is None else n_neighbors)
        check_enough_items(k, self.n_samples_fit_, X is None)
        if X is None:
            return None, k
        X = as_matrix(X, "X", ndim_one_ok=True)
        if X.shape[1] != self.n_features_in_:
            raise InvalidArgumentError(f"Expected queries with {self.n_features_in_} features, got {X.shape[1]}")
        if not np.all(np.isfinite(X)):
            raise InvalidArgumentError("Query vectors contain NaN or infinite values")
        return X, k

    def _n_queries(self, X: np.ndarray | None) -> int:
        return self.n_samples_fit_ if X is None else len(X)

    @staticmethod
    def _gather(
        blocks: Blocks, n_queries: int, k: int, return_distance: bool
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        distances = np.empty((n_queries, k), dtype=np.float32)
        indices = np.empty((n_queries, k), dtype=np.int64)
        for start, block_distances, block_indices in blocks:
            stop = start + len(block_distances)
            distances[start:stop], indices[start:stop] = block_distances, block_indices
        return (distances, indices) if return_distance else indices


def query_inverse_norms(X: np.ndarray) -> np.ndarray:
    """``(n_queries,)`` float32 ``1 / ||X[i]||``, 0 for a zero query (which then matches nothing better)."""
    norms = np.linalg.norm(X, axis=1)
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
