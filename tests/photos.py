"""Helpers the tests share: tiny photos written where a test asks, and the sizes they use."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

SMALL = 64  # model input side for fast tests; ResNet50 accepts >= 32

COLOURS = {"red": (210, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 200)}


def write_image(path: Path, colour=(200, 30, 30), size=(40, 30), fmt=None, mode="RGB", **save) -> Path:
    """A small flat-colour photo with a darker square, saved in the format of its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    w, h = size
    image.paste(tuple(c // 2 for c in colour), (w // 4, h // 4, max(w // 4 + 1, w // 2), max(h // 4 + 1, h // 2)))
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt, **save)
    return path


def jpeg_bytes(colour=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()
