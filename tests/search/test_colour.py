"""Colour signatures, the colour-weight blend, its storage in the index, and the sweep."""

import json
import os
import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest
from photos import SMALL, write_image
from PIL import Image, ImageDraw

from simrec import (
    ColourBlendNeighbors,
    CosineNeighbors,
    EmbeddedCatalog,
    build_index,
    colour_signature,
    evaluate,
    label_from,
    load_image,
    load_index,
    plot_colour_sweep,
    recommend,
    save_index,
    save_vectors,
    sweep_colour_weight,
)
from simrec.app.synthetic import COLOURS, draw_realistic_product, make_synthetic_catalog
from simrec.cli import main
from simrec.core.colour_signature import N_BINS, colour_distances, dominant_colours, srgb_to_lab

TYPE_REGEX = r"/([a-z]+)_\d+$"


def _dominant(signature):
    (lab, _), *_ = dominant_colours(signature, 1)
    return lab


def _product_photo(colour, background=(255, 255, 255), box=(70, 60, 150, 170), size=224):
    image = Image.new("RGB", (size, size), background)
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    return np.asarray(image)


# --- signatures -----------------------------------------------------------------------------


def test_srgb_to_lab_matches_reference_values():
    lab = srgb_to_lab(np.array([[255, 0, 0], [255, 255, 255], [0, 0, 0], [0, 0, 255]], np.uint8))
    np.testing.assert_allclose(lab[0], [53.24, 80.09, 67.20], atol=0.02)
    np.testing.assert_allclose(lab[1], [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[2], [0, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab[3], [32.30, 79.19, -107.86], atol=0.02)


def test_red_product_on_white_has_a_red_dominant_colour_and_no_white():
    signature = colour_signature(_product_photo((200, 30, 35)))
    assert signature.shape == (N_BINS,) and signature.dtype == np.float32
    assert signature.sum() == pytest.approx(1.0, abs=1e-5)
    lightness, a, b = _dominant(signature)
    assert a >= 40 and b >= 20 and lightness < 75  # red, not the white background
    white_weight = sum(w for (lab, w) in dominant_colours(signature, N_BINS) if lab[0] > 85 and abs(lab[1]) < 25)
    assert white_weight < 0.05


@pytest.mark.parametrize(
    "photo",
    [
        np.full((224, 224, 3), (40, 90, 200), np.uint8),  # one flat colour
        np.full((224, 224, 3), (255, 255, 255), np.uint8),  # a blank white photo
        _product_photo((20, 20, 20), background=(8, 8, 8)),  # black product on black
        _product_photo((200, 30, 35), box=(110, 110, 114, 114)),  # a tiny product
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((3, 300, 3), np.uint8),
        np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8),
    ],
    ids=["flat", "blank", "black-on-black", "tiny", "one-pixel", "strip", "noise"],
)
def test_edge_cases_give_finite_normalised_signatures(photo):
    signature = colour_signature(photo)
    assert np.isfinite(signature).all() and (signature >= 0).all()
    assert signature.sum() == pytest.approx(1.0, abs=1e-5)


def test_edge_cases_give_sensible_colours():
    flat_blue = _dominant(colour_signature(np.full((224, 224, 3), (40, 90, 200), np.uint8)))
    assert flat_blue[2] <= -40  # b* strongly negative: blue
    black = _dominant(colour_signature(_product_photo((20, 20, 20), background=(8, 8, 8))))
    assert black[0] < 25 and abs(black[1]) <= 20 and abs(black[2]) <= 20
    tiny = colour_signature(_product_photo((200, 30, 35), box=(110, 110, 117, 117)))
    # The 8 x 8 red product (0.1% of the photo) outweighs the white around it, though at the
    # signature's 56 x 56 resolution its edges blend with the white into pink.
    reddish = sum(weight for (lab, weight) in dominant_colours(tiny, N_BINS) if lab[1] >= 20)
    assert reddish > 0.5


def test_transparent_png_is_composited_on_white_and_the_product_colour_wins(tmp_path):
    image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((30, 20, 90, 70), fill=(30, 160, 50, 255))
    image.save(tmp_path / "green.png")
    pixels = load_image(tmp_path / "green.png", 224)
    lightness, a, _ = _dominant(colour_signature(pixels))
    assert a <= -30 and lightness < 80  # green product, not the white the transparency became


def test_textured_backgrounds_do_not_hide_the_product_colour():
    rng = np.random.default_rng(3)
    for _ in range(12):
        red = colour_signature(np.asarray(draw_realistic_product("shirt", COLOURS["red"], rng, 224)))
        blue = colour_signature(np.asarray(draw_realistic_product("shirt", COLOURS["blue"], rng, 224)))
        assert _dominant(red)[1] >= 30 and _dominant(blue)[2] <= -30
        assert colour_distances(red, blue)[0, 0] > 0.5


def test_colour_distance_is_hellinger_in_zero_one():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(N_BINS), size=(2,)).astype(np.float32)
    expected = np.sqrt(1 - np.sum(np.sqrt(p * q)))
    assert colour_distances(p, q)[0, 0] == pytest.approx(expected, abs=1e-5)
    assert colour_distances(p, p)[0, 0] == pytest.approx(0.0, abs=2e-3)
    disjoint = np.zeros((2, N_BINS), np.float32)
    disjoint[0, 0] = disjoint[1, -1] = 1
    assert colour_distances(disjoint[0], disjoint[1])[0, 0] == pytest.approx(1.0)


