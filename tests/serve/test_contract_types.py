"""The service's building blocks on their own: the product-id URL convertor, the response schemas, a served version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from simrec import save_vectors
from simrec.serve import create_app
from simrec.serve.convertors import ProductIdConvertor
from simrec.serve.schemas import Health, ProductPage, Similar
from simrec.serve.state import IndexVersion

IDS = ["red/shirt 1", "line\nbreak", "50%", "plain"]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    catalog = pd.DataFrame({"product_id": IDS, "label": ["red", "odd", "odd", "plain"]})
    vectors = np.random.default_rng(0).normal(size=(len(IDS), 8)).astype(np.float32)
    return save_vectors(catalog, vectors, tmp_path_factory.mktemp("svc") / "idx", model="clip-vit-b32")


@pytest.mark.parametrize("product_id", IDS)
def test_the_convertor_matches_any_product_id_whole(product_id):
    import re

    convertor = ProductIdConvertor()
    assert re.fullmatch(convertor.regex, product_id)
    assert convertor.convert(product_id) == convertor.to_string(product_id) == product_id


def test_the_openapi_document_describes_the_schemas(index_dir):
    spec = TestClient(create_app(index_dir)).get("/openapi.json").json()
    components = spec["components"]["schemas"]
    for model in (Health, ProductPage, Similar):
        assert set(components[model.__name__]["properties"]) == set(model.model_fields)


def test_a_version_looks_up_rows_labels_and_pages(index_dir):
    from simrec import load_index

    version = IndexVersion(load_index(index_dir, mmap=True))
    assert [version.rows[i] for i in IDS] == [0, 1, 2, 3]
    assert version.labels == ["odd", "plain", "red"]
    total, page = version.products("odd", offset=1, limit=5)
    assert total == 2 and page["product_id"].tolist() == ["50%"]
    assert version.image_url("plain") is None  # vectors made outside simrec: no photo to serve
    assert version.describe()["items"] == len(IDS)
