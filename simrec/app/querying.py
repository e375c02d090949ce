"""Answer "what looks like this?" for a catalog product or for any photo."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from simrec.app.distinct import distinct_neighbors
from simrec.app.duplicates import copy_test_for
from simrec.core.colour_signature import colour_signature
from simrec.core.defaults import N_NEIGHBORS
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError
from simrec.core.records import extractor_info
from simrec.core.validation import check_recommendations
from simrec.embedded_catalog import (
    EmbeddedCatalog,
    check_extractor_matches,
    neighbors_for,
    require_colours,
    resolve_colour_weight,
    row_in,
)
from simrec.pipeline.embedding import embed_arrays
from simrec.pipeline.images import load_image, prepare_image
from simrec.pipeline.model import extractor_for
from simrec.search.blend import ColourBlendNeighbors

if TYPE_CHECKING:
    import keras

    from simrec.pipeline.hub import TextEmbedder

_EXTRACTORS: weakref.WeakKeyDictionary[EmbeddedCatalog, dict[str, Any]] = weakref.WeakKeyDictionary()
_TEXT_EMBEDDERS: weakref.WeakKeyDictionary[EmbeddedCatalog, dict[str, Any]] = weakref.WeakKeyDictionary()


def query_extractor(
    embedded: EmbeddedCatalog, weights_path: str | os.PathLike | None = None, *, runtime: str = "auto"
) -> keras.Model:
    """The extractor ``embedded`` was made with, built once per loaded index and kept while it lives.

    Args:
        embedded: From :func:`simrec.load_index`.
        weights_path: Where the index's weights file is now, if it has moved.
        runtime: What executes the network (``"auto"``, ``"keras"``, ``"openvino"``); it may
            differ from the one that embedded the index (see :func:`simrec.build_extractor`).

    Raises:
        MissingFileError: The index used a weights file that is not there.
        IndexIntegrityError: The index holds vectors made outside simrec.
        InvalidArgumentError: ``weights_path`` is a file that does not fit the index's model, or a bad ``runtime``.
        MissingDependencyError: ``runtime="openvino"`` without OpenVINO.
    """
    built = _EXTRACTORS.setdefault(embedded, {})
    key = (str(weights_path or ""), runtime)
    if key not in built:
        built[key] = extractor_for(embedded.meta, weights_path, runtime=runtime)
    return built[key]


def query_text_embedder(embedded: EmbeddedCatalog, weights_path: str | os.PathLike | None = None) -> TextEmbedder:
    """The text tower of the preset ``embedded`` was made with, built once per loaded index and kept while it lives.

    Args:
        embedded: From :func:`simrec.load_index`, embedded with a SigLIP or CLIP preset.
        weights_path: Where the index's preset folder is now, if it has moved.

    Raises:
        InvalidArgumentError: The index's backbone has no text tower, or it was embedded with untrained weights.
        MissingFileError: The index's preset folder is not there, or its preset cannot be downloaded.
        IndexIntegrityError: The preset's text vectors do not have the index's dimension.
        MissingDependencyError: keras-hub is not installed.
    """
    from simrec.pipeline.hub import text_embedder_for

    built = _TEXT_EMBEDDERS.setdefault(embedded, {})
    key = str(weights_path or "")
    if key not in built:
        built[key] = text_embedder_for(embedded.meta, weights_path)
    return built[key]


@dataclass(frozen=True)
class QueryPlan:
    """How a query is answered, decided once by :func:`plan_query`.

    Attributes:
        n_neighbors: Recommendations to give.
        colour_weight: The colour weight used (0: look alone).
        search: The search to run: the blend for a weight above 0, else the look search.
        row: The catalog row of the query product (None for a photo or a text).
    """

    n_neighbors: int
    colour_weight: float
    search: Any
    row: int | None = None


def choose_colour_weight(
    embedded: EmbeddedCatalog,
    colour_weight: float | None,
    *,
    tuned: bool = False,
    search_given: bool = False,
    evaluation: bool = False,
) -> float:
    """The colour weight of a query or an evaluation: the one asked for, checked, else the default of its kind.

    Every default lives here. It is 0 (look alone) for a leave-one-out evaluation (it measures the
    look unless a weight is asked for), for a search the caller chose (``recommend(search=...)``) and
    for a tuned approximate search (``nprobe``, ``ef``); else the index's own
    (:func:`simrec.embedded_catalog.default_colour_weight`).

    Args:
        embedded: The index.
        colour_weight: From 0 to 1, or None for the default.
        tuned: The approximate search is tuned (``nprobe`` or ``ef`` given).
        search_given: The caller chose the search.
        evaluation: A leave-one-out evaluation (``simrec evaluate``), not a query.

    Returns:
        The weight, from 0 to 1.

    Raises:
        InvalidArgumentError: ``colour_weight`` is outside [0, 1].
    """
    if colour_weight is None and (tuned or search_given or evaluation):
        return 0.0
    return resolve_colour_weight(embedded, colour_weight)


def plan_query(
    embedded: EmbeddedCatalog,
    n_neighbors: object,
    *,
    product_id: str | None = None,
    rows: Mapping[str, int] | None = None,
    photo: bool = False,
    colour_weight: float | None = None,
    exact: bool = False,
    nprobe: int | None = None,
    ef: int | None = None,
    look: Any = None,
    index_name: str | None = None,
) -> QueryPlan:
    """The one policy for a query, shared by :func:`recommend`, ``simrec query`` and the service.

    It reports a query's problems in one order: an unknown ``product_id`` first, then a photo query
    on an index whose vectors were made outside simrec, the number of recommendations against the
    catalog, the colour weight (None: the default, see :func:`choose_colour_weight`), and a weight
    above 0 on an index without colour signatures. It picks the search: the blend of look and colour
    for a weight above 0 (it compares every product exactly), else the look search.

    Args:
        embedded: The index.
        n_neighbors: Recommendations asked for.
        product_id: The query product, looked up first (its row is ``plan.row``).
        rows: ``product_id`` -> catalog row, when the caller keeps one (the service does); default the index's own.
        photo: The query is a photo or a text (else a catalog product, left out of its own results).
        colour_weight: From 0 to 1, or None for the default.
        exact: Search exactly even when the index has an approximate-search structure.
        nprobe: IVF lists searched by the approximate search.
        ef: HNSW search breadth of the approximate search.
        look: The search for look alone (default: ``embedded.search(exact, nprobe=..., ef=...)``);
            the service passes the one it prepared.
        index_name: The index as the user named it, for messages (default: ``INDEX_DIR``, as in ``--help``).

    Returns:
        The plan.

    Raises:
        UnknownProductError: No such ``product_id`` (the message suggests close matches).
        InvalidArgumentError: ``n_neighbors`` out of range, ``colour_weight`` outside [0, 1], above 0
            on an index without colour signatures, or together with ``nprobe``/``ef``.
        IndexIntegrityError: A photo query on an index of vectors made outside simrec.
        MissingDependencyError: The look search is approximate and faiss is not installed.
    """
    row = None
    if product_id is not None:  # an unknown product is the first thing said
        row = embedded.row_of(product_id) if rows is None else row_in(rows, product_id)
    if photo and embedded.meta.made_outside:
        raise IndexIntegrityError(
            f"the index {index_name or 'INDEX_DIR'} holds vectors from {embedded.meta.model!r}, made outside "
            "simrec, so simrec cannot embed photos comparable with them; ask for a catalog product's similar "
            "products instead"
        )
    k = check_recommendations(n_neighbors, len(embedded), product_query=not photo)
    tuned = bool(nprobe or ef)
    weight = choose_colour_weight(embedded, colour_weight, tuned=tuned)
    if weight == 0.0:
        search = look if look is not None else embedded.search(exact=exact, nprobe=nprobe, ef=ef)
        return QueryPlan(k, 0.0, search, row)
    if tuned:
        raise InvalidArgumentError(
            "nprobe and ef tune approximate search, which colour_weight does not use: the blend of look "
            "and colour compares every product exactly",
            parameters=("nprobe", "ef", "colour_weight"),
        )
    require_colours(embedded, index_name or "INDEX_DIR")
    return QueryPlan(k, weight, neighbors_for(embedded, weight), row)


def recommend(
    embedded: EmbeddedCatalog,
    *,
    product_id: str | None = None,
    image: str | os.PathLike | Image.Image | np.ndarray | None = None,
    n_neighbors: int = N_NEIGHBORS,
    extractor: keras.Model | None = None,
    colour_weight: float | None = None,
    search: Any = None,
    distinct: bool = False,
    text: str | None = None,
) -> pd.DataFrame:
    """The catalog products that look most like a product or a photo, or that a text describes.

    Give exactly one of ``product_id`` (a catalog product, left out of its own results),
    ``image`` (a file path, a PIL image, or a pixel array) or ``text`` (words, on an index
    embedded with a SigLIP or CLIP preset).

    Args:
        embedded: From :func:`simrec.load_index` or ``EmbeddedCatalog.from_embeddings``.
        product_id: A catalog ``product_id`` such as ``"red/shirt_1"``.
        image: A photo to embed and search with: a file path, a PIL image, or an
            array of shape ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (transparency on white)
            or ``(H, W)`` greyscale, either ``uint8`` (0-255, used as is) or float with
            values in [0, 1] (scaled to 0-255). Other dtypes, float ranges, NaN and
            shapes are refused.
        n_neighbors: Number of recommendations.
        extractor: Extractor for ``image`` queries; by default the index's own, built on
            the first photo query and kept with ``embedded`` for the next ones.
        colour_weight: From 0 (rank by look, the embedding alone) to 1 (rank by the
            product's colour alone); in between, the blend of
            :class:`simrec.search.blend.ColourBlendNeighbors`. Above 0 needs an index with
            colour signatures. Default (None): ``simrec.core.defaults.COLOUR_WEIGHT`` on an index
            with colour signatures and exact search, else 0 (see :func:`simrec.embedded_catalog.default_colour_weight`);
            0 with a ``search`` given.
        search: The search to use (default: exact, ``embedded.neighbors``); e.g.
            ``embedded.search()``, approximate when the index has an ann structure.
        distinct: Drop each result that is a duplicate of the query product or of a
            higher-ranked result (the same file, or a resized, re-encoded, mirrored,
            slightly cropped or brightened copy; see :func:`simrec.find_duplicates`), so
            the results are different products (for a photo query, the catalog's copy
            of that photo stays, its further copies go). Fewer than ``n_neighbors`` are returned
            only when the catalog runs out of distinct products.
        text: Words describing the products wanted (``"red checked shirt"``), embedded by the
            text tower of the preset the index's vectors came from
            (:func:`query_text_embedder`). A text has no colour of its own: with a colour weight
            above 0, the colour blended in is that of the product the text is closest to.

    Returns:
        DataFrame with ``rank`` (1 = closest), ``product_id``, ``path``, ``label``,
        ``distance`` (cosine, ascending; the blended distance when ``colour_weight > 0``).
        ``attrs["query"]`` describes the query (``product_id``, ``path``, ``label``,
        ``image`` or ``text``); ``attrs["warning"]`` is set when the index was built with untrained
        weights.

    Raises:
        InvalidArgumentError: Not exactly one query given, a text query on an index without a text tower,
            ``n_neighbors`` or ``colour_weight`` out of range, an empty catalog, ``colour_weight > 0`` on an index
            without colour signatures (the message says how to add them), or
            an ``image`` array of a refused shape, dtype or range.
        UnknownProductError: Unknown ``product_id`` (the message suggests close matches).
        TypeError: ``image`` is not a path, PIL image or array, or ``extractor`` was not made by
            :func:`simrec.build_extractor`.
        ImageDecodeError: The query image cannot be read.
        MissingFileError: A photo or text query on an index whose weights file or preset folder is not there.
        MissingDependencyError: A text query without keras-hub installed.
        IndexIntegrityError: ``extractor`` differs from the index's, or a photo query on an index of vectors made
            outside simrec.

    Example:
        >>> recommend(embedded, product_id="red/shirt_1", n_neighbors=5)  # doctest: +SKIP
    """
    if sum(given is not None for given in (product_id, image, text)) != 1:
        raise InvalidArgumentError("Give exactly one of product_id, image or text")
    catalog = embedded.catalog
    if len(catalog) == 0:
        raise InvalidArgumentError("The catalog is empty: nothing to recommend")
    plan = plan_query(
        embedded,
        n_neighbors,
        product_id=product_id,
        photo=product_id is None,
        colour_weight=choose_colour_weight(embedded, colour_weight, search_given=search is not None),
        exact=True,
        look=search,
    )
    row = plan.row
    neighbors = plan.search
    blend = isinstance(neighbors, ColourBlendNeighbors)
    if product_id is not None:
        colours = {"colours": embedded.colours[row]} if blend else {}
        stored = stored_answer(embedded, neighbors, row, n_neighbors, plan.colour_weight, distinct)
        if stored is not None:
            distances, indices = stored
        elif distinct:
            distances, indices = distinct_neighbors(
                copy_test_for(embedded), neighbors, n_neighbors, query_row=row, search_options=colours
            )
        else:
            distances, indices = neighbors.kneighbors(embedded.embeddings[row], n_neighbors=n_neighbors + 1, **colours)
            keep = indices[0] != row
            distances, indices = distances[0][keep][:n_neighbors], indices[0][keep][:n_neighbors]
        query: dict[str, Any] = {
            "product_id": product_id,
            "path": catalog.at[row, "path"],
            "label": catalog.at[row, "label"],
        }
    else:
        if text is not None:
            vector = query_text_embedder(embedded).embed([text])
            query = {"text": str(text), "label": "", "product_id": None}
            colours = {"colours": _colours_nearest(embedded, vector)} if blend else {}
        else:
            vector, pixels, query = _embed_query(embedded, image, extractor)
            colours = {"colours": colour_signature(pixels)} if blend else {}  # from the same decoded photo
        if distinct:
            distances, indices = distinct_neighbors(
                copy_test_for(embedded), neighbors, n_neighbors, query_vector=vector[0], search_options=colours
            )
        else:
            distances, indices = neighbors.kneighbors(vector, n_neighbors=n_neighbors, **colours)
            distances, indices = distances[0], indices[0]
    frame = results_frame(catalog, distances, indices, query, embedded.warning)
    if blend:  # shown in plot captions
        frame.attrs["colour_weight"] = neighbors.colour_weight
    return frame


def stored_answer(
    embedded: EmbeddedCatalog, search: Any, row: int, n_neighbors: int, colour_weight: float, distinct: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """A catalog product's neighbors looked up in the generation's stored neighbors, or None when they do not cover it.

    They cover a query by the exact search (the index's own, or its blend of look and colour)
    for ``n_neighbors <= K`` at the colour weight they were stored at, and give what that
    search would (:mod:`simrec.app.precompute`).

    Returns:
        ``(distances, indices)``, 1-D, nearest first, or None: scan.
    """
    stored = embedded.stored_neighbors
    if stored is None or not stored.answers(n_neighbors, colour_weight):
        return None
    exact = embedded._neighbors is not None and (
        search is embedded._neighbors or getattr(search, "_cosine", None) is embedded._neighbors
    )
    return stored.lookup(row, n_neighbors, distinct) if exact else None


def results_frame(
    catalog: pd.DataFrame,
    distances: np.ndarray,
    indices: np.ndarray,
    query: dict[str, Any],
    warning: str | None = None,
) -> pd.DataFrame:
    """Recommendation rows for one query from neighbor distances and row numbers."""
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


def _colours_nearest(embedded: EmbeddedCatalog, vector: np.ndarray) -> np.ndarray:
    """The colour signature of the catalog product closest by look to ``vector``: a text's stand-in colour."""
    _, nearest = embedded.search(exact=True).kneighbors(vector, n_neighbors=1)
    return embedded.colours[int(nearest[0][0])]


def _embed_query(
    embedded: EmbeddedCatalog, image: object, extractor: keras.Model | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The query's vector, its decoded ``(S, S, 3)`` uint8 pixels, and how to describe it."""
    meta = embedded.meta
    size = int(meta.image_size)
    if isinstance(image, (str, os.PathLike)):
        pixels = load_image(image, size)
        query = {"path": str(Path(image)), "label": "", "product_id": None}
    elif isinstance(image, Image.Image):
        pixels = prepare_image(image, size)
        query = {"image": image, "label": "", "product_id": None}
    elif isinstance(image, np.ndarray):
        pil = _array_to_image(image)
        pixels = prepare_image(pil, size)
        query = {"image": pil, "label": "", "product_id": None}
    else:
        raise TypeError(f"Expected image to be a path, PIL image or array, got {type(image).__name__}")
    # Decode first, so a bad file is reported before seconds are spent on the model.
    if extractor is None:
        extractor = query_extractor(embedded)
    else:
        check_extractor_matches(meta, extractor_info(extractor))
    return embed_arrays(pixels[None], extractor), pixels, query


def _array_to_image(array: np.ndarray) -> Image.Image:
    """A PIL image from a pixel array, refusing anything whose meaning would be a guess.

    ``uint8`` arrays are used as they are; float arrays must hold values in [0, 1] (what
    ``img_to_array(...) / 255`` and most image libraries give) and are scaled to 0-255.
    Float arrays in 0-255, other dtypes, NaN and other shapes are refused rather than
    clipped, which would turn a [0, 1] photo black and still return neighbors.
    """
    shapes = "(H, W, 3) RGB, (H, W, 4) RGBA or (H, W) greyscale"
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise InvalidArgumentError(f"Expected image to be an array of shape {shapes}, got shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InvalidArgumentError(f"Expected image to hold finite values, got NaN or infinity ({array.dtype})")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InvalidArgumentError(
                f"Expected a float image with values in [0, 1], got values in [{low:g}, {high:g}] ({array.dtype}); "
                "divide 0-255 floats by 255, or pass array.astype('uint8')"
            )
        pixels = np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InvalidArgumentError(
            f"Expected image to be a uint8 array (0-255) or a float array (0-1), got dtype {array.dtype}"
        )
    return Image.fromarray(np.ascontiguousarray(pixels))  # uint8: L, RGB or RGBA by shape
