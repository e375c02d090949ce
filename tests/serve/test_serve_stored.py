"""The service answers id queries from the generation's stored neighbors, with the JSON its models describe."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from simrec import EmbeddedCatalog, build_index, load_index, recommend
from simrec.core.defaults import STORED_NEIGHBORS
from simrec.serve import create_app
from simrec.serve.schemas import ProductPage, Similar


@pytest.fixture
def index_dir(colour_tree, extractor, tmp_path):
    build_index(colour_tree, tmp_path / "idx", extractor=extractor, verbose=False)
    return tmp_path / "idx"


def _as_models_write_it(model, body: bytes) -> None:
    """The body is exactly what validating it through its response model would write, keys in order."""
    parsed = json.loads(body)
    assert json.dumps(model.model_validate(parsed).model_dump(mode="json")) == json.dumps(parsed)


def test_id_queries_are_looked_up_and_equal_the_scan(index_dir):
    embedded = load_index(index_dir, mmap=True)
    assert embedded.stored_neighbors is not None
    scanned = EmbeddedCatalog(
        embedded.catalog, embedded.embeddings, embedded.meta, embedded.failures, embedded.inverse_norms,
        embedded.colours,
    )  # fmt: skip
    with TestClient(create_app(index_dir)) as client:
        batcher = client.app.state.service.batcher
        for product_id in embedded.catalog["product_id"]:
            for distinct in ("false", "true"):
                answer = client.get(f"/api/products/{product_id}/similar?k=4&distinct={distinct}")
                assert answer.status_code == 200
                _as_models_write_it(Similar, answer.content)
                expected = recommend(scanned, product_id=product_id, n_neighbors=4, distinct=distinct == "true")
                results = answer.json()["results"]
                assert [r["product_id"] for r in results] == expected["product_id"].tolist()
                assert [r["distance"] for r in results] == expected["distance"].tolist()
        assert batcher.batch_sizes == []  # nothing was scanned
        client.get(f"/api/products/{product_id}/similar?k=4&colour_weight=0.5").raise_for_status()  # not stored
        assert batcher.batch_sizes == [1]


def test_product_pages_and_docs_are_unchanged(index_dir):
    with TestClient(create_app(index_dir)) as client:
        for query in ("", "?limit=3&offset=2", "?label=red", "?label=nothing", "?offset=500"):
            page = client.get("/api/products" + query)
            assert page.status_code == 200
            _as_models_write_it(ProductPage, page.content)
        assert client.get("/api/products?label=red").json()["total"] == 4
        assert client.get("/api/products?limit=0").status_code == 422
        schema = client.get("/openapi.json").json()
        ok = schema["paths"]["/api/products"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/ProductPage"}
        similar = schema["paths"]["/api/products/{product_id}/similar"]["get"]["responses"]["200"]
        assert similar["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Similar"}
        assert STORED_NEIGHBORS >= 4
