"""Each product's nearest other products, computed once per committed generation and looked up by row.

:class:`StoredNeighbors` is what an index folder keeps beside its vectors (see
:mod:`simrec.storage.stored_neighbors`): for every catalog row, its ``K`` nearest other rows at
one colour weight by the exact search, twice: as ranked, and with duplicates left out
(``distinct``). The first ``k`` of either list are what the exact search answers for ``k <= K``,
so a lookup replaces a scan of every vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simrec.core.errors import InvalidArgumentError


@dataclass(frozen=True, eq=False)
class StoredNeighbors:
    """The ``K`` nearest other products of every product, as ranked and without duplicates.

    Attributes:
        rows: ``(n_items, 2, K)`` int32 catalog rows, nearest first: ``[:, 0]`` as the exact
            search ranks them, ``[:, 1]`` with duplicates left out; ``-1`` after the last
            (only a distinct list can be shorter, when the catalog runs out of distinct products).
        distances: ``(n_items, 2, K)`` float32 distances of those rows (cosine, or blended
            above colour weight 0), NaN after the last.
        colour_weight: The colour weight they were ranked at.

    Raises:
        InvalidArgumentError: ``rows`` and ``distances`` differ in shape or are not ``(n_items, 2, K)``.
    """

    rows: np.ndarray
    distances: np.ndarray
    colour_weight: float

    def __post_init__(self) -> None:
        if self.rows.ndim != 3 or self.rows.shape[1] != 2 or self.rows.shape != self.distances.shape:
            raise InvalidArgumentError(
                f"Expected stored neighbors of shape (n_items, 2, K), got {self.rows.shape} and {self.distances.shape}"
            )

    @property
    def n_neighbors(self) -> int:
        """``K``: the most neighbors a lookup can give."""
        return int(self.rows.shape[2])

    def answers(self, n_neighbors: int, colour_weight: float) -> bool:
        """Whether a query for ``n_neighbors`` at ``colour_weight`` (by the exact search) can be looked up."""
        return n_neighbors <= self.n_neighbors and colour_weight == self.colour_weight

    def lookup(self, row: int, n_neighbors: int, distinct: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n_neighbors`` stored neighbors of catalog row ``row``.

        Returns:
            ``(distances, rows)``: 1-D float32 and int64, nearest first; a distinct list may be shorter.
        """
        which = int(bool(distinct))
        rows = np.asarray(self.rows[row, which, :n_neighbors], dtype=np.int64)
        distances = np.asarray(self.distances[row, which, :n_neighbors], dtype=np.float32)
        if which:
            found = rows >= 0
            rows, distances = rows[found], distances[found]
        return distances, rows
