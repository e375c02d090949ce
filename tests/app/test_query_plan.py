"""One query policy: ``simrec query``, the service and :func:`simrec.recommend` refuse the same queries with
the same words, because all three ask :func:`simrec.app.querying.plan_query`."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from simrec import load_index, recommend, save_vectors
from simrec.app.querying import plan_query
from simrec.cli import main
from simrec.serve import create_app


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """Vectors made outside simrec, without colour signatures: photo and colour queries are refused."""
    catalog = pd.DataFrame({"product_id": ["a/1", "a/2", "b/1", "b/2"], "label": ["a", "a", "b", "b"]})
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    return save_vectors(catalog, vectors, tmp_path_factory.mktemp("plan") / "idx", model="clip-vit-b32")


def _png(path=None):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 60, 200)).save(buffer, format="PNG")
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


QUERIES = [
    # (command line arguments, HTTP request, recommend() arguments, expected status)
    (
        ["--id", "a/1", "-k", "4"],
        ("get", "/api/products/a/1/similar", {"k": 4}),
        {"product_id": "a/1", "n_neighbors": 4},
    ),
    (
        ["--id", "a/1", "-k", "1", "--colour-weight", "0.5"],
        ("get", "/api/products/a/1/similar", {"k": 1, "colour_weight": 0.5}),
        {"product_id": "a/1", "n_neighbors": 1, "colour_weight": 0.5},
    ),
    (["--image", "PHOTO", "-k", "1"], ("post", "/api/similar", {"k": 1}), {"image": "PHOTO", "n_neighbors": 1}),
]


@pytest.mark.parametrize("arguments, request_, call", QUERIES, ids=["k", "colour", "photo"])
def test_the_command_line_the_service_and_recommend_refuse_alike(outside, tmp_path, capsys, arguments, request_, call):
    photo = tmp_path / "photo.png"
    _png(photo)
    arguments = [str(photo) if a == "PHOTO" else a for a in arguments]
    assert main(["query", str(outside), *arguments]) == 2
    said = capsys.readouterr().err.strip().removeprefix("simrec: error: ")
    method, url, params = request_
    with TestClient(create_app(outside)) as client:
        if method == "post":
            response = client.post(url, params=params, files={"image": ("a.png", _png(), "image/png")})
        else:
            response = client.get(url, params=params)
    assert response.status_code in (409, 422) and response.json()["detail"] == said
    call = {key: str(photo) if value == "PHOTO" else value for key, value in call.items()}
    with pytest.raises(Exception) as raised:
        recommend(load_index(outside), **call)
    assert str(raised.value).replace("INDEX_DIR", str(outside)) == said


def test_the_plan_picks_the_search(outside):
    embedded = load_index(outside)
    plan = plan_query(embedded, 2)
    assert plan.colour_weight == 0.0 and plan.search is embedded.neighbors and plan.n_neighbors == 2
    look = object()
    assert plan_query(embedded, 2, look=look).search is look
    with pytest.raises(ValueError, match="--nprobe and --ef tune approximate search"):
        plan_query(embedded, 2, nprobe=4, colour_weight=0.5)
    assert plan_query(embedded, 2, nprobe=4).colour_weight == 0.0  # tuning the ann search: look alone
