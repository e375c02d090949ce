"""Colour signatures of products and the distance between them.

A **colour signature** is a small histogram of the product's colours in CIELAB, a space
where equal distances look about equally different. It is computed from the photo that
was already decoded for the model (no second decode) and stored in the index:

1. The decoded ``(S, S, 3)`` photo is averaged in blocks down to at most 64 x 64 pixels
   (Pillow's ``reduce``: cheap, and it smooths texture and JPEG noise), then converted to
   CIELAB (D65) with a few lines of numpy; no extra dependency.
2. **Product, not background:** each side of the photo gives a background colour (the
   median of a thin strip along that side; the white padding of a non-square photo is
   one of them). A pixel is background when it is close to any of them, "close" meaning
   within that side's own spread (textured backgrounds spread more) and at least
   ``ΔE = 10`` with lightness counting half (shading changes lightness most). The rest is
   the product, weighted towards the centre and by how much each pixel stands out (so
   edges blended with the background count less; a product of a few pixels counts too).
   When nothing is left (a photo of one flat colour, a black product on a black
   background), the whole photo, centre-weighted, is used instead, so every photo gets a
   signature.
3. The product pixels go into a soft histogram of ``4 x 9 x 9`` bins over ``L*`` (0 to
   100), ``a*`` and ``b*`` (-80 to 80), each pixel shared between its neighboring bins,
   then blurred by one bin so near colours overlap. The histogram sums to 1: a
   ``(N_BINS,)`` float32 vector of colour weights.

The **colour distance** of two signatures ``p`` and ``q`` is the Hellinger distance
``sqrt(1 - sum(sqrt(p * q)))``, in ``[0, 1]``: 0 for the same colours, 1 for colours that
share nothing.
(:mod:`simrec.search.blend` ranks by a blend of this distance and the cosine one.)
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from simrec.core.errors import InvalidArgumentError

SIGNATURE_METHOD = "lab-hist-4x9x9-v1"
"""Name of the signature recipe, stored in ``meta.json``; a different recipe needs new signatures."""

L_CENTRES = np.linspace(12.5, 87.5, 4)
AB_CENTRES = np.linspace(-80.0, 80.0, 9)
N_BINS = len(L_CENTRES) * len(AB_CENTRES) ** 2
"""Length of a colour signature (324)."""

_MAX_SIDE = 64  # the signature looks at most at this many pixels per side
_MIN_DELTA_E = 10.0  # smallest colour difference that separates product from background
_LIGHTNESS_WEIGHT = 0.5  # shading and lighting change L* most; count it half

# sRGB (D65) to CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float32,
)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_CHANNEL = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_CHANNEL <= 0.04045, _CHANNEL / 12.92, ((_CHANNEL + 0.055) / 1.055) ** 2.4).astype(np.float32)


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """CIELAB (D65) coordinates of 8-bit sRGB pixels.

    Args:
        pixels: ``(..., 3)`` uint8 RGB.

    Returns:
        ``(..., 3)`` float32 ``L*`` (0 to 100), ``a*``, ``b*``.

    Raises:
        InvalidArgumentError: ``pixels`` is not uint8 with a last axis of 3.

    Example:
        >>> srgb_to_lab(np.array([255, 0, 0], np.uint8)).round(1)  # doctest: +SKIP
        array([53.2, 80.1, 67.2], dtype=float32)
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.shape[-1:] != (3,):
        raise InvalidArgumentError(f"Expected (..., 3) uint8 RGB pixels, got {pixels.dtype} {pixels.shape}")
    return _linear_to_lab(_LINEAR[pixels])


