import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from simrec import CosineNeighbors

# Four items on the unit circle at 0, 10, 90 and 180 degrees, plus a scaled copy of item 0.
ANGLES = np.radians([0, 10, 90, 180])
VECTORS = np.c_[np.cos(ANGLES), np.sin(ANGLES)].astype(np.float32)
VECTORS = np.vstack([VECTORS, 3 * VECTORS[:1]])


def test_hand_made_neighbors_and_distances():
    index = CosineNeighbors(n_neighbors=2).fit(VECTORS)
    distances, indices = index.kneighbors(np.array([1.0, 0.05]))
    assert indices.tolist() == [[0, 4]]  # same direction, whatever the length
    assert distances[0, 0] == pytest.approx(1 - 1 / np.hypot(1, 0.05), abs=1e-6)
    _, indices = index.kneighbors(np.array([[0.0, 1.0]]), n_neighbors=3)
    assert indices[0, :2].tolist() == [2, 1]


def test_all_items_query_leaves_each_item_out():
    index = CosineNeighbors().fit(VECTORS)
    distances, indices = index.kneighbors(n_neighbors=2)
    assert all(i not in row for i, row in enumerate(indices))
    assert indices[0].tolist() == [4, 1] and distances[0, 0] == pytest.approx(0, abs=1e-6)
    assert indices[3].tolist() == [2, 1]  # from 180 degrees: 90 first, then 10
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_distance_range_and_opposite_vectors():
    distances, _ = CosineNeighbors().fit(VECTORS).kneighbors(np.array([-1.0, 0.0]), n_neighbors=5)
    assert distances[0, 0] == pytest.approx(0, abs=1e-6) and distances[0, -1] == pytest.approx(2, abs=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_same_results_as_sklearn_brute_cosine(chunk_size):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, 64)).astype(np.float32)
    queries = rng.normal(size=(20, 64)).astype(np.float32)
    ours = CosineNeighbors(chunk_size=chunk_size).fit(data)
    reference = NearestNeighbors(metric="cosine", algorithm="brute").fit(data)
    for X in (queries, None):
        d_ours, i_ours = ours.kneighbors(X, n_neighbors=10)
        d_ref, i_ref = reference.kneighbors(X, n_neighbors=10)
        np.testing.assert_allclose(d_ours, d_ref, atol=1e-5)
        assert (i_ours == i_ref).mean() > 0.99  # any difference is a tie


def test_single_queries_match_sklearn():
    """One query at a time takes the matrix-vector path; it must agree too."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(500, 32)).astype(np.float32)
    ours = CosineNeighbors().fit(data)
    reference = NearestNeighbors(metric="cosine", algorithm="brute").fit(data)
    for query in rng.normal(size=(10, 32)).astype(np.float32):
        d_ours, i_ours = ours.kneighbors(query, n_neighbors=5)
        d_ref, i_ref = reference.kneighbors(query[None], n_neighbors=5)
        np.testing.assert_allclose(d_ours, d_ref, atol=1e-5)
        np.testing.assert_array_equal(i_ours, i_ref)


def test_sklearn_implementation_gives_the_same_answers():
    data = np.random.default_rng(2).normal(size=(50, 16))
    fast = CosineNeighbors().fit(data).kneighbors(n_neighbors=4)
    slow = CosineNeighbors(implementation="sklearn").fit(data).kneighbors(n_neighbors=4)
    np.testing.assert_allclose(fast[0], slow[0], atol=1e-5)
    np.testing.assert_array_equal(fast[1], slow[1])


def test_the_former_backend_argument_still_works_and_says_its_new_name():
    data = np.random.default_rng(2).normal(size=(20, 8))
    with pytest.warns(FutureWarning, match=r"now CosineNeighbors\(implementation=...\)"):
        old = CosineNeighbors(backend="sklearn")
    assert old.implementation == "sklearn"
    with pytest.raises(ValueError, match="Expected implementation in"):
        CosineNeighbors(implementation="torch").fit(data)


def test_ties_are_ordered_by_row():
    data = np.ones((6, 3), dtype=np.float32)
    _, indices = CosineNeighbors().fit(data).kneighbors(np.ones(3), n_neighbors=6)
    assert indices[0].tolist() == [0, 1, 2, 3, 4, 5]


def test_zero_vector_is_at_distance_one_like_sklearn():
    data = np.array([[0, 0], [1, 0]], dtype=np.float32)
    distances, indices = CosineNeighbors().fit(data).kneighbors(np.array([1.0, 0.0]), n_neighbors=2)
    assert indices[0].tolist() == [1, 0] and distances[0].tolist() == pytest.approx([0, 1])


def test_memmap_input_is_not_copied(tmp_path):
    path = tmp_path / "e.npy"
    np.save(path, np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32))
    vectors = np.load(path, mmap_mode="r")
    index = CosineNeighbors().fit(vectors)
    assert np.shares_memory(index._fit_X, vectors)


def test_errors_say_what_was_expected_and_got():
    index = CosineNeighbors().fit(VECTORS)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit - 1.*n_neighbors = 5, n_samples_fit = 5"):
        index.kneighbors(n_neighbors=5)
    with pytest.raises(ValueError, match="n_neighbors = 6, n_samples_fit = 5"):
        index.kneighbors(VECTORS, n_neighbors=6)
    with pytest.raises(ValueError, match="n_neighbors > 0"):
        index.kneighbors(n_neighbors=0)
    with pytest.raises(ValueError, match="2 features, got 3"):
        index.kneighbors(np.ones(3))
    with pytest.raises(ValueError, match="empty catalog"):
        CosineNeighbors().fit(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        CosineNeighbors().fit(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="not fitted"):
        CosineNeighbors().kneighbors()
    with pytest.raises(ValueError, match="implementation"):
        CosineNeighbors(implementation="faiss").fit(VECTORS)
