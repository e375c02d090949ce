"""Tell a transformed copy of a photo from a photo of a look-alike product.

Two photos whose vectors are close are either the same photo (re-encoded, resized,
mirrored, cropped a little, made brighter or darker) or two products that look alike (two
plain black socks). The vectors cannot tell them apart; the pixels can, once the two photos
are aligned exactly:

1. Each photo becomes a small **pyramid**: the photo reduced (never enlarged) to at most
   :data:`SIDE` pixels on its longer side, so a shop's 60 x 80 photos keep every pixel,
   and three halvings of it, each lightly smoothed. Large JPEGs are decoded at a reduced
   scale.
2. The **alignment** of two photos is found, not tried from a fixed list: either photo may
   be a crop of the other, by up to :data:`MAX_CROP` of each border (a different amount per
   border), at another scale, mirrored or not. The scales and shifts those borders allow are
   searched on the coarsest level; the best of each mirroring (the other mirroring only when
   it fits about as well, as a thin, symmetric product does) is refined to a fraction of a
   pixel by Gauss-Newton steps (scale, shift, and one gain and offset for the brightness)
   on the finer levels.
3. The **difference** of two photos is measured on the aligned photos at the finest level,
   averaged over 2 x 2 pixels (JPEG noise and resampling differ pixel by pixel, products
   over several), after one gain and offset for all three channels (so a brighter or
   re-encoded copy costs little, a recoloured product does not), over the pixels where
   either photo shows the product (not the white background, so a small product counts as
   much as a large one). A channel at full scale may stand for any brighter value, so there
   only a difference that clipping cannot explain counts. It is the root-mean-square
   residual (differences spread over the product) plus 0.3 times the
   residual averaged over 3 x 3 pixels at its 98th percentile (a difference in one part of
   the product, such as a lipstick of another shade, where noise cancels and colour does
   not); in ``[0, 1]`` units of full scale, 0 for the same pixels.

:func:`pixel_vectors` reduces a pyramid further, to an 8 x 8 grid of colours: a second
source of candidate pairs, beside the network's vectors, for copies the network places far
apart (half-size copies of small photos).

A copy differs by compression noise and resampling only; another product differs in its
shape, its details or its colours. ``benchmarks/duplicates.py`` measures both on real shop
photos. They overlap a little: a lipstick or nail polish photographed from one template in
another shade can differ as little as a re-encoded copy;
:data:`~simrec.core.defaults.PHOTO_DUPLICATE_THRESHOLD` keeps nearly every copy.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from simrec.core.defaults import MAX_IMAGE_PIXELS
from simrec.core.errors import ImageDecodeError
from simrec.pipeline.images import apply_exif_orientation, register_openers, to_rgb

SIDE = 80
"""Longest side of the finest level of a photo's pyramid, in pixels (smaller photos keep their size)."""

LEVELS = 4
"""Levels of a photo's pyramid: the photo and three halvings."""

MAX_CROP = 0.10
"""Largest fraction cut from any one border of a photo that still counts as a copy of it."""

PIXEL_GRID = 8
"""Side of the grid of a photo's :func:`pixel_vectors`: 8 x 8 colours, 192 numbers."""

_PLAIN = 1.0  # a grid whose colours vary by less than this (root mean square, of 255) is of one colour
_BLUR = 0.7  # Gaussian smoothing of each level (pixels): a different resampling costs little
_CLIPPED = 0.97  # a channel this bright may have been clipped by a brighter copy
_LOCAL_WEIGHT = 0.3  # weight of the local residual in the difference
_LOCAL_QUANTILE = 0.98  # the local residual of the worst 2% of the product, not its single worst block
_BACKGROUND_TOLERANCE = 0.08  # a pixel this far from white, in any channel, shows the product
_SCALE_STEP = 0.03  # scales tried on the coarsest level
_STEPS = (2, 1)  # Gauss-Newton steps on the middle and finest level compared
_COARSE_MARGIN = 2.0  # a mirroring is refined when its coarse fit is within this factor of the best