def test_embed_images_computes_signatures_from_the_same_decode(colour_tree, extractor):
    from simrec import embed_images, load_catalog

    catalog, _ = load_catalog(colour_tree)
    paths = catalog["path"].tolist() + [str(colour_tree / "missing.jpg")]
    result = embed_images(paths, extractor, verbose=False)
    assert result.colours.shape == (len(paths), N_BINS)
    assert np.isnan(result.colours[-1]).all() and not result.ok[-1]
    expected = np.stack([colour_signature(load_image(p, SMALL)) for p in paths[:-1]])
    np.testing.assert_allclose(result.colours[:-1], expected, atol=1e-6)
    assert embed_images(paths[:2], extractor, verbose=False, colours=False).colours is None


# --- the blend ------------------------------------------------------------------------------


def _brute_force(X, colours, weight, queries=None, query_colours=None):
    """The documented blend, computed on every pair with plain numpy."""
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    pairs = np.triu_indices(len(X), k=1)
    cosine_all = np.clip(1 - unit @ unit.T, 0, 2)
    colour_all = np.sqrt(np.clip(1 - np.sqrt(colours) @ np.sqrt(colours).T, 0, 1))
    cosine_scale, colour_scale = cosine_all[pairs].std(), colour_all[pairs].std()
    if queries is None:
        cosine, colour = cosine_all, colour_all
    else:
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        cosine = np.clip(1 - q @ unit.T, 0, 2)
        colour = np.sqrt(np.clip(1 - np.sqrt(query_colours) @ np.sqrt(colours).T, 0, 1))
    blend = (1 - weight) * cosine / cosine_scale + weight * colour / colour_scale
    if queries is None:
        np.fill_diagonal(blend, np.inf)
    return blend


