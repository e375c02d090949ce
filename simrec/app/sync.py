"""Write an index into PostgreSQL with pgvector, where a shop's pages read it: ``simrec sync``.

:func:`sync_index` brings the database's tables (see :mod:`simrec.storage.postgres`) to
the index's catalog in one transaction: it adds the products the database lacks, rewrites
those whose label, photo or vector changed, deletes those the index no longer holds, and,
with ``n_neighbors``, does the same to each product's precomputed recommendations, which
are the rows of ``simrec export`` (computed by the same code). Products that did not change
are not written, and a sync with nothing to change writes nothing at all.
"""

from __future__ import annotations

import logging
import os
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simrec.app.export import EXPORT_COLUMNS, neighbor_frames
from simrec.app.querying import choose_colour_weight
from simrec.core.crashpoints import crash_point
from simrec.core.errors import InvalidArgumentError
from simrec.embedded_catalog import EmbeddedCatalog
from simrec.storage.index_folder import load_index
from simrec.storage.postgres import (
    RECOMMENDATION_COLUMNS,
    STATE_COLUMNS,
    Tables,
    check_url,
    digests,
    import_psycopg,
    product_columns,
    safe_url,
    transaction,
)

logger = logging.getLogger(__name__)

PHOTO_FIELDS = ("product_id", "path", "name", "label")
"""What a ``photo`` template may name: ``{product_id}``, ``{path}`` (the photo file), ``{name}`` (its file
name) and ``{label}``."""
DISTANCE_TOLERANCE = 1e-6
"""Recommendations whose distances moved less than this (float32 rounding) are not rewritten."""
_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_index` did.

    Attributes:
        url: The database, without its password.
        products: Products the database holds now.
        added: Products written for the first time.
        changed: Products rewritten (label, photo or vector changed).
        removed: Products deleted.
        unchanged: Products left as they were.
        recommended: Products whose recommendations were written (or deleted).
        recommendation_rows: Recommendation rows written.
        generation: The index generation synced.
        wrote: Whether the transaction wrote anything at all.
        seconds: Wall time.
    """

    url: str
    products: int
    added: int
    changed: int
    removed: int
    unchanged: int
    recommended: int
    recommendation_rows: int
    generation: str
    wrote: bool
    seconds: float


def sync_index(
    index: str | os.PathLike | EmbeddedCatalog,
    url: str,
    *,
    n_neighbors: int | None = None,
    colour_weight: float | None = None,
    distinct: bool = False,
    exact: bool = False,
    photo: str = "{path}",
    schema: str = "public",
    products_table: str = "simrec_products",
    recommendations_table: str = "simrec_recommendations",
    verbose: bool = True,
) -> SyncReport:
    """Bring PostgreSQL tables to an index's catalog, in one transaction that writes only what changed.

    A reader of the database sees the previous catalog or the new one, never a mix, and a
    sync killed before its commit leaves the previous one. The tables are created on the
    first sync; later syncs into them must bring vectors of the same model, weights, image
    size and precision (the rule ``simrec index`` applies before reusing vectors).

    Args:
        index: An index folder, or an index loaded with :func:`simrec.load_index`.
        url: ``postgresql://user:password@host:port/dbname`` (``?host=/socket/folder`` for a Unix socket).
        n_neighbors: Also write each product's ``n_neighbors`` recommendations (the rows of
            ``simrec export``); 0 deletes them; None (default) keeps the database's own
            settings, so a re-sync updates recommendations made by an earlier one.
        colour_weight: With ``n_neighbors``: as in :func:`simrec.export_neighbors` (None: the index's default).
        distinct: With ``n_neighbors``: leave out duplicates, as ``simrec export --distinct``.
        exact: With ``n_neighbors``: exact search even when the index has an ann structure.
        photo: What the ``photo`` column holds, a template naming :data:`PHOTO_FIELDS`:
            ``"{path}"`` (default, the photo file), ``"https://cdn.example.com/{name}"``, ...
        schema: The schema of the tables (created if missing).
        products_table: The products table.
        recommendations_table: The recommendations table.
        verbose: Show progress bars.

    Returns:
        A :class:`SyncReport`.

    Raises:
        InvalidArgumentError: A bad URL, table name, photo template or option; or the tables hold vectors
            embedded differently from the index's.
        MissingDependencyError: psycopg 3 or pgvector's Python package is not installed.
        DatabaseError: No server, a refused login, no pgvector, a missing permission, or tables of another
            shape; nothing was written.
        MissingFileError: ``index`` is a folder that does not exist.
        IndexIntegrityError: The index folder is damaged.

    Example:
        >>> sync_index("index", "postgresql://shop@db/shop", n_neighbors=10)  # doctest: +SKIP
    """
    started = time.perf_counter()
    tables = Tables(schema, products_table, recommendations_table)
    check_url(url)
    _check_photo_template(photo)
    asked = _asked_settings(n_neighbors, colour_weight, distinct, exact)
    import_psycopg()
    embedded = index if isinstance(index, EmbeddedCatalog) else load_index(index, mmap=True)
    meta, dim = embedded.meta, int(embedded.embeddings.shape[1])
    generation = meta.generation or "unsaved"
    catalog = embedded.catalog
    ids = catalog["product_id"].astype(str).tolist()
    labels = catalog["label"].astype(str).tolist() if "label" in catalog.columns else [""] * len(ids)
    photos = _photos(catalog, photo, labels)
    new = dict(zip(ids, _digests(embedded, labels, photos)))

    with transaction(url, tables) as tx:
        tx.lock()
        crash_point("sync-locked")
        tx.require_vector(dim)
        tx.prepare_tables({tables.state: STATE_COLUMNS})
        state = tx.read_state()
        if state is not None:
            _check_same_model(state, meta, tables, url)
        settings = _settings(asked, state, embedded)
        wanted = {tables.products: product_columns(dim)}
        if settings:
            wanted[tables.recommendations] = RECOMMENDATION_COLUMNS
        tx.prepare_tables(wanted)

        old = tx.read_digests()
        removed = [pid for pid in old if pid not in new]
        added = [pid for pid in new if pid not in old]
        changed = [pid for pid, digest in new.items() if pid in old and old[pid] != digest]
        tx.delete(tables.products, removed + changed)
        crash_point("sync-deleted")
        rows = _product_rows(embedded, ids, labels, photos, meta.model, generation, set(added) | set(changed), new)
        tx.copy_products(rows, dim)
        if tx.created_products:
            tx.create_vector_index(dim)
        crash_point("sync-products-written")

        recommended, recommendation_rows = 0, 0
        if settings:
            recommended, recommendation_rows = _sync_recommendations(tx, embedded, settings, verbose)
        elif state is not None and state["recommendations"]:
            tx.clear(tables.recommendations)  # n_neighbors=0: the shop asked for none
        if tx.wrote() or state is None or state["generation"] != generation or state["recommendations"] != settings:
            tx.write_state(meta.identity(), dim, generation, settings)
        crash_point("sync-before-commit")
        wrote = tx.wrote()
        tx.commit()
        crash_point("sync-committed")

    report = SyncReport(
        url=safe_url(url),
        products=len(ids),
        added=len(added),
        changed=len(changed),
        removed=len(removed),
        unchanged=len(ids) - len(added) - len(changed),
        recommended=recommended,
        recommendation_rows=recommendation_rows,
        generation=generation,
        wrote=wrote,
        seconds=time.perf_counter() - started,
    )
    logger.info("synced %d products into %s: %s", len(ids), report.url, report)
    return report


def _asked_settings(
    n_neighbors: int | None, colour_weight: float | None, distinct: bool, exact: bool
) -> dict[str, Any] | None:
    """The recommendation options as given (None: keep the database's)."""
    if n_neighbors is None:
        if colour_weight is not None or distinct or exact:
            raise InvalidArgumentError(
                "colour_weight, distinct and exact describe the recommendations: pass n_neighbors=K with them",
                parameters=("colour_weight", "distinct", "exact", "n_neighbors"),
            )
        return None
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 0:
        raise InvalidArgumentError(
            f"Expected n_neighbors to be 0 or a positive integer, got {n_neighbors!r}", parameters=("n_neighbors",)
        )
    return {"n_neighbors": int(n_neighbors), "colour_weight": colour_weight, "distinct": distinct, "exact": exact}


def _settings(asked: dict[str, Any] | None, state: dict[str, Any] | None, embedded: EmbeddedCatalog) -> dict | None:
    """The recommendations to write: those asked for (the colour weight resolved), else the database's own."""
    if asked is None:
        return state["recommendations"] if state is not None else None
    if asked["n_neighbors"] == 0:
        return None
    return {**asked, "colour_weight": choose_colour_weight(embedded, asked["colour_weight"])}


def _check_same_model(state: dict[str, Any], meta: Any, tables: Tables, url: str) -> None:
    different = meta.identity_differences(state["identity"], other="tables")
    if different:
        raise InvalidArgumentError(
            f"the tables {tables.schema}.{tables.products} in {safe_url(url)} hold vectors embedded differently "
            f"({'; '.join(different)}): sync this index into other tables (products_table) or drop them; "
            "nothing was written",
            parameters=("products_table",),
        )


def _check_photo_template(photo: str) -> None:
    fields = set()
    try:
        for _, field, _, _ in string.Formatter().parse(photo):
            if field is not None:
                fields.add(field)
    except (ValueError, TypeError) as error:
        raise InvalidArgumentError(
            f"Expected photo to be a template like '{{path}}', got {photo!r}: {error}", parameters=("photo",)
        ) from None
    unknown = sorted(fields - set(PHOTO_FIELDS))
    if unknown:
        raise InvalidArgumentError(
            f"Expected photo to name only {', '.join('{' + f + '}' for f in PHOTO_FIELDS)}, got {photo!r} "
            f"(unknown: {', '.join(unknown)})",
            parameters=("photo",),
        )


def _photos(catalog: pd.DataFrame, photo: str, labels: list[str]) -> list[str]:
    paths = catalog["path"].astype(str).tolist() if "path" in catalog.columns else [""] * len(catalog)
    if photo == "{path}":
        return paths
    ids = catalog["product_id"].astype(str).tolist()
    return [
        photo.format(product_id=pid, path=path, name=Path(path).name, label=label)
        for pid, path, label in zip(ids, paths, labels)
    ]


def _unit_rows(embedded: EmbeddedCatalog, rows: np.ndarray | slice) -> np.ndarray:
    """The embeddings of ``rows`` scaled to unit length, float32 (cosine distance is unchanged, float16 is safe)."""
    vectors = np.asarray(embedded.embeddings[rows], dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def _digests(embedded: EmbeddedCatalog, labels: list[str], photos: list[str]) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(labels), _BLOCK_ROWS):
        stop = min(len(labels), start + _BLOCK_ROWS)
        out += digests(labels[start:stop], photos[start:stop], _unit_rows(embedded, slice(start, stop)))
    return out


def _product_rows(
    embedded: EmbeddedCatalog,
    ids: list[str],
    labels: list[str],
    photos: list[str],
    model: str,
    generation: str,
    write: set[str],
    digest_of: dict[str, bytes],
) -> Iterator[tuple]:
    """The products table rows of the products in ``write``, in catalog order."""
    rows = np.array([i for i, pid in enumerate(ids) if pid in write], dtype=np.int64)
    for start in range(0, len(rows), _BLOCK_ROWS):
        block = rows[start : start + _BLOCK_ROWS]
        for row, vector in zip(block, _unit_rows(embedded, block)):
            yield ids[row], labels[row], photos[row], model, generation, digest_of[ids[row]], vector
            crash_point("sync-product")


def _sync_recommendations(tx: Any, embedded: EmbeddedCatalog, settings: dict[str, Any], verbose: bool) -> tuple:
    """Rewrite the recommendations of the products whose rows differ from the database's."""
    from tqdm.auto import tqdm

    frames = []
    blocks = neighbor_frames(
        embedded,
        n_neighbors=settings["n_neighbors"],
        colour_weight=settings["colour_weight"],
        exact=settings["exact"],
        distinct=settings["distinct"],
    )
    with tqdm(total=len(embedded), unit="product", desc="recommendations", disable=not verbose) as progress:
        for products, frame in blocks:
            frames.append(frame)
            progress.update(products)
    new = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EXPORT_COLUMNS)
    old = tx.read_recommendations()
    changed = _changed_products(old, new)
    tx.delete(tx.tables.recommendations, changed)
    written = new[new["product_id"].isin(set(changed))]
    tx.copy_recommendations(written)
    crash_point("sync-recommendations-written")
    return len(changed), len(written)


def _changed_products(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """Products whose rows differ: another neighbor at some rank, a rank more or less, or a distance moved."""
    keys = ["product_id", "rank"]
    both = old.merge(new[[*keys, "neighbor_id", "distance"]], on=keys, how="outer", suffixes=("_old", ""))
    differs = both["neighbor_id_old"].isna() | both["neighbor_id"].isna()
    differs |= both["neighbor_id_old"] != both["neighbor_id"]
    differs |= (both["distance_old"].astype(float) - both["distance"].astype(float)).abs() > DISTANCE_TOLERANCE
    return sorted(set(both.loc[differs, "product_id"].astype(str)))
