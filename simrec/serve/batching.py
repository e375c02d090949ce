"""Queries from concurrent requests answered together: one model call and one matrix product per batch.

An exact query reads every catalog vector (160 MB for 20,000 x 2048 float32), so one query
at a time is bound by memory bandwidth; and ResNet50 embeds a batch of photos faster per
photo than one at a time. So each kind of query has one worker thread: queries that arrive
while it is busy wait, and are then answered together. An idle service answers a lone query
at once, computed as :func:`simrec.recommend` computes it with the same search (the
index's approximate structure when it has one, see ``embedded.search()``); in a batch,
distances may differ from that by float32 rounding (about 1e-6).

The photo worker is also the only thread that ever calls the extractor, so photo queries
share one model safely.
"""

from __future__ import annotations

import abc
import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.app.querying import query_extractor
from simrec.core.colour_signature import colour_signature
from simrec.embedded_catalog import EmbeddedCatalog, neighbors_for
from simrec.pipeline.embedding import embed_arrays

if TYPE_CHECKING:
    import keras

MAX_BATCH = 64
MAX_PHOTO_BATCH = 16


class _Batcher(abc.ABC):
    """Run queued ``(item, k)`` queries in batches on one daemon thread."""

    def __init__(self, embedded: EmbeddedCatalog, search: Any, max_batch: int, name: str) -> None:
        self.embedded = embedded
        self.search = search  # embedded.search(): approximate when the index has an ann structure
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []  # for tests and diagnostics; a few bytes per batch
        self._pending: queue.Queue[tuple[Any, int, Future]] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _submit(self, item: Any, k: int) -> Any:
        answer: Future = Future()
        self._pending.put((item, k, answer))
        return answer.result()

    def _run(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self.batch_sizes.append(len(batch))
            try:
                self._answer(batch)
            except BaseException as error:  # hand any failure to the waiting requests
                for _, _, answer in batch:
                    if not answer.done():
                        answer.set_exception(error)

    @abc.abstractmethod
    def _answer(self, batch: list[tuple[Any, int, Future]]) -> None:
        """Answer every ``(item, k, future)`` of one batch by setting its future."""


class NeighbourBatcher(_Batcher):
    """The nearest other products of catalog products, for concurrent requests.

    Args:
        embedded: The index; its rows are the queries.
        max_batch: Most queries answered by one matrix product.
    """

    def __init__(self, embedded: EmbeddedCatalog, search: Any, max_batch: int = MAX_BATCH) -> None:
        super().__init__(embedded, search, max_batch, "simrec-neighbours")

    def query(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other items of catalog row ``row``: ``(distances, indices)``, nearest first.

        ``1 <= k < len(embedded)`` must hold (checked by the caller).
        """
        return self._submit(row, k)

    def _answer(self, batch: list[tuple[int, int, Future]]) -> None:
        rows = np.array([row for row, _, _ in batch])
        # Ask for one more, as recommend() does, so each query can drop itself.
        n_neighbors = min(max(k for _, k, _ in batch) + 1, len(self.embedded))
        distances, indices = self.search.kneighbors(self.embedded.embeddings[rows], n_neighbors)
        for j, (row, k, answer) in enumerate(batch):
            keep = indices[j] != row
            answer.set_result((distances[j][keep][:k], indices[j][keep][:k]))


class PhotoBatcher(_Batcher):
    """The nearest products of decoded photos, for concurrent requests: one model call per batch.

    Args:
        embedded: The index.
        weights_path: Where the index's weights file is now, if it has moved.
        max_batch: Most photos embedded by one model call.
    """

    def __init__(
        self, embedded: EmbeddedCatalog, search: Any, weights_path: Any = None, max_batch: int = MAX_PHOTO_BATCH
    ) -> None:
        self.weights_path = weights_path
        self._extractor: keras.Model | None = None
        super().__init__(embedded, search, max_batch, "simrec-photos")

    def query(self, pixels: np.ndarray, k: int, colour_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest products of one ``(size, size, 3)`` uint8 photo: ``(distances, indices)``.

        ``1 <= k <= len(embedded)`` must hold (checked by the caller), and a
        ``colour_weight`` above 0 needs the index's colour signatures (checked too). The
        first query builds the index's extractor (seconds).
        """
        return self._submit((pixels, colour_weight), k)

    def _answer(self, batch: list[tuple[tuple[np.ndarray, float], int, Future]]) -> None:
        if self._extractor is None:
            self._extractor = query_extractor(self.embedded, self.weights_path)
        vectors = embed_arrays(np.stack([pixels for (pixels, _), _, _ in batch]), self._extractor)
        looks = [j for j, ((_, weight), _, _) in enumerate(batch) if weight == 0]
        if looks:
            n_neighbors = max(batch[j][1] for j in looks)
            distances, indices = self.search.kneighbors(vectors[looks], n_neighbors)
            for row, j in enumerate(looks):
                k = batch[j][1]
                batch[j][2].set_result((distances[row][:k], indices[row][:k]))
        for j, ((pixels, weight), k, answer) in enumerate(batch):
            if weight > 0:  # the blend of look and colour, from the same decoded photo
                blend = neighbors_for(self.embedded, weight)
                distances, indices = blend.kneighbors(vectors[j], colours=colour_signature(pixels), n_neighbors=k)
                answer.set_result((distances[0], indices[0]))
