"""Saving an :class:`~simrec.embedded_catalog.EmbeddedCatalog` to an index folder, and loading it.

An index folder (format 3) holds:

* ``meta.json``: model, weights, image size, preprocessing, precision,
  simrec version, counts, and the name, size and SHA-256 of each data file below;
* ``catalog-GEN.parquet``: one row per embedded photo (``product_id``, ``path``, ``label``,
  ``size_bytes``, ``sha256`` and any metadata columns); paths inside the folder are
  stored relative to it, so the folder can be moved or copied to Google Drive;
* ``embeddings-GEN.npy``: ``(n_items, dim)`` float32, row ``i`` belongs to catalog row ``i``;
* ``inverse_norms-GEN.npy``: ``(n_items,)`` float32 ``1 / ||row||``, so search needs no
  pass over the embeddings;
* ``failures-GEN.parquet``: every file given but not embedded, with ``path``, ``reason``, ``stage``;
* ``colours-GEN.npy`` (optional): ``(n_items, N_BINS)`` float32 colour signatures, row ``i``
  for catalog row ``i`` (see :mod:`simrec.core.colour_signature`); indexes made before simrec stored
  them have none, and ``simrec colours`` adds them;
* ``ann-GEN.faiss`` (optional): the approximate-search structure of ``simrec ann``,
  described by ``meta.json``'s ``ann`` entry (type, parameters, recall@10 measured when built);
* ``neighbor_rows-GEN.npy`` and ``neighbor_distances-GEN.npy`` (optional): every product's
  nearest products, stored with the generation (:mod:`simrec.storage.stored_neighbors`);
* ``photos/``: the photos of a zip source, stored once by content (``photos/ab/<sha256>.jpg``,
  see :mod:`simrec.storage.photo_store`): unchanged photos never move between versions, and
  the previous generation's photos stay until the commit after next (``retired_photos``), so a
  reader that still serves it keeps them; ``images-GEN/`` is where a zip is extracted before
  the save, and the photo folder of indexes written before the store (they still load).

The two tables are Parquet, so any name a filesystem or a zip can hold (line breaks,
tabs, quotes, commas, a leading ``=``, very long names) reads back exactly as written;
names that are not UTF-8 are listed as failures in their escaped form (``caf\\xe9.jpg``).

``GEN`` names one generation of the index. A save writes the new generation's files
under new names, reads them back as a reader would (row counts, shapes, every name as
written), then writes ``meta.json`` to a temporary file, fsyncs it and renames it over
``meta.json``: that rename is the commit, so a generation that would not load is never
committed. Only after it are the previous generation's files removed. Readers read the
``meta.json`` first and then only the files it names, so at every instant, whatever kills
the writer, the folder loads as the previous generation or the new one, never neither and
never a mix. Opening checks sizes and shapes, not checksums, so it costs time in
proportion to the rows, not to the bytes;
:func:`verify_index` (``simrec verify``) reads everything and checks every checksum.
Format 1 folders (``catalog.csv``, ``embeddings.npy``, ``failures.csv``) and format 2
folders (``catalog-GEN.csv``, ``failures-GEN.csv``) still load, and become format 3 at
their next save. A full disk stops a save with :class:`~simrec.core.errors.DiskFullError`,
its files removed and the previous generation unchanged.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import shutil
import tokenize
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simrec.core.checksum import file_fingerprint
from simrec.core.crashpoints import crash_point
from simrec.core.deprecation import renamed_keyword
from simrec.core.durability import NewFile, fsync_file, fsync_folder, is_no_room, no_room_error
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError, MissingFileError, NotWritableError
from simrec.core.index_meta import EXTERNAL_WEIGHTS, IndexMeta
from simrec.core.records import CATALOG_COLUMNS, FAILURE_COLUMNS, FORMAT_VERSION, READABLE_FORMATS, printable_path
from simrec.core.signals import deferred_interrupt
from simrec.embedded_catalog import EmbeddedCatalog, assemble
from simrec.search.exact import compute_inverse_norms
from simrec.storage import stored_neighbors
from simrec.storage.locking import writer_lock
from simrec.storage.photo_store import STORE, collect_photos, photos_named, store_photos

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
ROLES = ("catalog", "embeddings", "inverse_norms", "failures")
OPTIONAL_ROLES = ("colours", "ann")
"""Data files an index has only when it has them: ``colours`` (the colour signatures) and
``ann`` (the approximate-search structure of ``simrec ann``)."""
_SUFFIX = {
    "catalog": ".parquet",
    "embeddings": ".npy",
    "inverse_norms": ".npy",
    "failures": ".parquet",
    "colours": ".npy",
    "ann": ".faiss",
    **{role: ".npy" for role in stored_neighbors.ROLES},
}
_GENERATION_FILE = re.compile(
    r"^(catalog|embeddings|inverse_norms|failures|colours|ann|neighbor_rows|neighbor_distances)"
    r"-\d{6}-[0-9a-f]{8}\.(parquet|csv|npy|faiss)$"
)
_GENERATION_FOLDER = re.compile(r"^images-\d{6}-[0-9a-f]{8}$")
_LEFTOVER = re.compile(r"^\.(meta\.json\..*\.tmp|images-.*|staging-.*|write-test-.*)$")
_BUFFER = 1024**2
_FORMAT_1_FILES = {"catalog": "catalog.csv", "embeddings": "embeddings.npy", "failures": "failures.csv"}


def new_generation(index_dir: str | os.PathLike) -> str:
    """A fresh generation name for the next save into ``index_dir`` (``000004-1f2e3d4c``)."""
    try:
        previous = read_meta(index_dir).generation or "000000-"
        number = int(str(previous).split("-")[0]) + 1
    except (MissingFileError, IndexIntegrityError, ValueError):
        number = 1
    return f"{number:06d}-{secrets.token_hex(4)}"


@renamed_keyword("directory", "index_dir")
def save_index(embedded: EmbeddedCatalog, index_dir: str | os.PathLike, *, generation: str | None = None) -> Path:
    """Commit ``embedded`` as the new generation of the index folder ``index_dir``.

    The previous generation stays loadable until the single commit (see the module
    docstring). One writer at a time: the folder's writer lock is held throughout.

    Args:
        embedded: What to save.
        index_dir: The index folder; created if missing. Files simrec did not write are
            left alone.
        generation: Name of the new generation (default: a fresh one); ``simrec index``
            passes the one its extracted photos already use.

    Returns:
        The folder path.

    Raises:
        NotWritableError: The folder cannot be written.
        DiskFullError: The disk has no room left (or is read-only); nothing was committed.
        IndexLockedError: Another process is writing the folder.
        InvalidArgumentError: The embeddings hold NaN or infinite values.
        IndexIntegrityError: What was written does not read back as written (nothing was
            committed).
    """
    index_dir = Path(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if is_no_room(error):
            raise no_room_error(index_dir, error) from None
        raise NotWritableError(f"cannot write the index folder {index_dir}: {error.strerror or error}") from None
    embeddings = np.asarray(embedded.embeddings, dtype=np.float32)
    inverse_norms = compute_inverse_norms(embeddings)
    if not np.isfinite(inverse_norms).all():
        bad = np.flatnonzero(~np.isfinite(inverse_norms))
        raise InvalidArgumentError(f"embeddings hold NaN or infinite values in {len(bad)} rows, e.g. row {bad[0]}")
    with writer_lock(index_dir):
        generation = generation or new_generation(index_dir)
        roles = ROLES + tuple(role for role in OPTIONAL_ROLES if getattr(embedded, role) is not None)
        roles += tuple(stored_neighbors.writers(embedded.stored_neighbors))
        names = {role: f"{role}-{generation}{_SUFFIX[role]}" for role in roles}
        temporary = index_dir / f".meta.json.{generation}.tmp"
        committed = False
        try:
            files, photo_folders, paths = _write_data(embedded, embeddings, inverse_norms, index_dir, names)
            meta = embedded.meta.replace(
                colour_signature=None if embedded.colours is None else embedded.meta.colour_signature,
                ann=None if embedded.ann is None else embedded.meta.ann,
                stored_neighbors=stored_neighbors.describe(embedded.stored_neighbors),
                format_version=FORMAT_VERSION,
                photo_folders=photo_folders,
                generation=generation,
                count=len(embedded.catalog),
                dim=int(embeddings.shape[1]),
                failures=len(embedded.failures),
                files=files,
                format_1_files=_format_1_leftovers(index_dir),
                retired_photos=_retired_photos(index_dir, paths),
            )
            _check_written(index_dir, meta, embedded)
            _write_meta(temporary, meta)
            fsync_folder(index_dir)  # the new files' names are durable before ``meta.json`` names them
            with deferred_interrupt():
                os.replace(temporary, index_dir / META_FILE)  # the commit
                committed = True
                crash_point("committed")
        except BaseException as error:
            if committed:  # e.g. Ctrl-C held back during the commit: the new generation stands
                raise
            for path in [temporary, *(index_dir / name for name in names.values())]:
                path.unlink(missing_ok=True)
            if is_no_room(error) and not isinstance(error, NotWritableError):
                raise no_room_error(index_dir, error, "the previous generation is unchanged") from error
            if isinstance(error, OSError) and not isinstance(error, NotWritableError):
                raise NotWritableError(
                    f"cannot write the index {index_dir}: {error}; the previous generation is unchanged"
                ) from error
            raise
        try:  # the new generation is committed: a failure to tidy up is only worth a warning
            fsync_folder(index_dir)
            remove_unreferenced(index_dir)
        except OSError as error:
            logger.warning("saved %s, but could not remove the previous generation's files: %s", index_dir, error)
    logger.info("saved index of %d items to %s (generation %s)", len(embedded), index_dir, generation)
    return index_dir


@renamed_keyword("directory", "index_dir")
def save_vectors(
    catalog: pd.DataFrame,
    vectors: np.ndarray,
    index_dir: str | os.PathLike,
    *,
    model: str,
) -> Path:
    """Write an index folder from vectors computed outside simrec.

    ``load_index``, ``recommend(product_id=...)``, ``simrec query --id`` and ``simrec
    evaluate`` work on it; photo queries do not (simrec cannot run the outside model),
    and a later ``simrec index`` into the folder refuses unless ``--rebuild``.

    Args:
        catalog: One row per vector with ``product_id`` (unique) and optionally
            ``path`` and ``label``.
        vectors: ``(len(catalog), dim)`` finite numbers, one row per catalog row.
        model: A short description of what made the vectors, e.g. ``"clip-vit-b32"``.

    Returns:
        The folder path.

    Raises:
        InvalidArgumentError: ``model`` is empty, ``catalog`` has no ``product_id`` column or repeats one, or
            ``vectors`` is not ``(len(catalog), dim)`` or holds NaN or infinite values.
        NotWritableError: The folder cannot be written.
        DiskFullError: The disk has no room left (or is read-only); nothing was committed.
        IndexLockedError: Another process is writing the folder.
        IndexIntegrityError: What was written does not read back as written (nothing was committed).

    Example:
        >>> save_vectors(products, clip_vectors, "clip-index", model="clip-vit-b32")  # doctest: +SKIP
    """
    if not isinstance(model, str) or not model.strip():
        raise InvalidArgumentError(f"Expected model to be a short non-empty description, got {model!r}")
    if not isinstance(catalog, pd.DataFrame) or "product_id" not in catalog.columns:
        raise InvalidArgumentError("Expected catalog to be a DataFrame with a 'product_id' column")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(catalog):
        raise InvalidArgumentError(f"Expected vectors of shape ({len(catalog)}, dim), got {vectors.shape}")
    catalog = catalog.reset_index(drop=True).copy()
    catalog["product_id"] = catalog["product_id"].astype(str)
    if catalog["product_id"].duplicated().any():
        raise InvalidArgumentError("catalog has duplicate product_id values")
    for column in ("path", "label"):
        if column not in catalog.columns:
            catalog[column] = ""
    embedded = assemble(
        catalog,
        vectors,
        np.ones(len(catalog), dtype=bool),
        [],
        IndexMeta(model=model.strip(), weights=EXTERNAL_WEIGHTS),
    )
    return save_index(embedded, index_dir)


@renamed_keyword("directory", "index_dir")
def load_index(index_dir: str | os.PathLike, *, mmap: bool = False, verify: bool = False) -> EmbeddedCatalog:
    """Open an index folder.

    Opening reads ``meta.json``, the catalog and the stored inverse norms, and checks the
    files' sizes and shapes; its cost grows with the rows, not the bytes. Checksums are
    checked only with ``verify=True`` (or ``simrec verify``).

    Args:
        index_dir: Folder written by :func:`save_index` or ``simrec index``.
        mmap: Memory-map the embeddings instead of reading them (large catalogs).
        verify: Also check every checksum and that every vector is finite.

    Returns:
        The :class:`~simrec.embedded_catalog.EmbeddedCatalog`.

    Raises:
        MissingFileError: The folder does not exist, or holds no ``meta.json``.
        IndexIntegrityError: Missing, damaged or inconsistent files.

    Example:
        >>> embedded = load_index("simrec-demo/index", mmap=True)  # doctest: +SKIP
    """
    index_dir = Path(index_dir)
    for attempt in range(3):
        meta = read_meta(index_dir)
        try:
            return _load_files(index_dir, meta, mmap, verify)
        except FileNotFoundError:
            # A writer may have committed and removed the files this ``meta.json`` named.
            if attempt == 2 or read_meta(index_dir).generation == meta.generation:
                raise IndexIntegrityError(
                    f"{index_dir} is not a complete simrec index: a file named by meta.json is missing"
                ) from None
    raise AssertionError("unreachable")


@renamed_keyword("directory", "index_dir")
def verify_index(index_dir: str | os.PathLike) -> EmbeddedCatalog:
    """Check everything in an index folder: checksums, shapes, finite vectors.

    Raises:
        MissingFileError: The folder does not exist.
        IndexIntegrityError: What is damaged, naming the file.
    """
    return load_index(index_dir, verify=True)


def read_meta(index_dir: str | os.PathLike) -> IndexMeta:
    """The ``meta.json`` of an index folder, read into an :class:`~simrec.core.index_meta.IndexMeta`.

    Raises:
        MissingFileError: No folder, or no ``meta.json`` in it.
        IndexIntegrityError: ``meta.json`` is damaged or of an unknown format.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise MissingFileError(f"index folder not found: {index_dir}")
    path = index_dir / META_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{index_dir} is not a simrec index: it has no {META_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexIntegrityError(f"{path} is damaged: {error}") from None
    meta = IndexMeta.from_dict(meta, str(path))
    if meta.format_version not in READABLE_FORMATS:
        raise IndexIntegrityError(
            f"{index_dir} uses index format {meta.format_version}; this simrec reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))} (upgrade simrec)"
        )
    return meta


def remove_unreferenced(index_dir: str | os.PathLike) -> list[str]:
    """Remove what simrec wrote in ``index_dir`` that ``meta.json`` does not name.

    That is older generations' files and photo folders, and the leftovers of writes that
    were interrupted. Call only with the writer lock held.

    Returns:
        The names removed.

    Raises:
        MissingFileError: The folder does not exist, or holds no ``meta.json``.
        IndexIntegrityError: ``meta.json`` or the catalog it names is damaged.
    """
    index_dir = Path(index_dir)
    meta = read_meta(index_dir)
    keep = {entry["name"] for entry in meta.files.values()} if meta.format_version > 1 else set()
    keep |= set(meta.photo_folders)
    retired = set(meta.retired_photos)
    keep |= {name for name in retired if "/" not in name}  # a photo folder of the layout before the store
    format_1 = set(meta.format_1_files)  # what the index's first format left, recorded at the upgrade
    removed = []
    for entry in sorted(os.listdir(index_dir)):
        ours = _GENERATION_FILE.match(entry) or _GENERATION_FOLDER.match(entry) or _LEFTOVER.match(entry)
        if entry in keep or not (ours or entry in format_1):
            continue
        path = index_dir / entry
        crash_point("cleanup")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        fsync_folder(index_dir)
    if meta.format_version > 1 and "catalog" in meta.files:
        named = _catalog_paths(index_dir / meta.files["catalog"]["name"])
        removed += collect_photos(index_dir, photos_named(named) | retired)
    if removed:
        logger.info("removed %d files and folders from %s, e.g. %s", len(removed), index_dir, removed[0])
    return removed


def _format_1_leftovers(index_dir: Path) -> list[str]:
    """The files of the first index format that the commit about to happen makes obsolete.

    Only files that index wrote: its ``meta.json`` names them (and a photo folder simrec
    extracted). A user's own ``catalog.csv`` beside a format-2 index is never touched.
    """
    try:
        previous = read_meta(index_dir)
    except (MissingFileError, IndexIntegrityError):
        return []
    if previous.format_version == 1:
        names = [name for name in _FORMAT_1_FILES.values() if name in previous.files]
        if (index_dir / "images" / ".simrec-extracted").exists():
            names.append("images")
    else:
        names = previous.format_1_files  # still there after an interrupted clean-up
    return sorted(name for name in names if (index_dir / name).exists())


def _write_data(
    embedded: EmbeddedCatalog,
    embeddings: np.ndarray,
    inverse_norms: np.ndarray,
    index_dir: Path,
    names: dict[str, str],
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Write the data files; return their ``meta.json`` entries, the photo folders the catalog uses and its paths."""
    catalog = embedded.catalog.copy()
    catalog["path"] = _stored_paths(catalog, index_dir)
    writers = {
        "catalog": lambda handle: _write_table(catalog, handle),
        "embeddings": lambda handle: np.save(handle, embeddings),
        "inverse_norms": lambda handle: np.save(handle, inverse_norms),
        "failures": lambda handle: _write_table(embedded.failures, handle),
        "colours": lambda handle: np.save(handle, np.asarray(embedded.colours, dtype=np.float32)),
        "ann": lambda handle: _write_ann(embedded.ann, handle),
        **stored_neighbors.writers(embedded.stored_neighbors),
    }
    files = {}
    for role in names:
        path = index_dir / names[role]
        with NewFile(path) as handle:  # unbuffered: numpy writes its arrays in 16 MB pieces
            writers[role](handle)
            fsync_file(handle)
        crash_point("data-file")
        files[role] = {"name": names[role], **file_fingerprint(path)}
    photo_folders = {Path(p).parts[0] for p in catalog["path"] if p and not os.path.isabs(p) and len(Path(p).parts) > 1}
    return files, sorted(photo_folders), catalog["path"].tolist()


def _stored_paths(catalog: pd.DataFrame, index_dir: Path) -> list[str]:
    """The catalog's paths as the folder records them: relative inside it, its own photos in the photo store."""
    relative = [_relative_to(p, index_dir) for p in catalog["path"]]
    # Only photos simrec extracted (images-GEN/) enter the store; a caller's own files stay where they are.
    extracted = [bool(p) and _GENERATION_FOLDER.match(Path(p).parts[0]) is not None for p in relative]
    if "sha256" in catalog.columns:
        digests = [d if ours else "" for d, ours in zip(catalog["sha256"].astype(str), extracted)]
    else:  # vectors saved by a caller whose catalog names photos simrec extracted
        digests = [file_fingerprint(index_dir / p)["sha256"] if ours else "" for p, ours in zip(relative, extracted)]
    return store_photos(index_dir, relative, digests)


def _retired_photos(index_dir: Path, new_paths: list[str]) -> list[str]:
    """What the generation being replaced names and the new one does not: kept until the commit after next.

    Store objects of changed and removed products, and photo folders of the layout before the store.
    """
    try:
        previous = read_meta(index_dir)
        entry = previous.files.get("catalog") if previous.format_version > 1 else None
        if entry is None:
            return []
        old_paths = _catalog_paths(index_dir / entry["name"])
    except (MissingFileError, IndexIntegrityError, FileNotFoundError, ValueError):
        return []
    retired = photos_named(old_paths) - photos_named(new_paths)
    retired |= {folder for folder in previous.photo_folders if folder != STORE}
    return sorted(name for name in retired if (index_dir / name).exists())


def _write_table(frame: pd.DataFrame, handle) -> None:
    """One table as Parquet: every string, whatever characters it holds, reads back as written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffered = io.BufferedWriter(handle, _BUFFER)  # Parquet writes many small pieces
    pq.write_table(pa.Table.from_pandas(_arrow_ready(frame), preserve_index=False), buffered)
    buffered.flush()
    buffered.detach()


def _arrow_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the text columns Parquet cannot hold as they are made storable.

    Names that are not UTF-8 become their escaped form (:func:`printable_path`), and a
    metadata column mixing text and numbers is stored as text.
    """
    import pyarrow as pa

    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
            continue
        try:
            pa.array(column, from_pandas=True)
        except (pa.ArrowException, UnicodeEncodeError):
            frame[name] = [value if _is_missing(value) else printable_path(str(value)) for value in column]
    return frame


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _read_table(path: Path, **csv_options: Any) -> pd.DataFrame:
    """A catalog or failures table: Parquet (format 3) or CSV (formats 1 and 2)."""
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, **csv_options)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        table.validate(full=True)  # text that is not UTF-8 fails here, not at the first use of a value
        return table.to_pandas()
    except (pa.ArrowException, OSError, ValueError, EOFError) as error:  # ValueError: text that is not UTF-8
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexIntegrityError(f"{path} is damaged or truncated: {_one_line(error)}") from None


def _catalog_paths(path: Path) -> pd.Series:
    """The ``path`` column of a catalog table, Parquet or CSV, as text."""
    if path.suffix == ".csv":
        return _read_table(path, usecols=["path"], dtype=str)["path"]
    return _read_table(path)["path"].astype(str)


def _check_written(index_dir: Path, meta: IndexMeta, embedded: EmbeddedCatalog) -> None:
    """Read the new generation back as a reader will, before anything names it.

    The same checks as opening (sizes, shapes, row counts, columns), and every
    ``product_id``, label and failure reads back exactly as it was meant.

    Raises:
        IndexIntegrityError: The version would not load, or loads differently.
    """
    try:
        written = _load_files(index_dir, meta, mmap=True, verify=False)
    except IndexIntegrityError as error:
        raise IndexIntegrityError(f"{error}; it was not committed, and the previous generation is unchanged") from None
    problems = []
    for column in ("product_id", "label"):
        if _texts(written.catalog[column]) != _texts(embedded.catalog[column]):
            problems.append(f"the catalog's {column} column")
    expected_failures = _arrow_ready(embedded.failures)
    for column in FAILURE_COLUMNS:
        if _texts(written.failures[column]) != _texts(expected_failures[column]):
            problems.append(f"the failures' {column} column")
    if problems:
        raise IndexIntegrityError(
            f"the new generation of {index_dir} does not read back as written ({', '.join(problems)}); it was not "
            "committed, and the previous generation is unchanged"
        )


def _texts(column: pd.Series) -> list[str | None]:
    """A column's values as text to compare, a missing value (None, NaN) as None."""
    return [None if _is_missing(value) else str(value) for value in column]


def _write_ann(ann: Path | np.ndarray, handle) -> None:
    """The ann structure: serialized bytes as they are, or a copy of the loaded index's file."""
    if isinstance(ann, np.ndarray):
        handle.write(np.ascontiguousarray(ann, dtype=np.uint8).tobytes())
        return
    with open(ann, "rb") as source:
        shutil.copyfileobj(source, handle, 16 * 1024**2)


def _write_meta(temporary: Path, meta: IndexMeta) -> None:
    with NewFile(temporary) as handle:
        handle.write((json.dumps(meta.to_dict(), indent=2) + "\n").encode())
        fsync_file(handle)
    crash_point("meta-written")


def _load_files(index_dir: Path, meta: IndexMeta, mmap: bool, verify: bool) -> EmbeddedCatalog:
    if meta.format_version == 1:
        files = {role: {"name": name, **meta.files.get(name, {})} for role, name in _FORMAT_1_FILES.items()}
    else:
        files = meta.files
    missing = [role for role in ("catalog", "embeddings", "failures") if role not in files]
    if missing:
        raise IndexIntegrityError(f"{index_dir / META_FILE} names no {', '.join(missing)} file")
    for entry in files.values():
        path = index_dir / entry["name"]
        size = path.stat().st_size  # FileNotFoundError: see load_index
        if "bytes" in entry and size != entry["bytes"]:
            raise IndexIntegrityError(
                f"{path} has {size} bytes but meta.json says {entry['bytes']} (truncated, modified or only "
                "partly written); embed the index again from its source (rebuild=True)",
                parameters=("rebuild",),
            )
        if verify and entry.get("sha256") != file_fingerprint(path)["sha256"]:
            raise IndexIntegrityError(
                f"{path} does not match its checksum in meta.json (modified or damaged); "
                "embed the index again from its source (rebuild=True)",
                parameters=("rebuild",),
            )
    embeddings = _read_array(index_dir / files["embeddings"]["name"], mmap)
    inverse_norms = colours = None
    if "inverse_norms" in files:
        inverse_norms = _read_array(index_dir / files["inverse_norms"]["name"], mmap)
    if "colours" in files:
        colours = _read_array(index_dir / files["colours"]["name"], mmap)
    catalog = _read_table(index_dir / files["catalog"]["name"], dtype={"product_id": str, "label": str, "path": str})
    failures = _read_table(index_dir / files["failures"]["name"], dtype=str)
    names = {role: entry["name"] for role, entry in files.items()}
    if verify:
        _check_photos(index_dir, catalog)
    _check_consistent(index_dir, names, meta, catalog, embeddings, inverse_norms, failures, verify)
    _check_colours(index_dir, names.get("colours", ""), colours, len(embeddings), verify)
    base = index_dir.absolute()
    catalog["path"] = [p if not p or os.path.isabs(p) else str(base / p) for p in catalog["path"]]
    ann = None
    if "ann" in files:
        ann = index_dir / files["ann"]["name"]
        if not isinstance(meta.ann, dict) or meta.ann.get("count") != meta.count:
            raise IndexIntegrityError(
                f"{index_dir} is inconsistent: its ann structure does not describe the {meta.count} items; "
                "rebuild it with 'simrec ann'"
            )
    stored = stored_neighbors.read_stored(index_dir, meta, files, lambda path: _read_array(path, mmap))
    return EmbeddedCatalog(catalog, embeddings, meta, failures, inverse_norms, colours, ann, stored)


def _read_array(path: Path, mmap: bool) -> np.ndarray:
    """One ``.npy`` file, its header checked against its size before numpy reads it.

    Raises:
        FileNotFoundError: The file is gone (a writer may have committed meanwhile).
        IndexIntegrityError: The header does not parse, or does not match the file's size.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. numpy's "header needed extra parsing": not a header simrec wrote
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0
                if version != (1, 0):
                    read_header = np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(handle)
                expected = handle.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if dtype.hasobject or min(shape, default=0) < 0 or expected != path.stat().st_size:
                raise ValueError(f"its header says {dtype} {shape}, which does not match its size")
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, Warning) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexIntegrityError(f"{path} is damaged or truncated: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    """An error's message on one line (numpy's and pyarrow's run over several)."""
    return " ".join(str(error).split())[:300] or type(error).__name__


def _check_consistent(
    index_dir: Path,
    names: dict[str, str],
    meta: IndexMeta,
    catalog: pd.DataFrame,
    embeddings: np.ndarray,
    inverse_norms: np.ndarray | None,
    failures: pd.DataFrame,
    verify: bool,
) -> None:
    """Shapes, row counts, columns (and with ``verify``, finite vectors) agree; each problem names its file."""
    problems = []
    if embeddings.ndim != 2 or embeddings.dtype != np.float32:
        problems.append(
            f"embeddings are {embeddings.dtype} {embeddings.shape}, expected 2-D float32 ({names['embeddings']})"
        )
    elif embeddings.shape != (meta.count, meta.dim):
        problems.append(
            f"embeddings shape {embeddings.shape} but meta.json says ({meta.count}, {meta.dim}) ({names['embeddings']})"
        )
    if inverse_norms is not None and inverse_norms.shape != (len(embeddings),):
        problems.append(
            f"inverse norms have shape {inverse_norms.shape}, expected ({len(embeddings)},) ({names['inverse_norms']})"
        )
    if len(catalog) != len(embeddings):
        problems.append(
            f"the catalog has {len(catalog)} rows but the embeddings have {len(embeddings)} "
            f"({names['catalog']}, {names['embeddings']})"
        )
    absent = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if absent:
        problems.append(f"the catalog lacks columns {absent} ({names['catalog']})")
    elif catalog["product_id"].duplicated().any():
        problems.append(f"the catalog has duplicate product_id values ({names['catalog']})")
    if [c for c in FAILURE_COLUMNS if c not in failures.columns]:
        problems.append(f"the failures table must have columns {FAILURE_COLUMNS} ({names['failures']})")
    if not problems and (verify or inverse_norms is None):
        computed = compute_inverse_norms(embeddings)
        if not np.isfinite(computed).all():
            problems.append(f"the embeddings contain NaN or infinite values ({names['embeddings']})")
        elif inverse_norms is not None and not np.allclose(computed, inverse_norms, rtol=1e-5, atol=0):
            problems.append(f"the stored inverse norms do not match the embeddings ({names['inverse_norms']})")
    if problems:
        raise IndexIntegrityError(f"{index_dir} is inconsistent: " + "; ".join(problems))


def _check_photos(index_dir: Path, catalog: pd.DataFrame) -> None:
    """Every photo the folder holds for its catalog (the photo store, a folder simrec extracted) is there whole.

    Only the photos inside the folder: a caller's own photo folder is theirs to move. A
    photo is checked by its size, not read: a damaged one is refused when it is decoded.

    Raises:
        IndexIntegrityError: A photo is missing or has another size; the message names the first.
    """
    if "path" not in catalog.columns:
        return
    sizes = catalog["size_bytes"] if "size_bytes" in catalog.columns else pd.Series([None] * len(catalog))
    bad = []
    for product_id, path, size in zip(catalog["product_id"], catalog["path"], sizes):
        if not isinstance(path, str) or not path or os.path.isabs(path):
            continue
        try:
            found = (index_dir / path).stat().st_size
        except OSError:
            bad.append((product_id, path, "is missing"))
            continue
        if not _is_missing(size) and str(size).isdigit() and found != int(size):
            bad.append((product_id, path, f"has {found} bytes, not {size}"))
    if bad:
        product_id, path, what = bad[0]
        raise IndexIntegrityError(
            f"{index_dir / path} {what}: the photo of product {product_id!r} ({len(bad)} of the index's photos are "
            "missing or damaged); 'simrec index' with the same source puts them back"
        )


def _check_colours(index_dir: Path, name: str, colours: np.ndarray | None, count: int, verify: bool) -> None:
    from simrec.core.colour_signature import N_BINS

    if colours is None:
        return
    if colours.dtype != np.float32 or colours.shape != (count, N_BINS):
        raise IndexIntegrityError(
            f"{index_dir} is inconsistent: colour signatures are {colours.dtype} {colours.shape}, "
            f"expected float32 ({count}, {N_BINS}) ({name}); add them again with 'simrec colours {index_dir}'"
        )
    if verify and not np.isfinite(colours).all():
        raise IndexIntegrityError(
            f"{index_dir} is inconsistent: the colour signatures contain NaN or infinite values ({name})"
        )


def _relative_to(path: str, index_dir: Path) -> str:
    if not path:
        return path
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(index_dir.absolute()).as_posix()
    except ValueError:
        return str(absolute)
