"""Search that blends look and colour: :class:`ColourBlendNeighbors` ranks by

    ``(1 - W) * cosine_distance / cosine_scale + W * colour_distance / colour_scale``

where each scale is the standard deviation of that distance over pairs of catalog
products (from a fixed sample of at most 512 products): each term is in units of its own
spread over the catalog, the usual way to weigh distances measured on different scales
(shifting a term by its mean would change no ranking, so only the scale matters). The
spread, not a typical value, is what makes the terms comparable: colour distances crowd
near 1 for most pairs, so dividing by their median would weigh colour far less than
its power to separate products. ``W = 0`` is the embedding alone (simrec then uses
:class:`simrec.CosineNeighbors` itself, so results are exactly those without colour) and
``W = 1`` the colour alone. The blend is computed exactly over every item, in blocks of
bounded memory, as :class:`simrec.CosineNeighbors` does.
"""

from __future__ import annotations

import numpy as np

from simrec.core.colour_signature import N_BINS, hellinger
from simrec.core.defaults import N_NEIGHBORS, SCRATCH_BYTES, SEARCH_CHUNK_SIZE
from simrec.core.errors import InvalidArgumentError
from simrec.core.validation import check_colour_weight
from simrec.search.base import Blocks, NeighborsSearch, query_inverse_norms
from simrec.search.exact import CosineNeighbors
from simrec.search.rerank import UNIT_ROUNDOFF, canonical_cosine, canonical_top_k, cosine_bound

_SCALE_SAMPLE = 512  # products sampled to measure the spread of the distances


