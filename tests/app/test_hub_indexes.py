"""Indexes made with KerasHub presets and with a shop's own .keras model: index, query (photo and text), re-index,
serve, export; all offline, from presets saved to tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hub_presets import SAVERS

from simrec import load_index, make_synthetic_catalog, recommend
from simrec.cli import main
from simrec.core.errors import InvalidArgumentError

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {family: save(root / family) for family, save in SAVERS.items()}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_synthetic_catalog(tmp_path_factory.mktemp("catalog") / "shop.zip", n_variants=2, image_size=64)


@pytest.fixture(scope="module")
def indexes(presets, catalog, tmp_path_factory):
    root = tmp_path_factory.mktemp("indexes")
    for family, folder in presets.items():
        argv = ["index", str(catalog), "--out", str(root / family), "--model", family, "--weights", str(folder), "-q"]
        assert main(argv) == 0
    return {family: root / family for family in presets}


def _json_query(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["query", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_index_records_the_preset_and_photo_queries_use_it(indexes, presets, capsys):
    for family, index in indexes.items():
        meta = load_index(index).meta
        assert meta.model == family and meta.weights == f"preset:{family}" and meta.pretrained
        assert meta.weights_path == str(presets[family].absolute()) and not meta.made_outside
        photo = load_index(index).catalog.path[0]
        answer = _json_query(capsys, str(index), "--image", photo, "-k", "3", "--colour-weight", "0")
        assert answer["results"][0]["distance"] == pytest.approx(0.0, abs=1e-5)  # its own photo, embedded alike


def test_reindexing_with_the_same_preset_embeds_nothing_again(indexes, catalog, capsys):
    capsys.readouterr()
    assert main(["index", str(catalog), "--out", str(indexes["clip"]), "-q"]) == 0
    assert "embedded 0 " in capsys.readouterr().out


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_text_queries_rank_the_catalog_by_the_preset_text_tower(indexes, family, capsys):
    index = indexes[family]
    embedded = load_index(index)
    answer = _json_query(capsys, str(index), "--text", "red checked shirt", "-k", "4", "--colour-weight", "0")
    assert answer["query"]["text"] == "red checked shirt" and len(answer["results"]) == 4
    # The same ranking as the text vector against the index's own vectors, by cosine distance.
    from simrec.app.querying import query_text_embedder

    vector = query_text_embedder(embedded).embed(["red checked shirt"])[0]
    vectors = np.asarray(embedded.embeddings, np.float64)
    cosine = 1 - vectors @ vector / np.linalg.norm(vectors, axis=1)
    expected = embedded.catalog.product_id.to_numpy()[np.argsort(cosine, kind="stable")[:4]]
    assert [row["product_id"] for row in answer["results"]] == list(expected)
    np.testing.assert_allclose([row["distance"] for row in answer["results"]], np.sort(cosine)[:4], atol=1e-5)
    # k, the colour weight and --distinct behave as for photo queries.
    blended = recommend(embedded, text="red checked shirt", n_neighbors=3, colour_weight=0.5, distinct=True)
    assert len(blended) == 3 and blended.attrs["colour_weight"] == 0.5
    with pytest.raises(InvalidArgumentError, match="exactly one of product_id, image or text"):
        recommend(embedded, text="red", product_id=embedded.catalog.product_id[0])


def test_text_queries_are_refused_where_there_is_no_text_tower(indexes, capsys):
    capsys.readouterr()
    assert main(["query", str(indexes["dinov2"]), "--text", "red shirt"]) == 2
    error = capsys.readouterr().err
    assert "embedded with 'dinov2', which has none" in error and len(error.strip().splitlines()) == 1


def test_the_service_answers_text_searches(indexes):
    from simrec.serve import create_app

    with TestClient(create_app(indexes["siglip"])) as client:
        answer = client.get("/api/search", params={"text": "blue denim jeans", "k": 3, "distinct": True}).json()
        assert answer["query"]["text"] == "blue denim jeans" and len(answer["results"]) == 3
        assert all(row["image_url"] for row in answer["results"])
        assert client.get("/api/search", params={"text": "red", "k": 10_000}).status_code == 422
    with TestClient(create_app(indexes["dinov2"])) as client:
        refused = client.get("/api/search", params={"text": "red"})
        assert refused.status_code == 422 and "which has none" in refused.json()["detail"]
        page = client.get("/").text + client.get("/static/app.js").text
        assert 'id="text-search"' in page and "/api/search?" in page


def test_export_and_colours_work_on_a_preset_index(indexes, tmp_path, capsys):
    out = tmp_path / "neighbors.parquet"
    assert main(["export", str(indexes["dinov2"]), "--out", str(out), "-k", "2", "-q"]) == 0
    assert out.is_file()


def _shop_model(path, size=None, rescale=True):
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs) if rescale else inputs
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.utils.set_random_seed(0)
    model = keras.Model(inputs, keras.layers.Dense(6)(x))
    model.save(path)
    return path


def test_a_shop_model_file_embeds_and_a_changed_file_is_a_different_model(catalog, tmp_path, capsys):
    model = _shop_model(tmp_path / "shop.keras", size=48)
    index = tmp_path / "index"
    assert main(["index", str(catalog), "--out", str(index), "--model", str(model), "-q"]) == 0
    meta = load_index(index).meta
    assert meta.model == "shop.keras" and meta.image_size == 48 and meta.dim == 6 and not meta.made_outside
    assert meta.weights.startswith("sha256:") and "inside the model" not in meta.weights
    photo = load_index(index).catalog.path[0]
    answer = _json_query(capsys, str(index), "--image", photo, "-k", "2", "--colour-weight", "0")
    assert answer["results"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    _shop_model(model, size=48, rescale=False)  # retrained: another file under the same name
    capsys.readouterr()
    assert main(["query", str(index), "--image", photo]) == 2
    assert "weights: index 'sha256:" in capsys.readouterr().err
    assert main(["index", str(catalog), "--out", str(index), "--model", str(model), "-q"]) == 2
    assert main(["index", str(catalog), "--out", str(index), "--model", str(model), "--rebuild", "-q"]) == 0
    assert load_index(index).meta.weights != meta.weights


def test_a_model_file_taking_any_size_uses_image_size_and_preprocessing(catalog, tmp_path, capsys):
    model = _shop_model(tmp_path / "any.keras", rescale=False)
    index = tmp_path / "index"
    argv = ["index", str(catalog), "--out", str(index), "--model", str(model), "--image-size", "40"]
    assert main([*argv, "--preprocessing", "tf", "-q"]) == 0
    meta = load_index(index).meta
    assert meta.image_size == 40 and meta.preprocessing.endswith("tf: scaled to [-1, 1]")
    capsys.readouterr()
    assert main(["index", str(catalog), "--out", str(index), "-q"]) == 0  # its own preprocessing, kept
    assert "embedded 0 " in capsys.readouterr().out
    photo = load_index(index).catalog.path[0]
    answer = _json_query(capsys, str(index), "--image", photo, "-k", "1", "--colour-weight", "0")
    assert answer["results"][0]["distance"] == pytest.approx(0.0, abs=1e-5)


def test_a_file_that_is_not_a_model_is_refused_in_one_line(catalog, tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"not a zip")
    capsys.readouterr()
    assert main(["index", str(catalog), "--out", str(tmp_path / "i"), "--model", str(fake), "-q"]) == 2
    error = capsys.readouterr().err
    assert "cannot load the Keras model file" in error and len(error.strip().splitlines()) == 1
    assert main(["index", str(catalog), "--out", str(tmp_path / "i"), "--model", str(tmp_path / "no.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_a_full_size_dinov2_small_preset_indexes_offline(catalog, tmp_path, capsys):
    """The real dinov2-small architecture, untrained, saved as a preset folder: what save_to_preset of the download
    gives a machine without internet."""
    from simrec.core.hub_backbones import CONVERTER_DEFAULTS, HUB_BACKBONES

    spec = HUB_BACKBONES["dinov2-small"]
    folder = tmp_path / "dinov2_small"
    keras_hub.models.DINOV2Backbone(**spec.vision, image_shape=(224, 224, 3)).save_to_preset(folder)
    mean, std = CONVERTER_DEFAULTS["dinov2"]["mean"], CONVERTER_DEFAULTS["dinov2"]["std"]
    keras_hub.layers.DINOV2ImageConverter(
        image_size=(224, 224), scale=[1 / (255 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)]
    ).save_to_preset(folder)
    index = tmp_path / "index"
    argv = ["index", str(catalog), "--out", str(index), "--model", "dinov2-small", "--weights", str(folder), "-q"]
    assert main(argv) == 0
    meta = load_index(index).meta
    assert (meta.model, meta.dim, meta.image_size, meta.weights) == ("dinov2-small", 384, 224, "preset:dinov2_small")


def test_the_ray_engine_embeds_with_the_index_preset(indexes, catalog, presets, tmp_path):
    pytest.importorskip("ray")
    index = tmp_path / "ray"
    argv = ["index", str(catalog), "--out", str(index), "--model", "clip", "--weights", str(presets["clip"])]
    assert main([*argv, "--engine", "ray", "-q"]) == 0
    by_ray, local = load_index(index), load_index(indexes["clip"])
    assert by_ray.meta.weights == local.meta.weights == "preset:clip"
    order_ray, order_local = by_ray.catalog.product_id.argsort(), local.catalog.product_id.argsort()
    np.testing.assert_allclose(
        np.asarray(by_ray.embeddings)[order_ray], np.asarray(local.embeddings)[order_local], atol=1e-6
    )