@pytest.mark.parametrize("weight", [0.25, 0.5, 0.9, 1.0])
def test_blend_equals_brute_force(weight):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 16)).astype(np.float32)
    colours = rng.dirichlet(np.full(N_BINS, 0.05), size=60).astype(np.float32)
    blend = _brute_force(X.astype(np.float64), colours.astype(np.float64), weight)
    for chunk_size in (7, 1024):  # several blocks, and one
        neighbors = ColourBlendNeighbors(colour_weight=weight, chunk_size=chunk_size).fit(X, colours)
        distances, indices = neighbors.kneighbors(n_neighbors=6)
        expected = np.argsort(blend, axis=1, kind="stable")[:, :6]
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_allclose(distances, np.take_along_axis(blend, expected, 1), rtol=2e-4, atol=2e-4)
    queries, query_colours = X[:3] + 0.1, colours[::-1][:3]
    outside = _brute_force(X.astype(np.float64), colours.astype(np.float64), weight, queries, query_colours)
    _, indices = neighbors.kneighbors(queries, colours=query_colours, n_neighbors=5)
    np.testing.assert_array_equal(indices, np.argsort(outside, axis=1, kind="stable")[:, :5])


def test_blend_breaks_ties_by_row_number():
    X = np.ones((6, 4), np.float32)  # every item alike in look and colour
    colours = np.full((6, N_BINS), 1 / N_BINS, np.float32)
    _, indices = ColourBlendNeighbors(colour_weight=0.5).fit(X, colours).kneighbors(n_neighbors=2)
    np.testing.assert_array_equal(indices, [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]])


def test_all_items_blend_memory_stays_bounded():
    """5,000 items: scratch stays near the 64 MB block bound, far below N x N matrices (100 MB each)."""
    rng = np.random.default_rng(0)
    n = 5000
    X = rng.normal(size=(n, 8)).astype(np.float32)
    colours = rng.dirichlet(np.ones(N_BINS), size=n).astype(np.float32)
    neighbors = ColourBlendNeighbors(colour_weight=0.5).fit(X, colours)
    tracemalloc.start()
    neighbors.kneighbors(n_neighbors=5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024**2 * 1.25


def test_colour_weight_zero_is_exactly_todays_search(embedded):
    for pid in ("red/item_1", "blue/item_3"):
        before = recommend(embedded, product_id=pid, n_neighbors=5, search=embedded.neighbors)  # look alone
        after = recommend(embedded, product_id=pid, n_neighbors=5, colour_weight=0)
        pd.testing.assert_frame_equal(before, after)
    labels = embedded.catalog["label"]
    assert evaluate(embedded.neighbors, labels, n_neighbors=3) == evaluate(
        embedded.neighbors, labels, k=3, colour_weight=0.0, colours=embedded.colours
    )


def test_colour_weight_one_ranks_by_colour_alone(embedded):
    row = 0
    distances = colour_distances(embedded.colours[row], embedded.colours)[0].astype(np.float64)
    distances[row] = np.inf
    expected = np.lexsort((np.arange(len(distances)), distances))[:5]
    results = recommend(embedded, product_id=embedded.catalog["product_id"][row], n_neighbors=5, colour_weight=1)
    assert results["product_id"].tolist() == embedded.catalog["product_id"].iloc[expected].tolist()
    assert results.attrs["colour_weight"] == 1.0


def test_photo_query_with_colour_weight_finds_itself(embedded, extractor):
    path = embedded.catalog.set_index("product_id").loc["green/item_2", "path"]
    results = recommend(embedded, image=path, n_neighbors=3, extractor=extractor, colour_weight=0.5)
    assert results["product_id"].iloc[0] == "green/item_2"
    assert set(results["label"]) == {"green"}


def test_bad_colour_weights_are_refused(embedded):
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="colour_weight"):
            recommend(embedded, product_id="red/item_1", colour_weight=bad)
    with pytest.raises(ValueError, match="colours=embedded.colours"):
        evaluate(embedded.neighbors, embedded.catalog["label"], n_neighbors=3, colour_weight=0.5)
    with pytest.raises(ValueError, match="Expected colours of shape"):
        ColourBlendNeighbors().fit(np.eye(3, dtype=np.float32), np.ones((2, N_BINS), np.float32))


# --- storage, old indexes, re-indexing --------------------------------------------------------


def _without_colours(embedded):
    meta = embedded.meta.replace(colour_signature=None)
    return EmbeddedCatalog(embedded.catalog, embedded.embeddings, meta, embedded.failures)


