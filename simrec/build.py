"""Build or refresh an index folder from a catalog source: what ``simrec index`` does.

On an existing index only new or changed photos are embedded (a photo is unchanged when
its ``product_id``, size and SHA-256 are the same), removed ones are dropped, and the
vectors of the rest are copied unchanged. A zip is extracted next to the index into
``images/``; the new extraction replaces the old one only once the new index is saved,
so an interrupted run leaves the previous index and its photos as they were.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simrec.catalog import SKIPPED_COLUMNS, load_catalog
from simrec.defaults import BATCH_SIZE, IMAGE_SIZE, SEED
from simrec.embed import embed_images
from simrec.errors import IndexIntegrityError
from simrec.model import build_extractor, extractor_info
from simrec.store import (
    CatalogIndex,
    check_extractor_matches,
    deferred_interrupt,
    file_fingerprint,
    load_index,
    make_meta,
    save_index,
)

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

IMAGES_FOLDER = "images"
_INCOMING = ".images-incoming"


@dataclass
class BuildReport:
    """What :func:`build_index` did. ``candidates == indexed + skipped``."""

    candidates: int
    indexed: int
    skipped: int
    added: int
    updated: int
    removed: int
    unchanged: int
    embedded: int
    seconds: float
    embed_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def build_index(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = "auto",
    batch_size: int = BATCH_SIZE,
    seed: int = SEED,
    image_size: int = IMAGE_SIZE,
    precision: str = "auto",
    rebuild: bool = False,
    metadata: str | os.PathLike | None = None,
    extractor: keras.Model | None = None,
    verbose: bool = True,
) -> tuple[CatalogIndex, BuildReport]:
    """Index a zip or folder of photos into ``out``, reusing an existing index there.

    Args:
        source: ``.zip`` file or folder of photos.
        out: Index folder (created if missing); a zip is extracted into ``out/images``.
        weights: As in :func:`simrec.build_extractor` (default ``"auto"``).
        batch_size: Images per model call.
        seed: Seed for untrained weights.
        image_size: Side of the square model input, in pixels.
        precision: As in :func:`simrec.build_extractor`.
        rebuild: Embed everything even if an index is already there.
        metadata: Optional CSV joined on ``product_id``.
        extractor: A ready extractor (then ``weights``, ``seed``, ``precision`` are unused).
        verbose: Show progress bars.

    Returns:
        ``(catalog_index, report)``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        PermissionError: ``out`` cannot be written.
        ValueError: ``source`` holds no usable image.
    """
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"catalog source not found: {source}")
    _check_writable(out)
    is_zip = source.is_file() and source.suffix.lower() == ".zip"
    with _removed_on_failure(out / _INCOMING):  # no half-extracted zip is left behind
        catalog = load_catalog(source, extract_to=out / _INCOMING if is_zip else None, metadata=metadata)
        skipped, root = catalog.attrs["skipped"], catalog.attrs["root"]
        catalog = catalog.assign(**_fingerprints(catalog["path"]))

        if extractor is None:
            extractor = build_extractor(weights, image_size, seed=seed, precision=precision)
        info = extractor_info(extractor)
        previous = None if rebuild else _previous_index(out, info)

        reuse_rows, status = _match(catalog, previous)
        todo = np.flatnonzero(reuse_rows < 0)
        reused = np.flatnonzero(reuse_rows >= 0)
        dim = int(extractor.output_shape[-1])
        # One (n_items, dim) array holds everything; a full build embeds straight into it.
        embeddings = np.empty((len(catalog), dim), dtype=np.float32)
        todo_paths = catalog["path"].iloc[todo].tolist()
        full = len(todo) == len(catalog)
        result = embed_images(
            todo_paths, extractor, batch_size=batch_size, verbose=verbose, out=embeddings if full else None
        )
        if not full:
            embeddings[todo] = result.embeddings
        if len(reused):
            embeddings[reused] = previous.embeddings[reuse_rows[reused]]
        ok = np.ones(len(catalog), dtype=bool)
        ok[todo] = result.ok
        if not ok.all():
            embeddings = embeddings[ok]
        kept = catalog.loc[ok].reset_index(drop=True)
        kept.attrs = {}
        failures = pd.concat(
            [f for f in (skipped, result.failures) if len(f)] or [pd.DataFrame(columns=SKIPPED_COLUMNS)],
            ignore_index=True,
        )
        meta = make_meta(info, len(kept), dim, len(failures))
        meta["source"] = str(source.absolute())
        meta["root"] = root
        catalog_index = CatalogIndex(kept, embeddings, meta, failures)

        with deferred_interrupt():
            if is_zip:
                _swap_in_images(out, catalog_index)
            save_index(catalog_index, out)

    removed = 0 if previous is None else len(set(previous.catalog["product_id"]) - set(catalog["product_id"]))
    counts = pd.Series(status[ok]).value_counts()
    report = BuildReport(
        candidates=len(kept) + len(failures),
        indexed=len(kept),
        skipped=len(failures),
        added=int(counts.get("added", 0)),
        updated=int(counts.get("updated", 0)),
        removed=removed,
        unchanged=int(counts.get("unchanged", 0)),
        embedded=int(result.ok.sum()),
        seconds=time.perf_counter() - started,
        embed_seconds=result.seconds,
    )
    return catalog_index, report


@contextlib.contextmanager
def _removed_on_failure(path: Path):
    try:
        yield
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PermissionError(f"cannot write to the output folder {out}: {error.strerror or error}") from None


def _fingerprints(paths: pd.Series) -> dict[str, list]:
    prints = [file_fingerprint(path) for path in paths]
    return {"size_bytes": [p["bytes"] for p in prints], "sha256": [p["sha256"] for p in prints]}


def _previous_index(out: Path, info) -> CatalogIndex | None:
    try:
        previous = load_index(out)
    except FileNotFoundError:
        return None
    except IndexIntegrityError as error:
        if any((out / name).exists() for name in ("meta.json", "embeddings.npy", "catalog.csv")):
            logger.warning("existing index not reused, embedding everything: %s", error)
        return None
    try:
        check_extractor_matches(previous.meta, info)
    except IndexIntegrityError as error:
        logger.warning("existing index not reused, embedding everything: %s", error)
        return None
    if "sha256" not in previous.catalog.columns:
        return None
    return previous


def _match(catalog: pd.DataFrame, previous: CatalogIndex | None) -> tuple[np.ndarray, np.ndarray]:
    """For each catalog row: the previous row to reuse (-1: embed) and added/updated/unchanged."""
    n = len(catalog)
    reuse = np.full(n, -1, dtype=np.int64)
    status = np.full(n, "added", dtype=object)
    if previous is None:
        return reuse, status
    old = previous.catalog
    position = {pid: i for i, pid in enumerate(old["product_id"])}
    old_size, old_hash = old["size_bytes"].astype(np.int64).to_numpy(), old["sha256"].to_numpy()
    for row, (pid, size, digest) in enumerate(zip(catalog["product_id"], catalog["size_bytes"], catalog["sha256"])):
        i = position.get(pid)
        if i is None:
            continue
        if old_size[i] == size and old_hash[i] == digest:
            reuse[row], status[row] = i, "unchanged"
        else:
            status[row] = "updated"
    return reuse, status


def _swap_in_images(out: Path, catalog_index: CatalogIndex) -> None:
    incoming, images = out / _INCOMING, out / IMAGES_FOLDER
    if images.exists():
        shutil.rmtree(images)
    incoming.rename(images)
    old_prefix, new_prefix = str(incoming.absolute()), str(images.absolute())

    def moved(path: str) -> str:
        return new_prefix + path[len(old_prefix) :] if path.startswith(old_prefix) else path

    catalog_index.catalog["path"] = [moved(p) for p in catalog_index.catalog["path"]]
    catalog_index.failures["path"] = [moved(p) for p in catalog_index.failures["path"]]
    catalog_index.meta["root"] = moved(catalog_index.meta.get("root", ""))
