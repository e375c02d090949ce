"""Extract a catalog zip safely: nothing escapes the target folder, nothing explodes.

Entries are streamed to disk one at a time (never read whole into memory). An entry is
refused, and reported with the reason, when its name is absolute or climbs out with
``..``, when it is a symbolic link, when it is encrypted or corrupt, or when its
declared uncompressed size passes the limits (zip bombs). ``zipfile`` never reads more
than the declared size: an entry whose data is longer than its header says fails its
CRC check and is reported as corrupt. ``__MACOSX/`` and hidden files are skipped and
reported, not written. Every other entry is written whatever its name: which ones are
photos is decided by their content when the catalog is scanned (:func:`simrec.load_catalog`),
which lists and deletes the rest. An entry whose name this filesystem cannot hold (too
long, or the same file as an earlier entry's) is listed with that reason.

Only an entry's own data can make it "corrupt": a disk with no room left stops the
extraction with :class:`~simrec.core.errors.DiskFullError`, and nothing is kept.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from simrec.core.crashpoints import crash_point
from simrec.core.defaults import MAX_ZIP_ENTRY_BYTES, MAX_ZIP_TOTAL_BYTES
from simrec.core.durability import NewFile, fsync_file, fsync_folder, is_no_room, no_room_error
from simrec.core.errors import MissingFileError, NotWritableError, UnsafeArchiveError
from simrec.core.records import Failure

logger = logging.getLogger(__name__)

_MARKER = ".simrec-extracted"
_CHUNK = 1024 * 1024
_READABLE_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


@dataclass
class Extraction:
    """Result of :func:`extract_zip`."""

    root: Path
    extracted: list[Path] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)


def extract_zip(
    zip_path: str | os.PathLike,
    target: str | os.PathLike,
    *,
    max_entry_bytes: int = MAX_ZIP_ENTRY_BYTES,
    max_total_bytes: int = MAX_ZIP_TOTAL_BYTES,
) -> Extraction:
    """Extract the safe, non-hidden entries of a zip into ``target``.

    ``target`` is replaced as a whole, so files removed from the zip do not linger from
    an earlier extraction. To protect user data, an existing non-empty ``target`` is
    only replaced when simrec created it.

    Args:
        zip_path: The ``.zip`` file.
        target: Folder to extract into; created if missing.
        max_entry_bytes: Largest uncompressed size accepted for one entry.
        max_total_bytes: Largest uncompressed size accepted for the whole archive.

    Returns:
        An :class:`Extraction` with the files written and the entries skipped.

    Raises:
        MissingFileError: ``zip_path`` does not exist.
        UnsafeArchiveError: The file is not a readable zip, or ``target`` holds files simrec did not put there.
        DiskFullError: No room left next to ``target`` (nothing is kept).
        NotWritableError: Another error writing there (nothing is kept).
    """
    zip_path = Path(zip_path)
    target = Path(target)
    if not zip_path.is_file():
        raise MissingFileError(f"zip file not found: {zip_path}")
    if target.exists() and any(target.iterdir()) and not (target / _MARKER).exists():
        raise UnsafeArchiveError(
            f"refusing to extract into {target}: the folder is not empty and was not "
            "created by simrec (choose an empty folder)"
        )
    staging = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        result = _extract_into(zip_path, staging, max_entry_bytes, max_total_bytes)
        with NewFile(staging / _MARKER) as marker:
            marker.write(f"extracted from {zip_path.name}\n".encode())
            fsync_file(marker)
        for folder, _, _ in os.walk(staging):
            fsync_folder(folder)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if is_no_room(error) and not isinstance(error, NotWritableError):
            raise no_room_error(target.parent, error, f"nothing was extracted from {zip_path.name}") from error
        if isinstance(error, OSError) and not isinstance(error, (NotWritableError, MissingFileError)):
            raise NotWritableError(f"cannot extract {zip_path} into {target}: {error.strerror or error}") from error
        raise
    result.root = target
    result.extracted = [target / p.relative_to(staging) for p in result.extracted]
    return result


def _extract_into(zip_path: Path, staging: Path, max_entry_bytes: int, max_total_bytes: int) -> Extraction:
    result = Extraction(root=staging)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UnsafeArchiveError(f"{zip_path} is not a readable zip file ({error})") from None
    except UnicodeDecodeError as error:  # zipfile decodes names flagged UTF-8 strictly
        raise UnsafeArchiveError(
            f"{zip_path} cannot be read: an entry's name is marked as UTF-8 but is not ({error}); "
            "zip it again with another tool"
        ) from None
    written_total = 0
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            reason = _refusal(info, max_entry_bytes)
            if reason is None and written_total + info.file_size > max_total_bytes:
                reason = f"refused: the archive's total size passes the limit of {max_total_bytes} bytes"
            if reason is not None:
                result.skipped.append(Failure(name, reason, "zip"))
                continue
            destination = staging.joinpath(*entry_parts(name))
            try:
                size = _stream_entry(archive, info, destination)
            except _Unusable as problem:
                result.skipped.append(Failure(name, problem.reason, "zip"))
                continue
            written_total += size
            result.extracted.append(destination)
            crash_point("zip-entry")
    logger.info("extracted %d files from %s", len(result.extracted), zip_path)
    return result


def entry_parts(name: str) -> tuple[str, ...]:
    """The folder and file names of a zip entry; ``\\`` separates folders too.

    Some Windows tools write ``Colors_Products\\red\\item.jpg``; a backslash is not
    allowed in a Windows file name, so it can only be a separator.
    """
    return PurePosixPath(name.replace("\\", "/")).parts


def _refusal(info: zipfile.ZipInfo, max_entry_bytes: int) -> str | None:
    """Why an entry must not be written, or None if it is safe (its content is judged later)."""
    name = info.filename
    path = PurePosixPath(*entry_parts(name)) if entry_parts(name) else PurePosixPath(name)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "refused: absolute path in the archive"
    if ".." in path.parts:
        return "refused: path climbs out of the archive with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: symbolic link entry"
    if any(part == "__MACOSX" or part.startswith(".") for part in path.parts):
        return "skipped: hidden or __MACOSX metadata file"
    if info.flag_bits & 0x1:
        return "refused: encrypted entry"
    if info.compress_type not in _READABLE_COMPRESSION:
        return f"refused: unsupported compression method {info.compress_type}"
    if info.file_size > max_entry_bytes:
        return f"refused: declared size {info.file_size} bytes passes the limit of {max_entry_bytes} bytes"
    return None


class _Unusable(Exception):
    """An entry that cannot be extracted for a reason of its own (its data or its name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_ENTRY_DATA_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, OSError)


