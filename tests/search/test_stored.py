"""Stored neighbors on hand-made lists: what a lookup answers, and what it refuses (simrec.search.stored)."""

from __future__ import annotations

import numpy as np
import pytest

from simrec import InvalidArgumentError
from simrec.search.stored import StoredNeighbors


def _stored() -> StoredNeighbors:
    rows = np.array([[[1, 2, 3], [1, 3, -1]], [[0, 2, 3], [0, 2, 3]]], dtype=np.int32)
    distances = np.array([[[0.1, 0.2, 0.3], [0.1, 0.3, np.nan]], [[0.1, 0.4, 0.5], [0.1, 0.4, 0.5]]], dtype=np.float32)
    return StoredNeighbors(rows=rows, distances=distances, colour_weight=0.15)


def test_a_lookup_gives_the_first_k_of_either_list():
    stored = _stored()
    distances, rows = stored.lookup(0, 2)
    assert rows.tolist() == [1, 2] and rows.dtype == np.int64 and distances.dtype == np.float32
    distances, rows = stored.lookup(0, 3, distinct=True)
    assert rows.tolist() == [1, 3] and distances.tolist() == pytest.approx([0.1, 0.3])  # the list ran out


def test_it_answers_only_its_own_colour_weight_and_at_most_k():
    stored = _stored()
    assert stored.n_neighbors == 3
    assert stored.answers(3, 0.15) and not stored.answers(4, 0.15) and not stored.answers(2, 0.0)


def test_lists_of_another_shape_are_refused():
    with pytest.raises(InvalidArgumentError, match=r"Expected stored neighbors of shape \(n_items, 2, K\)"):
        StoredNeighbors(rows=np.zeros((2, 3), np.int32), distances=np.zeros((2, 3), np.float32), colour_weight=0.0)
