"""Check the files a notebook parameter names, and say what is wrong on Colab.

A wrong path must stop the notebook where it is set, never be swapped for demo data:
the message names the path and, on Google Colab, says whether Google Drive is mounted
and what the folder it names (or its nearest existing parent) holds, which is where a
typo in a Drive path shows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from simrec.core.errors import MissingFileError

DRIVE_ROOT = Path("/content/drive")  # where the notebook mounts Google Drive on Colab
_LISTED = 20  # names shown from the folder, so a huge folder stays one readable message


def named_file(path: str | os.PathLike | None, *, name: str = "path", on_colab: bool | None = None) -> Path | None:
    """The file a parameter names, or None when it names none.

    Args:
        path: The parameter's value; ``""`` or ``None`` means "not given".
        name: The parameter's name, for the message (``"ZIP_PATH"``).
        on_colab: Whether to add what Colab users need (Drive mounted or not); by default,
            whether ``google.colab`` is imported.

    Returns:
        The path, when it is an existing file; None when ``path`` is empty.

    Raises:
        MissingFileError: ``path`` is given but is not a file. The message names it, lists the folder it names or its
            nearest existing parent, and on Colab says whether Drive is mounted.

    Example:
        >>> zip_path = named_file(ZIP_PATH, name="ZIP_PATH")  # doctest: +SKIP
    """
    if path is None or str(path) == "":
        return None
    path = Path(path)
    if path.is_file():
        return path
    problem = "is a folder, not a file" if path.is_dir() else "does not exist"
    lines = [f"{name} = {str(path)!r} {problem}."]
    if on_colab if on_colab is not None else "google.colab" in sys.modules:
        lines.append(_drive_status(path))
    lines.append(_listing(path))
    raise MissingFileError(" ".join(line for line in lines if line))


def _drive_status(path: Path) -> str:
    mounted = (DRIVE_ROOT / "MyDrive").is_dir()
    if mounted:
        return f"Google Drive is mounted at {DRIVE_ROOT} (your files are under {DRIVE_ROOT / 'MyDrive'})."
    hint = " Run the cell that mounts it (MOUNT_DRIVE = True) first." if _is_under(path, DRIVE_ROOT) else ""
    return f"Google Drive is not mounted at {DRIVE_ROOT}.{hint}"


def _listing(path: Path) -> str:
    folder = path if path.is_dir() else path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir())
    except OSError as error:
        return f"{folder} cannot be listed ({error.strerror or error})."
    if not names:
        return f"{folder} is empty."
    more = f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return f"{folder} holds: {', '.join(names[:_LISTED])}{more}."


def _is_under(path: Path, folder: Path) -> bool:
    return path.is_absolute() and path.parts[: len(folder.parts)] == folder.parts
