"""A catalog with its embeddings, and how it is saved to and loaded from a folder.

An index folder holds four files:

* ``catalog.csv``: one row per embedded photo (``product_id``, ``path``, ``label``,
  ``size_bytes``, ``sha256`` and any metadata columns); paths inside the folder are
  stored relative to it, so the folder can be moved or copied to Google Drive;
* ``embeddings.npy``: ``(n_items, 2048)`` float32, row ``i`` belongs to catalog row ``i``;
* ``failures.csv``: every file given but not embedded, with ``path``, ``reason``, ``stage``;
* ``meta.json``: model, weights, image size, preprocessing, precision, simrec version,
  counts, and the size and SHA-256 of the three other files.

Files are written to a staging folder first and moved into place with ``meta.json``
last, so an interrupted save never leaves a folder that loads; a damaged, truncated or
mismatched folder is refused with a message saying what is wrong.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simrec.catalog import CATALOG_COLUMNS, SKIPPED_COLUMNS
from simrec.errors import IndexIntegrityError
from simrec.index import SimilarityIndex
from simrec.model import UNTRAINED_WARNING, ExtractorInfo, extractor_info

if TYPE_CHECKING:
    import keras

    from simrec.embed import EmbeddingResult

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CATALOG_FILE, EMBEDDINGS_FILE, FAILURES_FILE, META_FILE = (
    "catalog.csv",
    "embeddings.npy",
    "failures.csv",
    "meta.json",
)
_DATA_FILES = (CATALOG_FILE, EMBEDDINGS_FILE, FAILURES_FILE)
_MATCH_KEYS = ("model", "weights", "image_size", "preprocessing")


@dataclass
class CatalogIndex:
    """The embedded catalog: what :func:`save_index` writes and :func:`load_index` reads.

    Attributes:
        catalog: One row per embedded photo: ``product_id``, ``path``, ``label``, ...
        embeddings: ``(n_items, dim)`` float32, aligned with ``catalog`` rows.
        meta: Model, weights, image size, preprocessing, precision, counts, versions.
        failures: Files given but not embedded: ``path``, ``reason``, ``stage``.
    """

    catalog: pd.DataFrame
    embeddings: np.ndarray
    meta: dict[str, Any]
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIPPED_COLUMNS))

    def __post_init__(self) -> None:
        self._index: SimilarityIndex | None = None
        if len(self.catalog) != len(self.embeddings):
            raise ValueError(f"catalog has {len(self.catalog)} rows but embeddings has {len(self.embeddings)}")

    def __len__(self) -> int:
        return len(self.catalog)

    @classmethod
    def from_embeddings(cls, catalog: pd.DataFrame, result: EmbeddingResult, extractor: keras.Model) -> CatalogIndex:
        """Keep the embedded rows of a catalog and account for every file that was not.

        Args:
            catalog: From :func:`simrec.load_catalog`.
            result: :class:`simrec.embed.EmbeddingResult` of ``catalog.path``.
            extractor: The extractor that made the embeddings.

        Returns:
            A :class:`CatalogIndex` whose ``failures`` are the catalog's skipped files
            plus the files that failed to decode.
        """
        if len(result.ok) != len(catalog):
            raise ValueError(f"embeddings are for {len(result.ok)} files but the catalog has {len(catalog)}")
        kept = catalog.loc[result.ok].reset_index(drop=True)
        failures = pd.concat(
            [frame for frame in (catalog.attrs.get("skipped"), result.failures) if frame is not None and len(frame)]
            or [pd.DataFrame(columns=SKIPPED_COLUMNS)],
            ignore_index=True,
        )
        kept.attrs = {}
        meta = make_meta(extractor_info(extractor), len(kept), result.embeddings.shape[1], len(failures))
        meta["root"] = catalog.attrs.get("root", "")
        return cls(kept, np.ascontiguousarray(result.embeddings[result.ok]), meta, failures)

    @property
    def index(self) -> SimilarityIndex:
        """The fitted :class:`SimilarityIndex` over ``embeddings`` (built on first use)."""
        if self._index is None:
            self._index = SimilarityIndex().fit(self.embeddings)
        return self._index

    @property
    def warning(self) -> str | None:
        """A warning to show beside results, or None when the weights are pretrained."""
        return None if self.meta.get("pretrained", True) else UNTRAINED_WARNING

    def save(self, directory: str | os.PathLike) -> Path:
        """Same as :func:`save_index`."""
        return save_index(self, directory)


def make_meta(info: ExtractorInfo, count: int, dim: int, n_failures: int) -> dict[str, Any]:
    """The ``meta.json`` contents for an index built with the given extractor."""
    from simrec import __version__

    meta = info.to_dict()
    meta.update(
        format_version=FORMAT_VERSION,
        simrec_version=__version__,
        count=int(count),
        dim=int(dim),
        failures=int(n_failures),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return meta


def save_index(catalog_index: CatalogIndex, directory: str | os.PathLike) -> Path:
    """Write an index folder atomically (see the module docstring for its files).

    Args:
        catalog_index: What to save.
        directory: The index folder; created if missing. Other files in it (such as
            extracted ``images/``) are left alone.

    Returns:
        The folder path.

    Raises:
        PermissionError: The folder cannot be written.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    except OSError as error:
        raise PermissionError(f"cannot write the index folder {directory}: {error.strerror or error}") from None
    try:
        catalog = catalog_index.catalog.copy()
        catalog["path"] = [_relative_to(p, directory) for p in catalog["path"]]
        catalog.to_csv(staging / CATALOG_FILE, index=False)
        np.save(staging / EMBEDDINGS_FILE, np.asarray(catalog_index.embeddings, dtype=np.float32))
        catalog_index.failures.to_csv(staging / FAILURES_FILE, index=False)
        meta = dict(catalog_index.meta)
        meta.update(
            count=len(catalog), dim=int(catalog_index.embeddings.shape[1]), failures=len(catalog_index.failures)
        )
        meta["files"] = {name: file_fingerprint(staging / name) for name in _DATA_FILES}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        with deferred_interrupt():
            for name in (*_DATA_FILES, META_FILE):
                os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("saved index of %d items to %s", len(catalog_index), directory)
    return directory