def colour_signature(pixels: np.ndarray) -> np.ndarray:
    """The colour signature of one decoded product photo.

    Args:
        pixels: ``(H, W, 3)`` uint8 RGB, e.g. from :func:`simrec.load_image`.

    Returns:
        ``(N_BINS,)`` float32 colour weights summing to 1 (see the module docstring);
        always finite.

    Raises:
        InvalidArgumentError: ``pixels`` is not an ``(H, W, 3)`` uint8 photo of at least one pixel.

    Example:
        >>> signature = colour_signature(load_image("red/shirt_1.jpg"))  # doctest: +SKIP
        >>> dominant_colours(signature, 1)  # doctest: +SKIP
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8 or min(pixels.shape[:2]) < 1:
        raise InvalidArgumentError(f"Expected an (H, W, 3) uint8 RGB photo, got {pixels.dtype} {pixels.shape}")
    lab = _linear_to_lab(_LINEAR[_reduced(pixels)])
    return _histogram(lab.reshape(-1, 3), _product_weights(lab).ravel())


def colour_signatures(pixels: np.ndarray) -> np.ndarray:
    """:func:`colour_signature` of each photo of a ``(n, H, W, 3)`` uint8 batch: ``(n, N_BINS)`` float32.

    Raises:
        InvalidArgumentError: A photo of the batch is not ``(H, W, 3)`` uint8.
    """
    out = np.zeros((len(pixels), N_BINS), dtype=np.float32)
    for i, photo in enumerate(pixels):
        out[i] = colour_signature(photo)
    return out


def colour_distances(colours: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Hellinger distances between two sets of signatures.

    Args:
        colours: ``(n, N_BINS)`` colour weights.
        others: ``(m, N_BINS)`` colour weights.

    Returns:
        ``(n, m)`` float32 distances in ``[0, 1]``.
    """
    roots = np.sqrt(np.clip(np.atleast_2d(colours).astype(np.float32), 0, None))
    other_roots = np.sqrt(np.clip(np.atleast_2d(others).astype(np.float32), 0, None))
    return hellinger(roots @ other_roots.T)


def dominant_colours(signature: np.ndarray, n_colours: int = 3) -> list[tuple[tuple[float, float, float], float]]:
    """The heaviest bins of a signature: ``[((L*, a*, b*), weight), ...]``, heaviest first."""
    signature = np.asarray(signature, dtype=np.float64).reshape(len(L_CENTRES), len(AB_CENTRES), len(AB_CENTRES))
    order = np.argsort(-signature, axis=None, kind="stable")[:n_colours]
    result = []
    for flat in order:
        i, j, k = np.unravel_index(flat, signature.shape)
        result.append(((float(L_CENTRES[i]), float(AB_CENTRES[j]), float(AB_CENTRES[k])), float(signature[i, j, k])))
    return result


def _linear_to_lab(linear: np.ndarray) -> np.ndarray:
    xyz = (linear @ _RGB_TO_XYZ.T) / _WHITE
    epsilon, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > epsilon, np.cbrt(np.maximum(xyz, epsilon)), (kappa * xyz + 16) / 116)
    lab = np.empty_like(f)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab.astype(np.float32, copy=False)


