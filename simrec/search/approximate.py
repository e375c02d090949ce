"""Approximate nearest-neighbor search with faiss, stored inside an index folder.

``simrec ann INDEX --type hnsw|ivf-flat|ivf-pq`` builds a faiss structure over the
index's normalised vectors (inner product of unit vectors = cosine similarity), trains
IVF types on a bounded sample, measures recall@10 against exact search on held-back
queries, and commits it with the index's own ``meta.json`` as the ``ann`` data file, so a
crash leaves the previous generation. :class:`ApproximateNeighbors` answers queries with the
same ``kneighbors`` signature and the same cosine distances as
:class:`simrec.CosineNeighbors`; :meth:`simrec.EmbeddedCatalog.search` picks one.

faiss (``pip install simrec[faiss]``, package ``faiss-cpu``) is imported only here,
inside the functions that need it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.core.defaults import N_NEIGHBORS
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError, MissingDependencyError
from simrec.core.validation import check_int
from simrec.search.base import Blocks, NeighborsSearch, query_inverse_norms
from simrec.search.exact import CosineNeighbors, compute_inverse_norms

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

ANN_TYPES = ("hnsw", "ivf-flat", "ivf-pq")
RECALL_K = 10
TRAIN_SAMPLE = 40_000
"""Most vectors an IVF type is trained on, whatever the catalog size."""
RECALL_QUERIES = 200
"""Held-back queries for the recall measured at build time."""
_BLOCK_ROWS = 8192


def import_faiss():
    """The ``faiss`` module, or a one-line error saying how to install it.

    Raises:
        MissingDependencyError: faiss is not installed; the message says how to install it.
    """
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            "approximate search needs faiss: pip install 'simrec[faiss]' (or pip install faiss-cpu), "
            "or pass exact=True to search exactly",
            parameters=("exact",),
        ) from None
    return faiss


def default_params(ann_type: str, n_items: int, dim: int, **asked: Any) -> dict[str, Any]:
    """Build and search parameters for ``ann_type``, the asked ones (not None) taking precedence.

    * ``hnsw``: ``m`` links per node (32), ``ef_construction`` (80), ``ef`` at search (128).
    * ``ivf-flat``: ``nlist`` lists (about ``2 sqrt(n)``), ``nprobe`` lists searched (``nlist / 16``).
    * ``ivf-pq``: as ivf-flat plus ``m`` bytes per vector (128 for 2048-d), ``nbits`` (8)
      and ``rerank``: candidates per result re-scored with exact distances (8; 0 = none).

    Raises:
        InvalidArgumentError: Unknown ``ann_type``, a parameter that does not apply to it, is not a positive int, or
            does not fit ``n_items`` or ``dim``.
    """
    if ann_type not in ANN_TYPES:
        raise InvalidArgumentError(f"Expected ann_type in {ANN_TYPES}, got {ann_type!r}", parameters=("ann_type",))
    asked = {key: value for key, value in asked.items() if value is not None}
    if ann_type == "hnsw":
        params = {"m": 32, "ef_construction": 80, "ef": 128}
    else:
        # faiss wants at least 39 training points per list, and training stays bounded.
        nlist = max(1, min(int(2 * math.sqrt(n_items)), min(n_items, TRAIN_SAMPLE) // 39 or 1))
        params = {"nlist": nlist, "nprobe": max(1, nlist // 16)}
        if ann_type == "ivf-pq":
            m = max(d for d in range(1, min(128, max(1, dim // 16)) + 1) if dim % d == 0)
            sample = min(n_items, TRAIN_SAMPLE)
            # faiss wants about 39 training points per code centroid: small catalogs get smaller codes.
            params.update(m=m, nbits=max(1, min(8, int(math.log2(max(2, sample // 39))))), rerank=8)
    unknown = set(asked) - set(params)
    if unknown:
        raise InvalidArgumentError(
            f"{', '.join(sorted(unknown))} does not apply to ann_type {ann_type!r}",
            parameters=(*sorted(unknown), "ann_type"),
        )
    params.update(asked)
    for key, value in params.items():
        check_int(
            value, key, 0 if key == "rerank" else 1, context=f" for ann_type {ann_type!r}", also_named=("ann_type",)
        )
    if ann_type == "ivf-pq" and dim % params["m"]:
        raise InvalidArgumentError(
            f"Expected m to divide the dimension {dim} for ivf-pq, got {params['m']}", parameters=("m",)
        )
    if ann_type != "hnsw" and params["nlist"] > n_items:
        raise InvalidArgumentError(
            f"Expected nlist <= the number of items ({n_items}), got {params['nlist']}", parameters=("nlist",)
        )
    return {key: int(value) for key, value in params.items()}


def normalized_blocks(
    embeddings: np.ndarray, inverse_norms: np.ndarray | None = None, rows: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(row numbers, unit vectors)`` in blocks, never copying all of ``embeddings``."""
    if inverse_norms is None:
        inverse_norms = compute_inverse_norms(embeddings)
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), _BLOCK_ROWS):
        chunk = rows[start : start + _BLOCK_ROWS]
        block = np.asarray(embeddings[chunk], dtype=np.float32) * inverse_norms[chunk, None]
        yield chunk, np.ascontiguousarray(block, dtype=np.float32)


