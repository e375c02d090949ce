"""The embedded catalog: a catalog's rows, their vectors, and how they were made.

:class:`EmbeddedCatalog` is what :func:`simrec.load_index` returns and what
:func:`simrec.save_index` writes. Every way of making one (``simrec index``,
:meth:`EmbeddedCatalog.from_embeddings`, :func:`simrec.save_vectors`) goes through
:func:`assemble`, so the rows, failures and ``meta`` are made in one place and any of
them can later be refreshed incrementally by ``simrec index``.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simrec.core.checksum import file_fingerprint
from simrec.core.colour_signature import N_BINS, SIGNATURE_METHOD
from simrec.core.defaults import COLOUR_WEIGHT
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError, UnknownProductError
from simrec.core.index_meta import QUERY_KEYS, IndexMeta
from simrec.core.records import FAILURE_COLUMNS, FORMAT_VERSION, UNTRAINED_WARNING, ExtractorInfo, extractor_info
from simrec.core.validation import check_colour_weight
from simrec.core.version import __version__
from simrec.search.blend import ColourBlendNeighbors
from simrec.search.exact import CosineNeighbors
from simrec.search.stored import StoredNeighbors


@dataclass(eq=False)
class EmbeddedCatalog:
    """A catalog with one embedding per row: what an index folder holds.

    Attributes:
        catalog: One row per embedded photo: ``product_id``, ``path``, ``label``,
            ``size_bytes``, ``sha256`` (plus metadata columns).
        embeddings: ``(n_items, dim)`` float32, aligned with ``catalog`` rows (a
            read-only ``np.memmap`` when loaded with ``mmap=True``).
        meta: What ``meta.json`` says: model, weights, image size, preprocessing, precision,
            counts, versions (an :class:`~simrec.core.index_meta.IndexMeta`).
        failures: Files given but not embedded: ``path``, ``reason``, ``stage``.
        inverse_norms: ``(n_items,)`` float32 ``1 / ||embedding||``, stored in the index
            so search needs no pass over the embeddings; computed on first use if None.
        colours: ``(n_items, N_BINS)`` float32 colour signatures aligned with ``catalog``
            rows (see :mod:`simrec.core.colour_signature`), or None for an index made without them.
        ann: The approximate-search structure (``simrec ann``), or None: the path of the
            index folder's ``ann`` file when loaded, or serialized faiss bytes (uint8
            array) when just built. Its description is ``meta.ann``.
        stored_neighbors: Every product's nearest products at one colour weight, computed when
            the generation was committed (:class:`~simrec.search.stored.StoredNeighbors`), or None.
            Id queries they cover are looked up instead of scanned.

    Two objects are equal only when they are the same object: ``==`` never compares the
    DataFrames and arrays inside.

    Raises:
        InvalidArgumentError: ``embeddings`` or ``colours`` has another number of rows than ``catalog``, or a
            ``meta`` mapping names no model.
        TypeError: ``meta`` is neither an :class:`~simrec.core.index_meta.IndexMeta` nor a mapping (a mapping is
            deprecated and read with :meth:`~simrec.core.index_meta.IndexMeta.from_mapping`).

    Example:
        >>> import numpy as np, pandas as pd
        >>> catalog = pd.DataFrame({"product_id": ["red/a", "blue/b"], "path": ["a.jpg", "b.jpg"], "label": ["red", "blue"]})
        >>> meta = IndexMeta(model="outside", weights="external", count=2, dim=2)
        >>> embedded = EmbeddedCatalog(catalog, np.eye(2, dtype=np.float32), meta)
        >>> embedded.row_of("blue/b")
        1
        >>> embedded.row_of("blue/c")
        Traceback (most recent call last):
        ...
        simrec.core.errors.UnknownProductError: unknown product_id 'blue/c'; did you mean 'blue/b'?
    """  # noqa: E501

    catalog: pd.DataFrame
    embeddings: np.ndarray
    meta: IndexMeta
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    inverse_norms: np.ndarray | None = None
    colours: np.ndarray | None = None
    ann: Path | np.ndarray | None = None
    stored_neighbors: StoredNeighbors | None = None

    def __post_init__(self) -> None:
        if isinstance(self.meta, Mapping):
            warnings.warn(
                "EmbeddedCatalog(..., meta=dict) is deprecated: pass simrec.IndexMeta(model=..., weights=...)",
                FutureWarning,
                stacklevel=3,
            )
            self.meta = IndexMeta.from_mapping(self.meta)
        elif not isinstance(self.meta, IndexMeta):
            raise TypeError(f"Expected meta to be a simrec.IndexMeta, got {type(self.meta).__name__}")
        self._neighbors: CosineNeighbors | None = None
        self._ann_index: Any = None
        self._rows: dict[str, int] | None = None
        self._colour_blends: dict[str, Any] = {}  # the one fitted ColourBlendNeighbors, shared by every weight
        if len(self.catalog) != len(self.embeddings):
            raise InvalidArgumentError(
                f"catalog has {len(self.catalog)} rows but embeddings has {len(self.embeddings)}"
            )
        if self.colours is not None and len(self.colours) != len(self.catalog):
            raise InvalidArgumentError(f"catalog has {len(self.catalog)} rows but colours has {len(self.colours)}")

    def __len__(self) -> int:
        return len(self.catalog)

    @classmethod
    def from_embeddings(
        cls,
        catalog: pd.DataFrame,
        result: Any,
        extractor: Any,
        skipped: pd.DataFrame | None = None,
    ) -> EmbeddedCatalog:
        """Keep the embedded rows of a catalog and account for every file that was not.

        Args:
            catalog: From :func:`simrec.load_catalog`.
            result: :func:`simrec.embed_images` of ``catalog.path``.
            extractor: The extractor that made the embeddings.
            skipped: The files :func:`simrec.load_catalog` skipped, to keep them listed.

        Returns:
            An :class:`EmbeddedCatalog` whose ``failures`` are ``skipped`` plus the
            files that failed to embed.

        Raises:
            InvalidArgumentError: ``result`` is for another number of files than ``catalog``.
            TypeError: ``extractor`` was not made by :func:`simrec.build_extractor`.
        """
        if len(result.ok) != len(catalog):
            raise InvalidArgumentError(f"embeddings are for {len(result.ok)} files but the catalog has {len(catalog)}")
        if "sha256" not in catalog.columns:
            catalog = catalog.assign(**fingerprint_columns(catalog["path"]))
        ok = np.asarray(result.ok, dtype=bool)
        colours = result.colours
        return assemble(
            catalog,
            result.embeddings[ok] if not ok.all() else result.embeddings,
            ok,
            [skipped, result.failures],
            extractor_info(extractor),
            colours=None if colours is None else colours[ok],
        )

    @property
    def neighbors(self) -> CosineNeighbors:
        """The fitted :class:`simrec.CosineNeighbors` over ``embeddings`` (made on first use).

        Raises:
            InvalidArgumentError: The catalog is empty, or its embeddings hold NaN or infinite values.
        """
        if self._neighbors is None:
            self._neighbors = CosineNeighbors().fit(self.embeddings, inverse_norms=self.inverse_norms)
            self.inverse_norms = self._neighbors._inv_norms
        return self._neighbors

    def row_of(self, product_id: str) -> int:
        """The catalog row of ``product_id`` (a lookup table is built on first use).

        Raises:
            UnknownProductError: No such product; the message suggests close matches.
        """
        if self._rows is None:
            self._rows = {pid: row for row, pid in enumerate(self.catalog["product_id"].tolist())}
        return row_in(self._rows, product_id)

    def search(
        self,
        exact: bool = False,
        *,
        nprobe: int | None = None,
        ef: int | None = None,
        rerank: int | None = None,
    ) -> Any:
        """The search to use: approximate when the index has an ann structure, else exact.

        Both have the same ``kneighbors(X=None, n_neighbors=None)`` and cosine distances.

        Args:
            exact: Always the exact :attr:`neighbors`.
            nprobe: IVF lists searched (default: the one stored with the structure).
            ef: HNSW search breadth (default: the stored one).
            rerank: Candidates per result re-scored exactly (default: the stored one).

        Raises:
            MissingDependencyError: The index has an ann structure but faiss is not installed.
            IndexIntegrityError: The ann structure is unreadable or holds other vectors than the index.
            InvalidArgumentError: ``nprobe`` on an HNSW structure, ``ef`` on an IVF one, or a negative ``nprobe``,
                ``ef`` or ``rerank``.
        """
        if exact or self.ann is None:
            return self.neighbors
        from simrec.search.approximate import ApproximateNeighbors, read_ann  # faiss is imported only here

        if self._ann_index is None:
            self._ann_index = read_ann(self.ann)
        return ApproximateNeighbors(
            self._ann_index,
            self.meta.ann,
            embeddings=self.embeddings,
            inverse_norms=self.neighbors._inv_norms,
            nprobe=nprobe,
            ef=ef,
            rerank=rerank,
        )

    def set_ann(self, ann: np.ndarray | None, info: dict[str, Any] | None) -> None:
        """Attach (or with None, detach) a serialized ann structure and its description ``meta.ann``."""
        self.ann = ann
        self._ann_index = None
        self.meta = self.meta.replace(ann=None if ann is None else info)

    @property
    def warning(self) -> str | None:
        """A warning to show beside results, or None when the weights are pretrained."""
        return None if self.meta.pretrained else UNTRAINED_WARNING


def pair_distances(embedded: EmbeddedCatalog, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine distances of pairs of catalog rows, the same bits whoever asks and in either order.

    Args:
        embedded: The index.
        first: ``(n,)`` catalog rows.
        second: ``(n,)`` catalog rows.

    Returns:
        ``(n,)`` float64 cosine distances, in ``[0, 2]``.
    """
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    inverse = embedded.neighbors._inv_norms.astype(np.float64)
    dots = row_dots(gather_vectors(embedded, first), gather_vectors(embedded, second))
    return np.clip(1.0 - dots * (inverse[first] * inverse[second]), 0.0, 2.0)


