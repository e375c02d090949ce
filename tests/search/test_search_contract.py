"""One contract for every search: exact, blended and approximate answer kneighbors the same way.

In the spirit of scikit-learn's estimator checks: each search is built over the same
hand-made vectors and must give the same shapes, dtypes, ordering, self-exclusion and
errors, and its blocks must add up to its whole answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from simrec import ColourBlendNeighbors, CosineNeighbors, InvalidArgumentError
from simrec.core.colour_signature import N_BINS
from simrec.search.pairs import close_pairs

N, DIM = 40, 8


def _vectors():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N, DIM)).astype(np.float32)
    X[7] = X[3]  # a tie: two items at the same distance from every query
    colours = rng.random((N, N_BINS)).astype(np.float32)
    colours[7] = colours[3]
    return X, colours / colours.sum(axis=1, keepdims=True)


def _exact(X, colours):
    return CosineNeighbors(n_neighbors=4).fit(X), lambda Q, rows=None: {}


def _blend(X, colours):
    search = ColourBlendNeighbors(colour_weight=0.3, n_neighbors=4).fit(X, colours)
    return search, lambda Q, rows=None: {"colours": colours[rows if rows is not None else slice(len(np.atleast_2d(Q)))]}


def _approximate(X, colours):
    pytest.importorskip("faiss", reason="pip install 'simrec[faiss]' runs the approximate search's contract")
    from simrec.search.approximate import ApproximateNeighbors, build_ann

    index, info = build_ann(X, ann_type="hnsw", seed=0)
    return ApproximateNeighbors(index, info, embeddings=X, n_neighbors=4, ef=200), lambda Q, rows=None: {}


SEARCHES = {"exact": _exact, "blend": _blend, "approximate": _approximate}


@pytest.fixture(params=list(SEARCHES))
def search(request):
    X, colours = _vectors()
    built, extra = SEARCHES[request.param](X, colours)
    return built, extra, X


def test_every_search_is_built_on_the_one_kneighbors(search):
    """One skeleton (simrec.search.base) answers for all, so the contract below holds by construction."""
    from simrec.search.base import NeighborsSearch

    built, _, _ = search
    assert isinstance(built, NeighborsSearch)


def test_all_items_answer_shapes_dtypes_and_order(search):
    built, _, _ = search
    distances, indices = built.kneighbors()
    assert distances.shape == indices.shape == (N, 4)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert np.all(np.diff(distances, axis=1) >= 0), "nearest first"
    assert not np.any(indices == np.arange(N)[:, None]), "each item is left out of its own neighbors"
    assert np.all((indices >= 0) & (indices < N))


def test_equal_distances_are_ordered_by_row(search):
    built, extra, X = search
    query = X[3] * 2.0  # items 3 and 7 are equally near
    _, indices = built.kneighbors(query, n_neighbors=2, **extra(query, rows=[3]))
    assert indices[0].tolist() == [3, 7]


def test_one_vector_is_one_query_and_indices_alone(search):
    built, extra, X = search
    distances, indices = built.kneighbors(X[0], n_neighbors=3, **extra(X[0]))
    assert distances.shape == indices.shape == (1, 3)
    assert indices[0, 0] == 0 and distances[0, 0] == pytest.approx(0.0, abs=1e-5)
    only = built.kneighbors(X[:2], n_neighbors=3, return_distance=False, **extra(X[:2]))
    assert isinstance(only, np.ndarray) and only.shape == (2, 3)


def test_blocks_add_up_to_the_whole_answer(search):
    built, _, _ = search
    whole = built.kneighbors(n_neighbors=3)
    blocks = list(built.kneighbors_blocks(n_neighbors=3))
    starts = [start for start, _, _ in blocks]
    assert starts == sorted(starts) and starts[0] == 0
    np.testing.assert_array_equal(np.concatenate([i for _, _, i in blocks]), whole[1])
    np.testing.assert_allclose(np.concatenate([d for _, d, _ in blocks]), whole[0])


@pytest.mark.parametrize(
    ("n_neighbors", "message"),
    [
        (0, r"Expected n_neighbors > 0 \(an int\), got 0"),
        (True, r"Expected n_neighbors > 0 \(an int\), got True"),
        (N, rf"Expected n_neighbors <= n_samples_fit - 1 .*, but n_neighbors = {N}, n_samples_fit = {N}"),
    ],
)
def test_the_same_mistake_gets_the_same_message(search, n_neighbors, message):
    built, _, _ = search
    with pytest.raises(InvalidArgumentError, match=message):
        built.kneighbors(n_neighbors=n_neighbors)
    with pytest.raises(InvalidArgumentError, match=message):
        built.kneighbors_blocks(n_neighbors=n_neighbors)  # before the first block


def test_outside_queries_may_ask_for_every_item(search):
    built, extra, X = search
    _, indices = built.kneighbors(X[:1], n_neighbors=N, **extra(X[:1]))
    assert sorted(indices[0].tolist()) == list(range(N))


def test_queries_of_the_wrong_dimension_or_not_finite_are_refused(search):
    built, extra, X = search
    wrong = np.ones((1, DIM + 1), np.float32)
    with pytest.raises(InvalidArgumentError, match=rf"Expected queries with {DIM} features, got {DIM + 1}"):
        built.kneighbors(wrong, **extra(wrong))
    bad = X[:1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN or infinite"):
        built.kneighbors(bad, **extra(bad))


@pytest.mark.parametrize("make", [lambda: CosineNeighbors(), lambda: ColourBlendNeighbors()])
def test_an_unfitted_search_says_so(make):
    with pytest.raises(InvalidArgumentError, match=r"is not fitted yet: call fit\(embeddings"):
        make().kneighbors()
    with pytest.raises(InvalidArgumentError, match=r"is not fitted yet: call fit\(embeddings"):
        close_pairs(make(), 0.1, 5)