def build_ann(
    embeddings: np.ndarray,
    inverse_norms: np.ndarray | None = None,
    *,
    ann_type: str = "hnsw",
    seed: int = 0,
    **params: Any,
) -> tuple[Any, dict[str, Any]]:
    """Build a faiss structure over the unit vectors of ``embeddings``.

    Args:
        embeddings: ``(n_items, dim)`` float32 (a memmap is read in blocks).
        inverse_norms: ``(n_items,)`` ``1 / ||row||``, as stored in an index.
        ann_type: ``"hnsw"``, ``"ivf-flat"`` or ``"ivf-pq"``.
        seed: Seed of the training sample and of the held-back queries.
        **params: See :func:`default_params` (``nlist``, ``nprobe``, ``m``, ``nbits``,
            ``ef_construction``, ``ef``, ``rerank``).

    Returns:
        ``(faiss_index, info)`` where ``info`` is what ``meta.json`` records: ``type``,
        ``params``, ``recall_at_10``, ``bytes_per_vector``, ``count``, ``build_seconds``, ``built``.

    Raises:
        MissingDependencyError: faiss is not installed.
        InvalidArgumentError: Unknown type or parameters that do not fit the data.
    """
    faiss = import_faiss()
    started = time.perf_counter()
    n_items, dim = embeddings.shape
    if n_items < 2:
        raise InvalidArgumentError(f"Expected at least 2 items for an ann structure, got {n_items}")
    params = default_params(ann_type, n_items, dim, **params)
    if inverse_norms is None:
        inverse_norms = compute_inverse_norms(embeddings)
    index = _empty_index(faiss, ann_type, dim, params)
    rng = np.random.default_rng(seed)
    if ann_type != "hnsw":
        sample = np.sort(rng.choice(n_items, size=min(n_items, TRAIN_SAMPLE), replace=False))
        train = np.concatenate([block for _, block in normalized_blocks(embeddings, inverse_norms, sample)])
        index.train(train)
        del train
    add_vectors(index, embeddings, inverse_norms)
    info: dict[str, Any] = {"type": ann_type, "params": params}
    info.update(measure(index, embeddings, inverse_norms, info, seed=seed))
    info["build_seconds"] = round(time.perf_counter() - started, 3)
    return index, info


