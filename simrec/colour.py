"""Colour signatures of products, and search that blends look and colour.

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
   100), ``a*`` and ``b*`` (-80 to 80), each pixel shared between its neighbouring bins,
   then blurred by one bin so near colours overlap. The histogram sums to 1: a
   ``(N_BINS,)`` float32 vector of colour weights.

The **colour distance** of two signatures ``p`` and ``q`` is the Hellinger distance
``sqrt(1 - sum(sqrt(p * q)))``, in ``[0, 1]``: 0 for the same colours, 1 for colours that
share nothing. :class:`ColourBlendNeighbors` ranks by

    ``(1 - W) * cosine_distance / cosine_scale + W * colour_distance / colour_scale``

where each scale is the standard deviation of that distance over pairs of catalog
products (from a fixed sample of at most 512 products): each term is in units of its own
spread over the catalog, the usual way to weigh distances measured on different scales
(shifting a term by its mean would change no ranking, so only the scale matters). The
spread, not a typical value, is what makes the terms comparable: colour distances crowd
near 1 for most pairs, so dividing by their median would weigh colour far less than
its power to separate products. ``W = 0`` is the embedding alone (simrec then uses
:class:`simrec.CosineNeighbors` itself, so results are exactly those without colour) and
``W = 1`` the colour alone. The blend is computed exactly over every item, in blocks of
bounded memory, as :class:`simrec.CosineNeighbors` does.
"""

from __future__ import annotations

import copy
import functools
import numbers
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from simrec.defaults import N_NEIGHBORS, SEARCH_CHUNK_SIZE
from simrec.errors import InvalidArgumentError
from simrec.neighbors import CosineNeighbors

if TYPE_CHECKING:
    from simrec.embedded import EmbeddedCatalog

SIGNATURE_METHOD = "lab-hist-4x9x9-v1"
"""Name of the signature recipe, stored in ``meta.json``; a different recipe needs new signatures."""

L_CENTRES = np.linspace(12.5, 87.5, 4)
AB_CENTRES = np.linspace(-80.0, 80.0, 9)
N_BINS = len(L_CENTRES) * len(AB_CENTRES) ** 2
"""Length of a colour signature (324)."""

_MAX_SIDE = 64  # the signature looks at most at this many pixels per side
_MIN_DELTA_E = 10.0  # smallest colour difference that separates product from background
_LIGHTNESS_WEIGHT = 0.5  # shading and lighting change L* most; count it half
_SCALE_SAMPLE = 512  # products sampled to measure the spread of the distances
_SCRATCH_BYTES = 64 * 1024**2  # bound on the scratch memory of one block of queries

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
    """:func:`colour_signature` of each photo of a ``(n, H, W, 3)`` uint8 batch: ``(n, N_BINS)`` float32."""
    out = np.zeros((len(pixels), N_BINS), dtype=np.float32)
    for i, photo in enumerate(pixels):
        out[i] = colour_signature(photo)
    return out


