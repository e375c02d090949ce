"""A small synthetic product catalog, drawn on the fly, for the demo and the tests.

Product silhouettes (shirt, trousers, dress, shoe, bag, cap, mug) in named colours, each
in a few jittered variants (position, size, rotation, shade, background, texture),
saved as JPEG photos in colour folders inside a zip, the same layout as a user's
``Colors_Products.zip``: ``Colors_Products/red/shirt_1.jpg``.

``realistic=True`` makes a harder catalog for measuring colour-aware ranking: every shape
in every colour, photographed on textured and non-white backgrounds (wood, fabric,
gradients, dark studio backdrops), with shading across the product, a drop shadow,
lighting shifts in brightness and colour temperature, and non-square photos.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from simrec.core.errors import InvalidArgumentError
from simrec.core.validation import check_int

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
    realistic: bool = False,
) -> Path:
    """Write a zip of synthetic product photos in colour folders.

    The default is 6 colours x 6 shapes x 4 variants = 144 photos of 256 x 256 px.

    Args:
        zip_path: Where to write the ``.zip``.
        colours: Names from :data:`COLOURS` (default: all of them).
        shapes: Names from :data:`SHAPES` (default: all but ``mug``; all of them when
            ``realistic``).
        n_variants: Photos per colour and shape.
        image_size: Side of each photo, in pixels.
        seed: Seed for the jitter; the same seed gives the same zip.
        realistic: Draw the harder photos of :func:`draw_realistic_product` (the
            default catalog is unchanged).

    Returns:
        The zip path.

    Raises:
        InvalidArgumentError: An unknown colour or shape, or ``n_variants`` below 1.

    Example:
        >>> make_synthetic_catalog("data/demo.zip")  # doctest: +SKIP
        PosixPath('data/demo.zip')
    """
    colours = list(COLOURS) if colours is None else colours
    if shapes is None:
        shapes = list(SHAPES) if realistic else [s for s in SHAPES if s != "mug"]
    unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
    if unknown:
        raise InvalidArgumentError(f"Unknown colours/shapes {unknown}; choose from {list(COLOURS)} and {list(SHAPES)}")
    check_int(n_variants, "n_variants", 1)
    rng = np.random.default_rng(seed)
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for colour in colours:
            for shape in shapes:
                for variant in range(1, n_variants + 1):
                    draw = draw_realistic_product if realistic else draw_product
                    picture = draw(shape, COLOURS[colour], rng, image_size)
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


def draw_realistic_product(
    shape: str, colour: tuple[int, int, int], rng: np.random.Generator, image_size: int = 256
) -> Image.Image:
    """Draw one harder product photo: textured or non-white background, shading, shadow, lighting shift.

    The photo is ``image_size`` pixels on its long side, and square, portrait or landscape.
    """
    width, height = [(image_size, image_size), (image_size * 3 // 4, image_size), (image_size, image_size * 3 // 4)][
        int(rng.integers(3))
    ]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = _background(rng, height, width, yy, xx)

    scale = min(width, height) / 100 * rng.uniform(0.7, 0.95)
    angle = math.radians(rng.uniform(-15, 15))
    centre = np.array([width, height]) / 2 + rng.uniform(-0.06, 0.06, size=2) * min(width, height)
    cos, sin = math.cos(angle), math.sin(angle)
    outline = [
        (centre[0] + scale * ((x - 50) * cos - (y - 50) * sin), centre[1] + scale * ((x - 50) * sin + (y - 50) * cos))
        for x, y in SHAPES[shape]
    ]
    shadow_offset = rng.uniform(2, 6, size=2) * image_size / 256
    shadow = _mask(outline, width, height, shadow_offset, blur=4 * image_size / 256)
    pixels *= 1 - 0.35 * shadow[..., None]
    mask = _mask(outline, width, height, (0, 0), blur=0.8)

    shift = rng.integers(-20, 21)  # lighter or darker dye, then a little per channel
    fill = np.clip(np.array(colour) + shift + rng.integers(-8, 9, size=3), 0, 255).astype(np.float32)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    across = ((xx - centre[0]) * direction[0] + (yy - centre[1]) * direction[1]) / (50 * scale)
    shading = np.clip(1.0 + rng.uniform(0.15, 0.35) * across, 0.55, 1.4)  # light from one side
    weave = 1 + 0.06 * np.sin(xx * rng.uniform(0.6, 1.4) + yy * rng.uniform(0.2, 0.8))  # fabric texture
    product = fill * (shading * weave)[..., None]
    pixels = pixels * (1 - mask[..., None]) + product * mask[..., None]

    brightness = rng.uniform(0.8, 1.15)
    warmth = rng.uniform(-0.07, 0.07)  # colour temperature: warm (+) or cool (-) light
    pixels *= brightness * np.array([1 + warmth, 1.0, 1 - warmth], dtype=np.float32)
    pixels += rng.normal(0, 5, size=pixels.shape)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return picture.filter(ImageFilter.GaussianBlur(radius=0.6))


def _background(rng: np.random.Generator, height: int, width: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A ``(height, width, 3)`` float32 backdrop: light, beige, wood, fabric, gradient or dark."""
    kind = ["light", "beige", "wood", "fabric", "gradient", "dark"][int(rng.integers(6))]
    if kind == "light":
        base = rng.uniform(215, 250, size=3)
        return np.broadcast_to(base, (height, width, 3)).astype(np.float32).copy()
    if kind == "beige":
        base = np.array([225, 210, 185]) + rng.uniform(-15, 10, size=3)
        return np.broadcast_to(base, (height, width, 3)).astype(np.float32).copy()
    if kind == "wood":
        base = np.array([165, 120, 80]) + rng.uniform(-25, 25)
        grain = np.sin(yy / rng.uniform(3, 7) + 2 * np.sin(xx / rng.uniform(20, 40))) * rng.uniform(10, 20)
        return (base + grain[..., None]).astype(np.float32)
    if kind == "fabric":
        base = rng.uniform(120, 200) + rng.uniform(-12, 12, size=3)
        weave = 8 * np.sin(xx * 1.3) * np.sin(yy * 1.3) + rng.normal(0, 6, size=(height, width))
        return (base + weave[..., None]).astype(np.float32)
    if kind == "gradient":
        top, bottom = rng.uniform(150, 245, size=3), rng.uniform(150, 245, size=3)
        t = (yy / max(height - 1, 1))[..., None]
        return (top * (1 - t) + bottom * t).astype(np.float32)
    base = rng.uniform(35, 70) + rng.uniform(-5, 5, size=3)  # a dark studio backdrop
    return np.broadcast_to(base, (height, width, 3)).astype(np.float32).copy()


def _mask(outline: list[tuple[float, float]], width: int, height: int, offset, blur: float) -> np.ndarray:
    """The polygon as a ``(height, width)`` float32 coverage mask in ``[0, 1]``, shifted and blurred."""
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon([(x + offset[0], y + offset[1]) for x, y in outline], fill=255)
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(radius=blur))
    return np.asarray(image, dtype=np.float32) / 255