def gather_vectors(embedded: EmbeddedCatalog, rows: np.ndarray) -> np.ndarray:
    """The rows' vectors in float64, gathered in sorted order (a memory map reads forward)."""
    flat = rows.reshape(-1)
    unique, back = np.unique(flat, return_inverse=True)
    vectors = np.asarray(embedded.embeddings[unique], dtype=np.float32).astype(np.float64)
    return vectors[back].reshape(*rows.shape, -1)


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products along the last axis: a product, then numpy's sum of each contiguous row.

    No BLAS: its summation order changes with the threads and the shape of the call; a
    row's sum here depends on that row alone.
    """
    return np.multiply(a, b).sum(axis=-1)


def row_in(rows: dict[str, int], product_id: str) -> int:
    """``rows[product_id]``, or the one error for an unknown product: the message suggests close matches.

    Raises:
        UnknownProductError: No such product.
    """
    row = rows.get(product_id)
    if row is None:
        close = difflib.get_close_matches(str(product_id), list(rows), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownProductError(f"unknown product_id {product_id!r}{hint}")
    return row


def fingerprint_columns(paths: pd.Series) -> dict[str, list]:
    """``size_bytes`` and ``sha256`` columns for the files of a catalog."""
    prints = [file_fingerprint(path) for path in paths]
    return {"size_bytes": [p["bytes"] for p in prints], "sha256": [p["sha256"] for p in prints]}


def assemble(
    catalog: pd.DataFrame,
    embeddings: np.ndarray,
    ok: np.ndarray,
    failure_frames: list[pd.DataFrame | None],
    model: ExtractorInfo | IndexMeta,
    *,
    colours: np.ndarray | None = None,
    source: str | None = None,
) -> EmbeddedCatalog:
    """The one way an :class:`EmbeddedCatalog` is made from a catalog and its vectors.

    Args:
        catalog: Every catalogued file, one row each.
        embeddings: ``(ok.sum(), dim)`` float32: the vectors of the rows where ``ok``.
        ok: ``(len(catalog),)`` bool: rows that were embedded.
        failure_frames: Failure tables (``path``, ``reason``, ``stage``) to list.
        model: What made the vectors: the extractor's :class:`~simrec.core.records.ExtractorInfo`,
            or an :class:`~simrec.core.index_meta.IndexMeta` describing an outside model.
        colours: ``(ok.sum(), N_BINS)`` float32 colour signatures of the same rows, or
            None (then only ``colour_weight=0`` works on the result).
        source: The catalog source, recorded in ``meta.source``.

    Raises:
        InvalidArgumentError: ``embeddings`` or ``colours`` do not match the rows where ``ok``, or ``colours`` are not
            finite.
    """
    ok = np.asarray(ok, dtype=bool)
    kept = catalog.loc[ok].reset_index(drop=True)
    kept.attrs = {}
    frames = [f for f in failure_frames if f is not None and len(f)]
    failures = (
        pd.concat([f[FAILURE_COLUMNS] for f in frames], ignore_index=True)
        if frames
        else pd.DataFrame(columns=FAILURE_COLUMNS)
    )
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) != len(kept):
        raise InvalidArgumentError(f"Expected ({len(kept)}, dim) embeddings, got shape {embeddings.shape}")
    if colours is not None:
        colours = np.ascontiguousarray(colours, dtype=np.float32)
        if colours.shape != (len(kept), N_BINS) or not np.isfinite(colours).all():
            raise InvalidArgumentError(f"Expected ({len(kept)}, {N_BINS}) finite colours, got shape {colours.shape}")
    described = IndexMeta.from_extractor(model) if isinstance(model, ExtractorInfo) else model
    meta = described.replace(
        format_version=FORMAT_VERSION,
        simrec_version=__version__,
        count=len(kept),
        dim=int(embeddings.shape[1]),
        failures=len(failures),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source=source if source is not None else described.source,
        colour_signature=None if colours is None else SIGNATURE_METHOD,
    )
    return EmbeddedCatalog(kept, embeddings, meta, failures, colours=colours)


def check_extractor_matches(meta: IndexMeta, info: ExtractorInfo, keys: tuple[str, ...] = QUERY_KEYS) -> None:
    """Refuse to compare vectors embedded differently from the index's.

    Raises:
        IndexIntegrityError: Model, weights, image size or preprocessing differ.
    """
    different = meta.differences(info, keys, other="extractor")
    if different:
        raise IndexIntegrityError(f"the index was built with a different extractor ({'; '.join(different)})")


def neighbors_for(embedded: EmbeddedCatalog, colour_weight: float) -> CosineNeighbors | ColourBlendNeighbors:
    """The search for ``colour_weight``: ``embedded.neighbors`` at 0, else a blend (kept on ``embedded``).

    Raises:
        InvalidArgumentError: ``colour_weight`` is outside ``[0, 1]``, or above 0 on an
            index without colour signatures (the message says how to add them).
    """
    weight = check_colour_weight(colour_weight)
    if weight == 0.0:
        return embedded.neighbors
    require_colours(embedded)
    cache = embedded._colour_blends  # one fitted blend per index; other weights share its arrays
    if "fitted" not in cache:
        cache["fitted"] = ColourBlendNeighbors.from_cosine(embedded.neighbors, embedded.colours, colour_weight=weight)
    blend = copy.copy(cache["fitted"])  # shallow: the signatures and scales are not copied
    blend.colour_weight = weight
    return blend


def default_colour_weight(embedded: EmbeddedCatalog) -> float:
    """The colour weight of a query that asks for none: :data:`~simrec.core.defaults.COLOUR_WEIGHT` where
    the index can blend (colour signatures of this recipe, exact search), else 0 (look alone).

    An index with an approximate-search structure answers by look alone unless a weight is asked
    for, as the blend compares every product exactly.
    """
    usable = embedded.colours is not None
    usable &= embedded.meta.colour_signature in (None, SIGNATURE_METHOD)
    return COLOUR_WEIGHT if usable and embedded.ann is None else 0.0


def resolve_colour_weight(embedded: EmbeddedCatalog, colour_weight: float | None) -> float:
    """``colour_weight`` checked, or the index's default for None.

    Raises:
        InvalidArgumentError: ``colour_weight`` is outside ``[0, 1]``.
    """
    return default_colour_weight(embedded) if colour_weight is None else check_colour_weight(colour_weight)


def require_colours(embedded: EmbeddedCatalog, index_dir: str = "INDEX_DIR") -> None:
    """Refuse a colour weight above 0 on an index whose signatures are missing or made differently.

    Raises:
        InvalidArgumentError: The index has no colour signatures, or they were made by another recipe (the message says
            how to make them).
    """
    if embedded.colours is None:
        raise InvalidArgumentError(missing_colours_message(index_dir, embedded.meta), parameters=("rebuild",))
    method = embedded.meta.colour_signature
    if method not in (None, SIGNATURE_METHOD):
        raise InvalidArgumentError(
            f"the index {index_dir} has colour signatures made by {method!r}, this simrec makes {SIGNATURE_METHOD!r}; "
            f"make them again with 'simrec colours {index_dir}'"
        )


def missing_colours_message(index_dir: str = "INDEX_DIR", meta: IndexMeta | None = None) -> str:
    """What to do when an index has no colour signatures and a colour weight above 0 is asked for.

    Args:
        index_dir: The index folder, as the user named it.
        meta: Its meta: an index of vectors made outside simrec (``save_vectors``) never had
            signatures, while one of simrec's own was made before simrec stored them.
    """
    if meta is not None and meta.made_outside:
        why = f"it holds vectors from {meta.model!r} made outside simrec, written without them"
        how = f"add them with 'simrec colours {index_dir}' if its path column names the photos (reads them, no model)"
    else:
        why = "it was made before simrec stored them"
        how = (
            f"add them with 'simrec colours {index_dir}' (reads the photos, no model) or embed everything again "
            "(rebuild=True)"
        )
    return f"the index {index_dir} has no colour signatures ({why}), so only colour_weight 0 works on it; {how}"
