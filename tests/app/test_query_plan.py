"""One query policy: ``simrec query``, the service and :func:`simrec.recommend` answer and refuse the same
queries alike, because all three ask :func:`simrec.app.querying.plan_query`.

The command line names the index folder in its messages; the service and the Python call say
``INDEX_DIR`` there, as ``--help`` does (the service never shows its server's paths). Each names
the parameters as its caller passes them: ``-k``, ``k``, ``n_neighbors``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from simrec import load_index, recommend, save_vectors
from simrec.app.querying import plan_query
from simrec.cli import main, option_names
from simrec.core.errors import in_terms_of
from simrec.serve import create_app
from simrec.serve.app import QUERY_PARAMETERS


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """Vectors made outside simrec, without colour signatures: photo and colour queries are refused."""
    catalog = pd.DataFrame({"product_id": ["a/1", "a/2", "b/1", "b/2"], "label": ["a", "a", "b", "b"]})
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    return save_vectors(catalog, vectors, tmp_path_factory.mktemp("plan") / "idx", model="clip-vit-b32")


@pytest.fixture(scope="module")
def client(outside):
    with TestClient(create_app(outside)) as client:
        yield client


def _png(path=None):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 60, 200)).save(buffer, format="PNG")
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _ask(client, request):
    method, url, params = request
    if method == "post":
        return client.post(url, params=params, files={"image": ("a.png", _png(), "image/png")})
    return client.get(url, params=params)


REFUSED = {
    # name: (command line arguments, HTTP request, recommend() arguments, HTTP status)
    "k": (
        ["--id", "a/1", "-k", "4"],
        ("get", "/api/products/a/1/similar", {"k": 4}),
        {"product_id": "a/1", "n_neighbors": 4},
        422,
    ),
    "photo k": (
        ["--image", "PHOTO", "-k", "5"],
        ("post", "/api/similar", {"k": 5}),
        {"image": "PHOTO", "n_neighbors": 5},
        409,  # the photo cannot be embedded at all: said before the k
    ),
    "colour": (
        ["--id", "a/1", "-k", "1", "--colour-weight", "0.5"],
        ("get", "/api/products/a/1/similar", {"k": 1, "colour_weight": 0.5}),
        {"product_id": "a/1", "n_neighbors": 1, "colour_weight": 0.5},
        422,
    ),
    "photo": (
        ["--image", "PHOTO", "-k", "1"],
        ("post", "/api/similar", {"k": 1}),
        {"image": "PHOTO", "n_neighbors": 1},
        409,
    ),
    "unknown product first": (
        ["--id", "a/9", "-k", "99", "--colour-weight", "0.5"],
        ("get", "/api/products/a/9/similar", {"k": 99, "colour_weight": 0.5}),
        {"product_id": "a/9", "n_neighbors": 99, "colour_weight": 0.5},
        404,
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_the_command_line_the_service_and_recommend_refuse_alike(outside, client, tmp_path, capsys, name):
    arguments, request, call, status = REFUSED[name]
    photo = tmp_path / "photo.png"
    _png(photo)
    assert main(["query", str(outside), *[str(photo) if a == "PHOTO" else a for a in arguments]]) == 2
    said = capsys.readouterr().err.strip().removeprefix("simrec: error: ")
    said = said.replace(str(outside), "INDEX_DIR")
    response = _ask(client, request)
    with pytest.raises(Exception) as raised:
        recommend(load_index(outside), **{key: str(photo) if v == "PHOTO" else v for key, v in call.items()})
    # the same refusal, each in its caller's words: -k on the command line, k in a URL, n_neighbors in Python
    assert said == in_terms_of(raised.value, option_names("query"))
    assert response.status_code == status and response.json()["detail"] == in_terms_of(raised.value, QUERY_PARAMETERS)
    if name == "k":
        assert "Expected -k <= 3" in said and "Expected k <= 3" in response.json()["detail"]
        assert "Expected n_neighbors <= 3" in str(raised.value)


@pytest.mark.parametrize("k, colour_weight", [(1, None), (3, 0.0)])
def test_the_command_line_the_service_and_recommend_answer_alike(outside, client, capsys, k, colour_weight):
    weight = [] if colour_weight is None else ["--colour-weight", str(colour_weight)]
    assert main(["query", str(outside), "--id", "b/1", "-k", str(k), "--format", "json", *weight]) == 0
    said = [(r["product_id"], round(r["distance"], 6)) for r in json.loads(capsys.readouterr().out)["results"]]
    params = {"k": k} if colour_weight is None else {"k": k, "colour_weight": colour_weight}
    served = [
        (r["product_id"], round(r["distance"], 6))
        for r in _ask(client, ("get", "/api/products/b/1/similar", params)).json()["results"]
    ]
    frame = recommend(load_index(outside), product_id="b/1", n_neighbors=k, colour_weight=colour_weight)
    called = list(zip(frame["product_id"], frame["distance"].round(6)))
    assert said == served == called and len(said) == k and said[0][0] == "b/2"


def test_the_plan_picks_the_search(outside):
    embedded = load_index(outside)
    plan = plan_query(embedded, 2)
    assert plan.colour_weight == 0.0 and plan.search is embedded.neighbors and plan.n_neighbors == 2
    look = object()
    assert plan_query(embedded, 2, look=look).search is look
    with pytest.raises(ValueError, match="nprobe and ef tune approximate search"):
        plan_query(embedded, 2, nprobe=4, colour_weight=0.5)
    assert plan_query(embedded, 2, nprobe=4).colour_weight == 0.0  # tuning the ann search: look alone
