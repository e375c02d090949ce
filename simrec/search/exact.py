"""Exact cosine nearest-neighbor search over embeddings, in the scikit-learn style.

The default ``implementation="numpy"`` keeps the fitted vectors as they are plus one inverse
norm per row (no second copy of the catalog), answers a query with one matrix-vector
product and ``argpartition``, and answers all-items queries in chunks whose scratch
memory is bounded, so an N x N matrix is never built. Results equal scikit-learn's
``NearestNeighbors(metric="cosine", algorithm="brute")``, which stays available as
``implementation="sklearn"``.
"""

from __future__ import annotations

import warnings

import numpy as np

from simrec.core.defaults import N_NEIGHBORS, SCRATCH_BYTES, SEARCH_CHUNK_SIZE
from simrec.core.errors import InvalidArgumentError
from simrec.core.validation import as_matrix, check_n_neighbors
from simrec.search.base import Blocks, NeighborsSearch, query_inverse_norms
from simrec.search.rerank import canonical_cosine, canonical_top_k, cosine_bound

IMPLEMENTATIONS = ("numpy", "sklearn")
"""What computes an exact search: simrec's own NumPy code, or scikit-learn's brute-force search."""


class CosineNeighbors(NeighborsSearch):
    """Exact k-nearest-neighbor search by cosine distance.

    Args:
        n_neighbors: Default number of neighbors returned by :meth:`kneighbors`.
        metric: Only ``"cosine"`` (``1 - cos(angle)``, in ``[0, 2]``).
        implementation: ``"numpy"`` (fast, memory-bounded) or ``"sklearn"``.
        chunk_size: Most query rows scored at once when querying many items.
        backend: The former name of ``implementation`` (deprecated: it is not the Keras backend).

    Attributes:
        n_samples_fit_: Number of fitted vectors.
        n_features_in_: Their dimension.

    Example:
        >>> import numpy as np
        >>> embeddings = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
        >>> neighbors = CosineNeighbors(n_neighbors=1).fit(embeddings)
        >>> distances, indices = neighbors.kneighbors()  # each item's nearest other item
        >>> indices.ravel().tolist()
        [1, 0, 1]
    """

    def __init__(
        self,
        *,
        n_neighbors: int = N_NEIGHBORS,
        metric: str = "cosine",
        implementation: str = "numpy",
        chunk_size: int = SEARCH_CHUNK_SIZE,
        backend: str | None = None,
    ) -> None:
        if backend is not None:
            warnings.warn(
                "CosineNeighbors(backend=...) is now CosineNeighbors(implementation=...); backend will be removed",
                FutureWarning,
                stacklevel=2,
            )
            implementation = backend
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.implementation = implementation
        self.chunk_size = chunk_size

    @property
    def backend(self) -> str:
        """The former name of :attr:`implementation` (deprecated: it is not the Keras backend)."""
        warnings.warn("CosineNeighbors.backend is now CosineNeighbors.implementation", FutureWarning, stacklevel=2)
        return self.implementation

    def fit(self, X: np.ndarray, y: object = None, *, inverse_norms: np.ndarray | None = None) -> CosineNeighbors:
        """Remember the catalog vectors.

        Args:
            X: ``(n_items, dim)`` embeddings; float32 arrays (also ``np.memmap``) are
                used without copying.
            y: Ignored.
            inverse_norms: ``(n_items,)`` float32 ``1 / ||X[i]||`` (0 for zero rows), as
                stored in an index; when given, fitting reads nothing of ``X``, so it
                costs nothing however large ``X`` is. Default: computed here, in blocks.

        Returns:
            self

        Raises:
            InvalidArgumentError: Empty input, wrong shape, NaN or infinite values, ``inverse_norms`` of another length,
                or bad constructor parameters.
        """
        if self.metric != "cosine":
            raise InvalidArgumentError(f"Expected metric='cosine', got {self.metric!r}")
        if self.implementation not in IMPLEMENTATIONS:
            raise InvalidArgumentError(f"Expected implementation in {IMPLEMENTATIONS}, got {self.implementation!r}")
        check_n_neighbors(self.n_neighbors)
        X = as_matrix(X, "X")
        if X.shape[0] == 0:
            raise InvalidArgumentError("Cannot fit an empty catalog: X has 0 rows")
        if inverse_norms is None:
            inverse_norms = compute_inverse_norms(X)
            if not np.all(np.isfinite(inverse_norms)):
                bad = np.flatnonzero(~np.isfinite(inverse_norms))
                raise InvalidArgumentError(f"X contains NaN or infinite values in {len(bad)} rows, e.g. row {bad[0]}")
        elif np.shape(inverse_norms) != (X.shape[0],):
            raise InvalidArgumentError(
                f"Expected inverse_norms of shape ({X.shape[0]},), got {np.shape(inverse_norms)}"
            )
        self._inv_norms = np.asarray(inverse_norms, dtype=np.float32)
        self._fit_X = X
        self.n_samples_fit_, self.n_features_in_ = X.shape
        if self.implementation == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            self._sklearn = NearestNeighbors(metric="cosine", algorithm="brute").fit(X)
        return self

    def _blocks(self, X: np.ndarray | None, k: int) -> Blocks:
        if self.implementation == "sklearn":
            distances, indices = self._sklearn.kneighbors(X, n_neighbors=k)
            yield 0, distances.astype(np.float32), indices
            return
        fit_X, inv_norms = self._fit_X, self._inv_norms
        n_fit = fit_X.shape[0]
        if X is None:
            queries, query_inv = fit_X, inv_norms
        else:
            queries, query_inv = X, query_inverse_norms(X)
        n_queries = queries.shape[0]
        # Per query row: n_fit float32 similarities plus n_fit int64 argpartition indices.
        rows = max(1, min(self.chunk_size, SCRATCH_BYTES // (12 * n_fit)))
        for start in range(0, n_queries, rows):
            stop = min(start + rows, n_queries)
            # Scale the few query rows first, so the big block is touched only once more.
            scaled = queries[start:stop] * query_inv[start:stop, None]
            if stop - start == 1:  # one query: a matrix-vector product over contiguous rows
                similarity = (fit_X @ scaled[0])[None, :]
            else:
                similarity = scaled @ fit_X.T
            similarity *= inv_norms
            fast = np.subtract(np.float32(1.0), similarity, out=similarity)  # fast distances, in place
            if X is None:
                fast[np.arange(stop - start), np.arange(start, stop)] = np.inf
            yield start, *self._rank(fast, queries[start:stop], k, valid=n_fit - (X is None))

    def _rank(self, fast: np.ndarray, queries: np.ndarray, k: int, valid: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's ``k`` nearest by canonical distance (:mod:`simrec.search.rerank`), from its fast distances."""
        fit_X, bound = self._fit_X, cosine_bound(self.n_features_in_)
        distances = np.empty((len(fast), k), dtype=np.float32)
        indices = np.empty((len(fast), k), dtype=np.int64)
        for j in range(len(fast)):
            distances[j], indices[j] = canonical_top_k(
                fast[j],
                k,
                lambda rows, q=queries[j]: canonical_cosine(fit_X, q, rows),
                bound,
                valid,
            )
        return distances, indices


def compute_inverse_norms(X: np.ndarray, block_rows: int = 8192) -> np.ndarray:
    """``(n_items,)`` float32 ``1 / ||X[i]||``, 0 for zero rows and NaN for non-finite rows.

    Computed in blocks of rows, so no temporary as large as ``X`` is ever made.
    """
    out = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], block_rows):
        block = np.asarray(X[start : start + block_rows], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        finite = np.isfinite(norms) & np.isfinite(block).all(axis=1)
        with np.errstate(divide="ignore"):
            inverse = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
        out[start : start + len(block)] = np.where(finite, inverse, np.nan)
    return out
