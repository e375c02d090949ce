"""Turn a zip, a folder or a list of photos into the catalog DataFrame.

The catalog has one row per product photo, sorted by ``product_id``:

* ``product_id``: path relative to the catalog root, without extension, with ``/``
  separators (``red/shirt_1``), so equal file names in different folders never collide;
* ``path``: absolute path of the photo;
* ``label``: first folder under the root (``red``), empty for files in the root.

Files that are given but cannot be catalogued (hidden files, ``__MACOSX``, other
extensions, links leaving the catalog, duplicate ids, ...) are never dropped silently:
:func:`load_catalog` returns them beside the catalog, as a DataFrame with ``path``,
``reason`` and ``stage`` columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from simrec.archive import Skipped, extract_zip
from simrec.defaults import IMAGE_EXTENSIONS
from simrec.errors import InvalidArgumentError, MissingFileError

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = ["product_id", "path", "label"]
SKIPPED_COLUMNS = ["path", "reason", "stage"]


def load_catalog(
    source: str | os.PathLike | Iterable[str | os.PathLike],
    extract_to: str | os.PathLike | None = None,
    metadata: str | os.PathLike | pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the catalog DataFrame from a zip, a folder or a list of image paths.

    If the tree has a single top-level folder (``Colors_Products/``) and no photos
    beside it, that folder is the catalog root, so labels are the colour folders.

    Args:
        source: A ``.zip`` file, a directory, or a list of image file paths.
        extract_to: Where a zip is extracted. Default: a folder next to the zip
            (``data/Colors_Products.zip`` -> ``data/Colors_Products_extracted/``).
        metadata: Optional CSV file or DataFrame with a ``product_id`` column; its
            other columns are joined onto the catalog (left join; clashing names get a
            ``_meta`` suffix).

    Returns:
        ``(catalog, skipped)``: the catalog DataFrame with columns ``product_id``,
        ``path``, ``label`` (plus metadata columns), and a DataFrame of the files given
        but not catalogued, with ``path``, ``reason`` and ``stage``.

    Raises:
        FileNotFoundError: ``source`` (or ``metadata``) does not exist.
        ValueError: ``source`` holds no usable image, or ``metadata`` is malformed.

    Example:
        >>> catalog, skipped = load_catalog("data/Colors_Products.zip")  # doctest: +SKIP
        >>> catalog.label.value_counts()  # doctest: +SKIP
    """
    skipped: list[Skipped] = []
    if isinstance(source, (str, os.PathLike)):
        source_path = Path(source)
        if not source_path.exists():
            raise MissingFileError(f"catalog source not found: {source_path}")
        if source_path.is_file() and source_path.suffix.lower() == ".zip":
            default_target = source_path.with_name(source_path.stem + "_extracted")
            target = Path(extract_to) if extract_to is not None else default_target
            extraction = extract_zip(source_path, target)
            skipped.extend(extraction.skipped)
            source_path = extraction.root
        if source_path.is_dir():
            files, walk_skipped = _walk(source_path)
            skipped.extend(walk_skipped)
            root = _catalog_root(source_path, files)
        else:
            raise InvalidArgumentError(
                f"catalog source must be a .zip file, a directory or a list of image paths, got the file {source_path}"
            )
    else:
        files, root, list_skipped = _from_list(source)
        skipped.extend(list_skipped)

    catalog, catalog_skipped = _rows(files, root)
    skipped.extend(catalog_skipped)
    if catalog.empty:
        where = source if isinstance(source, (str, os.PathLike)) else "the list of paths"
        raise InvalidArgumentError(
            f"no usable images found in {where} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
            f"{len(skipped)} files skipped)"
        )
    if metadata is not None:
        catalog = _join_metadata(catalog, metadata)
    logger.info("catalog: %d images, %d files skipped", len(catalog), len(skipped))
    return catalog, skipped_frame(skipped)


def skipped_frame(skipped: Iterable[Skipped]) -> pd.DataFrame:
    """The ``path, reason, stage`` DataFrame for a list of skipped files."""
    rows = [(printable_path(s.path), s.reason, s.stage) for s in skipped]
    return pd.DataFrame(rows, columns=SKIPPED_COLUMNS)


