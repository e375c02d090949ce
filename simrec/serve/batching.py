"""Queries from concurrent requests answered together, in bounded queues with a deadline.

An exact query reads every catalog vector (160 MB for 20,000 x 2048 float32), so one query
at a time is bound by memory bandwidth; and ResNet50 embeds a batch of photos faster per
photo than one at a time. So each kind of query has one worker thread: queries that arrive
while it is busy wait, and are then answered together. An idle service answers a lone query
at once, computed as :func:`simrec.recommend` computes it with the same search (the
index's approximate structure when it has one, see ``embedded.search()``); in a batch,
distances may differ from that by float32 rounding (about 1e-6).

Every query carries the generation of the index it is asked of (see
:mod:`simrec.serve.state`), and is answered from that generation's vectors, so a request
that started before a commit is answered wholly from the generation it started on.

Waiting is bounded three ways: a queue holds at most ``max_pending`` queries (one more is
refused at once with :class:`ServiceBusy`); a query that the queue ahead of it would keep
past its deadline (queries waiting x the recent time per query) is refused at once too (a
query that finds the queue empty is always taken, so the estimate keeps being measured); and
a query still unanswered at its deadline is withdrawn (:class:`ServiceBusy` again) and never
computed. The service answers both
with 503 and ``Retry-After``.

The photo worker is also the only thread that ever calls an extractor, so photo queries
share one model safely; generations made with the same model share one extractor.
"""

from __future__ import annotations

import abc
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simrec.app.querying import query_extractor
from simrec.core.colour_signature import colour_signature
from simrec.embedded_catalog import neighbors_for
from simrec.pipeline.embedding import embed_arrays
from simrec.serve.limits import ServiceBusy

if TYPE_CHECKING:
    import keras

    from simrec.embedded_catalog import EmbeddedCatalog


class ServedGeneration(Protocol):
    """What a query needs of the generation it is asked of (:class:`simrec.serve.state.ServedGeneration`)."""

    embedded: EmbeddedCatalog
    search: Any


MAX_BATCH = 64
MAX_PHOTO_BATCH = 16
MAX_PENDING = 256
"""Most similar-product queries waiting at once (a few bytes each)."""
MAX_PENDING_PHOTOS = 64
"""Most photo queries waiting at once (each holds its decoded pixels, 147 KB at 224 px)."""
_MODEL_KEYS = ("model", "weights", "image_size", "preprocessing", "precision", "backend")


@dataclass
class _Query:
    generation: ServedGeneration
    item: Any
    k: int
    answer: Future