def colour_distances(signatures: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Hellinger distances between two sets of signatures.

    Args:
        signatures: ``(n, N_BINS)`` colour weights.
        others: ``(m, N_BINS)`` colour weights.

    Returns:
        ``(n, m)`` float32 distances in ``[0, 1]``.
    """
    roots = np.sqrt(np.clip(np.atleast_2d(signatures).astype(np.float32), 0, None))
    other_roots = np.sqrt(np.clip(np.atleast_2d(others).astype(np.float32), 0, None))
    return _hellinger(roots @ other_roots.T)


def dominant_colours(signature: np.ndarray, n_colours: int = 3) -> list[tuple[tuple[float, float, float], float]]:
    """The heaviest bins of a signature: ``[((L*, a*, b*), weight), ...]``, heaviest first."""
    signature = np.asarray(signature, dtype=np.float64).reshape(len(L_CENTRES), len(AB_CENTRES), len(AB_CENTRES))
    order = np.argsort(-signature, axis=None, kind="stable")[:n_colours]
    result = []
    for flat in order:
        i, j, k = np.unravel_index(flat, signature.shape)
        result.append(((float(L_CENTRES[i]), float(AB_CENTRES[j]), float(AB_CENTRES[k])), float(signature[i, j, k])))
    return result


def check_colour_weight(colour_weight: object) -> float:
    """``colour_weight`` as a float in ``[0, 1]``, or a clear error."""
    if isinstance(colour_weight, bool) or not isinstance(colour_weight, numbers.Real):
        raise InvalidArgumentError(f"Expected colour_weight to be a number from 0 to 1, got {colour_weight!r}")
    value = float(colour_weight)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidArgumentError(f"Expected colour_weight from 0 to 1, got {colour_weight!r}")
    return value


def missing_colours_message(index: str = "INDEX_DIR") -> str:
    """What to do when an index has no colour signatures and a colour weight above 0 is asked for."""
    return (
        f"the index {index} has no colour signatures (it was made before simrec stored them), so only "
        f"colour_weight 0 works on it; add them with 'simrec colours {index}' (reads the photos, no model) "
        f"or embed everything again with 'simrec index SOURCE --out {index} --rebuild'"
    )


class ColourBlendNeighbors:
    """Exact k-nearest-neighbour search by a blend of cosine and colour distance.

    The distance is ``(1 - colour_weight) * cosine / cosine_scale_ + colour_weight *
    colour / colour_scale_`` (see the module docstring), computed over every fitted item
    in blocks of bounded scratch memory.

    Args:
        colour_weight: ``W`` from 0 (look only) to 1 (colour only).
        n_neighbors: Default number of neighbours returned by :meth:`kneighbors`.
        chunk_size: Most query rows scored at once when querying many items.

    Attributes:
        n_samples_fit_: Number of fitted items.
        cosine_scale_: Standard deviation of the cosine distance over pairs of sampled
            catalog items.
        colour_scale_: Standard deviation of the colour distance over the same pairs.

    Example:
        >>> blend = ColourBlendNeighbors(colour_weight=0.5).fit(embeddings, signatures)  # doctest: +SKIP
        >>> distances, indices = blend.kneighbors()  # each item's 5 nearest others
    """

    def __init__(
        self, *, colour_weight: float = 0.5, n_neighbors: int = N_NEIGHBORS, chunk_size: int = SEARCH_CHUNK_SIZE
    ) -> None:
        self.colour_weight = colour_weight
        self.n_neighbors = n_neighbors
        self.chunk_size = chunk_size

    def fit(
        self, X: np.ndarray, colours: np.ndarray, *, inverse_norms: np.ndarray | None = None
    ) -> ColourBlendNeighbors:
        """Remember the catalog's vectors and colour signatures, and measure the two scales.

        Args:
            X: ``(n_items, dim)`` embeddings (a memory map is not copied).
            colours: ``(n_items, N_BINS)`` colour signatures, aligned with ``X``.
            inverse_norms: As in :meth:`simrec.CosineNeighbors.fit`.

        Returns:
            self

        Raises:
            ValueError: Shapes disagree, values are not finite, or bad parameters.
        """
        cosine = CosineNeighbors(n_neighbors=self.n_neighbors, chunk_size=self.chunk_size)
        return self._fit(cosine.fit(X, inverse_norms=inverse_norms), colours)

    @classmethod
    def from_cosine(cls, cosine: CosineNeighbors, colours: np.ndarray, *, colour_weight: float) -> ColourBlendNeighbors:
        """A blend over an already fitted :class:`simrec.CosineNeighbors` (its vectors are shared)."""
        blend = cls(colour_weight=colour_weight, n_neighbors=cosine.n_neighbors, chunk_size=cosine.chunk_size)
        return blend._fit(cosine, colours)

    def _fit(self, cosine: CosineNeighbors, colours: np.ndarray) -> ColourBlendNeighbors:
        self.colour_weight = check_colour_weight(self.colour_weight)
        colours = np.asarray(colours, dtype=np.float32)
        if colours.shape != (cosine.n_samples_fit_, N_BINS):
            raise InvalidArgumentError(
                f"Expected colours of shape ({cosine.n_samples_fit_}, {N_BINS}), got {colours.shape}"
            )
        if not np.isfinite(colours).all():
            raise InvalidArgumentError("colours contain NaN or infinite values")
        self._cosine = cosine
        self._roots = np.sqrt(np.clip(colours, 0, None))
        self.n_samples_fit_, self.n_features_in_ = cosine.n_samples_fit_, cosine.n_features_in_
        self.cosine_scale_, self.colour_scale_ = self._typical_distances()
        return self

    def kneighbors(
        self,
        X: np.ndarray | None = None,
        colours: np.ndarray | None = None,
        n_neighbors: int | None = None,
        return_distance: bool = True,
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Find the nearest fitted items by the blended distance.

        Args:
            X: ``(n_queries, dim)`` or ``(dim,)`` query vectors, with ``colours``. None
                queries every fitted item, leaving each out of its own neighbours.
            colours: ``(n_queries, N_BINS)`` or ``(N_BINS,)`` query signatures.
            n_neighbors: Neighbours per query (default: the constructor's).
            return_distance: Also return the distances.

        Returns:
            ``(distances, indices)``, each ``(n_queries, n_neighbors)``, nearest first:
            float32 blended distances and int64 row numbers. Equal distances are ordered
            by row number.
        """
        if not hasattr(self, "_cosine"):
            raise InvalidArgumentError("This ColourBlendNeighbors is not fitted yet: call fit(embeddings, colours)")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        n_fit = self.n_samples_fit_
        self_query = X is None
        if self_query != (colours is None):
            raise InvalidArgumentError("Give both X and colours for outside queries, or neither")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise InvalidArgumentError(f"Expected n_neighbors > 0 (an int), got {k!r}")
        available = n_fit - 1 if self_query else n_fit
        if k > available:
            what = "n_samples_fit - 1 (each item is left out of its own results)" if self_query else "n_samples_fit"
            raise InvalidArgumentError(
                f"Expected n_neighbors <= {what}, but n_neighbors = {k}, n_samples_fit = {n_fit}"
            )
        fit_X, inv_norms = self._cosine._fit_X, self._cosine._inv_norms
        if self_query:
            queries, query_inv, query_roots = fit_X, inv_norms, self._roots
        else:
            queries = np.atleast_2d(np.asarray(X, dtype=np.float32))
            query_colours = np.atleast_2d(np.asarray(colours, dtype=np.float32))
            if queries.shape[1:] != (self.n_features_in_,) or query_colours.shape != (len(queries), N_BINS):
                raise InvalidArgumentError(
                    f"Expected ({len(queries)}, {self.n_features_in_}) queries and ({len(queries)}, {N_BINS}) "
                    f"colours, got {queries.shape} and {query_colours.shape}"
                )
            if not (np.isfinite(queries).all() and np.isfinite(query_colours).all()):
                raise InvalidArgumentError("Query vectors or colours contain NaN or infinite values")
            norms = np.linalg.norm(queries, axis=1)
            query_inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
            query_roots = np.sqrt(np.clip(query_colours, 0, None))
        n_queries = len(queries)
        # Per query row and fitted item: the colour and cosine blocks (float32, computed in
        # place), argpartition's int64 and a comparison byte: at most 20 bytes.
        rows = max(1, min(self.chunk_size, _SCRATCH_BYTES // (20 * n_fit)))
        distances = np.empty((n_queries, k), dtype=np.float32)
        indices = np.empty((n_queries, k), dtype=np.int64)
        for start in range(0, n_queries, rows):
            stop = min(start + rows, n_queries)
            blend = self._blend(queries[start:stop], query_inv[start:stop], query_roots[start:stop])
            if self_query:
                blend[np.arange(stop - start), np.arange(start, stop)] = np.inf
            distances[start:stop], indices[start:stop] = _smallest_k(blend, k)
        return (distances, indices) if return_distance else indices

    def _blend(self, queries: np.ndarray, query_inv: np.ndarray, query_roots: np.ndarray) -> np.ndarray:
        """``(rows, n_fit)`` float32 blended distances of a few queries to every fitted item."""
        weight = self.colour_weight
        blend = _hellinger(query_roots @ self._roots.T)
        blend *= np.float32(weight / self.colour_scale_)
        if weight < 1.0:  # W = 1 ranks by colour alone
            fit_X, inv_norms = self._cosine._fit_X, self._cosine._inv_norms
            cosine = (queries * query_inv[:, None]) @ fit_X.T
            cosine *= inv_norms
            np.subtract(np.float32(1.0), cosine, out=cosine)
            np.clip(cosine, 0.0, 2.0, out=cosine)
            cosine *= np.float32((1.0 - weight) / self.cosine_scale_)
            blend += cosine
        return blend

    def _typical_distances(self) -> tuple[float, float]:
        """Standard deviations of the cosine and colour distances over pairs of a fixed sample of items."""
        n = self.n_samples_fit_
        if n < 2:
            return 1.0, 1.0
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, size=min(n, _SCALE_SAMPLE), replace=False))
        X = np.asarray(self._cosine._fit_X[sample], dtype=np.float32) * self._cosine._inv_norms[sample, None]
        upper = np.triu_indices(len(sample), k=1)
        cosine = np.clip(1.0 - (X @ X.T)[upper], 0.0, 2.0)
        roots = self._roots[sample]
        colour = _hellinger(roots @ roots.T)[upper]
        scales = [float(np.std(values, dtype=np.float64)) for values in (cosine, colour)]
        return tuple(s if s > 1e-9 else 1.0 for s in scales)  # all alike: any scale ranks the same


def neighbors_for(embedded: EmbeddedCatalog, colour_weight: float) -> CosineNeighbors | ColourBlendNeighbors:
    """The search for ``colour_weight``: ``embedded.neighbors`` at 0, else a blend (kept on ``embedded``).

    Raises:
        InvalidArgumentError: ``colour_weight`` is outside ``[0, 1]``, or above 0 on an
            index without colour signatures (the message says how to add them).
    """
    weight = check_colour_weight(colour_weight)
    if weight == 0.0:
        return embedded.neighbors
    require_colours(embedded)
    cache = embedded._colour_blends  # one fitted blend per index; other weights share its arrays
    if "fitted" not in cache:
        cache["fitted"] = ColourBlendNeighbors.from_cosine(embedded.neighbors, embedded.colours, colour_weight=weight)
    blend = copy.copy(cache["fitted"])  # shallow: the signatures and scales are not copied
    blend.colour_weight = weight
    return blend


def require_colours(embedded: EmbeddedCatalog, index: str = "INDEX_DIR") -> None:
    """Refuse a colour weight above 0 on an index whose signatures are missing or made differently."""
    if embedded.colours is None:
        raise InvalidArgumentError(missing_colours_message(index))
    method = embedded.meta.get("colour_signature", SIGNATURE_METHOD)
    if method != SIGNATURE_METHOD:
        raise InvalidArgumentError(
            f"the index {index} has colour signatures made by {method!r}, this simrec makes {SIGNATURE_METHOD!r}; "
            f"make them again with 'simrec colours {index}'"
        )


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
    # A pixel counts as product only if most of its 3 x 3 neighbourhood does: drops speckle.
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


def _hellinger(coefficients: np.ndarray) -> np.ndarray:
    """Hellinger distances from a fresh float32 array of Bhattacharyya coefficients, computed in place."""
    distance = np.asarray(coefficients, dtype=np.float32)
    np.subtract(np.float32(1.0), distance, out=distance)
    np.clip(distance, 0.0, 1.0, out=distance)
    return np.sqrt(distance, out=distance)


def _smallest_k(distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-first k smallest of each row, ties by row number."""
    n = distances.shape[1]
    if k < n:
        candidates = np.argpartition(distances, k - 1, axis=1)[:, :k]
        # argpartition may split a tie at the k-th distance arbitrarily: such rows are sorted fully.
        kth = np.take_along_axis(distances, candidates, axis=1).max(axis=1, keepdims=True)
        for row in np.flatnonzero((distances <= kth).sum(axis=1) > k):
            candidates[row] = np.lexsort((np.arange(n), distances[row]))[:k]
    else:
        candidates = np.broadcast_to(np.arange(n), distances.shape).copy()
    scores = np.take_along_axis(distances, candidates, axis=1)
    order = np.lexsort((candidates, scores), axis=1)
    candidates = np.take_along_axis(candidates, order, axis=1)
    return np.take_along_axis(distances, candidates, axis=1).astype(np.float32), candidates.astype(np.int64)
