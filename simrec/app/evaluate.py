"""How well neighbors share a label: leave-one-out precision@k and mAP@k."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simrec.core.defaults import COLOUR_WEIGHT, N_NEIGHBORS
from simrec.core.deprecation import renamed_keyword
from simrec.core.errors import InvalidArgumentError, MissingFileError
from simrec.core.validation import check_colour_weight
from simrec.embedded_catalog import neighbors_for
from simrec.search.blend import ColourBlendNeighbors
from simrec.search.exact import CosineNeighbors

if TYPE_CHECKING:
    from simrec.embedded_catalog import EmbeddedCatalog

SWEEP_COLOUR_WEIGHTS = tuple(sorted({0.0, COLOUR_WEIGHT, 0.25, 0.5, 0.75, 1.0}))
"""The colour weights ``simrec evaluate --sweep`` tries: look alone, the default, and up to colour alone."""


@renamed_keyword("k", "n_neighbors")
def evaluate(
    neighbors: CosineNeighbors,
    labels: Sequence[str] | np.ndarray,
    n_neighbors: int = N_NEIGHBORS,
    *,
    colour_weight: float = 0.0,
    colours: np.ndarray | None = None,
) -> dict[str, Any]:
    """Leave-one-out retrieval quality over the labelled items of fitted neighbors.

    Each labelled item whose label is shared by at least one other item is a query;
    its ``k = n_neighbors`` nearest other items are relevant when they carry the same label.
    ``AP@k`` divides by ``min(k, number of other items with the label)``, so a perfect
    ranking scores 1.0 even for small labels.

    Args:
        neighbors: A fitted :class:`CosineNeighbors`.
        labels: One label per fitted item. ``""``, ``None`` and NaN (``pd.NA``, ``NaT``)
            mean unlabelled: such an item is never a query and never relevant.
        n_neighbors: Neighbors per query (the ``k`` of precision@k), ``1 <= n_neighbors < n_items``.
            Formerly ``k``, which still works with a ``FutureWarning``.
        colour_weight: Rank by a blend of look and colour, from 0 (default: the
            embedding alone) to 1 (colour alone); see :mod:`simrec.core.colour_signature`.
        colours: ``(n_items, N_BINS)`` colour signatures aligned with the fitted items
            (``embedded.colours``); needed when ``colour_weight > 0``.

    Returns:
        A dict with ``k`` (``n_neighbors``, as in precision@k), ``n`` (queries evaluated),
        ``n_unlabelled`` (items without a label), ``precision_at_k``, ``map_at_k``,
        ``chance_precision`` (expected precision of a random ranking) and
        ``per_label`` (``{label: {"n", "precision_at_k", "map_at_k"}}``).

    Raises:
        InvalidArgumentError: ``labels`` does not match the index, ``n_neighbors`` or ``colour_weight`` is out
            of range, no label is shared by two items, or ``colour_weight > 0`` without ``colours``.

    Example:
        >>> import numpy as np
        >>> from simrec import CosineNeighbors
        >>> X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
        >>> report = evaluate(CosineNeighbors().fit(X), ["red", "red", "blue", "blue"], n_neighbors=1)
        >>> float(report["precision_at_k"])
        1.0
    """
    neighbors = _with_colour(neighbors, colour_weight, colours)
    labels = np.array(["" if _is_missing(label) else str(label) for label in labels], dtype=str)
    n_items = neighbors.n_samples_fit_
    if len(labels) != n_items:
        raise InvalidArgumentError(f"Expected {n_items} labels (one per indexed item), got {len(labels)}")
    values, counts = np.unique(labels, return_counts=True)
    count_of = dict(zip(values, counts))
    queries = np.flatnonzero([label != "" and count_of[label] > 1 for label in labels])
    if len(queries) == 0:
        raise InvalidArgumentError("No label is shared by two items: nothing to evaluate")
    k = n_neighbors
    _, neighbors = neighbors.kneighbors(n_neighbors=k)  # validates k
    neighbors = neighbors[queries]
    relevant = labels[neighbors] == labels[queries][:, None]
    precision = relevant.mean(axis=1)
    hits_so_far = np.cumsum(relevant, axis=1)
    precision_at_rank = hits_so_far / np.arange(1, k + 1)
    possible = np.minimum(k, np.array([count_of[labels[q]] - 1 for q in queries]))
    average_precision = (precision_at_rank * relevant).sum(axis=1) / possible
    chance = np.array([(count_of[labels[q]] - 1) / (n_items - 1) for q in queries])

    per_label = {}
    for label in sorted(set(labels[queries])):
        mask = labels[queries] == label
        per_label[label] = {
            "n": int(mask.sum()),
            "precision_at_k": float(precision[mask].mean()),
            "map_at_k": float(average_precision[mask].mean()),
        }
    return {
        "k": int(k),
        "n": int(len(queries)),
        "n_unlabelled": int((labels == "").sum()),
        "precision_at_k": float(precision.mean()),
        "map_at_k": float(average_precision.mean()),
        "chance_precision": float(chance.mean()),
        "per_label": per_label,
    }


@renamed_keyword("k", "n_neighbors")
def sweep_colour_weight(
    embedded: EmbeddedCatalog,
    labellings: Mapping[str, Sequence[str] | np.ndarray],
    n_neighbors: int = N_NEIGHBORS,
    colour_weights: Sequence[float] = SWEEP_COLOUR_WEIGHTS,
) -> pd.DataFrame:
    """:func:`evaluate` at several colour weights, for one or more labellings of the items.

    Args:
        embedded: An index with colour signatures (``embedded.colours``).
        labellings: ``{name: labels}``, one label per item each, e.g. ``{"label":
            embedded.catalog["label"], "type": label_from(embedded.catalog["product_id"],
            r"/([a-z]+)_\\d+$")}``.
        n_neighbors: Neighbors per query (formerly ``k``, which still works with a ``FutureWarning``).
        colour_weights: The weights to try, each from 0 to 1.

    Returns:
        DataFrame with one row per labelling, colour weight and label: ``labelling``,
        ``colour_weight``, ``label`` (``"(all)"`` for the whole labelling), ``n``,
        ``precision_at_k``, ``map_at_k``, ``chance_precision`` (on the ``"(all)"`` rows).

    Raises:
        InvalidArgumentError: No labelling; as :func:`evaluate`; or a weight above 0 on an index without colour
            signatures (the message says how to add them).

    Example:
        >>> sweep = sweep_colour_weight(embedded, {"colour": embedded.catalog["label"]})  # doctest: +SKIP
        >>> sweep[sweep.label == "(all)"].pivot(index="colour_weight", columns="labelling")  # doctest: +SKIP
    """
    if not labellings:
        raise InvalidArgumentError("Expected at least one labelling to evaluate, got none")
    weights = [check_colour_weight(w) for w in colour_weights]
    rows = []
    for weight in weights:
        neighbors = _Precomputed(neighbors_for(embedded, weight), n_neighbors)  # one search per weight
        for name, labels in labellings.items():
            report = evaluate(neighbors, labels, n_neighbors=n_neighbors)
            common = {"labelling": name, "colour_weight": weight}
            rows.append(
                {
                    **common,
                    "label": "(all)",
                    "n": report["n"],
                    "precision_at_k": report["precision_at_k"],
                    "map_at_k": report["map_at_k"],
                    "chance_precision": report["chance_precision"],
                }
            )
            rows.extend({**common, "label": label, **values} for label, values in report["per_label"].items())
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


SWEEP_COLUMNS = ["labelling", "colour_weight", "label", "n", "precision_at_k", "map_at_k", "chance_precision"]


def label_from(product_ids: Sequence[str] | pd.Series, pattern: str) -> np.ndarray:
    """A second labelling taken from each ``product_id`` by a regular expression with one group.

    Args:
        product_ids: The catalog's ``product_id`` values.
        pattern: A regular expression with exactly one group, searched in each id; ids
            where it does not match get the empty label (not evaluated).

    Returns:
        ``(n_items,)`` array of str labels.

    Raises:
        InvalidArgumentError: ``pattern`` is not a valid regular expression, or has other than one group.

    Example:
        >>> label_from(["red/shirt_1", "blue/bag_2"], r"/([a-z]+)_\\d+$").tolist()
        ['shirt', 'bag']
    """
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise InvalidArgumentError(f"--label-from {pattern!r} is not a valid regular expression: {error}") from None
    if compiled.groups != 1:
        raise InvalidArgumentError(
            f"Expected --label-from to have exactly one group, e.g. '/([a-z]+)_\\d+$', got {pattern!r} "
            f"with {compiled.groups} groups"
        )
    labels = []
    for product_id in product_ids:
        match = compiled.search(str(product_id))
        labels.append(match.group(1) or "" if match else "")
    return np.asarray(labels, dtype=object)


def labels_from_table(product_ids: Sequence[str] | pd.Series, table: str | os.PathLike, column: str) -> np.ndarray:
    """A labelling read from a metadata table (a shop's ``styles.csv``), joined by product id.

    The table's id column is ``product_id``, else ``id``. A row labels the product whose
    ``product_id`` equals its id or, when no product has that id, the products whose
    file name does (``images/15970`` for id ``15970``): a shop's own table works on its
    photos as they are named.

    Args:
        product_ids: The catalog's ``product_id`` values.
        table: A CSV file with an id column and ``column``.
        column: The column that holds the labels (``articleType``, ``baseColour``).

    Returns:
        ``(n_items,)`` array of str labels, ``""`` (unlabelled) where no row matched or the
        cell is empty.

    Raises:
        MissingFileError: ``table`` does not exist.
        InvalidArgumentError: It cannot be read, has no id column or no ``column``, repeats
            an id, or matches no product.

    Example:
        >>> labels_from_table(["images/15970"], "styles.csv", "articleType")  # doctest: +SKIP
        array(['Shirts'], dtype=object)
    """
    path = Path(table)
    if not path.is_file():
        raise MissingFileError(f"--labels-csv file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="error")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidArgumentError(f"--labels-csv {path} is not a readable CSV table: {error}") from None
    id_column = next((name for name in ("product_id", "id") if name in frame.columns), None)
    if id_column is None or column not in frame.columns:
        missing = "an id column ('product_id' or 'id')" if id_column is None else f"the column {column!r}"
        raise InvalidArgumentError(f"--labels-csv {path} has no {missing}; its columns: {', '.join(frame.columns)}")
    ids = frame[id_column].str.strip()
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise InvalidArgumentError(
            f"--labels-csv {path} repeats {len(repeated)} ids in {id_column!r}, e.g. {repeated.iloc[0]!r}"
        )
    by_id = dict(zip(ids, frame[column].str.strip()))
    product_ids = [str(product_id) for product_id in product_ids]
    labels = [by_id.get(product_id) for product_id in product_ids]
    labels = [
        by_id.get(pid.rsplit("/", 1)[-1], "") if label is None else label for pid, label in zip(product_ids, labels)
    ]
    if not any(labels):
        example = product_ids[0] if product_ids else "none"
        raise InvalidArgumentError(
            f"--labels-csv {path}: no product_id of the index (e.g. {example!r}) nor its file name matches the "
            f"{id_column!r} column (e.g. {ids.iloc[0] if len(ids) else 'empty'!r}), or every {column!r} is empty"
        )
    return np.asarray(labels, dtype=object)


def joint_labels(labellings: Mapping[str, Sequence[str] | np.ndarray]) -> np.ndarray:
    """One labelling that two items share exactly when they share every label of ``labellings``.

    An item unlabelled in any of them is unlabelled in the joint one. For a type and a colour
    labelling, its precision@k is the share of neighbors of the same type *and* colour.
    """
    columns = [["" if _is_missing(label) else str(label) for label in labels] for labels in labellings.values()]
    return np.asarray([" & ".join(parts) if all(parts) else "" for parts in zip(*columns)], dtype=object)


def distinguishes(labels: Sequence[str] | np.ndarray) -> bool:
    """Whether a labelling can be evaluated and means something: two labels or more, one of them on two items.

    Photos at the top of a source have no label, and photos all in one folder share one:
    neither says anything about the neighbors.
    """
    present = pd.Series(["" if _is_missing(label) else str(label) for label in labels])
    present = present[present != ""]
    return present.nunique() >= 2 and bool(present.duplicated().any())


class _Precomputed:
    """Fitted neighbors whose all-items top ``k`` is searched once and then reused."""

    def __init__(self, neighbors: CosineNeighbors | ColourBlendNeighbors, k: int) -> None:
        self.n_samples_fit_ = neighbors.n_samples_fit_
        self._k = k
        self._result = neighbors.kneighbors(n_neighbors=k)

    def kneighbors(self, X: None = None, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if X is not None or n_neighbors not in (None, self._k):
            raise AssertionError("precomputed neighbors answer only all-items queries with their own k")
        return self._result


def _with_colour(
    neighbors: CosineNeighbors, colour_weight: float, colours: np.ndarray | None
) -> CosineNeighbors | ColourBlendNeighbors:
    weight = check_colour_weight(colour_weight)
    if weight == 0.0:
        return neighbors
    if colours is None:
        raise InvalidArgumentError(
            "colour_weight > 0 needs the items' colour signatures: pass colours=embedded.colours"
        )
    if not isinstance(neighbors, CosineNeighbors):
        raise InvalidArgumentError(
            f"Expected a fitted CosineNeighbors to blend with colour, got {type(neighbors).__name__}"
        )
    return ColourBlendNeighbors.from_cosine(neighbors, colours, colour_weight=weight)


def _is_missing(label: object) -> bool:
    if label is None or (isinstance(label, str) and label == ""):
        return True
    missing = pd.isna(label)  # NaN, pd.NA, NaT; an array-like label gives an array: not missing
    return isinstance(missing, (bool, np.bool_)) and bool(missing)