def _stream_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path) -> int:
    """Write one entry to ``destination``; its size.

    Raises:
        _Unusable: The entry's data is corrupt, or its name cannot be a file here.
        OSError: Writing failed for a reason of the disk's (no room, I/O error).
    """
    sink = _create(destination)
    try:
        with sink, archive.open(info) as source:
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except _ENTRY_DATA_ERRORS as error:
                    raise _Unusable(f"corrupt zip entry ({error})") from None
                if not chunk:
                    break
                sink.write(chunk)
            fsync_file(sink)  # an index committed later may name this photo: it must survive a power cut
            return sink.tell()
    except BaseException as error:
        destination.unlink(missing_ok=True)
        if isinstance(error, (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError)):  # from archive.open
            raise _Unusable(f"corrupt zip entry ({error})") from None
        raise


def _create(destination: Path) -> NewFile:
    """The new file for an entry, or :class:`_Unusable` when its name cannot be one here."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        return NewFile(destination)
    except OSError as error:
        if is_no_room(error):
            raise
        if os.path.lexists(destination) and not destination.is_dir():
            raise _Unusable("skipped: another entry of the archive has the same name") from None
        if isinstance(error, (FileExistsError, NotADirectoryError, IsADirectoryError)):
            raise _Unusable("skipped: a file and a folder of the archive have the same name") from None
        if error.errno == errno.ENAMETOOLONG:
            raise _Unusable("skipped: the name is too long for this filesystem") from None
        if error.errno in (errno.EINVAL, errno.EILSEQ):
            raise _Unusable(f"skipped: the name is not allowed on this filesystem ({error.strerror})") from None
        raise