def add_vectors(index: Any, embeddings: np.ndarray, inverse_norms: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Add rows of ``embeddings`` (unit-normalised) with their row numbers as ids."""
    for chunk, block in normalized_blocks(embeddings, inverse_norms, rows):
        if hasattr(index, "add_with_ids") and not _is_hnsw(index):
            index.add_with_ids(block, chunk.astype(np.int64))
        else:
            index.add(block)


def measure(
    index: Any, embeddings: np.ndarray, inverse_norms: np.ndarray, info: dict[str, Any], *, seed: int = 0
) -> dict[str, Any]:
    """Recall@10 of ``index`` against exact search on held-back catalog items, and its size.

    Each query is a catalog item, left out of its own results in both searches.
    """

    n_items = len(embeddings)
    k = min(RECALL_K, n_items - 1)
    rng = np.random.default_rng(seed + 1)
    queries = np.sort(rng.choice(n_items, size=min(RECALL_QUERIES, n_items), replace=False))
    exact = CosineNeighbors().fit(embeddings, inverse_norms=inverse_norms)
    approximate = ApproximateNeighbors(index, info, embeddings=embeddings, inverse_norms=inverse_norms)
    vectors = np.asarray(embeddings[queries], dtype=np.float32)
    _, truth = exact.kneighbors(vectors, n_neighbors=k + 1)
    _, found = approximate.kneighbors(vectors, n_neighbors=k + 1)
    hits = 0
    for query, true_row, found_row in zip(queries, truth, found):
        hits += len(set(true_row[true_row != query][:k]) & set(found_row[found_row != query][:k]))
    size = len(serialize(index))
    return {
        "recall_at_10": round(hits / (k * len(queries)), 4),
        "bytes_per_vector": round(size / n_items, 1),
        "count": int(index.ntotal),
        "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def update_ann(
    index: Any,
    info: dict[str, Any],
    embeddings: np.ndarray,
    inverse_norms: np.ndarray,
    old_to_new: np.ndarray,
    added_rows: np.ndarray,
) -> tuple[Any, dict[str, Any], str]:
    """Bring a structure up to date after re-indexing.

    IVF types keep their training: dropped rows are removed, kept rows renumbered and
    new rows added. HNSW cannot remove vectors, so it is rebuilt with the same parameters.

    Args:
        index: The previous faiss structure (ids = previous row numbers).
        info: Its ``meta.json`` entry.
        embeddings: The new ``(n_items, dim)`` vectors.
        inverse_norms: Their inverse norms.
        old_to_new: ``(previous n_items,)`` int64: each previous row's new row, -1 if dropped.
        added_rows: New rows to add (embedded in this run).

    Returns:
        ``(index, info, how)`` with ``how`` one line for the build report.

    Raises:
        MissingDependencyError: faiss is not installed.
    """
    ann_type = info["type"]
    unchanged = np.array_equal(np.asarray(old_to_new), np.arange(len(embeddings))) and not len(added_rows)
    if unchanged:  # the same vectors in the same rows: nothing to rebuild or renumber
        return index, dict(info), f"ann {ann_type}: kept as it was (no vector added or removed)"
    if ann_type == "hnsw" or len(embeddings) < 2:
        params = {key: value for key, value in info["params"].items()}
        index, new_info = build_ann(embeddings, inverse_norms, ann_type=ann_type, **params)
        return index, new_info, f"ann {ann_type}: rebuilt ({len(embeddings)} vectors; HNSW cannot remove vectors)"
    faiss = import_faiss()
    old_to_new = np.asarray(old_to_new, dtype=np.int64)
    dropped = np.flatnonzero(old_to_new < 0).astype(np.int64)
    if len(dropped):
        index.remove_ids(dropped)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size:
            ids = faiss.rev_swig_ptr(lists.get_ids(number), size)
            ids[:] = old_to_new[ids]
    add_vectors(index, embeddings, inverse_norms, np.asarray(added_rows, dtype=np.int64))
    new_info = {"type": ann_type, "params": dict(info["params"])}
    new_info.update(measure(index, embeddings, inverse_norms, new_info))
    new_info["build_seconds"] = info.get("build_seconds")
    how = f"ann {ann_type}: updated without retraining (+{len(added_rows)} -{len(dropped)} vectors)"
    return index, new_info, how


def serialize(index: Any) -> np.ndarray:
    """The faiss structure as a uint8 array (what the index folder's ``ann`` file holds).

    Raises:
        MissingDependencyError: faiss is not installed.
    """
    return import_faiss().serialize_index(index)


def read_ann(source: str | os.PathLike | np.ndarray) -> Any:
    """A faiss structure from an ``ann`` file or from :func:`serialize` bytes.

    Raises:
        MissingDependencyError: faiss is not installed.
        IndexIntegrityError: The file is not a readable faiss structure.
    """
    faiss = import_faiss()
    if isinstance(source, np.ndarray):
        return faiss.deserialize_index(source)
    try:
        return faiss.read_index(os.fspath(source))
    except RuntimeError as error:
        raise IndexIntegrityError(f"{source} is not a readable faiss structure: {str(error).splitlines()[0]}") from None


class ApproximateNeighbors(NeighborsSearch):
    """Approximate k-nearest-neighbor search by cosine distance, over a faiss structure.

    Same ``kneighbors`` as :class:`simrec.CosineNeighbors`: ``(distances, indices)``,
    float32 cosine distances (``1 -`` inner product of unit vectors) and int64 rows,
    nearest first. HNSW and IVF-flat compute exact distances for what they find; ivf-pq
    re-scores its candidates exactly unless ``rerank=0`` (then distances come from the
    compressed codes). Fewer than ``n_neighbors`` found (a tiny ``nprobe``) are completed by
    exact search, so every row is full.

    Args:
        index: A faiss structure over the unit vectors (from :func:`build_ann`).
        info: Its ``meta.json`` entry (type and parameters).
        embeddings: The fitted vectors, for ``X=None``, re-ranking and completion.
        inverse_norms: Their inverse norms.
        n_neighbors: Default number of neighbors.
        nprobe: IVF lists searched (default: the stored one).
        ef: HNSW search breadth (default: the stored one).
        rerank: Candidates per result re-scored with exact distances (default: the
            stored one; 0 = use the structure's own distances).

    Raises:
        InvalidArgumentError: ``nprobe`` on an HNSW structure, ``ef`` on an IVF one, or a negative or non-int
            ``nprobe``, ``ef`` or ``rerank``.
        IndexIntegrityError: The structure holds another number or dimension of vectors than ``embeddings``.
        MissingDependencyError: faiss is not installed.

    Example:
        >>> distances, indices = embedded.search(nprobe=32).kneighbors(vector, n_neighbors=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        index: Any,
        info: dict[str, Any],
        *,
        embeddings: np.ndarray,
        inverse_norms: np.ndarray | None = None,
        n_neighbors: int = N_NEIGHBORS,
        nprobe: int | None = None,
        ef: int | None = None,
        rerank: int | None = None,
    ) -> None:
        self.index = index
        self.info = info
        self.n_neighbors = n_neighbors
        params = info.get("params", {})
        if nprobe is not None and _is_hnsw(index):
            raise InvalidArgumentError(
                "nprobe applies to IVF structures; this index's is hnsw (tune it with ef)", parameters=("nprobe", "ef")
            )
        if ef is not None and not _is_hnsw(index):
            raise InvalidArgumentError(
                "ef applies to hnsw structures; this index's is IVF (tune it with nprobe)", parameters=("ef", "nprobe")
            )
        self.nprobe = nprobe if nprobe is not None else params.get("nprobe")
        self.ef = ef if ef is not None else params.get("ef")
        self.rerank = rerank if rerank is not None else params.get("rerank", 0)
        for name in ("nprobe", "ef", "rerank"):
            value = getattr(self, name)
            if value is not None:
                check_int(value, name, 0)
        self._fit_X = embeddings
        self._inv_norms = compute_inverse_norms(embeddings) if inverse_norms is None else inverse_norms
        self.n_samples_fit_, self.n_features_in_ = embeddings.shape
        if index.ntotal != self.n_samples_fit_ or index.d != self.n_features_in_:
            raise IndexIntegrityError(
                f"the ann structure holds {index.ntotal} x {index.d} vectors but the index has "
                f"{self.n_samples_fit_} x {self.n_features_in_}; rebuild it with 'simrec ann'"
            )
        self._configure()

    def _configure(self) -> None:
        faiss = import_faiss()
        if _is_hnsw(self.index):
            if self.ef:
                self.index.hnsw.efSearch = int(self.ef)
        elif self.nprobe:
            faiss.extract_index_ivf(self.index).nprobe = int(self.nprobe)

    def _blocks(self, X: np.ndarray | None, k: int) -> Blocks:
        self._configure()  # the faiss structure is shared: set this search's nprobe / ef each time
        if X is not None:
            unit = np.ascontiguousarray(X * query_inverse_norms(X)[:, None], dtype=np.float32)
            yield (0, *self._search(unit, k))
            return
        for rows, block in normalized_blocks(self._fit_X, self._inv_norms):
            d, i = self._search(block, k + 1)
            keep = i != rows[:, None]
            distances = np.empty((len(rows), k), dtype=np.float32)
            indices = np.empty((len(rows), k), dtype=np.int64)
            for j in range(len(rows)):  # drop the item itself (or the last if it was not found)
                indices[j], distances[j] = i[j][keep[j]][:k], d[j][keep[j]][:k]
            yield int(rows[0]), distances, indices

    def _search(self, unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top k of unit queries: faiss candidates, optionally re-scored exactly, completed if short."""
        fetch = min(self.n_samples_fit_, k * max(1, self.rerank or 1))
        similarity, indices = self.index.search(unit, fetch)
        indices = indices.astype(np.int64)
        if self.rerank or (indices < 0).any():
            similarity = self._exact_scores(unit, indices)
            if (indices < 0).any():
                similarity, indices = self._complete(unit, similarity, indices, k)
        order = np.lexsort((indices, -similarity), axis=1)[:, :k]
        indices = np.take_along_axis(indices, order, axis=1)
        similarity = np.take_along_axis(similarity, order, axis=1)
        distances = np.clip(1.0 - similarity, 0.0, 2.0).astype(np.float32)
        return distances, indices

    def _exact_scores(self, unit: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Exact cosine similarities of each query to its candidates (-inf for missing ones)."""
        scores = np.full(indices.shape, -np.inf, dtype=np.float32)
        for j, row in enumerate(indices):
            valid = row >= 0
            picked = row[valid]
            order = np.argsort(picked)  # sorted reads are kinder to a memory map
            vectors = np.asarray(self._fit_X[picked[order]], dtype=np.float32) * self._inv_norms[picked[order], None]
            values = np.empty(len(picked), dtype=np.float32)
            values[order] = vectors @ unit[j]
            scores[j, valid] = values
        return scores

    def _complete(
        self, unit: np.ndarray, similarity: np.ndarray, indices: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:

        exact = CosineNeighbors().fit(self._fit_X, inverse_norms=self._inv_norms)
        short = np.flatnonzero((indices >= 0).sum(axis=1) < k)
        if len(short):
            d, i = exact.kneighbors(unit[short], n_neighbors=min(k, self.n_samples_fit_))
            width = indices.shape[1]
            pad = max(0, k - width)
            if pad:
                indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
                similarity = np.pad(similarity, ((0, 0), (0, pad)), constant_values=-np.inf)
            indices[short, : i.shape[1]] = i
            similarity[short, : i.shape[1]] = 1.0 - d
            indices[short, i.shape[1] :] = -1
            similarity[short, i.shape[1] :] = -np.inf
        return similarity, indices


def _empty_index(faiss, ann_type: str, dim: int, params: dict[str, Any]) -> Any:
    if ann_type == "hnsw":
        index = faiss.index_factory(dim, f"HNSW{params['m']},Flat", faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        return index
    codes = "Flat" if ann_type == "ivf-flat" else f"PQ{params['m']}x{params['nbits']}"
    index = faiss.index_factory(dim, f"IVF{params['nlist']},{codes}", faiss.METRIC_INNER_PRODUCT)
    if ann_type == "ivf-pq":
        index.do_polysemous_training = False  # simrec does not use polysemous codes; it costs minutes
        index.pq.cp.max_points_per_centroid = 64  # each code book learns from at most 64 x 2^nbits vectors
        index.pq.cp.niter = 15
    return index


def _is_hnsw(index: Any) -> bool:
    return hasattr(index, "hnsw")


def approximate_search(vectors: np.ndarray, *, seed: int = 0) -> ApproximateNeighbors:
    """An HNSW search (:func:`build_ann` at its defaults) over vectors held in memory, not stored in an index.

    Raises:
        MissingDependencyError: faiss is not installed.
        InvalidArgumentError: Fewer than 2 vectors.
    """
    index, info = build_ann(vectors, ann_type="hnsw", seed=seed)
    return ApproximateNeighbors(index, info, embeddings=vectors)
