"""Recommendations in the shapes other systems read: a table of every product's neighbors, and JSON.

:func:`export_neighbors` writes every product's ``k`` nearest other products to a
Parquet or CSV file, one row per pair, computing and writing one block of products at a
time so memory stays bounded however large the catalog. :func:`results_payload` is the
JSON of one query's results that ``simrec query --format json`` prints and the web
service answers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simrec.app.distinct import distinct_neighbors_many
from simrec.app.duplicates import copy_test_for
from simrec.app.querying import plan_query
from simrec.core.durability import NewFile, fsync_file, is_no_room, no_room_error
from simrec.core.errors import MissingDependencyError, NotWritableError, SimrecError
from simrec.core.validation import check_suffix
from simrec.embedded_catalog import EmbeddedCatalog

logger = logging.getLogger(__name__)

EXPORT_COLUMNS = ["product_id", "rank", "neighbor_id", "distance", "label", "neighbor_label"]
"""Columns of an export: the product, the neighbor's rank (1 = closest), the neighbor, the
cosine distance, and both products' labels."""

FORMATS = {".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_neighbors` wrote.

    Attributes:
        path: The file written.
        products: Products exported (every row of the catalog).
        rows: Rows written (``products * n_neighbors``).
        seconds: Wall time of the search and the writing.
    """

    path: Path
    products: int
    rows: int
    seconds: float


def export_neighbors(
    embedded: EmbeddedCatalog,
    out: str | os.PathLike,
    *,
    n_neighbors: int = 10,
    colour_weight: float | None = None,
    exact: bool = False,
    distinct: bool = False,
    verbose: bool = True,
    index_name: str | None = None,
) -> ExportReport:
    """Write every product's ``n_neighbors`` nearest other products to a Parquet or CSV file.

    The search runs one block of products at a time (:meth:`CosineNeighbors.kneighbors_blocks`)
    and each block is written before the next is computed, so memory is bounded by one
    block's scratch (about 64 MB) plus its rows, not by the catalog. The file is written
    under a temporary name and renamed into place at the end, so an interrupted export
    leaves no partial file at ``out``.

    Each product's rows equal ``recommend(embedded, product_id=..., n_neighbors=...,
    colour_weight=..., search=embedded.search(exact=exact))``, which is what ``simrec query
    --id`` prints: the same neighbors in the same order, distances equal up to float32
    rounding.

    Args:
        embedded: From :func:`simrec.load_index` (``mmap=True`` keeps the vectors on disk).
        out: ``.parquet`` (needs ``pyarrow``) or ``.csv`` file; the suffix picks the format.
        n_neighbors: Neighbors per product (at most ``len(embedded) - 1``).
        colour_weight: As in :func:`simrec.recommend`: 0 ranks by look alone; above 0 the
            blended distance is exported (the index needs colour signatures); None (default)
            is the index's default, as for ``simrec query``.
        exact: Exact search even when the index has an approximate-search structure
            (``simrec ann``), which is used otherwise.
        distinct: As in :func:`simrec.recommend`: leave out each neighbor that is a
            duplicate of the product or of a higher-ranked neighbor (a product may then
            have fewer rows when the catalog runs out of distinct products).
        verbose: Show a progress bar.
        index_name: The index as the user named it, for messages.

    Returns:
        An :class:`ExportReport`. The file has the columns :data:`EXPORT_COLUMNS`:
        ``product_id`` (str), ``rank`` (int, 1 = closest), ``neighbor_id`` (str),
        ``distance`` (float64 cosine distance), ``label`` and ``neighbor_label`` (str).

    Raises:
        InvalidArgumentError: Unknown suffix, ``n_neighbors`` or ``colour_weight`` out of range, or a colour weight
            above 0 on an index without colour signatures.
        MissingDependencyError: ``.parquet`` without pyarrow, or an ann structure used without faiss.
        NotWritableError: ``out`` cannot be written.
        DiskFullError: The disk of ``out`` has no room left (or is read-only); no export was written.

    Example:
        >>> export_neighbors(load_index("index", mmap=True), "recs.parquet", n_neighbors=10)  # doctest: +SKIP
    """
    out = Path(out)
    fmt = FORMATS[check_suffix(out, "out", tuple(FORMATS))]
    if fmt == "parquet":
        _require_pyarrow()
    started = time.perf_counter()
    catalog = embedded.catalog
    rows = 0
    blocks = neighbor_frames(
        embedded,
        n_neighbors=n_neighbors,
        colour_weight=colour_weight,
        exact=exact,
        distinct=distinct,
        index_name=index_name,
    )  # validates n_neighbors and colour_weight before anything is written
    from tqdm.auto import tqdm

    opener = (lambda path: _ParquetFile(path, _neighbor_schema())) if fmt == "parquet" else _CsvFile
    with _renamed_when_complete(out, opener) as writer:
        with tqdm(total=len(catalog), unit="product", desc="export", disable=not verbose) as progress:
            for products, frame in blocks:
                writer.write(frame)
                rows += len(frame)
                progress.update(products)
    seconds = time.perf_counter() - started
    logger.info("exported %d rows for %d products to %s in %.1fs", rows, len(catalog), out, seconds)
    return ExportReport(out, len(catalog), rows, seconds)


def neighbor_frames(
    embedded: EmbeddedCatalog,
    *,
    n_neighbors: int = 10,
    colour_weight: float | None = None,
    exact: bool = False,
    distinct: bool = False,
    index_name: str | None = None,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """The rows of :func:`export_neighbors`, one block of products at a time, without writing them.

    ``simrec export`` writes these frames to a file and ``simrec sync`` to a database table,
    so both hold the same rows. Arguments are validated when this is called, before the
    first block is computed.

    Args:
        embedded: From :func:`simrec.load_index`.
        n_neighbors: Neighbors per product (at most ``len(embedded) - 1``).
        colour_weight: As in :func:`export_neighbors`.
        exact: As in :func:`export_neighbors`.
        distinct: As in :func:`export_neighbors`.
        index_name: The index as the user named it, for messages.

    Returns:
        An iterator of ``(products, frame)``: how many products the block covers, and their
        rows with the columns :data:`EXPORT_COLUMNS`, in catalog order then rank.

    Raises:
        InvalidArgumentError: ``n_neighbors`` or ``colour_weight`` out of range, or a colour weight above 0 on
            an index without colour signatures.
        MissingDependencyError: An ann structure used without faiss.
    """
    catalog = embedded.catalog
    # The same policy as a query's: the number of recommendations, the colour weight and its default, the search.
    plan = plan_query(embedded, n_neighbors, colour_weight=colour_weight, exact=exact, index_name=index_name)
    n_neighbors, neighbors = plan.n_neighbors, plan.search
    test = None
    if distinct:  # each product's first candidates, as recommend(distinct=True) looks at them
        test = copy_test_for(embedded)
        blocks = neighbors.kneighbors_blocks(n_neighbors=min(len(catalog) - 1, 2 * n_neighbors + 10))
    else:
        blocks = neighbors.kneighbors_blocks(n_neighbors=n_neighbors)
    product_ids = catalog["product_id"].astype(str).to_numpy()
    labels = catalog["label"].astype(str).to_numpy() if "label" in catalog.columns else np.full(len(catalog), "")
    return _frames(blocks, test, neighbors, product_ids, labels, n_neighbors)


def _frames(
    blocks: Any,
    test: Any,
    neighbors: Any,
    product_ids: np.ndarray,
    labels: np.ndarray,
    n_neighbors: int,
) -> Iterator[tuple[int, pd.DataFrame]]:
    for start, distances, indices in blocks:
        if test is not None:
            frame = _distinct_frame(test, neighbors, product_ids, labels, start, indices, n_neighbors)
        else:
            frame = _block_frame(product_ids, labels, start, distances, indices)
        yield len(distances), frame


def export_embeddings(
    embedded: EmbeddedCatalog, out: str | os.PathLike, *, block_rows: int = 8192, verbose: bool = True
) -> ExportReport:
    """Write every product's vector to Parquet, for Spark, Ray, DuckDB or a vector database.

    Columns: ``product_id``, ``label``, ``path`` (str) and ``embedding``, a fixed-size list
    of ``dim`` float32 (Arrow ``fixed_size_list<float>[dim]``), in catalog order. Written
    ``block_rows`` products at a time from the (memory-mapped) index, so memory does not
    grow with the catalog, under a temporary name renamed into place when complete.

    Args:
        embedded: From :func:`simrec.load_index` (``mmap=True`` keeps the vectors on disk).
        out: A ``.parquet`` file.
        block_rows: Products per Parquet row group.
        verbose: Show a progress bar.

    Raises:
        InvalidArgumentError: ``out`` does not end in ``.parquet``.
        MissingDependencyError: pyarrow is not installed.
        NotWritableError: ``out`` cannot be written.
        DiskFullError: The disk of ``out`` has no room left (or is read-only); no export was written.

    Example:
        >>> export_embeddings(load_index("index", mmap=True), "vectors.parquet")  # doctest: +SKIP
    """
    out = Path(out)
    check_suffix(out, "out", (".parquet",), context=" for embeddings", also_named=("embeddings",))
    _require_pyarrow()
    import pyarrow as pa
    from tqdm.auto import tqdm

    started = time.perf_counter()
    catalog = embedded.catalog
    n, dim = embedded.embeddings.shape
    schema = pa.schema(
        [
            ("product_id", pa.string()),
            ("label", pa.string()),
            ("path", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
        ]
    )
    with _renamed_when_complete(out, lambda path: _ParquetFile(path, schema)) as writer:
        with tqdm(total=n, unit="product", desc="export", disable=not verbose) as progress:
            for start in range(0, n, block_rows):
                stop = min(n, start + block_rows)
                vectors = np.ascontiguousarray(embedded.embeddings[start:stop], dtype=np.float32)
                columns = [
                    pa.array(catalog[name].iloc[start:stop].astype(str).tolist(), pa.string())
                    for name in ("product_id", "label", "path")
                ]
                columns.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim))
                writer.write(pa.Table.from_arrays(columns, schema=schema))
                progress.update(stop - start)
    return ExportReport(out, n, n, time.perf_counter() - started)


@contextlib.contextmanager
def _renamed_when_complete(out: Path, open_writer: Any):
    """A writer on ``.OUT.partial``, renamed to ``out`` when the block completes; on any failure nothing stays.

    A full disk is a :class:`~simrec.core.errors.DiskFullError` naming ``out``; the
    half-written file is removed whatever happened.
    """
    partial = out.with_name(f".{out.name}.partial")
    writer = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)  # what an export killed earlier left
        writer = open_writer(partial)
        yield writer
        writer.close()
        os.replace(partial, out)
    except BaseException as error:
        if writer is not None:
            writer.abort()
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if is_no_room(error) and not isinstance(error, SimrecError):
            raise no_room_error(out, error, "no export was written") from error
        if isinstance(error, OSError) and not isinstance(error, SimrecError):
            raise NotWritableError(f"cannot write the export {out}: {error.strerror or error}") from error
        raise


def _distinct_frame(
    test: Any,
    neighbors: Any,
    product_ids: np.ndarray,
    labels: np.ndarray,
    start: int,
    indices: np.ndarray,
    n_neighbors: int,
) -> pd.DataFrame:
    """Rows of one block of products, as :func:`simrec.app.distinct.distinct_neighbors` answers each."""
    query_rows = np.arange(start, start + len(indices))
    answers = distinct_neighbors_many(test, neighbors, n_neighbors, query_rows, indices)
    counts = np.array([len(rows) for _, rows in answers], dtype=np.int64)
    queries = np.repeat(query_rows, counts)
    found = np.concatenate([rows for _, rows in answers]).astype(np.int64) if len(answers) else np.empty(0, np.int64)
    distances = np.concatenate([d for d, _ in answers]) if len(answers) else np.empty(0)
    ranks = np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in counts]) if len(answers) else counts
    return pd.DataFrame(
        {
            "product_id": product_ids[queries],
            "rank": ranks,
            "neighbor_id": product_ids[found],
            "distance": distances.astype(np.float64),
            "label": labels[queries],
            "neighbor_label": labels[found],
        },
        columns=EXPORT_COLUMNS,
    )


def results_payload(results: pd.DataFrame) -> dict[str, Any]:
    """The JSON-ready answer to one query, as ``simrec query --format json`` prints it.

    Args:
        results: From :func:`simrec.recommend`.

    Returns:
        ``{"query": {...}, "results": [{"rank", "product_id", "path", "label",
        "distance"}, ...], "warning": str | None}`` with plain Python values; the query
        describes the product (``product_id``, ``path``, ``label``) or photo (``path``),
        without any in-memory image.
    """
    query = {key: _plain(value) for key, value in results.attrs.get("query", {}).items() if key != "image"}
    records = [{key: _plain(value) for key, value in row.items()} for row in results.to_dict(orient="records")]
    return {"query": query, "results": records, "warning": results.attrs.get("warning")}


def _block_frame(
    product_ids: np.ndarray, labels: np.ndarray, start: int, distances: np.ndarray, indices: np.ndarray
) -> pd.DataFrame:
    n_rows, k = distances.shape
    queries = np.repeat(np.arange(start, start + n_rows), k)
    neighbors = indices.ravel()
    return pd.DataFrame(
        {
            "product_id": product_ids[queries],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int64), n_rows),
            "neighbor_id": product_ids[neighbors],
            "distance": distances.ravel().astype(np.float64),
            "label": labels[queries],
            "neighbor_label": labels[neighbors],
        },
        columns=EXPORT_COLUMNS,
    )


_BUFFER = 1024**2


class _CsvFile:
    """The CSV export: every text field quoted, so names with line breaks, commas or quotes read back whole."""

    def __init__(self, path: Path) -> None:
        self._handle = io.TextIOWrapper(io.BufferedWriter(NewFile(path), _BUFFER), encoding="utf-8", newline="")
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self._handle, header=self._header, index=False, quoting=csv.QUOTE_NONNUMERIC)
        self._header = False

    def close(self) -> None:
        if self._header:  # no block at all: still write the header
            self.write(pd.DataFrame(columns=EXPORT_COLUMNS))
        fsync_file(self._handle)
        self._handle.close()

    def abort(self) -> None:
        """Close without caring what was lost (the file is removed next)."""
        with contextlib.suppress(OSError):
            self._handle.close()


class _ParquetFile:
    """A Parquet export written in row groups, every byte through :class:`~simrec.core.durability.NewFile`."""

    def __init__(self, path: Path, schema: Any) -> None:
        import pyarrow.parquet as pq

        self._handle = io.BufferedWriter(NewFile(path), _BUFFER)
        self._schema = schema
        self._writer = pq.ParquetWriter(self._handle, schema)

    def write(self, block: Any) -> None:
        """Write a ``pyarrow.Table`` or a DataFrame of the schema's columns."""
        if isinstance(block, pd.DataFrame):
            import pyarrow as pa

            block = pa.Table.from_pandas(block, schema=self._schema, preserve_index=False)
        self._writer.write_table(block)

    def close(self) -> None:
        self._writer.close()  # writes the footer; the handle stays open
        fsync_file(self._handle)
        self._handle.close()

    def abort(self) -> None:
        """Close without caring what was lost (the file is removed next)."""
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self._handle.close()


def _neighbor_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("product_id", pa.string()),
            ("rank", pa.int64()),
            ("neighbor_id", pa.string()),
            ("distance", pa.float64()),
            ("label", pa.string()),
            ("neighbor_label", pa.string()),
        ]
    )


def _require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "writing .parquet needs pyarrow, which is not installed: pip install pyarrow (or write .csv)"
        ) from None


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value ``json`` writes."""
    return value.item() if isinstance(value, np.generic) else value