class ColourBlendNeighbors(NeighborsSearch):
    """Exact k-nearest-neighbor search by a blend of cosine and colour distance.

    The distance is ``(1 - colour_weight) * cosine / cosine_scale_ + colour_weight *
    colour / colour_scale_`` (see the module docstring), computed over every fitted item
    in blocks of bounded scratch memory.

    Args:
        colour_weight: ``W`` from 0 (look only) to 1 (colour only).
        n_neighbors: Default number of neighbors returned by :meth:`kneighbors`.
        chunk_size: Most query rows scored at once when querying many items.

    Attributes:
        n_samples_fit_: Number of fitted items.
        cosine_scale_: Standard deviation of the cosine distance over pairs of sampled
            catalog items.
        colour_scale_: Standard deviation of the colour distance over the same pairs.

    Example:
        >>> blend = ColourBlendNeighbors(colour_weight=0.5).fit(embeddings, colours)  # doctest: +SKIP
        >>> distances, indices = blend.kneighbors()  # each item's 5 nearest others
    """

    _fit_hint = "call fit(embeddings, colours)"

    def __init__(
        self, *, colour_weight: float = 0.5, n_neighbors: int = N_NEIGHBORS, chunk_size: int = SEARCH_CHUNK_SIZE
    ) -> None:
        self.colour_weight = colour_weight
        self.n_neighbors = n_neighbors
        self.chunk_size = chunk_size

    def fit(
        self, X: np.ndarray, colours: np.ndarray, *, inverse_norms: np.ndarray | None = None
    ) -> ColourBlendNeighbors:
        """Remember the catalog's vectors and colour signatures, and measure the two scales.

        Args:
            X: ``(n_items, dim)`` embeddings (a memory map is not copied).
            colours: ``(n_items, N_BINS)`` colour signatures, aligned with ``X``.
            inverse_norms: As in :meth:`simrec.CosineNeighbors.fit`.

        Returns:
            self

        Raises:
            InvalidArgumentError: Shapes disagree, values are not finite, or bad parameters.
        """
        cosine = CosineNeighbors(n_neighbors=self.n_neighbors, chunk_size=self.chunk_size)
        return self._fit(cosine.fit(X, inverse_norms=inverse_norms), colours)

    @classmethod
    def from_cosine(cls, cosine: CosineNeighbors, colours: np.ndarray, *, colour_weight: float) -> ColourBlendNeighbors:
        """A blend over an already fitted :class:`simrec.CosineNeighbors` (its vectors are shared).

        Raises:
            InvalidArgumentError: ``colour_weight`` outside ``[0, 1]``, or ``colours`` of the wrong shape or not finite.
        """
        blend = cls(colour_weight=colour_weight, n_neighbors=cosine.n_neighbors, chunk_size=cosine.chunk_size)
        return blend._fit(cosine, colours)

    def _fit(self, cosine: CosineNeighbors, colours: np.ndarray) -> ColourBlendNeighbors:
        self.colour_weight = check_colour_weight(self.colour_weight)
        colours = np.asarray(colours, dtype=np.float32)
        if colours.shape != (cosine.n_samples_fit_, N_BINS):
            raise InvalidArgumentError(
                f"Expected colours of shape ({cosine.n_samples_fit_}, {N_BINS}), got {colours.shape}"
            )
        if not np.isfinite(colours).all():
            raise InvalidArgumentError("colours contain NaN or infinite values")
        self._cosine = cosine
        self._roots = np.sqrt(np.clip(colours, 0, None))
        self._largest_root_norm: float | None = None
        self.n_samples_fit_, self.n_features_in_ = cosine.n_samples_fit_, cosine.n_features_in_
        self.cosine_scale_, self.colour_scale_ = self._typical_distances()
        return self

    def kneighbors(
        self,
        X: np.ndarray | None = None,
        colours: np.ndarray | None = None,
        n_neighbors: int | None = None,
        return_distance: bool = True,
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Find the nearest fitted items by the blended distance.

        Args:
            X: ``(n_queries, dim)`` or ``(dim,)`` query vectors, with ``colours``. None
                queries every fitted item, leaving each out of its own neighbors.
            colours: ``(n_queries, N_BINS)`` or ``(N_BINS,)`` query signatures.
            n_neighbors: Neighbors per query (default: the constructor's).
            return_distance: Also return the distances.

        Returns:
            ``(distances, indices)``, each ``(n_queries, n_neighbors)``, nearest first:
            float32 blended distances and int64 row numbers. Equal distances are ordered
            by row number.

        Raises:
            InvalidArgumentError: As :meth:`simrec.CosineNeighbors.kneighbors`, or
                ``colours`` missing, of the wrong shape or not finite.
        """
        X, k, colours = self._check_blend_query(X, colours, n_neighbors)
        return self._gather(self._blocks(X, k, colours), self._n_queries(X), k, return_distance)

    def kneighbors_blocks(
        self, X: np.ndarray | None = None, colours: np.ndarray | None = None, n_neighbors: int | None = None
    ) -> Blocks:
        """:meth:`kneighbors` one block of queries at a time (see :meth:`simrec.CosineNeighbors.kneighbors_blocks`).

        Raises:
            InvalidArgumentError: As :meth:`kneighbors`, before the first block.
        """
        X, k, colours = self._check_blend_query(X, colours, n_neighbors)
        return self._blocks(X, k, colours)

    def _check_blend_query(
        self, X: object, colours: object, n_neighbors: object
    ) -> tuple[np.ndarray | None, int, np.ndarray | None]:
        X, k = self._check_query(X, n_neighbors)
        if (X is None) != (colours is None):
            raise InvalidArgumentError("Give both X and colours for outside queries, or neither")
        if X is None:
            return X, k, None
        colours = np.atleast_2d(np.asarray(colours, dtype=np.float32))
        if colours.shape != (len(X), N_BINS):
            raise InvalidArgumentError(f"Expected ({len(X)}, {N_BINS}) colours for the queries, got {colours.shape}")
        if not np.isfinite(colours).all():
            raise InvalidArgumentError("Query colours contain NaN or infinite values")
        return X, k, colours

    def _blocks(self, X: np.ndarray | None, k: int, colours: np.ndarray | None = None) -> Blocks:
        fit_X, inv_norms = self._cosine._fit_X, self._cosine._inv_norms
        n_fit = self.n_samples_fit_
        if X is None:
            queries, query_inv, query_roots = fit_X, inv_norms, self._roots
        else:
            queries, query_inv, query_roots = X, query_inverse_norms(X), np.sqrt(np.clip(colours, 0, None))
        n_queries = len(queries)
        # Per query row and fitted item: the colour and cosine blocks (float32, computed in
        # place), argpartition's int64 and a comparison byte: at most 20 bytes.
        rows = max(1, min(self.chunk_size, SCRATCH_BYTES // (20 * n_fit)))
        bound = self.error_bound(query_roots)
        for start in range(0, n_queries, rows):
            stop = min(start + rows, n_queries)
            blend = self._blend(queries[start:stop], query_inv[start:stop], query_roots[start:stop])
            if X is None:
                blend[np.arange(stop - start), np.arange(start, stop)] = np.inf
            distances = np.empty((stop - start, k), dtype=np.float32)
            indices = np.empty((stop - start, k), dtype=np.int64)
            for j in range(stop - start):
                q, roots = queries[start + j], query_roots[start + j]
                distances[j], indices[j] = canonical_top_k(
                    blend[j],
                    k,
                    lambda candidates, q=q, roots=roots: self.canonical_distances(q, roots, candidates),
                    bound,
                    n_fit - (X is None),
                )
            yield start, distances, indices

    def canonical_distances(self, query: np.ndarray, query_roots: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(len(rows),)`` float64 blended distances of one query to ``rows``, computed the same way every time.

        See :mod:`simrec.search.rerank`: the float32 blocks pick the candidates, these rank them.

        Args:
            query: ``(dim,)`` float32 query vector.
            query_roots: ``(N_BINS,)`` float32 square roots of its colour signature.
            rows: Candidate rows.
        """
        weight = self.colour_weight
        roots = np.asarray(self._roots[rows], dtype=np.float64)
        coefficients = (roots * np.asarray(query_roots, dtype=np.float64)).sum(axis=1)
        blend = np.sqrt(np.clip(1.0 - coefficients, 0.0, 1.0)) * (weight / self.colour_scale_)
        if weight < 1.0:
            cosine = canonical_cosine(self._cosine._fit_X, query, rows)
            blend = blend + cosine * ((1.0 - weight) / self.cosine_scale_)
        return blend

    def error_bound(self, query_roots: np.ndarray) -> float:
        """Most a float32 blended distance of these queries can differ from the canonical one.

        The colour term's Bhattacharyya coefficient is a dot product of ``N_BINS`` terms
        (off by ``γ`` times the product of the two roots' norms); the square root of the
        Hellinger distance turns an error ``e`` into at most ``sqrt(e)``. The cosine term
        is off by :func:`~simrec.search.rerank.cosine_bound`. Each scaling, the sum and the
        final rounding add a few ``u`` of the largest possible distance.
        """
        u = UNIT_ROUNDOFF
        colour_factor = self.colour_weight / self.colour_scale_
        cosine_factor = (1.0 - self.colour_weight) / self.cosine_scale_
        largest = colour_factor + 2.0 * cosine_factor
        if self._largest_root_norm is None:
            self._largest_root_norm = float(np.sqrt(np.einsum("ij,ij->i", self._roots, self._roots).max()))
        query_norm = float(np.sqrt(np.einsum("ij,ij->i", query_roots, query_roots).max())) if len(query_roots) else 0
        coefficient_error = (N_BINS + 4) * u * (1.0 + 1e-6) * query_norm * self._largest_root_norm + 2 * u
        colour_error = np.sqrt(coefficient_error) + 3 * u
        cosine_error = cosine_bound(self.n_features_in_) + 4 * u
        return 1.05 * (colour_factor * colour_error + cosine_factor * cosine_error + 6 * u * largest)

    def _blend(self, queries: np.ndarray, query_inv: np.ndarray, query_roots: np.ndarray) -> np.ndarray:
        """``(rows, n_fit)`` float32 blended distances of a few queries to every fitted item."""
        weight = self.colour_weight
        blend = hellinger(query_roots @ self._roots.T)
        blend *= np.float32(weight / self.colour_scale_)
        if weight < 1.0:  # W = 1 ranks by colour alone
            fit_X, inv_norms = self._cosine._fit_X, self._cosine._inv_norms
            cosine = (queries * query_inv[:, None]) @ fit_X.T
            cosine *= inv_norms
            np.subtract(np.float32(1.0), cosine, out=cosine)
            np.clip(cosine, 0.0, 2.0, out=cosine)
            cosine *= np.float32((1.0 - weight) / self.cosine_scale_)
            blend += cosine
        return blend

    def rescore(self, rows: np.ndarray, cosine: np.ndarray, colours: np.ndarray) -> np.ndarray:
        """Blended distances of one query to some fitted items, exactly and the same way whoever asks.

        For ranking a few candidates again (:mod:`simrec.app.distinct`): float64, each
        item's colour coefficient summed over its own bins, so the result does not depend
        on the threads or on how many queries the search answered at once.

        Args:
            rows: ``(n,)`` fitted items.
            cosine: ``(n,)`` their float64 cosine distances to the query.
            colours: ``(N_BINS,)`` the query's colour signature.

        Returns:
            ``(n,)`` float64 blended distances.
        """
        self.check_fitted()
        roots = self._roots[np.asarray(rows, dtype=np.int64)].astype(np.float64)
        query = np.sqrt(np.clip(np.asarray(colours, dtype=np.float64), 0.0, None))
        colour = np.sqrt(np.clip(1.0 - np.multiply(roots, query).sum(axis=-1), 0.0, 1.0))
        weight = self.colour_weight
        return (1.0 - weight) * np.asarray(
            cosine, np.float64
        ) / self.cosine_scale_ + weight * colour / self.colour_scale_

    def _typical_distances(self) -> tuple[float, float]:
        """Standard deviations of the cosine and colour distances over pairs of a fixed sample of items."""
        n = self.n_samples_fit_
        if n < 2:
            return 1.0, 1.0
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, size=min(n, _SCALE_SAMPLE), replace=False))
        X = np.asarray(self._cosine._fit_X[sample], dtype=np.float32) * self._cosine._inv_norms[sample, None]
        upper = np.triu_indices(len(sample), k=1)
        cosine = np.clip(1.0 - (X @ X.T)[upper], 0.0, 2.0)
        roots = self._roots[sample]
        colour = hellinger(roots @ roots.T)[upper]
        scales = [float(np.std(values, dtype=np.float64)) for values in (cosine, colour)]
        return tuple(s if s > 1e-9 else 1.0 for s in scales)  # all alike: any scale ranks the same
