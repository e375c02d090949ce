"""Answer "what looks like this?" for a catalog product or for any photo."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from simrec.defaults import N_NEIGHBORS
from simrec.embed import embed_arrays
from simrec.embedded import EmbeddedCatalog, check_extractor_matches
from simrec.errors import InvalidArgumentError, UnknownProductError
from simrec.images import load_image, prepare_image
from simrec.model import extractor_info

if TYPE_CHECKING:
    import keras

RESULT_COLUMNS = ["rank", "product_id", "path", "label", "distance"]


def recommend(
    embedded: EmbeddedCatalog,
    *,
    product_id: str | None = None,
    image: str | os.PathLike | Image.Image | np.ndarray | None = None,
    n_neighbors: int = N_NEIGHBORS,
    extractor: keras.Model | None = None,
    search: Any = None,
) -> pd.DataFrame:
    """The catalog products that look most like a product or a photo.

    Give exactly one of ``product_id`` (a catalog product, left out of its own results)
    or ``image`` (a file path, a PIL image, or an RGB array).

    Args:
        embedded: From :func:`simrec.load_index` or ``EmbeddedCatalog.from_embeddings``.
        product_id: A catalog ``product_id`` such as ``"red/shirt_1"``.
        image: A photo to embed and search with.
        n_neighbors: Number of recommendations.
        extractor: Extractor for ``image`` queries; by default the index's own, built on
            the first photo query and kept with ``embedded`` for the next ones.
        search: The search to use (default: exact, ``embedded.neighbors``); e.g.
            ``embedded.search()``, approximate when the index has an ann structure.

    Returns:
        DataFrame with ``rank`` (1 = closest), ``product_id``, ``path``, ``label``,
        ``distance`` (cosine, ascending). ``attrs["query"]`` describes the query
        (``product_id``, ``path``, ``label`` or ``image``); ``attrs["warning"]`` is set
        when the index was built with untrained weights.

    Raises:
        ValueError: Neither or both queries given, ``n_neighbors`` out of range, or an
            empty catalog.
        KeyError: Unknown ``product_id`` (the message suggests close matches).
        simrec.ImageDecodeError: The query image cannot be read.
        simrec.IndexIntegrityError: ``extractor`` differs from the index's.

    Example:
        >>> recommend(embedded, product_id="red/shirt_1", n_neighbors=5)  # doctest: +SKIP
    """
    if (product_id is None) == (image is None):
        raise InvalidArgumentError("Give exactly one of product_id or image")
    catalog = embedded.catalog
    if len(catalog) == 0:
        raise InvalidArgumentError("The catalog is empty: nothing to recommend")
    neighbors = embedded.neighbors if search is None else search
    if product_id is not None:
        row = _row_of(catalog, product_id)
        _check_k(n_neighbors, len(catalog) - 1, "other products in the catalog")
        distances, indices = neighbors.kneighbors(embedded.embeddings[row], n_neighbors=n_neighbors + 1)
        keep = indices[0] != row
        distances, indices = distances[0][keep][:n_neighbors], indices[0][keep][:n_neighbors]
        query: dict[str, Any] = {
            "product_id": product_id,
            "path": catalog.at[row, "path"],
            "label": catalog.at[row, "label"],
        }
    else:
        _check_k(n_neighbors, len(catalog), "products in the catalog")
        vector, query = _embed_query(embedded, image, extractor)
        distances, indices = neighbors.kneighbors(vector, n_neighbors=n_neighbors)
        distances, indices = distances[0], indices[0]
    return results_frame(catalog, distances, indices, query, embedded.warning)


def results_frame(
    catalog: pd.DataFrame,
    distances: np.ndarray,
    indices: np.ndarray,
    query: dict[str, Any],
    warning: str | None = None,
) -> pd.DataFrame:
    """Recommendation rows for one query from neighbour distances and row numbers."""
    picked = catalog.iloc[indices]
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(indices) + 1),
            "product_id": picked["product_id"].to_numpy(),
            "path": picked["path"].to_numpy(),
            "label": picked["label"].to_numpy(),
            "distance": np.asarray(distances, dtype=np.float64),
        }
    )
    frame.attrs["query"] = query
    frame.attrs["warning"] = warning
    return frame


def _row_of(catalog: pd.DataFrame, product_id: str) -> int:
    matches = np.flatnonzero(catalog["product_id"].to_numpy() == product_id)
    if len(matches) == 0:
        close = difflib.get_close_matches(str(product_id), catalog["product_id"].tolist(), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownProductError(f"unknown product_id {product_id!r}{hint}")
    return int(matches[0])


def _check_k(k: object, available: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidArgumentError(f"Expected n_neighbors > 0 (an int), got {k!r}")
    if k > available:
        raise InvalidArgumentError(f"Expected n_neighbors <= {available} ({what}), got n_neighbors = {k}")


def _embed_query(
    embedded: EmbeddedCatalog, image: object, extractor: keras.Model | None
) -> tuple[np.ndarray, dict[str, Any]]:
    meta = embedded.meta
    size = int(meta["image_size"])
    if isinstance(image, (str, os.PathLike)):
        pixels = load_image(image, size)
        query = {"path": str(Path(image)), "label": "", "product_id": None}
    elif isinstance(image, Image.Image):
        pixels = prepare_image(image, size)
        query = {"image": image, "label": "", "product_id": None}
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise InvalidArgumentError(f"Expected an (H, W, 3) RGB array, got shape {image.shape}")
        pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        pixels = prepare_image(pil, size)
        query = {"image": pil, "label": "", "product_id": None}
    else:
        raise TypeError(f"Expected image to be a path, PIL image or array, got {type(image).__name__}")
    # Decode first, so a bad file is reported before seconds are spent on the model.
    if extractor is None:
        extractor = embedded.query_extractor()
    else:
        check_extractor_matches(meta, extractor_info(extractor))
    return embed_arrays(pixels[None], extractor), query
