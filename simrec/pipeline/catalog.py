"""Turn a zip, a folder or a list of photos into the catalog DataFrame.

The catalog has one row per product photo, sorted by ``product_id``:

* ``product_id``: path relative to the catalog root, without extension, with ``/``
  separators (``red/shirt_1``), so equal file names in different folders never collide;
* ``path``: absolute path of the photo;
* ``label``: first folder under the root (``red``), empty for files in the root;
* ``format``: the format Pillow recognised in the file (its ``image.format``: ``JPEG``,
  ``PNG``, ``MPO``, ``PPM``, ``HEIF``, ...).

A file is a photo when its content is a raster image Pillow reads, whatever its
extension (see :func:`simrec.pipeline.images.identify_format`). Files that are given but cannot
be catalogued (hidden files, ``__MACOSX``, non-images, drawings and documents, links
leaving the catalog, duplicate ids, ...) are never dropped silently: :func:`load_catalog`
returns them beside the catalog, as a DataFrame with ``path``, ``reason`` and ``stage``
columns.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from simrec.core.errors import InvalidArgumentError, MissingFileError
from simrec.core.records import CATALOG_COLUMNS, FAILURE_COLUMNS, Failure, printable_path
from simrec.pipeline.archive import extract_zip
from simrec.pipeline.images import identify_format

logger = logging.getLogger(__name__)

"""Columns every catalog has; ``load_catalog`` adds ``format`` after them."""


def load_catalog(
    source: str | os.PathLike | Iterable[str | os.PathLike],
    extract_to: str | os.PathLike | None = None,
    metadata: str | os.PathLike | pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the catalog DataFrame from a zip, a folder or a list of image paths.

    A file is a photo when Pillow recognises a raster image in its content, whatever its
    extension: ``shirt.jfif``, ``shirt.heic`` (with ``pillow-heif``) and a JPEG without
    extension are photos; a text file named ``.jpg``, an SVG or a PDF are not. Photos
    are checked the same way inside a zip (after safe extraction) and in a list of paths.

    If the tree has a single top-level folder (``Colors_Products/``) and no photos
    beside it, that folder is the catalog root, so labels are the colour folders.

    Args:
        source: A ``.zip`` file, a directory, or a list of image file paths.
        extract_to: Where a zip is extracted. Default: a folder next to the zip
            (``data/Colors_Products.zip`` -> ``data/Colors_Products_extracted/``).
            Only the files recognised as photos are kept there.
        metadata: Optional CSV file or DataFrame with a ``product_id`` column; its
            other columns are joined onto the catalog (left join; clashing names get a
            ``_meta`` suffix).

    Returns:
        ``(catalog, skipped)``: the catalog DataFrame with columns ``product_id``,
        ``path``, ``label``, ``format`` (plus metadata columns), and a DataFrame of the
        files given but not catalogued, with ``path``, ``reason`` and ``stage``. Entries
        of a zip are listed by their name in the zip.

    Raises:
        MissingFileError: ``source`` (or ``metadata``) does not exist.
        InvalidArgumentError: ``source`` is a file other than a zip or holds no usable image, or ``metadata`` has no
            ``product_id`` column or repeats one.
        TypeError: ``source`` is neither a path nor a list of paths.
        UnsafeArchiveError: A zip ``source`` is not a readable zip, or ``extract_to`` holds files simrec did not put
            there.
        DiskFullError: No room left to extract a zip ``source`` (nothing is kept).
        NotWritableError: A zip ``source`` cannot be extracted to ``extract_to``.

    Example:
        >>> catalog, skipped = load_catalog("data/Colors_Products.zip")  # doctest: +SKIP
        >>> catalog.label.value_counts()  # doctest: +SKIP
    """
    skipped: list[Failure] = []
    if isinstance(source, (str, os.PathLike)):
        source_path = Path(source)
        if not source_path.exists():
            raise MissingFileError(f"catalog source not found: {source_path}")
        if source_path.is_file() and source_path.suffix.lower() == ".zip":
            default_target = source_path.with_name(source_path.stem + "_extracted")
            target = Path(extract_to) if extract_to is not None else default_target
            extraction = extract_zip(source_path, target)
            skipped.extend(extraction.skipped)
            files, walk_skipped = _walk(extraction.root)
            skipped.extend(_drop_extracted(walk_skipped, extraction.root))
            root = _catalog_root(extraction.root, files)
        elif source_path.is_dir():
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
        raise InvalidArgumentError(f"no usable images found in {where} ({_skip_summary(skipped)})")
    if metadata is not None:
        catalog = _join_metadata(catalog, metadata)
    logger.info("catalog: %d images, %d files skipped", len(catalog), len(skipped))
    return catalog, skipped_frame(skipped)


