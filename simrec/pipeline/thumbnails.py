"""Tell a transformed copy of a photo from a photo of a look-alike product.

Two photos whose vectors are close are either the same photo (re-encoded, resized,
mirrored, cropped a little, made brighter) or two products that look alike (two plain
black socks). The vectors cannot tell them apart; the pixels can, cheaply:

1. Each photo becomes a few **aligned thumbnails**: the photo, and the photo with 3%, 6%
   and 9% cut from every border, each padded to a square on white (as the extractor sees
   it), smoothed and reduced to ``32 x 32`` RGB. Only the photos of candidate pairs are
   decoded, and large JPEGs are decoded at a reduced scale.
2. The **difference** of two photos is the smallest, over the alignments (either photo
   cropped, either way round, one of them mirrored), of the root-mean-square difference
   of their thumbnails after fitting one gain and offset (so a brighter or
   re-encoded copy costs little, a recoloured product does not), measured over the pixels where either photo shows
   the product (not the white background, so a small product counts as much as a large
   one). It is in ``[0, 1]`` units of full scale: 0 for the same pixels.

A copy differs by compression noise and resampling only (differences up to about 0.05 on
real shop photos); another product differs in its shape, its details or its colours.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from simrec.core.defaults import MAX_IMAGE_PIXELS
from simrec.core.errors import ImageDecodeError
from simrec.pipeline.images import apply_exif_orientation, register_openers, to_rgb

THUMBNAIL_SIDE = 32
"""Side of an aligned thumbnail, in pixels."""

CROPS = (0.0, 0.03, 0.06, 0.09)
"""Fractions cut from every border of a photo, one thumbnail each."""

_BACKGROUND_TOLERANCE = 0.08  # a pixel this far from white, in any channel, shows the product
_WHITE = (255, 255, 255)


def photo_thumbnails(source: str | os.PathLike | Image.Image) -> tuple[np.ndarray, int]:
    """The aligned thumbnails of one photo, and its size in pixels.

    Args:
        source: A photo file, or an opened PIL image.

    Returns:
        ``(thumbnails, n_pixels)``: ``(len(CROPS), 32, 32, 3)`` uint8 RGB thumbnails, and
        the photo's width times height (to suggest which copy to keep).

    Raises:
        ImageDecodeError: The file cannot be read as a photo; the message names it.

    Example:
        >>> thumbnails, n_pixels = photo_thumbnails("red/shirt_1.jpg")  # doctest: +SKIP
        >>> thumbnails.shape
        (4, 32, 32, 3)
    """
    if isinstance(source, Image.Image):
        return _thumbnails(source), source.width * source.height
    path = Path(source)
    register_openers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                n_pixels = image.width * image.height
                if n_pixels > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(path, f"image too large: {image.width}x{image.height} pixels")
                image.draft("RGB", (4 * THUMBNAIL_SIDE, 4 * THUMBNAIL_SIDE))
                image.load()
                return _thumbnails(image), n_pixels
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(path, f"cannot be read as a photo ({error})") from None


def thumbnail_difference(first: np.ndarray, second: np.ndarray) -> float:
    """How much two photos differ once aligned, from their :func:`photo_thumbnails`.

    Args:
        first: ``(len(CROPS), 32, 32, 3)`` uint8 thumbnails of one photo.
        second: The same for the other photo.

    Returns:
        The difference in ``[0, 1]`` described in the module docstring: 0 for the same
        pixels, below about 0.05 for a re-encoded, resized, mirrored, slightly cropped
        or brightened copy.
    """
    a = np.asarray(first, dtype=np.float32) / 255.0
    b = np.asarray(second, dtype=np.float32) / 255.0
    mirrored = b[:, :, ::-1]
    # Either photo cropped (not both: cropping both is the same as cropping one less),
    # and either orientation of the second.
    xs = np.concatenate([np.repeat(a[:1], 2 * len(a), axis=0), np.concatenate([a[1:], a[1:]])])
    ys = np.concatenate(
        [b, mirrored, np.repeat(b[:1], len(a) - 1, axis=0), np.repeat(mirrored[:1], len(a) - 1, axis=0)]
    )
    # One gain and offset for all three channels: brightness and contrast may change,
    # colours may not (a green and a teal bottle differ by a per-channel gain).
    xc = xs - xs.mean(axis=(1, 2, 3), keepdims=True)
    yc = ys - ys.mean(axis=(1, 2, 3), keepdims=True)
    gain = (xc * yc).sum(axis=(1, 2, 3), keepdims=True) / ((xc * xc).sum(axis=(1, 2, 3), keepdims=True) + 1e-6)
    residual = yc - gain * xc
    best = int(np.argmin((residual**2).mean(axis=(1, 2, 3))))
    content = ((1.0 - xs[best]).max(axis=-1) > _BACKGROUND_TOLERANCE) | (
        (1.0 - ys[best]).max(axis=-1) > _BACKGROUND_TOLERANCE
    )
    if not content.any():  # two blank photos
        return float(np.sqrt((residual[best] ** 2).mean()))
    return float(np.sqrt((residual[best][content] ** 2).mean()))


def _thumbnails(image: Image.Image) -> np.ndarray:
    rgb = to_rgb(apply_exif_orientation(image))
    width, height = rgb.size
    side = 2 * THUMBNAIL_SIDE
    out = np.empty((len(CROPS), THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), dtype=np.uint8)
    for i, crop in enumerate(CROPS):
        dx, dy = crop * width, crop * height
        part = rgb.crop((round(dx), round(dy), round(width - dx), round(height - dy))) if crop else rgb
        scale = side / max(part.size)
        size = (max(1, round(part.width * scale)), max(1, round(part.height * scale)))
        part = part.resize(size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)
        square = ImageOps.pad(part, (side, side), color=_WHITE, centering=(0.5, 0.5))
        # Smoothing before the reduction makes a sub-pixel shift (a mirror of an odd width,
        # a different resampling) cost little.
        square = square.filter(ImageFilter.GaussianBlur(1))
        out[i] = np.asarray(square.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX), dtype=np.uint8)
    return out
