"""Canonical distances: the candidates a fast float32 scan picks always hold the true top k (simrec.search.rerank)."""

from __future__ import annotations

import numpy as np
import pytest

from simrec.search.rerank import canonical_cosine, canonical_top_k, cosine_bound


def _brute_force(X: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    distances = canonical_cosine(X, query, np.arange(len(X))).astype(np.float32)
    order = np.lexsort((np.arange(len(X)), distances))[:k]
    return distances[order], order


def _fast(X: np.ndarray, query: np.ndarray) -> np.ndarray:
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    return (1.0 - unit @ (query / np.linalg.norm(query))).astype(np.float32)


@pytest.mark.parametrize("dim", [8, 256, 2048])
def test_the_fast_distances_stay_within_the_bound(dim):
    rng = np.random.default_rng(dim)
    X = rng.normal(size=(500, dim)).astype(np.float32)
    query = rng.normal(size=dim).astype(np.float32)
    gap = np.abs(_fast(X, query).astype(np.float64) - canonical_cosine(X, query, np.arange(500)))
    assert gap.max() <= cosine_bound(dim)


@pytest.mark.parametrize("seed", range(5))
def test_the_top_k_is_the_brute_force_top_k(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 64)).astype(np.float32)
    X[50:60] = X[10] * rng.uniform(0.5, 2.0, size=(10, 1)).astype(np.float32)  # near-ties: scaled copies
    query = X[10] + rng.normal(scale=1e-3, size=64).astype(np.float32)
    score = lambda rows: canonical_cosine(X, query, rows)  # noqa: E731
    distances, rows = canonical_top_k(_fast(X, query), 12, score, cosine_bound(64))
    expected_distances, expected_rows = _brute_force(X, query, 12)
    assert rows.tolist() == expected_rows.tolist()
    np.testing.assert_array_equal(distances, expected_distances)


def test_more_ties_than_candidates_widen_to_everything_under_the_line():
    """Sixty copies of one vector: the fast scan orders them by noise, the answer by row."""
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(1, 32)).astype(np.float32), 60, axis=0)
    X = np.vstack([X, rng.normal(size=(40, 32)).astype(np.float32)])
    query = X[0] + np.float32(0.01)
    bound = cosine_bound(32)
    fast = _fast(X, query)
    fast[:60] += rng.uniform(0, bound / 2, size=60).astype(np.float32)  # a scan may sum the ties differently
    score = lambda rows: canonical_cosine(X, query, rows)  # noqa: E731
    _, rows = canonical_top_k(fast, 5, score, bound)
    assert rows.tolist() == [0, 1, 2, 3, 4]


def test_an_item_left_out_is_never_an_answer():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 16)).astype(np.float32)
    fast = _fast(X, X[3])
    fast[3] = np.inf  # the query itself
    _, rows = canonical_top_k(fast, 29, lambda rows: canonical_cosine(X, X[3], rows), cosine_bound(16))
    assert 3 not in rows.tolist() and sorted(rows.tolist()) == [r for r in range(30) if r != 3]


def test_a_zero_vector_is_at_distance_one():
    X = np.array([[0, 0], [1, 0]], dtype=np.float32)
    assert canonical_cosine(X, np.array([1, 0], dtype=np.float32), np.arange(2)).tolist() == [1.0, 0.0]
