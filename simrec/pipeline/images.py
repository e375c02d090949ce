"""Recognise product photos by their content and decode them into RGB arrays.

:func:`identify_format` tells, from a file's first bytes, whether it is a raster image
Pillow reads (any extension, or none) and which format. HEIC/HEIF is read through
``pillow-heif`` when it is installed.

Every photo goes through the same steps, whatever its format: EXIF orientation is
applied, any colour mode (1-bit, CMYK, palette, grey, 16-bit, float, with or without
alpha) becomes 8-bit RGB with transparency composited on white, the picture is padded to
a square on white so the product keeps its shape, and resized to ``image_size``.
Multi-frame files (GIF, MPO, TIFF pages) contribute their first frame.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from simrec.core.defaults import IMAGE_SIZE, MAX_IMAGE_PIXELS
from simrec.core.errors import ImageDecodeError
from simrec.core.validation import check_image_size

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
        path: Image file in any raster format Pillow reads (JPEG, PNG, WebP, AVIF,
            TIFF, PNM, JPEG 2000, ...; HEIC with ``pillow-heif``). Multi-frame files
            contribute their first frame.
        image_size: Side of the returned square, in pixels.
        max_pixels: Pictures with more pixels than this are refused.

    Returns:
        ``(image_size, image_size, 3)`` uint8 RGB array.

    Raises:
        ImageDecodeError: The file is missing, empty, not an image, truncated, or too
            large. The message names the file and the reason.
        InvalidArgumentError: ``image_size`` is not an int of at least 32.

    Example:
        >>> pixels = load_image("data/red/shirt_1.jpg")  # doctest: +SKIP
        >>> pixels.shape
        (224, 224, 3)
    """
    check_image_size(image_size)  # a bad argument is the caller's mistake, not the file's
    path = Path(path)
    register_openers()
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

    Raises:
        TypeError: ``image`` is not a PIL image.
        InvalidArgumentError: ``image_size`` is not an int of at least 32.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL.Image.Image, got {type(image).__name__}")
    check_image_size(image_size)
    image = apply_exif_orientation(image)
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


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """The photo turned upright by its EXIF orientation (unchanged when that is missing or unreadable)."""
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


# Recognising photos by their content ------------------------------------------------

VECTOR_FORMATS = frozenset({"EPS", "PDF", "SVG", "WMF"})
"""Drawings and documents: listed as not photos, never handed to a renderer."""

_HEAD_BYTES = 4096  # enough for an SVG's opening tag and a JPEG's first APP markers
_PREFIX_BYTES = 16  # what Image.open shows each opener's signature check
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)

# Signatures long enough that a match is trusted without parsing the header: the common
# photo formats, which dominate catalogs and must stay cheap to scan. Other formats have
# short or loose signatures (BMP's "BM", PPM's "P6", XBM's "/*"), so Pillow opens them.
_TRUSTED_SIGNATURES = frozenset({"JPEG", "PNG", "GIF", "WEBP", "TIFF", "AVIF", "HEIF", "JPEG2000"})
_GENERIC_BRANDS = (b"mif1", b"msf1")  # an AVIF or a HEIC: Pillow tells which by reading the header