def test_signatures_round_trip_through_the_index(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["files"]["colours"]["name"].startswith("colours-") and meta["colour_signature"]
    loaded = load_index(folder, mmap=True)
    np.testing.assert_array_equal(loaded.colours, embedded.colours)
    assert main(["verify", str(folder)]) == 0


def test_old_index_without_signatures_works_at_zero_and_says_how_to_add_them(embedded, tmp_path, capsys):
    folder = save_index(_without_colours(embedded), tmp_path / "old")
    assert not list(folder.glob("colours-*"))
    old = load_index(folder)
    assert old.colours is None
    pd.testing.assert_frame_equal(
        recommend(old, product_id="red/item_1"),
        recommend(embedded, product_id="red/item_1", colour_weight=0),
        check_like=True,
    )
    with pytest.raises(ValueError, match=r"no colour signatures.*simrec colours INDEX_DIR.*rebuild=True"):
        recommend(old, product_id="red/item_1", colour_weight=0.5)
    assert main(["query", str(folder), "--id", "red/item_1", "--colour-weight", "0.5"]) == 2
    error = capsys.readouterr().err
    assert f"simrec colours {folder}" in error and "--rebuild" in error and error.count("\n") == 1
    assert main(["evaluate", str(folder), "-k", "3", "--sweep"]) == 2
    assert main(["evaluate", str(folder), "-k", "3"]) == 0


def test_colours_command_adds_the_signatures_a_rebuild_would_make(embedded, tmp_path, capsys):
    folder = save_index(_without_colours(embedded), tmp_path / "old")
    assert main(["colours", str(folder), "-q"]) == 0
    assert "added colour signatures for 12 photos" in capsys.readouterr().out
    updated = load_index(folder, verify=True)
    np.testing.assert_allclose(updated.colours, embedded.colours, atol=1e-6)
    np.testing.assert_array_equal(updated.embeddings, embedded.embeddings)
    assert main(["query", str(folder), "--id", "red/item_1", "--colour-weight", "0.5", "-k", "3"]) == 0


def test_colours_command_names_a_missing_photo(embedded, tmp_path, capsys):
    folder = save_index(_without_colours(embedded), tmp_path / "old")
    os.remove(embedded.catalog["path"].iloc[0])
    assert main(["colours", str(folder), "-q"]) == 2
    error = capsys.readouterr().err
    assert "cannot add colour signatures" in error and "item_1.jpg" in error and "--rebuild" in error
    assert load_index(folder).colours is None  # the index is as it was


def test_reindexing_keeps_signatures_aligned(colour_tree, extractor, tmp_path):
    out = tmp_path / "idx"
    first, _ = build_index(colour_tree, out, extractor=extractor, verbose=False)
    old_colours = dict(zip(first.catalog["product_id"], np.array(first.colours)))
    write_image(colour_tree / "green" / "item_9.jpg", (20, 200, 20), size=(44, 36))
    (colour_tree / "blue" / "item_1.jpg").unlink()
    second, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert report.added == 1 and report.removed == 1 and report.unchanged == 11
    for pid, signature in zip(second.catalog["product_id"], second.colours):
        expected = old_colours.get(pid)
        if expected is None:
            path = second.catalog.set_index("product_id").loc[pid, "path"]
            expected = colour_signature(load_image(path, SMALL))
        np.testing.assert_allclose(signature, expected, atol=1e-6)


def test_reindexing_an_old_index_computes_signatures_for_unchanged_photos(colour_tree, extractor, tmp_path):
    out = tmp_path / "idx"
    first, _ = build_index(colour_tree, out, extractor=extractor, verbose=False)
    expected = dict(zip(first.catalog["product_id"], np.array(first.colours)))
    save_index(_without_colours(load_index(out)), out)
    assert load_index(out).colours is None
    write_image(colour_tree / "red" / "item_7.jpg", (240, 20, 20), size=(44, 36))
    second, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert report.unchanged == 12 and report.added == 1 and second.colours is not None
    for pid, signature in zip(second.catalog["product_id"], second.colours):
        if pid in expected:
            np.testing.assert_allclose(signature, expected[pid], atol=1e-6)
    assert np.isfinite(second.colours).all()


# --- the sweep ------------------------------------------------------------------------------


def test_label_from_takes_one_group():
    np.testing.assert_array_equal(label_from(["red/shirt_1", "blue/bag_12", "odd"], TYPE_REGEX), ["shirt", "bag", ""])
    with pytest.raises(ValueError, match="exactly one group"):
        label_from(["a"], r"/[a-z]+")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        label_from(["a"], r"(")


def test_sweep_table_and_plot(embedded):
    types = label_from(embedded.catalog["product_id"], r"/([a-z]+)_\d+$")
    sweep = sweep_colour_weight(embedded, {"colour": embedded.catalog["label"], "item": types}, n_neighbors=3)
    overall = sweep[sweep["label"] == "(all)"]
    assert len(overall) == 12 and sorted(overall["colour_weight"].unique()) == [0, 0.15, 0.25, 0.5, 0.75, 1]
    at_zero = overall[(overall["colour_weight"] == 0) & (overall["labelling"] == "colour")].iloc[0]
    look_alone = evaluate(embedded.neighbors, embedded.catalog["label"], n_neighbors=3)
    assert at_zero["precision_at_k"] == look_alone["precision_at_k"]
    at_one = overall[(overall["colour_weight"] == 1) & (overall["labelling"] == "colour")].iloc[0]
    assert at_one["precision_at_k"] == 1.0  # three flat colours: colour alone separates them
    figure = plot_colour_sweep(sweep, title="sweep")
    assert len(figure.axes) == 1 and len(figure.axes[0].lines) == 6  # 2 labellings x (P, mAP, chance)


def test_evaluate_sweep_command_prints_both_labellings(embedded, tmp_path, capsys):
    folder = save_index(embedded, tmp_path / "idx")
    assert main(["evaluate", str(folder), "-k", "3", "--sweep", "--label-from", r"/([a-z]+)_\d+$"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "label" in lines[0] and r"/([a-z]+)_\d+$" in lines[0] and r"label & /([a-z]+)_\d+$" in lines[0]
    assert "precision@3 mAP@3" in lines[1]
    assert [line.split()[0] for line in lines[2:8]] == ["0.00", "0.15", "0.25", "0.50", "0.75", "1.00"]
    assert all(len(line.split()) == 7 for line in lines[2:8])
    assert "precision@3 by label:" in out and "W=0.5" in out
    assert main(["evaluate", str(folder), "-k", "3", "--colour-weight", "0.5", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert {row["colour_weight"] for row in payload["results"]} == {0.5}
    assert main(["evaluate", str(folder), "--colour-weight", "2"]) == 2
    assert "from 0 to 1" in capsys.readouterr().err


def test_realistic_catalog_has_every_shape_in_every_colour(tmp_path):
    realistic = make_synthetic_catalog(tmp_path / "c.zip", n_variants=1, image_size=64, realistic=True)
    with zipfile.ZipFile(realistic) as archive:
        names = archive.namelist()
    assert len(names) == 6 * 7 and "Colors_Products/red/mug_1.jpg" in names


def test_half_weight_keeps_both_look_and_colour_when_each_separates():
    """Embeddings that know the type and signatures that know the colour: W = 0.5 gets both right."""
    rng = np.random.default_rng(0)
    n_types, n_colours, n_variants = 3, 3, 6
    types = np.repeat(np.arange(n_types), n_colours * n_variants)
    colour_labels = np.tile(np.repeat(np.arange(n_colours), n_variants), n_types)
    X = (np.eye(8)[types] + rng.normal(0, 0.05, size=(len(types), 8))).astype(np.float32)
    colours = np.abs(np.eye(N_BINS)[colour_labels * 40] + rng.normal(0, 0.01, size=(len(types), N_BINS)))
    colours = (colours / colours.sum(axis=1, keepdims=True)).astype(np.float32)
    cosine = CosineNeighbors().fit(X)
    scores = {}
    for weight in (0.0, 0.5, 1.0):
        by_type = evaluate(cosine, types.astype(str), n_neighbors=5, colour_weight=weight, colours=colours)
        by_colour = evaluate(cosine, colour_labels.astype(str), n_neighbors=5, colour_weight=weight, colours=colours)
        scores[weight] = (by_type["precision_at_k"], by_colour["precision_at_k"])
    assert scores[0.5] == (1.0, 1.0)
    assert scores[0.0][0] == 1.0 and scores[0.0][1] < 0.5  # look only: colour near chance (1/3)
    assert scores[1.0][1] == 1.0 and scores[1.0][0] < 0.5  # colour only: type near chance


def test_colours_command_adds_signatures_to_vectors_made_elsewhere_that_name_their_photos(embedded, tmp_path, capsys):
    """An index written by save_vectors with a path column of readable photos gets signatures like any other."""
    from simrec.core.defaults import IMAGE_SIZE

    products = embedded.catalog[["product_id", "path", "label"]]
    vectors = np.random.default_rng(0).normal(size=(len(products), 8))
    folder = save_vectors(products, vectors, tmp_path / "clip", model="clip-vit-b32")
    assert main(["query", str(folder), "--id", "red/item_1", "--colour-weight", "0.5"]) == 2
    error = capsys.readouterr().err
    assert "made outside simrec" in error and f"simrec colours {folder}" in error
    assert "made before simrec stored them" not in error and "--rebuild" not in error
    assert main(["colours", str(folder), "-q"]) == 0
    updated = load_index(folder, verify=True)
    expected = [colour_signature(load_image(path, IMAGE_SIZE)) for path in products["path"]]
    np.testing.assert_allclose(updated.colours, expected, atol=1e-6)
    assert main(["query", str(folder), "--id", "red/item_1", "--colour-weight", "0.5", "-k", "3"]) == 0


def test_colours_command_on_vectors_made_elsewhere_without_photos_says_why(tmp_path, capsys):
    products = pd.DataFrame({"product_id": [f"sku/{i}" for i in range(6)], "label": ["a", "b"] * 3})
    folder = save_vectors(products, np.eye(6), tmp_path / "clip", model="clip-vit-b32")
    assert main(["colours", str(folder), "-q"]) == 2
    error = capsys.readouterr().err
    assert "made outside simrec" in error and "6 of its rows name no photo" in error


def test_the_default_colour_weight_blends_where_the_index_can_and_zero_stays_reachable(embedded, tmp_path, capsys):
    from simrec.core.defaults import COLOUR_WEIGHT
    from simrec.embedded_catalog import default_colour_weight

    folder = save_index(embedded, tmp_path / "idx")
    assert COLOUR_WEIGHT == 0.15 and default_colour_weight(load_index(folder)) == COLOUR_WEIGHT
    pd.testing.assert_frame_equal(
        recommend(embedded, product_id="red/item_1"), recommend(embedded, product_id="red/item_1", colour_weight=0.15)
    )
    runs = {}
    for weight in (None, "0.15", "0"):
        asked = [] if weight is None else ["--colour-weight", weight]
        assert main(["query", str(folder), "--id", "red/item_1", "-k", "3", "--format", "json", *asked]) == 0
        runs[weight] = json.loads(capsys.readouterr().out)["results"]
    assert runs[None] == runs["0.15"] and runs["0"] != runs["0.15"]
    assert default_colour_weight(load_index(save_index(_without_colours(embedded), tmp_path / "old"))) == 0.0
