"""How well neighbours share a label: leave-one-out precision@k and mAP@k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from simrec.defaults import N_NEIGHBORS
from simrec.errors import InvalidArgumentError
from simrec.neighbors import CosineNeighbors


def evaluate(
    neighbors: CosineNeighbors,
    labels: Sequence[str] | np.ndarray,
    k: int = N_NEIGHBORS,
) -> dict[str, Any]:
    """Leave-one-out retrieval quality over the labelled items of fitted neighbours.

    Each labelled item whose label is shared by at least one other item is a query;
    its ``k`` nearest other items are relevant when they carry the same label.
    ``AP@k`` divides by ``min(k, number of other items with the label)``, so a perfect
    ranking scores 1.0 even for small labels.

    Args:
        neighbors: A fitted :class:`CosineNeighbors`.
        labels: One label per fitted item. ``""``, ``None`` and NaN (``pd.NA``, ``NaT``)
            mean unlabelled: such an item is never a query and never relevant.
        k: Neighbours per query, ``1 <= k < n_items``.

    Returns:
        A dict with ``k``, ``n`` (queries evaluated), ``n_unlabelled`` (items without a
        label), ``precision_at_k``, ``map_at_k``,
        ``chance_precision`` (expected precision of a random ranking) and
        ``per_label`` (``{label: {"n", "precision_at_k", "map_at_k"}}``).

    Raises:
        ValueError: ``labels`` does not match the index, ``k`` is out of range, or no
            label is shared by two items.

    Example:
        >>> report = evaluate(embedded.neighbors, embedded.catalog.label, k=5)  # doctest: +SKIP
        >>> report["precision_at_k"]
        0.93
    """
    labels = np.array(["" if _is_missing(label) else str(label) for label in labels], dtype=str)
    n_items = neighbors.n_samples_fit_
    if len(labels) != n_items:
        raise InvalidArgumentError(f"Expected {n_items} labels (one per indexed item), got {len(labels)}")
    values, counts = np.unique(labels, return_counts=True)
    count_of = dict(zip(values, counts))
    queries = np.flatnonzero([label != "" and count_of[label] > 1 for label in labels])
    if len(queries) == 0:
        raise InvalidArgumentError("No label is shared by two items: nothing to evaluate")
    _, neighbours = neighbors.kneighbors(n_neighbors=k)  # validates k
    neighbours = neighbours[queries]
    relevant = labels[neighbours] == labels[queries][:, None]
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


def _is_missing(label: object) -> bool:
    if label is None or (isinstance(label, str) and label == ""):
        return True
    missing = pd.isna(label)  # NaN, pd.NA, NaT; an array-like label gives an array: not missing
    return isinstance(missing, (bool, np.bool_)) and bool(missing)