# Where the signature of each of Pillow's own openers starts and the bytes it accepts
# there (from each plugin's _accept), so that a file is shown only to the openers that
# could accept it: asking all forty about every text file would double the scan time.
# Openers not listed here (other plugins) see every file.
_SIGNATURE_BYTES: dict[str, tuple[int, bytes]] = {
    "BLP": (0, b"B"),
    "BMP": (0, b"B"),
    "DIB": (0, bytes([12, 40, 52, 56, 64, 108, 124])),
    "BUFR": (0, b"BZ"),
    "CUR": (0, b"\0"),
    "PCX": (0, b"\n"),
    "DCX": (0, b"\xb1"),
    "DDS": (0, b"D"),
    "EPS": (0, b"%\xc5"),
    "FITS": (0, b"S"),
    "FTEX": (0, b"F"),
    "GIF": (0, b"G"),
    "GRIB": (0, b"G"),
    "HDF5": (0, b"\x89"),
    "PNG": (0, b"\x89"),
    "JPEG2000": (0, b"\xff\0"),
    "ICNS": (0, b"i"),
    "ICO": (0, b"\0"),
    "JPEG": (0, b"\xff"),
    "MCIDAS": (0, b"\0"),
    "MPEG": (0, b"\0"),
    "TIFF": (0, b"IM"),
    "MSP": (0, b"DL"),
    "PIXAR": (0, b"\x80"),
    "PPM": (0, b"P"),
    "PSD": (0, b"8"),
    "QOI": (0, b"q"),
    "SGI": (0, b"\x01"),
    "SUN": (0, b"Y"),
    "WEBP": (0, b"R"),
    "WMF": (0, b"\xd7\x01"),
    "XBM": (0, b"#\n/"),
    "XPM": (0, b"/"),
    "XVTHUMB": (0, b"P"),
    "AVIF": (4, b"f"),  # an ISO box: "ftyp" at byte 4
    "HEIF": (4, b"f"),
    "FLI": (4, b"\x11\x12"),
    "GBR": (4, b"\0"),
}


@dataclass
class _Openers:
    """Pillow's openers as Image.open tries them, indexed by the bytes at offsets 0 and 4."""

    registered: int  # len(Image.ID) when this was built
    checks: tuple[tuple[str, Any], ...]  # (name, accept) of every opener with a signature check
    unsigned: dict[str, str]  # extension -> opener without a check (TGA, ...)
    candidates: dict[tuple[int, int], tuple[tuple[str, Any], ...]] = field(default_factory=dict)

    def for_prefix(self, prefix: bytes) -> tuple[tuple[str, Any], ...]:
        key = (prefix[0], prefix[4] if len(prefix) > 4 else -1)
        found = self.candidates.get(key)
        if found is None:
            found = self.candidates[key] = tuple(check for check in self.checks if _could_accept(check[0], key))
        return found


def _could_accept(name: str, key: tuple[int, int]) -> bool:
    if name not in _SIGNATURE_BYTES:
        return True
    offset, accepted = _SIGNATURE_BYTES[name]
    byte = key[0] if offset == 0 else key[1]
    return byte >= 0 and byte in accepted


_openers: _Openers | None = None


_heif_looked_for = False


def register_openers() -> None:
    """Load Pillow's plugins, and HEIC/HEIF through ``pillow-heif`` when it is installed."""
    global _heif_looked_for
    Image.init()
    if _heif_looked_for:
        return
    _heif_looked_for = True  # a missing package is looked for once, not once per photo
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        logger.debug("pillow-heif is not installed: HEIC/HEIF photos cannot be read")
        return
    if "HEIF" not in Image.OPEN:
        register_heif_opener()


