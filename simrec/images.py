"""Decode product photos into fixed-size RGB arrays the extractor can read.

Every photo goes through the same steps, whatever its format: EXIF orientation is
applied, any colour mode (CMYK, palette, grey, 16-bit, with or without alpha) becomes
8-bit RGB with transparency composited on white, the picture is padded to a square on
white so the product keeps its shape, and resized to ``image_size``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from simrec.defaults import IMAGE_SIZE, MAX_IMAGE_PIXELS
from simrec.errors import ImageDecodeError

logger = logging.getLogger(__name__)

_WHITE = (255, 255, 255)
# Just under one half: ImageOps.pad rounds ``(image_size - side) * centering`` half to
# even, and this keeps the offset at ``(image_size - side) // 2`` for every size, so
# photos land on the same pixels as in indexes made before.
_CENTRE = (0.5 - 1e-6, 0.5 - 1e-6)


def load_image(
    path: str | os.PathLike,
    image_size: int = IMAGE_SIZE,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Read one photo as a square RGB array ready for the extractor.

    Large JPEGs are decoded at a reduced scale (PIL ``draft``) when that still leaves
    at least ``image_size`` pixels, which is much faster and gives the same picture.

    Args:
        path: Image file (any format Pillow reads: JPEG, PNG, WebP, BMP, GIF, TIFF...).
            Animated images contribute their first frame.
        image_size: Side of the returned square, in pixels.
        max_pixels: Pictures with more pixels than this are refused.

    Returns:
        ``(image_size, image_size, 3)`` uint8 RGB array.

    Raises:
        ImageDecodeError: The file is missing, empty, not an image, truncated, or too
            large. The message names the file and the reason.

    Example:
        >>> pixels = load_image("data/red/shirt_1.jpg")  # doctest: +SKIP
        >>> pixels.shape
        (224, 224, 3)
    """
    path = Path(path)
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "file not found"
        raise ImageDecodeError(path, reason)
    if path.stat().st_size == 0:
        raise ImageDecodeError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # max_pixels is the rule; Pillow's own warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        path,
                        f"image too large: {width}x{height} pixels exceeds the limit "
                        f"of {max_pixels} (decompression-bomb protection)",
                    )
                _draft_for(image, image_size)
                image.load()
                return prepare_image(image, image_size)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(path, f"image too large: {error}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(path, f"corrupt or truncated image data ({error})") from None


def prepare_image(image: Image.Image, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Turn an opened PIL image into the extractor's square RGB array.

    Args:
        image: Any PIL image, in any mode.
        image_size: Side of the returned square, in pixels.

    Returns:
        ``(image_size, image_size, 3)`` uint8 RGB array.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL.Image.Image, got {type(image).__name__}")
    if not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"Expected image_size >= 32, got {image_size!r}")
    image = _apply_exif_orientation(image)
    rgb = to_rgb(image)
    return _pad_and_resize(rgb, image_size)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB, compositing transparency on white.

    16-bit and 32-bit greyscale images are rescaled to 0-255 rather than clipped.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    return image.convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    if values.size == 0:
        return values.astype(np.uint8)
    high = float(values.max())
    if high <= 1.0 and values.dtype.kind == "f":
        scale = 255.0  # floating-point images in [0, 1]
    elif high <= 255:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0 if high <= 65535 else 255.0 / high
    return np.clip(values * scale, 0, 255).round().astype(np.uint8)


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:  # a damaged EXIF block should not cost the photo
        logger.debug("ignoring unreadable EXIF orientation: %s", error)
        return image


def _draft_for(image: Image.Image, image_size: int) -> None:
    """Ask the JPEG decoder for the smallest scale that still covers image_size."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = image_size / max(width, height)
    if scale >= 0.5:
        return
    image.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))


def _pad_and_resize(image: Image.Image, image_size: int) -> np.ndarray:
    # Resize first, then pad: a 20000x50 panorama must not become a 20000x20000 canvas.
    # The resize is done here rather than inside ImageOps.pad so that a very thin
    # picture keeps at least one pixel across instead of vanishing into the padding.
    width, height = image.size
    scale = image_size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != (width, height):
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    square = ImageOps.pad(image, (image_size, image_size), color=_WHITE, centering=_CENTRE)
    return np.asarray(square, dtype=np.uint8)
