"""The service's building blocks on their own: the product-id URL convertor, the response schemas, a generation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from simrec import save_vectors
from simrec.serve import create_app
from simrec.serve.convertors import ProductIdConvertor
from simrec.serve.schemas import Health, ProductPage, Similar
from simrec.serve.state import ServedGeneration

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

    generation = ServedGeneration(load_index(index_dir, mmap=True))
    assert [generation.rows[i] for i in IDS] == [0, 1, 2, 3]
    assert generation.labels == ["odd", "plain", "red"]
    total, rows = generation.product_rows("odd", offset=1, limit=5)
    assert total == 2 and [generation.ids[row] for row in rows] == ["50%"]
    assert generation.image_url("plain") is None  # vectors made outside simrec: no photo to serve
    assert generation.describe()["items"] == len(IDS)


def test_answers_are_written_as_json_dumps_writes_them():
    import json

    from simrec.serve.api import json_float, json_response

    odd = ["line\nbreak", 'quote " and \\', "tab\t\x01\x1f\x7f", "é 漢字 \u2028 😀", "50%", ""]
    payload = {
        "query": {"product_id": odd[0], "label": "", "image_url": None},
        "results": [
            {"rank": i, "product_id": text, "label": text, "distance": distance, "image_url": "/images/" + text}
            for i, (text, distance) in enumerate(zip(odd, [0.0, 1e-7, 0.1234567, 1 / 3, 2.0, 5e-324]), 1)
        ],
        "labels": odd,
        "warning": None,
        "total": 2**40,
    }
    expected = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    for result in payload["results"]:
        result["distance"] = json_float(result["distance"])
    assert json_response(payload).body == expected
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_float(float("nan"))


def test_photo_urls_are_quoted_as_quote_writes_them(tmp_path):
    from urllib.parse import quote

    from simrec import load_index

    ids = ["plain_1.jpg", "a/b-c~d", "red/shirt 1", "line\nbreak", "50%", "é", "x?y#z", "+&=;"]
    catalog = pd.DataFrame({"product_id": ids, "label": ["x"] * len(ids), "path": [f"/p/{i}.jpg" for i in range(8)]})
    vectors = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    generation = ServedGeneration(
        load_index(save_vectors(catalog, vectors, tmp_path / "idx", model="generated"), mmap=True)
    )
    assert [generation.image_url(i) for i in ids] == ["/images/" + quote(i, safe="/") for i in ids]
