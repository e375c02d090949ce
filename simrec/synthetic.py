"""A small synthetic product catalog, drawn on the fly, for the demo and the tests.

Product silhouettes (shirt, trousers, dress, shoe, bag, cap, mug) in named colours, each
in a few jittered variants (position, size, rotation, shade, background, texture),
saved as JPEG photos in colour folders inside a zip, the same layout as a user's
``Colors_Products.zip``: ``Colors_Products/red/shirt_1.jpg``.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from simrec.errors import InvalidArgumentError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 35),
    "blue": (30, 70, 190),
    "green": (40, 150, 60),
    "yellow": (235, 200, 40),
    "black": (30, 30, 30),
    "purple": (120, 50, 160),
}

# Outlines on a 100 x 100 grid, centred near (50, 50).
SHAPES: dict[str, list[tuple[float, float]]] = {
    "shirt": [
        (30, 15),
        (42, 12),
        (50, 18),
        (58, 12),
        (70, 15),
        (90, 35),
        (78, 45),
        (72, 38),
        (72, 88),
        (28, 88),
        (28, 38),
        (22, 45),
        (10, 35),
    ],
    "trousers": [(30, 10), (70, 10), (74, 90), (56, 90), (50, 40), (44, 90), (26, 90)],
    "dress": [(40, 10), (60, 10), (58, 35), (80, 90), (20, 90), (42, 35)],
    "shoe": [(12, 50), (40, 50), (48, 60), (70, 62), (88, 70), (90, 80), (12, 80)],
    "bag": [(20, 40), (35, 40), (35, 25), (65, 25), (65, 40), (80, 40), (85, 85), (15, 85)],
    "cap": [(20, 60), (25, 35), (40, 25), (60, 25), (75, 35), (80, 55), (95, 62), (95, 68), (20, 68)],
    "mug": [(25, 25), (70, 25), (70, 38), (84, 40), (86, 62), (70, 66), (70, 82), (25, 82)],
}

ROOT_FOLDER = "Colors_Products"


def make_synthetic_catalog(
    zip_path: str | os.PathLike,
    *,
    colours: list[str] | None = None,
    shapes: list[str] | None = None,
    n_variants: int = 4,
    image_size: int = 256,
    seed: int = 0,
) -> Path:
    """Write a zip of synthetic product photos in colour folders.

    The default is 6 colours x 6 shapes x 4 variants = 144 photos of 256 x 256 px.

    Args:
        zip_path: Where to write the ``.zip``.
        colours: Names from :data:`COLOURS` (default: all of them).
        shapes: Names from :data:`SHAPES` (default: all but ``mug``).
        n_variants: Photos per colour and shape.
        image_size: Side of each photo, in pixels.
        seed: Seed for the jitter; the same seed gives the same zip.

    Returns:
        The zip path.

    Example:
        >>> make_synthetic_catalog("data/demo.zip")  # doctest: +SKIP
        PosixPath('data/demo.zip')
    """
    colours = list(COLOURS) if colours is None else colours
    shapes = [s for s in SHAPES if s != "mug"] if shapes is None else shapes
    unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if unknown:
        raise InvalidArgumentError(f"Unknown colours/shapes {unknown}; choose from {list(COLOURS)} and {list(SHAPES)}")
    if n_variants < 1:
        raise InvalidArgumentError(f"Expected n_variants >= 1, got {n_variants}")
    rng = np.random.default_rng(seed)
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for colour in colours:
            for shape in shapes:
                for variant in range(1, n_variants + 1):
                    picture = draw_product(shape, COLOURS[colour], rng, image_size)
                    buffer = io.BytesIO()
                    picture.save(buffer, format="JPEG", quality=90)
                    archive.writestr(f"{ROOT_FOLDER}/{colour}/{shape}_{variant}.jpg", buffer.getvalue())
    return zip_path


def draw_product(
    shape: str, colour: tuple[int, int, int], rng: np.random.Generator, image_size: int = 256
) -> Image.Image:
    """Draw one jittered product photo: a shaded silhouette on a light background."""
    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    picture = Image.new("RGB", (image_size, image_size), background)
    scale = image_size / 100 * rng.uniform(0.75, 1.0)
    angle = math.radians(rng.uniform(-12, 12))
    centre = image_size / 2 + rng.uniform(-0.08, 0.08, size=2) * image_size
    cos, sin = math.cos(angle), math.sin(angle)
    outline = [
        (centre[0] + scale * ((x - 50) * cos - (y - 50) * sin), centre[1] + scale * ((x - 50) * sin + (y - 50) * cos))
        for x, y in SHAPES[shape]
    ]
    fill = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    draw = ImageDraw.Draw(picture)
    draw.polygon(outline, fill=fill, outline=tuple(max(0, c - 40) for c in fill))
    pixels = np.asarray(picture, dtype=np.float32)
    pixels += rng.normal(0, 4, size=pixels.shape)  # fabric-like texture and sensor noise
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return picture.filter(ImageFilter.GaussianBlur(radius=0.6))
