"""The photos an index folder holds, stored once by their content, as git stores objects.

A zip's photos are extracted into a fresh ``images-GEN/`` folder; at the save, each photo
the catalog names is linked (or, where the filesystem has no hard links, copied) into
``photos/ab/<sha256><suffix>``, named by its SHA-256, and the catalog names that object.
A photo that did not change between two versions is the same object in both: it never
moves, so a reader still serving the previous generation keeps reaching it after the commit.

What the store keeps, decided after each commit (the writer lock held):

* every object the committed catalog names;
* every photo the previous generation named and this one does not (``retired_photos`` in
  ``meta.json``: changed and removed products' photos, and the photo folder of an index
  written before the store), so a reader of the previous generation still has all its photos
  until the commit after next;
* nothing else: objects of interrupted writes and of older versions are removed.

An object is written under a temporary name, fsynced, then renamed to its content name,
so an object under its final name is always whole.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from simrec.core.crashpoints import crash_point
from simrec.core.durability import NewFile, fsync_file, fsync_folder, is_no_room

STORE = "photos"
"""The store's folder inside the index folder."""
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def object_name(sha256: str, suffix: str) -> str:
    """The store path of a photo, relative to the index folder: ``photos/ab/abcd...ef.jpg``.

    The suffix is kept (lower case) so the photo is served with its content type; one that
    is not a plain extension is dropped.

    Raises:
        ValueError: ``sha256`` is not 64 lower-case hex digits.
    """
    if not _DIGEST.match(sha256):
        raise ValueError(f"Expected a SHA-256 as 64 lower-case hex digits, got {sha256!r}")
    suffix = suffix.lower() if _SUFFIX.match(suffix) else ""
    return f"{STORE}/{sha256[:2]}/{sha256}{suffix}"


def in_store(relative: str) -> bool:
    """Whether a catalog path (relative to the index folder) names an object of the store."""
    return relative.startswith(STORE + "/")


def store_photos(index_dir: Path, relative_paths: list[str], digests: list[str]) -> list[str]:
    """Put the photos inside ``index_dir`` into its store; return the catalog paths to record.

    Paths outside the folder (a folder source's own photos), empty ones, those already in
    the store and those given no digest are returned as they are.

    Args:
        index_dir: The index folder.
        relative_paths: One path per catalog row, relative to ``index_dir`` when inside it.
        digests: The photos' SHA-256 (the catalog's ``sha256`` column), same order.

    Returns:
        The paths, with each photo inside the folder replaced by its object's name.
    """
    stored, touched = [], set()
    for relative, digest in zip(relative_paths, digests):
        if not relative or os.path.isabs(relative) or in_store(relative) or not _DIGEST.match(str(digest)):
            stored.append(relative)
            continue
        name = object_name(str(digest), Path(relative).suffix)
        target = index_dir / name
        if not target.exists():
            _put(index_dir / relative, target)
            touched.add(target.parent)
            crash_point("photo-stored")
        stored.append(name)
    for folder in sorted(touched):
        fsync_folder(folder)
    if touched:  # the objects' names are durable before ``meta.json`` names them
        fsync_folder(index_dir / STORE)
        fsync_folder(index_dir)
    return stored


def photos_named(relative_paths: Iterable[str]) -> set[str]:
    """The store objects among catalog paths."""
    return {path for path in relative_paths if path and in_store(path)}


def collect_photos(index_dir: Path, keep: set[str]) -> list[str]:
    """Remove every file of the store that ``keep`` does not name; return the names removed.

    Call only with the writer lock held, after a commit.
    """
    store = index_dir / STORE
    removed: list[str] = []
    if not store.is_dir():
        return removed
    for folder in sorted(store.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in sorted(os.listdir(folder)):
            name = f"{STORE}/{folder.name}/{entry}"
            if name in keep:
                continue
            crash_point("cleanup")
            (folder / entry).unlink(missing_ok=True)
            removed.append(name)
        if removed:
            fsync_folder(folder)
    return removed


def _put(source: Path, target: Path) -> None:
    """Link or copy ``source`` to ``target`` through a temporary name; the result is durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, temporary)  # the extracted file is already fsynced: a link shares its data
    except OSError as error:  # no hard links here (some network and FUSE mounts): copy
        if is_no_room(error):
            raise
        try:
            with open(source, "rb") as reader, NewFile(temporary) as writer:
                shutil.copyfileobj(reader, writer, 1024**2)
                fsync_file(writer)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    os.replace(temporary, target)
