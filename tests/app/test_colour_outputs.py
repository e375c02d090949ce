"""The colour weight reaches every way out: the export table and the service."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from simrec import build_index, recommend
from simrec.app.export import export_neighbors
from simrec.serve import create_app


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from simrec import make_synthetic_catalog

    folder = tmp_path_factory.mktemp("colour-outputs")
    zip_path = make_synthetic_catalog(folder / "c.zip", colours=["red", "blue", "green"], shapes=["bag", "shirt"])
    build_index(zip_path, folder / "idx", weights="random", image_size=32, verbose=False)
    return folder / "idx"


def test_export_with_a_colour_weight_equals_recommend(index_dir, tmp_path):
    from simrec import load_index

    embedded = load_index(index_dir)
    table = pd.read_csv(
        export_neighbors(embedded, tmp_path / "r.csv", n_neighbors=3, colour_weight=0.5, verbose=False).path
    )
    for product_id, rows in table.groupby("product_id"):
        expected = recommend(embedded, product_id=product_id, n_neighbors=3, colour_weight=0.5)
        assert rows.sort_values("rank")["neighbor_id"].tolist() == expected["product_id"].tolist()
    plain = pd.read_csv(export_neighbors(embedded, tmp_path / "p.csv", n_neighbors=3, verbose=False).path)
    assert not plain["neighbor_id"].equals(table["neighbor_id"])  # the weight changed something


def test_the_service_takes_a_colour_weight(index_dir):
    from simrec import load_index

    embedded = load_index(index_dir)
    product_id = embedded.catalog["product_id"].iloc[0]
    with TestClient(create_app(index_dir, warm_up=True)) as client:
        answer = client.get(f"/api/products/{product_id}/similar", params={"k": 4, "colour_weight": 0.75}).json()
        expected = recommend(embedded, product_id=product_id, n_neighbors=4, colour_weight=0.75)
        assert [r["product_id"] for r in answer["results"]] == expected["product_id"].tolist()
        photo = open(embedded.catalog["path"].iloc[0], "rb").read()
        by_photo = client.post("/api/similar", params={"k": 2, "colour_weight": 1}, files={"image": ("p.jpg", photo)})
        assert by_photo.status_code == 200
        assert by_photo.json()["results"][0]["product_id"] == product_id
        assert client.get(f"/api/products/{product_id}/similar", params={"colour_weight": 2}).status_code == 422


def test_every_colour_weight_shares_one_copy_of_the_signatures(index_dir):
    from simrec import load_index
    from simrec.embedded_catalog import neighbors_for

    embedded = load_index(index_dir)
    blends = [neighbors_for(embedded, w) for w in (0.1, 0.1001, 0.25, 0.5, 0.75, 0.9, 1.0)]
    assert len({id(blend._roots) for blend in blends}) == 1  # a client cannot make the service copy them
    assert [blend.colour_weight for blend in blends] == [0.1, 0.1001, 0.25, 0.5, 0.75, 0.9, 1.0]
    product_id = embedded.catalog["product_id"].iloc[3]
    at_half = recommend(embedded, product_id=product_id, n_neighbors=4, colour_weight=0.5)
    recommend(embedded, product_id=product_id, n_neighbors=4, colour_weight=1.0)
    again = recommend(embedded, product_id=product_id, n_neighbors=4, colour_weight=0.5)
    assert again["product_id"].tolist() == at_half["product_id"].tolist()