def identify_format(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """Tell from its first bytes whether a file is a raster image Pillow reads.

    The extension is only a hint, for the few formats without a signature (TGA, ...):
    a JPEG named ``.svg`` or without extension is a JPEG, a text file named ``.avif`` is
    not an image. The file is read, never decoded, so this is cheap; a damaged photo
    whose header looks right is found out when it is decoded.

    Args:
        path: A regular file.

    Returns:
        ``(format, None)`` for a photo, with Pillow's format name (``image.format``:
        ``"JPEG"``, ``"MPO"``, ``"PNG"``, ``"PPM"``, ``"HEIF"``, ...), or
        ``(None, reason)`` for anything else, the reason starting with ``"skipped: "``.

    Raises:
        OSError: The file cannot be read.

    Example:
        >>> identify_format("data/red/shirt_1")  # doctest: +SKIP
        ('JPEG', None)
    """
    path = os.fspath(path)
    openers = _registered_openers()
    descriptor = os.open(path, _READ_FLAGS)
    try:
        head = os.read(descriptor, _HEAD_BYTES)
        if not head:
            return None, "skipped: file is empty (0 bytes)"
        opener = _opener_for(head[:_PREFIX_BYTES], openers)
        if opener == "JPEG" and _has_multi_picture_marker(descriptor, head):
            return _open_format(path, "JPEG")  # Pillow decides between JPEG and MPO
    finally:
        os.close(descriptor)
    if opener in VECTOR_FORMATS:
        return None, f"skipped: vector or document format, not a photo ({opener})"
    if opener in _TRUSTED_SIGNATURES and not (head[4:8] == b"ftyp" and head[8:12] in _GENERIC_BRANDS):
        return opener, None
    if opener is not None:  # a short signature: Pillow reads the header, trying each opener as Image.open does
        return _open_format(path, opener, every_opener=True)
    vector = _vector_format(head)
    if vector is not None:
        return None, f"skipped: vector or document format, not a photo ({vector})"
    extension = os.path.splitext(path)[1].lower()
    if extension in openers.unsigned:
        return _open_format(path, openers.unsigned[extension], hint="named like")
    return None, f"skipped: not an image file (no image format Pillow reads; extension {extension or 'none'!r})"


def _registered_openers() -> _Openers:
    """Pillow's openers, rebuilt when a plugin registers one."""
    global _openers
    if _openers is None or _openers.registered != len(Image.ID):
        register_openers()
        _openers = _Openers(
            registered=len(Image.ID),
            checks=tuple((name, Image.OPEN[name][1]) for name in Image.ID if Image.OPEN[name][1] is not None),
            unsigned={ext: name for ext, name in Image.EXTENSION.items() if Image.OPEN.get(name, (None, 1))[1] is None},
        )
    return _openers


def _opener_for(prefix: bytes, openers: _Openers) -> str | None:
    """The first opener whose signature check accepts ``prefix``, as Image.open tries them."""
    for name, accept in openers.for_prefix(prefix):
        try:
            verdict = accept(prefix)
        except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open ignores too
            continue
        if verdict and not isinstance(verdict, str):  # a string is Pillow's "known but unsupported"
            return name
    return None


def _has_multi_picture_marker(descriptor: int, head: bytes) -> bool:
    """Whether a JPEG's leading APP segments include an APP2 "MPF" (multi-picture) one."""
    position = 2
    for _ in range(32):
        segment = head[position : position + 8]
        if len(segment) < 8:
            os.lseek(descriptor, position, os.SEEK_SET)
            segment = os.read(descriptor, 8)
        if len(segment) < 8 or segment[0] != 0xFF or not 0xE0 <= segment[1] <= 0xEF:
            return False  # past the APP segments, where the MPF segment would be
        if segment[1] == 0xE2 and segment[4:8] == b"MPF\0":
            return True
        position += 2 + int.from_bytes(segment[2:4], "big")
    return False


def _open_format(
    path: str, name: str, every_opener: bool = False, hint: str = "starts like"
) -> tuple[str | None, str | None]:
    """Let Pillow read the header, with the opener ``name`` or all: its ``image.format``, or why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=None if every_opener else [name]) as image:
                found = image.format
        if found in VECTOR_FORMATS:
            return None, f"skipped: vector or document format, not a photo ({found})"
        return found, None
    except Image.DecompressionBombError:
        return name, None  # a photo; decoding it reports the size
    except UnidentifiedImageError:
        return None, f"skipped: not an image file ({hint} {name}, but Pillow does not recognise it)"
    except (OSError, ValueError, EOFError) as error:  # what Pillow's openers raise for a bad header
        detail = str(error).split("\n")[0] or type(error).__name__
        return None, f"skipped: not an image file ({hint} {name}, but Pillow cannot read it: {detail})"


_VECTOR_FIRST_BYTES = frozenset(b"%<\xef \t\r\n")  # PDF, markup, a UTF-8 byte order mark, blanks


def _vector_format(head: bytes) -> str | None:
    """PDF or SVG from the first bytes (Pillow has no opener for either)."""
    if head[0] not in _VECTOR_FIRST_BYTES:
        return None
    if head.startswith(b"%PDF"):
        return "PDF"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<svg") or (text.startswith((b"<?xml", b"<!--", b"<!DOCTYPE")) and b"<svg" in text):
        return "SVG"
    return None