def count_formats(catalog: pd.DataFrame) -> str:
    """One line counting the photos of each format, most frequent first: ``jpeg 1,204, png 88``."""
    if "format" not in catalog.columns or catalog.empty:
        return ""
    counts = catalog["format"].fillna("").replace("", "unknown").str.lower().value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count:,}" for name, count in ordered)


def skipped_frame(skipped: Iterable[Failure]) -> pd.DataFrame:
    """The ``path, reason, stage`` DataFrame for a list of skipped files."""
    rows = [(printable_path(s.path), s.reason, s.stage) for s in skipped]
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def _skip_summary(skipped: list[Failure]) -> str:
    """What was looked for, and the commonest reasons files were passed over."""
    looked_for = "looked for any raster image Pillow reads: JPEG, PNG, WebP, AVIF, HEIC, TIFF, ..."
    if not skipped:
        return f"{looked_for}; no files found"
    reasons = pd.Series([s.reason.removeprefix("skipped: ").split(" (")[0] for s in skipped]).value_counts()
    common = ", ".join(f"{count} {reason}" for reason, count in reasons.head(3).items())
    return f"{looked_for}; {len(skipped)} files skipped: {common}"


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk(directory: Path) -> tuple[list[tuple[str, str]], list[Failure]]:
    """Every photo under ``directory`` with its format; everything else with a reason."""
    files: list[tuple[str, str]] = []
    skipped: list[Failure] = []
    real_root = directory.resolve()
    pending = [os.fspath(directory)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            skipped.append(Failure(current, f"skipped: folder cannot be read ({error.strerror or error})"))
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith(".simrec"):
                continue  # simrec's own bookkeeping, not a catalog file
            try:
                is_folder = entry.is_dir()  # follows links, so a link to a folder is caught here
            except OSError as error:  # a link loop (ELOOP), or a folder that can be read but not searched
                skipped.append(Failure(entry.path, _unreadable_entry(entry, error)))
                continue
            if is_folder:
                if _is_hidden(name):
                    skipped.extend(
                        Failure(str(p), "skipped: hidden or __MACOSX metadata file")
                        for p in sorted(Path(entry.path).rglob("*"))
                        if not p.is_dir()
                    )
                elif entry.is_symlink():
                    skipped.append(Failure(entry.path, "skipped: symbolic link to a folder"))
                else:
                    subfolders.append(entry.path)
                continue
            try:
                image_format, reason = _identify_entry(entry, real_root)
            except OSError as error:
                image_format, reason = None, _unreadable_entry(entry, error)
            if reason is None:
                files.append((entry.path, image_format))
            else:
                skipped.append(Failure(entry.path, reason))
        pending.extend(reversed(subfolders))
    return files, skipped


def _identify_entry(entry: os.DirEntry, real_root: Path) -> tuple[str | None, str | None]:
    """``(format, None)`` for a photo in the folder, else ``(None, reason)``; cheap checks first."""
    if _is_hidden(entry.name):
        return None, "skipped: hidden or __MACOSX metadata file"
    if entry.is_symlink():
        try:
            target = Path(entry.path).resolve()
        except RuntimeError:  # Python before 3.13 reports a link loop this way
            return None, "skipped: symbolic link loop (the link leads back to itself)"
        if not target.is_relative_to(real_root):
            return None, f"skipped: symbolic link pointing outside the catalog ({target})"
        if not target.is_file():
            return None, "skipped: broken symbolic link"
    if not entry.is_file():
        return None, "skipped: not a regular file"
    try:
        entry.path.encode("utf-8")
    except UnicodeEncodeError:
        return None, "skipped: file name is not valid UTF-8 (rename the file)"
    return _identify(entry.path)


def _unreadable_entry(entry: os.DirEntry, error: OSError) -> str:
    """Why a folder entry whose type cannot even be looked up is skipped."""
    if error.errno == errno.ELOOP:
        return "skipped: symbolic link loop (the link leads back to itself)"
    kind = "symbolic link" if _is_link(entry) else "entry"
    return f"skipped: {kind} cannot be read ({error.strerror or error})"


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _identify(path: str) -> tuple[str | None, str | None]:
    try:
        return identify_format(path)
    except OSError as error:
        return None, f"skipped: file cannot be read ({error.strerror or error})"


def _drop_extracted(skipped: list[Failure], root: Path) -> list[Failure]:
    """Name files extracted from a zip by their entry, and delete the ones that are not photos."""
    named = []
    for item in skipped:
        path = Path(item.path)
        if path.is_relative_to(root):
            if path.is_file():
                path.unlink()
            item = Failure(path.relative_to(root).as_posix(), item.reason, "zip")
        named.append(item)
    return named


def _catalog_root(directory: Path, files: list[tuple[str, str]]) -> Path:
    """The folder whose subfolders are the labels.

    A single top folder is a wrapper (``Colors_Products/red/...``) and is unwrapped only when
    nothing but it is at the top and it holds folders and no photos of its own; a single
    folder of photos (``shop/red/*.jpg``) is a label, and stays one.
    """

    def visible(folder: Path) -> list[Path]:
        return [e for e in folder.iterdir() if not _is_hidden(e.name) and not e.name.startswith(".simrec")]

    subdirs = [e for e in visible(directory) if e.is_dir() and not e.is_symlink()]
    folders = {os.path.dirname(path) for path, _ in files}
    if len(subdirs) != 1 or os.fspath(directory) in folders:
        return directory
    wrapper = subdirs[0]
    holds_folders = any(e.is_dir() and not e.is_symlink() for e in visible(wrapper))
    if holds_folders and os.fspath(wrapper) not in folders:
        return wrapper
    return directory


def _from_list(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[str, str]], Path, list[Failure]]:
    if isinstance(paths, (bytes, pd.DataFrame)):
        raise TypeError(f"Expected a path or a list of paths, got {type(paths).__name__}")
    files: list[tuple[Path, str]] = []
    skipped: list[Failure] = []
    for item in paths:
        path = Path(item)
        if not path.is_file():
            skipped.append(Failure(str(path), "skipped: file not found"))
            continue
        image_format, reason = _identify(os.fspath(path))
        if reason is None:
            files.append((path, image_format))
        else:
            skipped.append(Failure(str(path), reason))
    if not files:
        return [], Path.cwd(), skipped
    parents = [str(p.resolve().parent) for p, _ in files]
    root = Path(os.path.commonpath(parents))
    return [(str(p.resolve()), image_format) for p, image_format in files], root, skipped


