"""How well neighbors share a label: leave-one-out precision@k and mAP@k."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simrec.app.querying import choose_colour_weight
from simrec.core.defaults import COLOUR_WEIGHT, N_NEIGHBORS
from simrec.core.deprecation import renamed_keyword
from simrec.core.errors import InvalidArgumentError, MissingFileError
from simrec.core.validation import check_colour_weight
from simrec.embedded_catalog import neighbors_for, require_colours
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
        raise InvalidArgumentError(
            f"pattern {pattern!r} is not a valid regular expression: {error}", parameters=("pattern",)
        ) from None
    if compiled.groups != 1:
        raise InvalidArgumentError(
            f"Expected pattern to have exactly one group, e.g. '/([a-z]+)_\\d+$', got {pattern!r} "
            f"with {compiled.groups} groups",
            parameters=("pattern",),
        )
    labels = []
    for product_id in product_ids:
        match = compiled.search(str(product_id))
        labels.append(match.group(1) or "" if match else "")
    return np.asarray(labels, dtype=object)


def labels_from_table(
    product_ids: Sequence[str] | pd.Series, labels_csv: str | os.PathLike, label_column: str
) -> np.ndarray:
    """A labelling read from a metadata table (a shop's ``styles.csv``), joined by product id.

    The table's id column is ``product_id``, else ``id``. A row labels the product whose
    ``product_id`` equals its id or, when no product has that id, the products whose
    file name does (``images/15970`` for id ``15970``): a shop's own table works on its
    photos as they are named.

    Args:
        product_ids: The catalog's ``product_id`` values.
        labels_csv: A CSV file with an id column and ``label_column``.
        label_column: The column that holds the labels (``articleType``, ``baseColour``).

    Returns:
        ``(n_items,)`` array of str labels, ``""`` (unlabelled) where no row matched or the
        cell is empty.

    Raises:
        MissingFileError: ``labels_csv`` does not exist.
        InvalidArgumentError: It cannot be read, has no id column or no ``label_column``, repeats
            an id, or matches no product.

    Example:
        >>> labels_from_table(["images/15970"], "styles.csv", "articleType")  # doctest: +SKIP
        array(['Shirts'], dtype=object)
    """
    path, column, named = Path(labels_csv), label_column, ("labels_csv",)
    if not path.is_file():
        raise MissingFileError(f"labels_csv file not found: {path}", parameters=named)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="error")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InvalidArgumentError(
            f"labels_csv {path} is not a readable CSV table: {error}", parameters=named
        ) from None
    id_column = next((name for name in ("product_id", "id") if name in frame.columns), None)
    if id_column is None or column not in frame.columns:
        missing = "an id column ('product_id' or 'id')" if id_column is None else f"the column {column!r}"
        raise InvalidArgumentError(
            f"labels_csv {path} has no {missing}; its columns: {', '.join(frame.columns)}", parameters=named
        )
    ids = frame[id_column].str.strip()
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise InvalidArgumentError(
            f"labels_csv {path} repeats {len(repeated)} ids in {id_column!r}, e.g. {repeated.iloc[0]!r}",
            parameters=named,
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
            f"labels_csv {path}: no product_id of the index (e.g. {example!r}) nor its file name matches the "
            f"{id_column!r} column (e.g. {ids.iloc[0] if len(ids) else 'empty'!r}), or every {column!r} is empty",
            parameters=named,
        )
    return np.asarray(labels, dtype=object)


def collect_labellings(
    catalog: pd.DataFrame,
    *,
    labels_csv: str | os.PathLike | None = None,
    label_columns: Sequence[str] = (),
    pattern: str | None = None,
) -> dict[str, np.ndarray | pd.Series]:
    """The labellings an evaluation compares: the folder labels, a table's columns, a pattern's, and their joint one.

    The folder labels (``catalog["label"]``) are left out when they distinguish nothing
    (photos at the top of the source, or all in one folder) and another labelling is asked
    for. With two labellings or more, their joint labelling (:func:`joint_labels`) comes last.

    Args:
        catalog: The index's catalog (``product_id`` and ``label`` columns).
        labels_csv: A metadata table whose ``label_columns`` are labellings (:func:`labels_from_table`).
        label_columns: Columns of ``labels_csv``, one labelling each.
        pattern: A regular expression with one group, searched in each ``product_id`` (:func:`label_from`).

    Returns:
        ``{name: labels}``, as :func:`sweep_colour_weight` takes it.

    Raises:
        InvalidArgumentError: ``label_columns`` without ``labels_csv`` or the other way round, or as
            :func:`labels_from_table` and :func:`label_from`.
        MissingFileError: ``labels_csv`` does not exist.
    """
    product_ids = catalog["product_id"]
    asked: dict[str, np.ndarray | pd.Series] = {}
    if label_columns and labels_csv is None:
        raise InvalidArgumentError(
            "label_columns needs labels_csv (the table that holds them)", parameters=("label_columns", "labels_csv")
        )
    if labels_csv is not None:
        if not label_columns:
            raise InvalidArgumentError(
                "labels_csv needs label_columns (the columns that hold the labels)",
                parameters=("labels_csv", "label_columns"),
            )
        for column in label_columns:
            asked[column] = labels_from_table(product_ids, labels_csv, column)
    if pattern:
        asked[pattern] = label_from(product_ids, pattern)
    labellings: dict[str, np.ndarray | pd.Series] = {"label": catalog["label"]}
    if asked and not distinguishes(catalog["label"]):
        labellings = {}
    labellings.update(asked)
    if len(labellings) >= 2:
        labellings[" & ".join(labellings)] = joint_labels(labellings)
    return labellings


def evaluate_index(
    embedded: EmbeddedCatalog,
    n_neighbors: int = N_NEIGHBORS,
    *,
    colour_weight: float | None = None,
    sweep: bool = False,
    labels_csv: str | os.PathLike | None = None,
    label_columns: Sequence[str] = (),
    pattern: str | None = None,
    index_name: str = "INDEX_DIR",
) -> dict[str, Any] | pd.DataFrame:
    """Evaluate an index as ``simrec evaluate`` does: by its folder labels, or by several labellings and weights.

    By look alone on the folder labels, it is :func:`evaluate`'s report. With a colour weight
    above 0 (the default is 0, see :func:`simrec.app.querying.choose_colour_weight`), the sweep
    of :data:`SWEEP_COLOUR_WEIGHTS`, or another labelling, it is :func:`sweep_colour_weight`'s
    table for the labellings of :func:`collect_labellings`.

    Args:
        embedded: The index.
        n_neighbors: Neighbors per query (the ``k`` of precision@k).
        colour_weight: From 0 to 1; None: 0 (look alone).
        sweep: Evaluate at every weight of :data:`SWEEP_COLOUR_WEIGHTS` instead.
        labels_csv: As :func:`collect_labellings`.
        label_columns: As :func:`collect_labellings`.
        pattern: As :func:`collect_labellings`.
        index_name: The index as the user named it, for messages.

    Returns:
        :func:`evaluate`'s dict, or :func:`sweep_colour_weight`'s DataFrame.

    Raises:
        InvalidArgumentError: As :func:`evaluate`, :func:`collect_labellings` and :func:`sweep_colour_weight`;
            a weight above 0 on an index without colour signatures (the message says how to add them).
        MissingFileError: ``labels_csv`` does not exist.
    """
    weight = choose_colour_weight(embedded, colour_weight, evaluation=True)
    if not (sweep or pattern or labels_csv is not None or label_columns or weight > 0):
        return evaluate(embedded.neighbors, embedded.catalog["label"], n_neighbors=n_neighbors)
    labellings = collect_labellings(
        embedded.catalog, labels_csv=labels_csv, label_columns=label_columns, pattern=pattern
    )
    weights = SWEEP_COLOUR_WEIGHTS if sweep else (weight,)
    if max(weights) > 0:
        require_colours(embedded, index_name)
    return sweep_colour_weight(embedded, labellings, n_neighbors=n_neighbors, colour_weights=weights)


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