class _Batcher(abc.ABC):
    """Run queued queries in batches on one daemon thread."""

    def __init__(self, max_batch: int, max_pending: int, name: str, what: str) -> None:
        self.max_batch = max_batch
        self.what = what
        self.batch_sizes: list[int] = []  # for tests and diagnostics; a few bytes per batch
        self._pending: queue.Queue[_Query] = queue.Queue(maxsize=max_pending)
        self.seconds_per_query = 0.0  # a moving average of the time a batch took per query answered
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _submit(self, generation: ServedGeneration, item: Any, k: int, deadline: float) -> Any:
        query = _Query(generation, item, k, Future())
        waiting = self._pending.qsize()
        expected = (waiting + 1) * self.seconds_per_query
        if waiting and expected > deadline - time.monotonic():  # it would be withdrawn at its deadline: say so now
            raise ServiceBusy(
                f"{self._pending.qsize()} {self.what} are waiting, about {expected:.1f} s of work, more than "
                "this server's time limit allows"
            )
        try:
            self._pending.put_nowait(query)
        except queue.Full:
            raise ServiceBusy(f"{self._pending.maxsize} {self.what} are already waiting; try again shortly") from None
        try:
            return query.answer.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            if query.answer.cancel():  # still queued: withdrawn, never computed
                raise ServiceBusy(f"{self.what} are waiting longer than this server's time limit") from None
            return query.answer.result()  # being computed now: its answer is moments away

    def _run(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            batch = [query for query in batch if query.answer.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            started = time.monotonic()
            try:
                self._answer(batch)
            except BaseException as error:  # hand any failure to the waiting requests
                for query in batch:
                    if not query.answer.done():
                        query.answer.set_exception(error)
            per_query = (time.monotonic() - started) / len(batch)
            self.seconds_per_query = (
                per_query if not self.seconds_per_query else (0.8 * self.seconds_per_query + 0.2 * per_query)
            )

    @abc.abstractmethod
    def _answer(self, batch: list[_Query]) -> None:
        """Answer every query of one batch by setting its future."""


def _by_generation(batch: list[_Query]) -> list[list[_Query]]:
    groups: dict[int, list[_Query]] = {}
    for query in batch:
        groups.setdefault(id(query.generation), []).append(query)
    return list(groups.values())


class NeighborBatcher(_Batcher):
    """The nearest other products of catalog products, for concurrent requests.

    Args:
        max_batch: Most queries answered by one matrix product.
        max_pending: Most queries waiting; one more is refused with :class:`ServiceBusy`.
    """

    def __init__(self, max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING) -> None:
        super().__init__(max_batch, max_pending, "simrec-neighbors", "similar-product queries")

    def query(
        self, generation: ServedGeneration, row: int, k: int, deadline: float, colour_weight: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other items of catalog row ``row``: ``(distances, indices)``, nearest first.

        ``1 <= k < len(generation.embedded)`` must hold (checked by the caller), and a
        ``colour_weight`` above 0 needs the index's colour signatures (checked too): such
        queries are ranked by the blend of look and colour, as ``simrec query`` ranks them.

        Raises:
            ServiceBusy: The queue is full, or no answer came by ``deadline`` (``time.monotonic()``).
        """
        return self._submit(generation, (row, colour_weight), k, deadline)

    def _answer(self, batch: list[_Query]) -> None:
        for group in _by_generation(batch):
            generation = group[0].generation
            for weight in sorted({query.item[1] for query in group}):
                self._answer_one_weight(generation, [query for query in group if query.item[1] == weight], weight)

    def _answer_one_weight(self, generation: ServedGeneration, group: list[_Query], weight: float) -> None:
        embedded = generation.embedded
        rows = np.array([query.item[0] for query in group])
        # Ask for one more, as recommend() does, so each query can drop itself.
        n_neighbors = min(max(query.k for query in group) + 1, len(embedded))
        if weight > 0:
            blend = neighbors_for(embedded, weight)
            distances, indices = blend.kneighbors(
                embedded.embeddings[rows], colours=embedded.colours[rows], n_neighbors=n_neighbors
            )
        else:
            distances, indices = generation.search.kneighbors(embedded.embeddings[rows], n_neighbors)
        for j, query in enumerate(group):
            keep = indices[j] != query.item[0]
            query.answer.set_result((distances[j][keep][: query.k], indices[j][keep][: query.k]))


class PhotoBatcher(_Batcher):
    """The nearest products of decoded photos, for concurrent requests: one model call per batch.

    Args:
        weights_path: Where the index's weights file is now, if it has moved.
        runtime: What runs the network (``"auto"``, ``"keras"``, ``"openvino"``).
        max_batch: Most photos embedded by one model call.
        max_pending: Most photos waiting; one more is refused with :class:`ServiceBusy`.
    """

    def __init__(
        self,
        weights_path: Any = None,
        max_batch: int = MAX_PHOTO_BATCH,
        max_pending: int = MAX_PENDING_PHOTOS,
        *,
        runtime: str = "auto",
    ) -> None:
        self.weights_path = weights_path
        self.runtime = runtime
        self._extractors: dict[tuple, keras.Model] = {}
        super().__init__(max_batch, max_pending, "simrec-photos", "photo queries")

    def query(
        self, generation: ServedGeneration, pixels: np.ndarray, k: int, colour_weight: float, deadline: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest products of one ``(size, size, 3)`` uint8 photo: ``(distances, indices)``.

        ``1 <= k <= len(generation.embedded)`` must hold (checked by the caller), and a
        ``colour_weight`` above 0 needs the index's colour signatures (checked too). The
        first query builds the index's extractor (seconds) unless :meth:`warm_up` did.

        Raises:
            ServiceBusy: The queue is full, or no answer came by ``deadline`` (``time.monotonic()``).
            MissingFileError: The first query of an index whose weights file is not there.
        """
        return self._submit(generation, (pixels, colour_weight), k, deadline)

    def embed(self, generation: ServedGeneration, pixels: np.ndarray, deadline: float) -> np.ndarray:
        """The ``(dim,)`` vector of one ``(size, size, 3)`` uint8 photo, batched with the other photo queries.

        Raises:
            ServiceBusy: The queue is full, or no answer came by ``deadline`` (``time.monotonic()``).
            MissingFileError: The first query of an index whose weights file is not there.
        """
        return self._submit(generation, (pixels, None), 0, deadline)

    def warm_up(self, generation: ServedGeneration) -> None:
        """Build the extractor of ``generation`` and embed one blank photo, so the first query does not wait for it.

        Raises:
            MissingFileError: The index used a weights file that is not there.
        """
        size = int(generation.embedded.meta.image_size)
        self.query(generation, np.zeros((size, size, 3), dtype=np.uint8), 1, 0.0, time.monotonic() + 600)
        self.seconds_per_query = 0.0  # building the model is not the time a query takes

    def _extractor(self, generation: ServedGeneration) -> keras.Model:
        key = tuple(str(getattr(generation.embedded.meta, name)) for name in _MODEL_KEYS)
        if key not in self._extractors:
            self._extractors[key] = query_extractor(generation.embedded, self.weights_path, runtime=self.runtime)
        return self._extractors[key]

    def _answer(self, batch: list[_Query]) -> None:
        for group in _by_generation(batch):
            self._answer_one_generation(group)

    def _answer_one_generation(self, group: list[_Query]) -> None:
        generation = group[0].generation
        vectors = embed_arrays(np.stack([query.item[0] for query in group]), self._extractor(generation))
        for j, query in enumerate(group):
            if query.item[1] is None:  # the vector alone
                query.answer.set_result(vectors[j])
        looks = [j for j, query in enumerate(group) if query.item[1] == 0]
        if looks:
            n_neighbors = max(group[j].k for j in looks)
            distances, indices = generation.search.kneighbors(vectors[looks], n_neighbors)
            for row, j in enumerate(looks):
                k = group[j].k
                group[j].answer.set_result((distances[row][:k], indices[row][:k]))
        for j, query in enumerate(group):
            pixels, weight = query.item
            if weight is not None and weight > 0:  # the blend of look and colour, from the same decoded photo
                blend = neighbors_for(generation.embedded, weight)
                distances, indices = blend.kneighbors(vectors[j], colours=colour_signature(pixels), n_neighbors=query.k)
                query.answer.set_result((distances[0], indices[0]))