def photo_thumbnails(source: str | os.PathLike | Image.Image) -> tuple[tuple[np.ndarray, ...], int]:
    """The pyramid of one photo, and its size in pixels.

    Args:
        source: A photo file, or an opened PIL image.

    Returns:
        ``(levels, n_pixels)``: :data:`LEVELS` uint8 RGB arrays ``(height, width, 3)``, the
        finest (at most :data:`SIDE` pixels on its longer side) first, each half the size of
        the one before; and the photo's width times height (to suggest which copy to keep).

    Raises:
        ImageDecodeError: The file cannot be read as a photo; the message names it.

    Example:
        >>> levels, n_pixels = photo_thumbnails("red/shirt_1.jpg")  # doctest: +SKIP
        >>> levels[0].shape
        (80, 60, 3)
    """
    if isinstance(source, Image.Image):
        return _pyramid(source), source.width * source.height
    path = Path(source)
    register_openers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                n_pixels = image.width * image.height
                if n_pixels > MAX_IMAGE_PIXELS:
                    raise ImageDecodeError(path, f"image too large: {image.width}x{image.height} pixels")
                image.draft("RGB", (2 * SIDE, 2 * SIDE))
                image.load()
                return _pyramid(image), n_pixels
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(path, f"cannot be read as a photo ({error})") from None


def photo_pixels(path: str | os.PathLike) -> int:
    """A photo's width times height, from its header (nothing decoded); 0 when it cannot be read."""
    register_openers()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width * image.height
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return 0