def load_index(directory: str | os.PathLike, *, mmap: bool = False) -> CatalogIndex:
    """Read an index folder, checking that its pieces agree.

    Args:
        directory: Folder written by :func:`save_index` or ``simrec index``.
        mmap: Memory-map ``embeddings.npy`` instead of reading it (large catalogs).

    Returns:
        The :class:`CatalogIndex`.

    Raises:
        FileNotFoundError: The folder does not exist.
        IndexIntegrityError: Missing, damaged or inconsistent files.

    Example:
        >>> catalog_index = load_index("simrec-demo/index")  # doctest: +SKIP
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"index folder not found: {directory}")
    missing = [name for name in (META_FILE, *_DATA_FILES) if not (directory / name).is_file()]
    if missing:
        raise IndexIntegrityError(f"{directory} is not a complete simrec index: missing {', '.join(missing)}")
    meta = _read_meta(directory)
    for name in _DATA_FILES:
        expected = meta["files"].get(name)
        if expected != file_fingerprint(directory / name):
            raise IndexIntegrityError(
                f"{directory / name} does not match meta.json (modified, truncated or only partly "
                "written); rebuild the index with 'simrec index ... --rebuild'"
            )
    embeddings = _read_embeddings(directory / EMBEDDINGS_FILE, mmap)
    catalog = pd.read_csv(directory / CATALOG_FILE, dtype={"product_id": str, "label": str}, keep_default_na=False)
    failures = pd.read_csv(directory / FAILURES_FILE, dtype=str, keep_default_na=False)
    _check_consistent(directory, meta, catalog, embeddings, failures)
    base = directory.absolute()
    catalog["path"] = [p if os.path.isabs(p) else str(base / p) for p in catalog["path"]]
    return CatalogIndex(catalog, embeddings, meta, failures)


def check_extractor_matches(meta: dict[str, Any], info: ExtractorInfo) -> None:
    """Refuse to compare a query embedded differently from the catalog.

    Raises:
        IndexIntegrityError: Model, weights, image size or preprocessing differ.
    """
    actual = info.to_dict()
    different = [key for key in _MATCH_KEYS if meta.get(key) != actual[key]]
    if different:
        details = "; ".join(f"{k}: index {meta.get(k)!r}, extractor {actual[k]!r}" for k in different)
        raise IndexIntegrityError(f"the index was built with a different extractor ({details})")


def _relative_to(path: str, directory: Path) -> str:
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(directory.absolute()).as_posix()
    except ValueError:
        return str(absolute)


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file, read in blocks: ``{"bytes": n, "sha256": hex}``."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read_meta(directory: Path) -> dict[str, Any]:
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexIntegrityError(f"{directory / META_FILE} is damaged: {error}") from None
    required = ("format_version", "model", "weights", "image_size", "preprocessing", "count", "dim", "files")
    absent = [key for key in required if key not in meta] if isinstance(meta, dict) else list(required)
    if absent:
        raise IndexIntegrityError(f"{directory / META_FILE} lacks {', '.join(absent)}")
    if meta["format_version"] != FORMAT_VERSION:
        raise IndexIntegrityError(
            f"{directory} uses index format {meta['format_version']}, this simrec reads {FORMAT_VERSION}"
        )
    return meta


def _read_embeddings(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise IndexIntegrityError(f"{path} is damaged or truncated: {error}") from None


def _check_consistent(
    directory: Path, meta: dict, catalog: pd.DataFrame, embeddings: np.ndarray, failures: pd.DataFrame
) -> None:
    problems = []
    if embeddings.ndim != 2 or embeddings.dtype != np.float32:
        problems.append(f"embeddings are {embeddings.dtype} {embeddings.shape}, expected 2-D float32")
    elif embeddings.shape != (meta["count"], meta["dim"]):
        problems.append(f"embeddings shape {embeddings.shape} but meta.json says ({meta['count']}, {meta['dim']})")
    if len(catalog) != len(embeddings):
        problems.append(f"catalog.csv has {len(catalog)} rows but embeddings.npy has {len(embeddings)}")
    absent = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if absent:
        problems.append(f"catalog.csv lacks columns {absent}")
    elif catalog["product_id"].duplicated().any():
        problems.append("catalog.csv has duplicate product_id values")
    if [c for c in SKIPPED_COLUMNS if c not in failures.columns]:
        problems.append(f"failures.csv must have columns {SKIPPED_COLUMNS}")
    if not problems and not np.isfinite(embeddings).all():
        problems.append("embeddings.npy contains NaN or infinite values")
    if problems:
        raise IndexIntegrityError(f"{directory} is inconsistent: " + "; ".join(problems))


@contextlib.contextmanager
def deferred_interrupt():
    """Hold Ctrl-C back for the few renames that swap an index into place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
