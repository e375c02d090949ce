"""File fingerprints (size and SHA-256), for index checksums and incremental re-indexing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

_BLOCK = 4 * 1024 * 1024


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file, read in blocks: ``{"bytes": n, "sha256": hex}``."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