def _reduced(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 averaged in square blocks (Pillow's ``reduce``) to at most about 64 pixels a side."""
    block = -(-max(pixels.shape[:2]) // _MAX_SIDE)
    if block == 1:
        return pixels
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).reduce(block))


@functools.lru_cache(maxsize=8)
def _centre_weights(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = (yy - (height - 1) / 2) / height, (xx - (width - 1) / 2) / width
    centre = np.exp(-(dx**2 + dy**2) / (2 * 0.3**2)).astype(np.float32)
    centre.flags.writeable = False
    return centre


def _product_weights(lab: np.ndarray) -> np.ndarray:
    """``(h, w)`` non-negative weights: product pixels, centre-weighted (see the module docstring)."""
    height, width = lab.shape[:2]
    centre = _centre_weights(height, width)
    if min(height, width) < 4:
        return centre
    strip = max(1, min(height, width) // 16)
    sides = (lab[:strip].reshape(-1, 3), lab[-strip:].reshape(-1, 3), lab[:, :strip].reshape(-1, 3))
    sides += (lab[:, -strip:].reshape(-1, 3),)
    scale = np.array([_LIGHTNESS_WEIGHT, 1.0, 1.0], dtype=np.float32)
    references, thresholds = [], []
    for side in sides:
        reference = np.median(side, axis=0)
        spread = float(np.median(np.linalg.norm((side - reference) * scale, axis=1)))
        references.append(reference * scale)
        thresholds.append(max(_MIN_DELTA_E, 3.0 * spread + _MIN_DELTA_E / 2))
    # Squared distance of every pixel to each side's colour, all sides at once: |x|^2 - 2 x.r + |r|^2.
    scaled = (lab * scale).reshape(-1, 3)
    references = np.asarray(references, dtype=np.float32)
    squared = (scaled**2).sum(axis=1, keepdims=True) - 2 * scaled @ references.T + (references**2).sum(axis=1)
    np.maximum(squared, 0, out=squared)
    squared /= np.square(np.asarray(thresholds, dtype=np.float32))
    nearest = np.sqrt(squared.min(axis=1)).reshape(height, width)  # in thresholds of the nearest side
    product = nearest >= 1
    # Pixels count more the more they stand out (fully from three thresholds on), so edges
    # blended with the background count less than the product itself.
    strength = np.clip((nearest - 1) / 2, 0.05, 1.0)
    # A pixel counts as product only if most of its 3 x 3 neighborhood does: drops speckle.
    padded = np.pad(product, 1).astype(np.uint8)
    rows = padded[:-2] + padded[1:-1] + padded[2:]
    votes = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    solid = product & (votes >= 5)
    if solid.sum() >= max(4, 0.002 * height * width):
        return centre * solid * strength
    if product.any():
        return product * strength  # a tiny product, too small for the speckle filter
    return centre  # nothing stands out: a flat photo, or a product as dark as its background


def _histogram(lab: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Soft, blurred, normalised ``(N_BINS,)`` histogram of ``(n, 3)`` Lab pixels."""
    keep = weights > 0
    lab, weights = lab[keep], weights[keep].astype(np.float64)
    n_ab = len(AB_CENTRES)
    lower, shares = [], []
    for axis, centres in ((0, L_CENTRES), (1, AB_CENTRES), (2, AB_CENTRES)):
        position = (lab[:, axis] - centres[0]) / (centres[1] - centres[0])
        base = np.clip(np.floor(position), 0, len(centres) - 2)
        fraction = np.clip(position - base, 0.0, 1.0)
        lower.append(base.astype(np.int64))
        shares.append((1.0 - fraction, fraction))
    counts = np.zeros(N_BINS, dtype=np.float64)
    for bit_l in (0, 1):  # each pixel is shared among the 8 bins around it
        weight_l = weights * shares[0][bit_l]
        for bit_a in (0, 1):
            weight_la = weight_l * shares[1][bit_a]
            row = ((lower[0] + bit_l) * n_ab + lower[1] + bit_a) * n_ab + lower[2]
            for bit_b in (0, 1):
                counts += np.bincount(row + bit_b, weights=weight_la * shares[2][bit_b], minlength=N_BINS)
    grid = counts.reshape(len(L_CENTRES), n_ab, n_ab)
    for axis in range(3):  # a [1, 2, 1] blur along each axis, so near colours share weight
        padded = np.concatenate([np.take(grid, [0], axis), grid, np.take(grid, [-1], axis)], axis=axis)
        size = grid.shape[axis]
        left, middle = np.take(padded, range(0, size), axis), np.take(padded, range(1, size + 1), axis)
        grid = (left + 2 * middle + np.take(padded, range(2, size + 2), axis)) / 4
    total = grid.sum()
    if not np.isfinite(total) or total <= 0:
        grid = np.full(grid.shape, 1.0)  # unreachable for uint8 photos; keeps the signature finite
        total = grid.sum()
    return (grid / total).astype(np.float32).ravel()


def hellinger(coefficients: np.ndarray) -> np.ndarray:
    """Hellinger distances from a fresh float32 array of Bhattacharyya coefficients, computed in place."""
    distance = np.asarray(coefficients, dtype=np.float32)
    np.subtract(np.float32(1.0), distance, out=distance)
    np.clip(distance, 0.0, 1.0, out=distance)
    return np.sqrt(distance, out=distance)
