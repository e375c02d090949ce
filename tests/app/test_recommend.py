import numpy as np
import pytest
from photos import SMALL
from PIL import Image

from simrec import IndexIntegrityError, build_extractor, plot_recommendation_grid, plot_recommendations, recommend


def test_similar_to_a_product(embedded):
    results = recommend(embedded, product_id="red/item_1", n_neighbors=3)
    assert list(results.columns) == ["rank", "product_id", "path", "label", "distance"]
    assert results["rank"].tolist() == [1, 2, 3]
    assert "red/item_1" not in results["product_id"].tolist()
    assert results["distance"].is_monotonic_increasing
    assert results.attrs["query"]["label"] == "red"
    assert results.attrs["warning"] and "UNTRAINED" in results.attrs["warning"]


def test_catalog_photo_as_image_query_finds_itself(embedded, extractor):
    path = embedded.catalog.set_index("product_id").loc["green/item_2", "path"]
    results = recommend(embedded, image=path, n_neighbors=2, extractor=extractor, colour_weight=0)
    assert results["product_id"].iloc[0] == "green/item_2"
    assert results["distance"].iloc[0] < 1e-4
    with Image.open(path) as picture:
        from_pil = recommend(embedded, image=picture.copy(), n_neighbors=1, extractor=extractor)
    assert from_pil["product_id"].iloc[0] == "green/item_2"
    from_array = recommend(embedded, image=np.asarray(Image.open(path)), n_neighbors=1, extractor=extractor)
    assert from_array["product_id"].iloc[0] == "green/item_2"


def test_clear_errors(embedded, extractor, tmp_path):
    with pytest.raises(KeyError, match="unknown product_id 'red/item_9'; did you mean 'red/item_4'"):
        recommend(embedded, product_id="red/item_9")
    with pytest.raises(ValueError, match="n_neighbors <= 11"):
        recommend(embedded, product_id="red/item_1", n_neighbors=12)
    with pytest.raises(ValueError, match="n_neighbors > 0"):
        recommend(embedded, product_id="red/item_1", n_neighbors=0)
    with pytest.raises(ValueError, match="exactly one"):
        recommend(embedded)
    from simrec import ImageDecodeError

    with pytest.raises(ImageDecodeError, match="not found"):
        recommend(embedded, image=tmp_path / "missing.jpg", extractor=extractor)


def test_query_extractor_must_match_the_index(embedded):
    other = build_extractor(weights=None, image_size=SMALL, seed=5)
    path = embedded.catalog["path"].iloc[0]
    with pytest.raises(IndexIntegrityError, match="different extractor.*random\\(seed=0\\)"):
        recommend(embedded, image=path, extractor=other)


def test_query_extractor_image_size_must_match_the_index(embedded):
    other = build_extractor(weights=None, image_size=SMALL * 2, seed=0)
    with pytest.raises(IndexIntegrityError, match="image_size: index 64, extractor 128"):
        recommend(embedded, image=embedded.catalog["path"].iloc[0], extractor=other)


def test_plots_return_figures_with_titles(embedded, tmp_path):
    results = recommend(embedded, product_id="blue/item_3", n_neighbors=4)
    figure = plot_recommendations(results)
    axes = figure.get_axes()
    assert len(axes) == 5
    assert axes[0].get_title().startswith("query: blue/item_3")
    assert axes[1].get_title().startswith("#1 ") and "d=" in axes[1].get_title()
    assert "UNTRAINED" in figure.get_suptitle()
    figure.savefig(tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 1000
    grid = plot_recommendation_grid([results, recommend(embedded, product_id="red/item_2", n_neighbors=2)])
    assert len(grid.get_axes()) == 10


def test_library_never_calls_show(embedded, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() was called"))
    plot_recommendations(recommend(embedded, product_id="red/item_1", n_neighbors=2))


def _photo(embedded) -> np.ndarray:
    with Image.open(embedded.catalog.set_index("product_id").loc["green/item_2", "path"]) as picture:
        return np.asarray(picture.convert("RGB"))


def test_uint8_arrays_are_used_as_they_are_and_unit_floats_are_scaled(embedded, extractor):
    pixels = _photo(embedded)
    expected = recommend(embedded, image=pixels, n_neighbors=3, extractor=extractor)
    assert expected["product_id"].iloc[0] == "green/item_2"
    for floats in (pixels / 255.0, (pixels / 255.0).astype(np.float32), (pixels / 255.0).astype(np.float16)):
        scaled = recommend(embedded, image=floats, n_neighbors=3, extractor=extractor)
        assert scaled["product_id"].tolist() == expected["product_id"].tolist()
        np.testing.assert_allclose(scaled["distance"], expected["distance"], atol=1e-4)


def test_grey_and_rgba_arrays_read_like_the_same_pil_images(embedded, extractor):
    pixels = _photo(embedded)
    grey = np.asarray(Image.fromarray(pixels).convert("L"))
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    for array, picture in ((grey, Image.fromarray(grey)), (rgba, Image.fromarray(pixels).convert("RGBA"))):
        from_array = recommend(embedded, image=array, n_neighbors=3, extractor=extractor)
        from_pil = recommend(embedded, image=picture, n_neighbors=3, extractor=extractor)
        assert from_array["product_id"].tolist() == from_pil["product_id"].tolist()
        np.testing.assert_array_equal(from_array["distance"], from_pil["distance"])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8, 3), 200.0), r"values in \[0, 1\], got values in \[200, 200\] \(float64\)"),
        (np.full((8, 8, 3), -0.5, np.float32), r"got values in \[-0.5, -0.5\] \(float32\)"),
        (np.full((8, 8, 3), np.nan), "NaN"),
        (np.full((8, 8, 3), np.inf, np.float32), "infinity"),
        (np.zeros((8, 8, 3), np.uint16), "got dtype uint16"),
        (np.zeros((8, 8, 3), np.int64), "got dtype int64"),
        (np.zeros((8, 8, 3), bool), "got dtype bool"),
        (np.zeros((8, 8, 2), np.uint8), r"got shape \(8, 8, 2\)"),
        (np.zeros((1, 8, 8, 3), np.uint8), r"got shape \(1, 8, 8, 3\)"),
        (np.zeros((8,), np.uint8), r"got shape \(8,\)"),
        (np.zeros((0, 8, 3), np.uint8), r"got shape \(0, 8, 3\)"),
    ],
)
def test_arrays_that_would_need_a_guess_are_refused(embedded, extractor, array, message):
    with pytest.raises(ValueError, match=message):
        recommend(embedded, image=array, n_neighbors=3, extractor=extractor)