def printable_path(path: str | os.PathLike) -> str:
    """A file name safe to write to CSV/JSON, even if it is not valid UTF-8."""
    raw = os.fsencode(path)  # the bytes on disk, even for names that are not UTF-8
    return raw.decode("utf-8", "backslashreplace")


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk(directory: Path) -> tuple[list[Path], list[Skipped]]:
    """Every candidate image under ``directory``; everything else with a reason."""
    files: list[Path] = []
    skipped: list[Skipped] = []
    real_root = directory.resolve()
    for current, dirnames, filenames in os.walk(directory, followlinks=False):
        current_path = Path(current)
        for name in sorted(dirnames):
            sub = current_path / name
            if _is_hidden(name):
                dirnames.remove(name)
                skipped.extend(
                    Skipped(str(p), "skipped: hidden or __MACOSX metadata file")
                    for p in sorted(sub.rglob("*"))
                    if not p.is_dir()
                )
            elif sub.is_symlink():
                dirnames.remove(name)
                skipped.append(Skipped(str(sub), "skipped: symbolic link to a folder"))
        for name in sorted(filenames):
            if name.startswith(".simrec"):
                continue  # simrec's own bookkeeping, not a catalog file
            path = current_path / name
            reason = _file_refusal(path, name, real_root)
            if reason is None:
                files.append(path)
            else:
                skipped.append(Skipped(str(path), reason))
    return files, skipped


def _file_refusal(path: Path, name: str, real_root: Path) -> str | None:
    if _is_hidden(name):
        return "skipped: hidden or __MACOSX metadata file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"skipped: not an image file (extension {path.suffix or 'none'!r})"
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(real_root):
            return f"skipped: symbolic link pointing outside the catalog ({target})"
        if not target.is_file():
            return "skipped: broken symbolic link"
    if not path.is_file():
        return "skipped: not a regular file"
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "skipped: file name is not valid UTF-8 (rename the file)"
    return None


def _catalog_root(directory: Path, files: list[Path]) -> Path:
    """The folder whose subfolders are the labels."""
    entries = [
        entry for entry in directory.iterdir() if not _is_hidden(entry.name) and not entry.name.startswith(".simrec")
    ]
    subdirs = [e for e in entries if e.is_dir() and not e.is_symlink()]
    top_images = [f for f in files if f.parent == directory]
    if len(subdirs) == 1 and not top_images:
        return subdirs[0]
    return directory


def _from_list(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], Path, list[Skipped]]:
    if isinstance(paths, (bytes, pd.DataFrame)):
        raise TypeError(f"Expected a path or a list of paths, got {type(paths).__name__}")
    files: list[Path] = []
    skipped: list[Skipped] = []
    for item in paths:
        path = Path(item)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(Skipped(str(path), f"skipped: not an image file (extension {path.suffix or 'none'!r})"))
        elif not path.is_file():
            skipped.append(Skipped(str(path), "skipped: file not found"))
        else:
            files.append(path)
    if not files:
        return [], Path.cwd(), skipped
    parents = [str(p.resolve().parent) for p in files]
    root = Path(os.path.commonpath(parents))
    return [p.resolve() for p in files], root, skipped


def _rows(files: list[Path], root: Path) -> tuple[pd.DataFrame, list[Skipped]]:
    rows: dict[str, tuple[str, str, str]] = {}
    skipped: list[Skipped] = []
    root = root.absolute()
    for path in sorted(files, key=lambda p: p.as_posix()):
        path = path.absolute()
        if not path.is_relative_to(root):
            skipped.append(Skipped(str(path), "skipped: outside the catalog root folder"))
            continue
        relative = path.relative_to(root)
        product_id = relative.with_suffix("").as_posix()
        label = relative.parts[0] if len(relative.parts) > 1 else ""
        if product_id in rows:
            first = rows[product_id][1]
            skipped.append(
                Skipped(str(path), f"skipped: duplicate product_id {product_id!r} (already used by {Path(first).name})")
            )
            continue
        rows[product_id] = (product_id, str(path), label)
    frame = pd.DataFrame(sorted(rows.values()), columns=CATALOG_COLUMNS)
    return frame, skipped


def _join_metadata(catalog: pd.DataFrame, metadata: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(metadata, pd.DataFrame):
        table, name = metadata.copy(), "metadata"
    else:
        meta_path = Path(metadata)
        if not meta_path.is_file():
            raise MissingFileError(f"metadata file not found: {meta_path}")
        table, name = pd.read_csv(meta_path, dtype={"product_id": str}), str(meta_path)
    if "product_id" not in table.columns:
        raise InvalidArgumentError(f"{name} must have a 'product_id' column, got columns {list(table.columns)}")
    table["product_id"] = table["product_id"].astype(str)
    duplicated = table["product_id"][table["product_id"].duplicated()].unique()
    if len(duplicated):
        raise InvalidArgumentError(f"{name} has duplicate product_id values, e.g. {list(duplicated[:3])}")
    joined = catalog.merge(table, on="product_id", how="left", suffixes=("", "_meta"), validate="one_to_one")
    unmatched = len(set(table["product_id"]) - set(catalog["product_id"]))
    if unmatched:
        logger.warning("%d metadata rows match no catalog product_id", unmatched)
    return joined