def _rows(files: list[tuple[str, str]], root: Path) -> tuple[pd.DataFrame, list[Failure]]:
    """The catalog rows of ``(path, format)`` pairs. String operations: pathlib's cost per photo adds up."""
    rows: dict[str, tuple[str, str, str, str]] = {}
    skipped: list[Failure] = []
    root_prefix = os.path.join(os.path.abspath(root), "")
    for path, image_format in sorted(files, key=lambda item: item[0].replace(os.sep, "/")):
        path = os.path.abspath(path)
        if not path.startswith(root_prefix):
            skipped.append(Failure(path, "skipped: outside the catalog root folder"))
            continue
        relative = path[len(root_prefix) :].replace(os.sep, "/")
        folder, _, name = relative.rpartition("/")
        dot = name.rfind(".")
        stem = name[:dot] if 0 < dot < len(name) - 1 else name  # what Path.with_suffix("") keeps
        product_id = f"{folder}/{stem}" if folder else stem
        label = relative.split("/", 1)[0] if folder else ""
        if product_id in rows:
            first = rows[product_id][1]
            skipped.append(
                Failure(
                    path,
                    f"skipped: duplicate product_id {product_id!r} (already used by {os.path.basename(first)})",
                )
            )
            continue
        rows[product_id] = (product_id, path, label, image_format)
    frame = pd.DataFrame(sorted(rows.values()), columns=[*CATALOG_COLUMNS, "format"])
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
