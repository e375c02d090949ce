"""Similar-product queries from concurrent requests answered together, one matrix product per batch.

An exact query reads every catalog vector (160 MB for 20,000 x 2048 float32), so one query
at a time is bound by memory bandwidth. Queries that arrive while a search is running wait
for it and are then answered together: the catalog is read once for the whole batch. An
idle service answers a lone query at once, with exactly the computation of
:func:`simrec.recommend` (a matrix-vector product); in a batch the distances may differ
from it by float32 rounding (about 1e-7).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

from simrec.embedded import EmbeddedCatalog

MAX_BATCH = 64


class NeighbourBatcher:
    """Answer ``(catalog row, k)`` queries in batches on one worker thread.

    Args:
        embedded: The index; its rows are the queries.
        max_batch: Most queries answered by one matrix product.
    """

    def __init__(self, embedded: EmbeddedCatalog, max_batch: int = MAX_BATCH) -> None:
        self.embedded = embedded
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []  # for tests and diagnostics; a few bytes per batch
        self._pending: queue.Queue[tuple[int, int, Future]] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="simrec-neighbours", daemon=True)
        self._worker.start()

    def query(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other items of catalog row ``row``: ``(distances, indices)``, nearest first.

        ``1 <= k < len(embedded)`` must hold (checked by the caller).
        """
        answer: Future = Future()
        self._pending.put((row, k, answer))
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

    def _answer(self, batch: list[tuple[int, int, Future]]) -> None:
        rows = np.array([row for row, _, _ in batch])
        # Ask for one more, as recommend() does, so each query can drop itself.
        n_neighbors = min(max(k for _, k, _ in batch) + 1, len(self.embedded))
        distances, indices = self.embedded.neighbors.kneighbors(self.embedded.embeddings[rows], n_neighbors)
        for j, (row, k, answer) in enumerate(batch):
            keep = indices[j] != row
            answer.set_result((distances[j][keep][:k], indices[j][keep][:k]))
