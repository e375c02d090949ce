import numpy as np
import pytest
from photos import SMALL, write_image

from simrec import embed_images, load_image
from simrec.pipeline.embedding import embed_arrays


@pytest.fixture
def photos(tmp_path):
    good = [
        write_image(tmp_path / f"p{i}.jpg", colour=(20 * i, 100, 200 - 20 * i), size=(300 + 40 * i, 200))
        for i in range(7)
    ]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    return [good[0], bad, *good[1:4], empty, *good[4:]]


def test_vectors_aligned_with_input_and_failures_listed(photos, extractor):
    result = embed_images(photos, extractor, batch_size=3, verbose=False)
    assert result.embeddings.shape == (9, 2048) and result.embeddings.dtype == np.float32
    assert result.ok.tolist() == [True, False, True, True, True, False, True, True, True]
    assert np.isnan(result.embeddings[~result.ok]).all()
    assert np.isfinite(result.embeddings[result.ok]).all()
    assert result.failures["path"].tolist() == [str(photos[1]), str(photos[5])]
    assert "not an image" in result.failures["reason"].iloc[0]
    assert "empty" in result.failures["reason"].iloc[1]


def test_pipeline_matches_plain_per_image_path(photos, extractor):
    result = embed_images(photos, extractor, batch_size=4, verbose=False, n_workers=3)
    for i in np.flatnonzero(result.ok):
        plain = np.asarray(extractor.predict(load_image(photos[i], SMALL)[None], verbose=0))[0]
        assert np.abs(result.embeddings[i] - plain).max() <= 1e-3 * max(1.0, np.abs(plain).max())


def test_batch_size_does_not_change_results(photos, extractor):
    one = embed_images(photos, extractor, batch_size=1, verbose=False)
    many = embed_images(photos, extractor, batch_size=8, verbose=False)
    np.testing.assert_allclose(one.embeddings[one.ok], many.embeddings[many.ok], rtol=1e-4, atol=1e-4)


def test_writes_into_a_preallocated_array(photos, extractor, tmp_path):
    out = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+", dtype=np.float32, shape=(9, 2048))
    result = embed_images(photos, extractor, verbose=False, out=out)
    assert result.embeddings is out and np.isfinite(out[result.ok]).all()
    with pytest.raises(ValueError, match="Expected out"):
        embed_images(photos, extractor, verbose=False, out=np.zeros((2, 2), np.float32))


def test_empty_input_and_bad_batch_size(extractor):
    result = embed_images([], extractor, verbose=False)
    assert result.embeddings.shape == (0, 2048) and len(result.failures) == 0
    with pytest.raises(ValueError, match="batch_size"):
        embed_images([], extractor, batch_size=0)
    assert embed_arrays(np.zeros((0, SMALL, SMALL, 3), np.uint8), extractor).shape == (0, 2048)