def pixel_vectors(levels: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A photo's pixel vector, and its mirror image's: a second source of duplicate candidates.

    The photo's finest level averaged over a :data:`PIXEL_GRID` x :data:`PIXEL_GRID` grid of
    colours, less its mean, to unit length. The cosine distance of two pixel vectors ignores
    the size of the photos, a gain and offset of their brightness, and compression noise, so
    a copy at half the size of an already small photo, which a network can place far from its
    original, is found next to it here. A crop moves the grid, which the network's vectors
    survive; look-alike products come close too, and the photo check
    (:func:`thumbnail_difference`) tells them apart.

    Args:
        levels: The photo's :func:`photo_thumbnails` levels.

    Returns:
        ``(vector, mirrored)``: two float32 vectors of ``3 * PIXEL_GRID ** 2`` numbers, zero
        for a photo of one colour (any colour: a blank, a swatch).
    """
    grid = Image.fromarray(np.ascontiguousarray(levels[0])).resize((PIXEL_GRID, PIXEL_GRID), Image.Resampling.BOX)
    values = np.asarray(grid, dtype=np.float32)
    if float(np.sqrt(((values - values.mean(axis=(0, 1))) ** 2).mean())) < _PLAIN:
        values = np.zeros_like(values)  # a photo of one colour: nothing to match by
    else:
        values = values - values.mean()
        values /= float(np.linalg.norm(values))
    return values.reshape(-1), np.ascontiguousarray(values[:, ::-1]).reshape(-1)


def thumbnail_difference(first: tuple[np.ndarray, ...], second: tuple[np.ndarray, ...]) -> float:
    """How much two photos differ once aligned, from their :func:`photo_thumbnails` levels.

    Args:
        first: The pyramid of one photo.
        second: The pyramid of the other.

    Returns:
        The difference in ``[0, 1]`` described in the module docstring: 0 for the same
        pixels, small for a re-encoded, resized, mirrored, cropped or brightened copy.
    """
    a = [np.asarray(level, dtype=np.float32) / 255.0 for level in first]
    b = [np.asarray(level, dtype=np.float32) / 255.0 for level in second]
    found = []
    for mirrored in (False, True):
        candidates = [_Alignment(inner, outer, mirrored).coarse() for inner, outer in ((b, a), (a, b))]
        candidates = [candidate for candidate in candidates if candidate is not None]
        if candidates:
            found.append(min(candidates, key=lambda candidate: candidate[0]))
    if not found:  # shapes no crop within bounds explains
        return 1.0
    lowest = min(score for score, *_ in found)
    best = 1.0
    for score, alignment, scale, dx, dy in found:
        if score > _COARSE_MARGIN * lowest + 1e-4:
            continue  # the other mirroring fits clearly worse; a thin product fits both alike and tries both
        for level, steps in zip((1, 0), _STEPS):
            scale, dx, dy = alignment.refine(level, scale, dx, dy, steps)
        best = min(best, alignment.difference(scale, dx, dy))
    return best


class _Alignment:
    """``inner``'s pixels sampled from ``outer`` (mirrored or not), which holds it, at a scale and shift.

    A pixel centre ``(u, v)`` of the inner photo, in its finest level's pixels, lies at
    ``(scale * u + dx, scale * v + dy)`` in the outer photo's finest level's pixels.
    """

    def __init__(self, inner: list[np.ndarray], outer: list[np.ndarray], mirrored: bool) -> None:
        self.inner, self.outer, self.mirrored = inner, outer, mirrored
        hi, wi = inner[0].shape[:2]
        ho, wo = outer[0].shape[:2]
        self.high = min(wo / wi, ho / hi)  # no border cut: the inner photo spans the outer one
        self.low = (1.0 - 2.0 * MAX_CROP) * max(wo / wi, ho / hi)
        # A photo at half the other's resolution is compared with the other's next level.
        middle = math.log2(math.sqrt(max(self.low, 1e-6) * self.high))
        self.offset = int(round(middle)) if abs(middle) > 0.6 else 0

    def _pair(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        last = len(self.inner) - 1
        inner = self.inner[min(last, level + max(0, -self.offset))]
        outer = self.outer[min(last, level + max(0, self.offset))]
        return inner, (outer[:, ::-1] if self.mirrored else outer)

    def _positions(self, inner: np.ndarray, outer: np.ndarray, scale, dx, dy):
        """Continuous outer pixel indices ``(n, height)`` and ``(n, width)`` of the inner pixels."""
        hi, wi = inner.shape[:2]
        ho, wo = outer.shape[:2]
        (h0, w0), (oh0, ow0) = self.inner[0].shape[:2], self.outer[0].shape[:2]
        u = (np.arange(wi) + 0.5) * (w0 / wi)
        v = (np.arange(hi) + 0.5) * (h0 / hi)
        x = (scale[:, None] * u + dx[:, None]) * (wo / ow0) - 0.5
        y = (scale[:, None] * v + dy[:, None]) * (ho / oh0) - 0.5
        return np.clip(y, 0, ho - 1), np.clip(x, 0, wo - 1), u, v, (wo / ow0, ho / oh0)

    def _sample(self, outer: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Bilinear samples ``(n, height, width, channels)`` of ``outer`` at the grid ``y x x``."""
        ho, wo = outer.shape[:2]
        y0 = np.minimum(y.astype(np.intp), max(ho - 2, 0))
        x0 = np.minimum(x.astype(np.intp), max(wo - 2, 0))
        fy = (y - y0).astype(np.float32)[:, :, None, None]
        fx = (x - x0).astype(np.float32)[:, None, :, None]
        y1, x1 = np.minimum(y0 + 1, ho - 1), np.minimum(x0 + 1, wo - 1)
        rows = outer[y0] * (1 - fy) + outer[y1] * fy  # (n, height, outer width, channels)
        n = np.arange(len(y))[:, None, None]
        h = np.arange(y.shape[1])[None, :, None]
        left, right = rows[n, h, x0[:, None, :]], rows[n, h, x1[:, None, :]]
        return left + (right - left) * fx

    def coarse(self) -> tuple[float, _Alignment, float, float, float] | None:
        """``(score, self, scale, dx, dy)`` of the best scale and shift the borders allow, on the coarsest level."""
        if self.low > self.high:
            return None
        (hi, wi), (ho, wo) = self.inner[0].shape[:2], self.outer[0].shape[:2]
        inner, outer = self._pair(len(self.inner) - 2)
        step = wo / outer.shape[1]  # one coarse pixel, in finest pixels
        n_scales = max(2, math.ceil((self.high - self.low) / _SCALE_STEP) + 1)
        scales = np.linspace(self.low, self.high, n_scales)
        room_x, room_y = np.maximum(0.0, wo - scales * wi), np.maximum(0.0, ho - scales * hi)
        n_x, n_y = np.ceil(room_x / step).astype(int) + 1, np.ceil(room_y / step).astype(int) + 1
        # every scale's shifts, from no room to all of it in steps of about one coarse pixel
        per_scale = n_x * n_y
        which = np.repeat(np.arange(n_scales), per_scale)
        index = np.arange(which.size) - np.repeat(np.cumsum(per_scale) - per_scale, per_scale)
        ix, iy = index % n_x[which], index // n_x[which]
        dx = room_x[which] * ix / np.maximum(n_x[which] - 1, 1)
        dy = room_y[which] * iy / np.maximum(n_y[which] - 1, 1)
        scale = scales[which]
        y, x, *_ = self._positions(inner, outer, scale, dx, dy)
        grey = inner.mean(axis=-1, keepdims=True)
        sampled = self._sample(outer.mean(axis=-1, keepdims=True), y, x)
        scores = _fitted_residual(grey, sampled)
        scores = (scores * scores).mean(axis=(1, 2, 3))
        best = int(np.argmin(scores))
        return float(scores[best]), self, float(scale[best]), float(dx[best]), float(dy[best])

    def refine(self, level: int, scale: float, dx: float, dy: float, steps: int) -> tuple[float, float, float]:
        """Gauss-Newton steps on scale and shift (with one gain and offset) at one level."""
        inner, outer = self._pair(level)
        grey = outer.mean(axis=-1)
        gy, gx = np.gradient(grey)
        stack = np.stack([grey, gx, gy], axis=-1)
        target = inner.mean(axis=-1).ravel()
        for _ in range(steps):
            y, x, u, v, (fx, fy) = self._positions(inner, outer, np.array([scale]), np.array([dx]), np.array([dy]))
            sampled = self._sample(stack, y, x)[0]
            values, along_x, along_y = sampled[..., 0], sampled[..., 1] * fx, sampled[..., 2] * fy
            columns = np.stack(
                [
                    values.ravel(),
                    np.ones(values.size, np.float32),
                    (along_x * u + along_y * v[:, None]).ravel(),
                    along_x.ravel(),
                    along_y.ravel(),
                ],
                axis=1,
            ).astype(np.float64)
            normal = columns.T @ columns + 1e-9 * np.eye(5)
            solution = np.linalg.solve(normal, columns.T @ target)
            gain = solution[0] if abs(solution[0]) > 1e-3 else 1e-3
            d_scale, d_x, d_y = solution[2:] / gain
            scale += float(np.clip(d_scale, -0.05, 0.05))
            dx += float(np.clip(d_x, -2.0 / fx, 2.0 / fx))
            dy += float(np.clip(d_y, -2.0 / fy, 2.0 / fy))
        return scale, dx, dy

    def difference(self, scale: float, dx: float, dy: float) -> float:
        """The module's difference at one alignment, on the finest level compared."""
        inner, outer = self._pair(0)
        y, x, *_ = self._positions(inner, outer, np.array([scale]), np.array([dx]), np.array([dy]))
        sampled = self._sample(outer, y, x)[0]
        return _tone_difference(_halved(inner), _halved(sampled))


def _halved(level: np.ndarray) -> np.ndarray:
    """The mean of every 2 x 2 pixels: JPEG noise and resampling differ in single pixels, products over several."""
    if level.shape[0] < 2 or level.shape[1] < 2:
        return level
    level = level[: level.shape[0] // 2 * 2, : level.shape[1] // 2 * 2]
    return 0.25 * (level[0::2, 0::2] + level[1::2, 0::2] + level[0::2, 1::2] + level[1::2, 1::2])


def _tone_difference(first: np.ndarray, second: np.ndarray) -> float:
    """The module's difference of two aligned photos ``(height, width, 3)``, clipping allowed for.

    A channel value at full scale in a photo may stand for any brighter value (a brighter copy
    clips its light parts to white), so there only a difference in the direction clipping
    cannot explain counts. The root-mean-square residual measures differences spread over the
    product; the residual averaged over 3 x 3 pixels (where noise cancels and a change of
    colour does not) measures those in one part of it, such as a lipstick of another shade.
    """
    content = ((1.0 - first).max(axis=-1) > _BACKGROUND_TOLERANCE) | (
        (1.0 - second).max(axis=-1) > _BACKGROUND_TOLERANCE
    )
    if not content.any():  # two blank photos
        content = np.ones(first.shape[:2], dtype=bool)
    clip_a, clip_b = first >= _CLIPPED, second >= _CLIPPED
    free = ~(clip_a | clip_b) & content[..., None]
    fa, fb = (first[free], second[free]) if free.sum() >= 8 else (first[content], second[content])
    # The gain from the two spreads, not by regression, which shrinks it when the product's tones span little.
    gain = float(np.clip((fa.std() + 1e-6) / (fb.std() + 1e-6), 0.5, 2.0))
    residual = first - (gain * (second - fb.mean()) + fa.mean())
    residual = np.where(clip_a, np.maximum(residual, 0.0), residual)  # first clipped: it may be brighter
    residual = np.where(clip_b, np.minimum(residual, 0.0), residual)  # second clipped: it may be brighter
    residual *= content[..., None]
    spread = math.sqrt(float((residual * residual).sum()) / (3 * int(content.sum())))
    sums, counts = _box_sums(residual), _box_sums(content.astype(np.float32)[..., None])[..., 0]
    covered = counts >= 6  # most of a 3 x 3 block shows the product
    if not covered.any():
        return spread
    local = np.sqrt((sums[covered] ** 2).sum(axis=-1)) / counts[covered]
    return spread + _LOCAL_WEIGHT * float(np.quantile(local, _LOCAL_QUANTILE))


def _box_sums(values: np.ndarray) -> np.ndarray:
    """Sums over the 3 x 3 pixels around each pixel of ``(height, width, channels)``, zeros beyond the edges."""
    padded = np.pad(values, ((1, 1), (1, 1), (0, 0)))
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def _fitted_residual(inner: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """``inner`` less one gain and offset of each ``sampled`` (fitted by least squares), ``(n, h, w, c)``."""
    x = inner - inner.mean()
    y = sampled - sampled.mean(axis=(1, 2, 3), keepdims=True)
    gain = (y * x).sum(axis=(1, 2, 3)) / ((y * y).sum(axis=(1, 2, 3)) + 1e-6)
    return x[None] - gain[:, None, None, None] * y


def _pyramid(image: Image.Image) -> tuple[np.ndarray, ...]:
    rgb = to_rgb(apply_exif_orientation(image))
    width, height = rgb.size
    if max(width, height) > SIDE:  # reduce, never enlarge: a small photo keeps every pixel
        scale = SIDE / max(width, height)
        # a triangle filter: a box of about one pixel, as when reducing 60 x 81 to 59 x 80, leaves jagged edges
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    levels = [rgb]
    for _ in range(LEVELS - 1):
        last = levels[-1]
        half = (max(1, round(last.width / 2)), max(1, round(last.height / 2)))
        levels.append(last.resize(half, Image.Resampling.BOX))
    return tuple(np.asarray(level.filter(ImageFilter.GaussianBlur(_BLUR)), dtype=np.uint8) for level in levels)
