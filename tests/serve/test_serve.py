"""The web service, through FastAPI's test client: every route of the contract and every error."""

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from paths import ROOT
from PIL import Image
from processes import free_port

from simrec import load_index, make_synthetic_catalog, save_vectors
from simrec.cli import main
from simrec.serve import create_app
from simrec.serve.app import UploadLimit

COLOURS, SHAPES, VARIANTS = ["red", "blue", "green"], ["shirt", "bag"], 2
N = len(COLOURS) * len(SHAPES) * VARIANTS


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    zip_path = make_synthetic_catalog(
        folder / "c.zip", colours=COLOURS, shapes=SHAPES, n_variants=VARIANTS, image_size=64
    )
    out = folder / "index"
    assert main(["index", str(zip_path), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def client(index_dir):
    with TestClient(create_app(index_dir, max_upload_bytes=200_000, warm_up=True)) as client:
        yield client


def _photo(index_dir, product_id):
    return Path(load_index(index_dir).catalog.set_index("product_id").at[product_id, "path"])


def _png_bytes(size=(40, 30), mode="RGB", colour=(30, 60, 200)):
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buffer, format="PNG")
    return buffer.getvalue()


def _snapshot(folder):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_health(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == N
    assert health["model"] == "resnet50" and health["weights"] == "random(seed=0)"
    assert health["pretrained"] is False and "untrained" in health["warning"].lower()


def test_products_pages_and_label_filter(client):
    page = client.get("/api/products", params={"offset": 2, "limit": 3}).json()
    assert page["total"] == N and len(page["items"]) == 3 and page["labels"] == sorted(COLOURS)
    assert page["warning"]
    item = page["items"][0]
    assert set(item) == {"product_id", "label", "image_url"}
    assert item["image_url"] == "/images/" + item["product_id"]
    reds = client.get("/api/products", params={"label": "red", "limit": 50}).json()
    assert reds["total"] == len(SHAPES) * VARIANTS and {i["label"] for i in reds["items"]} == {"red"}
    assert client.get("/api/products", params={"offset": N}).json()["items"] == []
    assert client.get("/api/products", params={"label": "purple"}).json()["total"] == 0


@pytest.mark.parametrize(
    "params, word",
    [({"offset": -1}, "offset"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"limit": "x"}, "limit")],
)
def test_products_bad_paging_is_422(client, params, word):
    response = client.get("/api/products", params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and word in detail and "got" in detail


def test_similar_to_product_equals_the_command_line(client, index_dir, capsys):
    answer = client.get("/api/products/red/shirt_1/similar", params={"k": 4}).json()
    assert main(["query", str(index_dir), "--id", "red/shirt_1", "-k", "4", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert answer["query"].pop("image_url") == "/images/red/shirt_1"
    for result in answer["results"]:
        assert result.pop("image_url") == "/images/" + result["product_id"]
    printed["query"].pop("path")  # the service answers URLs, not the server's file paths
    for result in printed["results"]:
        result.pop("path")
    assert answer == printed
    assert answer["warning"] and [r["rank"] for r in answer["results"]] == [1, 2, 3, 4]


def test_similar_to_unknown_product_is_404_with_close_matches(client):
    response = client.get("/api/products/red/shirt_9/similar")
    assert response.status_code == 404
    assert "unknown product_id 'red/shirt_9'" in response.json()["detail"]
    assert "did you mean" in response.json()["detail"]


@pytest.mark.parametrize("k, word", [(0, "greater than or equal to 1"), ("two", "integer"), (N, f"<= {N - 1}")])
def test_similar_bad_k_is_422(client, k, word):
    response = client.get("/api/products/red/shirt_1/similar", params={"k": k})
    assert response.status_code == 422 and word in response.json()["detail"]


def test_similar_to_uploaded_photo(client, index_dir):
    photo = _photo(index_dir, "blue/bag_2").read_bytes()
    response = client.post("/api/similar", params={"k": 3}, files={"image": ("mine.jpg", photo, "image/jpeg")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["query"] == {"product_id": None, "label": "", "image_url": None}
    first = answer["results"][0]
    assert first["product_id"] == "blue/bag_2" and first["distance"] < 1e-4
    assert len(answer["results"]) == 3 and answer["warning"]


@pytest.mark.parametrize("colour_weight", [0.0, 0.5])
def test_distinct_photo_query_equals_recommend(client, index_dir, colour_weight):
    from simrec import recommend

    path = _photo(index_dir, "blue/bag_2")
    params = {"k": 4, "distinct": True, "colour_weight": colour_weight}
    response = client.post(
        "/api/similar", params=params, files={"image": ("mine.jpg", path.read_bytes(), "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    expected = recommend(load_index(index_dir), image=path, n_neighbors=4, distinct=True, colour_weight=colour_weight)
    assert [r["product_id"] for r in response.json()["results"]] == expected["product_id"].tolist()
    assert response.json()["results"][0]["product_id"] == "blue/bag_2"  # the catalog's copy of the photo stays


@pytest.mark.parametrize(
    "content, status, reason",
    [
        (b"%PDF-1.4 not a photo", 415, "not an image"),
        (b"", 415, "empty"),
        (_png_bytes()[:60], 422, "corrupt or truncated"),
        (_png_bytes(size=(10_000, 9_000), mode="1"), 422, "decompression-bomb"),
    ],
    ids=["not-an-image", "empty", "truncated", "decompression-bomb"],
)
def test_upload_that_is_not_a_usable_image(client, content, status, reason):
    response = client.post("/api/similar", files={"image": ("upload.png", content, "image/png")})
    assert response.status_code == status
    assert reason in response.json()["detail"] and "upload.png" in response.json()["detail"]


def test_upload_bad_k_and_missing_field(client):
    photo = _png_bytes()
    response = client.post("/api/similar", params={"k": N + 1}, files={"image": ("a.png", photo, "image/png")})
    assert response.status_code == 422 and f"<= {N}" in response.json()["detail"]
    response = client.post("/api/similar", files={"photo": ("a.png", photo, "image/png")})
    assert response.status_code == 422 and "image" in response.json()["detail"]


def test_upload_over_the_limit_is_413(client):
    big = np.random.default_rng(0).bytes(400_000)
    response = client.post("/api/similar", files={"image": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413
    assert "limit of 200000 bytes" in response.json()["detail"]


def test_upload_limit_stops_reading_a_body_without_length():
    """A chunked body is refused once it passes the limit; the rest is never read."""
    from fastapi import FastAPI, Request

    inner = FastAPI()

    @inner.post("/api/similar")
    async def read_all(request: Request):
        return {"bytes": len(await request.body())}

    app = UploadLimit(inner, max_bytes=100_000, paths=("/api/similar",))
    reads = []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}  # never ends

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/similar",
        "raw_path": b"/api/similar",
        "query_string": b"",
        "headers": [(b"transfer-encoding", b"chunked")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(reads) == 3  # 3 x 64 KiB passes 100 kB + the multipart allowance; nothing more is read
    assert b"more than 196608 bytes" in sent[1]["body"]


def test_product_photo_and_its_content_type(client, index_dir):
    response = client.get("/images/green/shirt_2")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == _photo(index_dir, "green/shirt_2").read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "/images/../../etc/passwd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images/..%2f..%2fetc%2fpasswd",
        "/images//etc/passwd",
        "/images/red/shirt_1/../../../meta.json",
        "/images/red%2fshirt_1%2f..%2f..%2fmeta.json",
    ],
)
def test_no_file_outside_the_catalog_photos(client, index_dir, url):
    response = client.get(url)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"format_version" not in response.content


def test_absolute_path_of_a_photo_is_not_a_product(client, index_dir):
    assert client.get("/images/" + str(_photo(index_dir, "red/bag_1"))).status_code == 404


def test_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/api/products/{product_id}/similar" in client.get("/openapi.json").json()["paths"]


def test_requests_never_write_to_the_index_folder(index_dir):
    before = _snapshot(index_dir)
    with TestClient(create_app(index_dir, warm_up=True)) as client:
        photo = _photo(index_dir, "red/bag_1").read_bytes()
        assert client.get("/health").status_code == 200
        assert client.get("/api/products").status_code == 200
        assert client.get("/api/products/red/bag_1/similar").status_code == 200
        assert client.post("/api/similar", files={"image": ("a.jpg", photo, "image/jpeg")}).status_code == 200
        assert client.get("/images/red/bag_1").status_code == 200
        assert client.get("/images/red/nope").status_code == 404
    assert _snapshot(index_dir) == before


def test_photo_queries_share_one_extractor_one_call_at_a_time(index_dir, monkeypatch):
    import simrec.serve.batching as batching

    original = batching.embed_arrays
    active, most, extractors = [0], [0], set()
    guard = threading.Lock()

    def watched(pixels, extractor, *args, **kwargs):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
            extractors.add(id(extractor))
        time.sleep(0.05)  # widen the window in which a second query could overlap
        try:
            return original(pixels, extractor, *args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(batching, "embed_arrays", watched)
    photo = _photo(index_dir, "red/bag_1").read_bytes()
    answers = []
    with TestClient(create_app(index_dir, warm_up=True)) as client:

        def ask():
            response = client.post("/api/similar", params={"k": 2}, files={"image": ("a.jpg", photo, "image/jpeg")})
            answers.append(response.json()["results"][0]["product_id"] if response.status_code == 200 else None)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == ["red/bag_1"] * 4 and most[0] == 1 and len(extractors) == 1


def test_index_of_outside_vectors(tmp_path):
    catalog = pd.DataFrame({"product_id": ["a/1", "a/2", "b/1"], "label": ["a", "a", "b"]})
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    save_vectors(catalog, vectors, tmp_path / "idx", model="clip-vit-b32")
    with TestClient(create_app(tmp_path / "idx")) as client:
        health = client.get("/health").json()
        assert health["pretrained"] is True and health["warning"] is None
        answer = client.get("/api/products/a/1/similar", params={"k": 1}).json()
        assert answer["results"][0]["product_id"] == "a/2" and answer["results"][0]["image_url"] is None
        assert client.get("/api/products").json()["items"][0]["image_url"] is None
        assert client.get("/images/a/1").status_code == 404
        response = client.post("/api/similar", files={"image": ("a.png", _png_bytes(), "image/png")})
        assert response.status_code == 409 and "clip-vit-b32" in response.json()["detail"]


def test_missing_index_is_a_user_error(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_serve_without_its_packages_says_what_to_install(index_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert main(["serve", str(index_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs uvicorn" in err and "pip install uvicorn" in err


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_says_the_untrained_weights_warning_once(index_dir, tmp_path, workers):
    port = free_port()
    argv = [sys.executable, "-m", "simrec", "serve", str(index_dir), "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(tmp_path / "serve.err", "w+") as stderr:
        server = subprocess.Popen(argv, env=env, stderr=stderr, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while True:  # a worker answers once its app is made: the model built, the index opened
                assert server.poll() is None and time.monotonic() < deadline, Path(stderr.name).read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                        break
                except OSError:
                    time.sleep(0.5)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        printed = Path(stderr.name).read_text()
    assert printed.count("UNTRAINED WEIGHTS") == 1, printed


def test_static_files_are_in_the_wheel(simrec_wheel):
    import zipfile

    static = {p.relative_to(ROOT).as_posix() for p in (ROOT / "simrec" / "serve" / "static").iterdir()}
    assert static and static <= set(zipfile.ZipFile(simrec_wheel).namelist())


def test_concurrent_product_queries_are_batched_and_equal_one_at_a_time(index_dir, monkeypatch):
    from simrec.serve.batching import NeighborBatcher

    embedded = load_index(index_dir, mmap=True)
    version = SimpleNamespace(embedded=embedded, search=embedded.search())
    batcher = NeighborBatcher()
    neighbors = embedded.neighbors
    original = neighbors.kneighbors
    release = threading.Event()

    def held(*args, **kwargs):  # hold the first batch until the others have queued
        release.wait(timeout=60)
        return original(*args, **kwargs)

    monkeypatch.setattr(neighbors, "kneighbors", held)
    answers = {}

    def ask(row, k):
        answers[row, k] = batcher.query(version, row, k, time.monotonic() + 120)

    threads = [threading.Thread(target=ask, args=(0, 3))]
    threads[0].start()
    while batcher._pending.qsize():  # the worker has taken the first query
        time.sleep(0.01)
    more = [(row, 1 + row % 4) for row in range(1, 7)]
    threads += [threading.Thread(target=ask, args=args) for args in more]
    for thread in threads[1:]:
        thread.start()
    while batcher._pending.qsize() < len(more):
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join()
    assert batcher.batch_sizes == [1, len(more)]
    monkeypatch.setattr(neighbors, "kneighbors", original)
    catalog = embedded.catalog
    from simrec import recommend

    for (row, k), (distances, indices) in answers.items():
        expected = recommend(embedded, product_id=catalog.at[row, "product_id"], n_neighbors=k, colour_weight=0)
        assert catalog["product_id"].iloc[indices].tolist() == expected["product_id"].tolist()
        np.testing.assert_allclose(distances, expected["distance"], rtol=0, atol=1e-6)


def test_concurrent_photo_queries_are_embedded_together(index_dir, monkeypatch):
    from simrec import recommend
    from simrec.pipeline.images import load_image
    from simrec.serve.batching import PhotoBatcher

    embedded = load_index(index_dir, mmap=True)
    version = SimpleNamespace(embedded=embedded, search=embedded.search())
    batcher = PhotoBatcher()
    neighbors = embedded.neighbors
    original = neighbors.kneighbors
    release = threading.Event()

    def held(*args, **kwargs):  # hold the first batch until the others have queued
        release.wait(timeout=120)
        return original(*args, **kwargs)

    monkeypatch.setattr(neighbors, "kneighbors", held)
    names = ["red/bag_1", "blue/shirt_2", "green/bag_2", "red/shirt_1"]
    pixels = {name: load_image(_photo(index_dir, name), 32) for name in names}
    answers = {}

    def ask(name, k):
        answers[name] = batcher.query(version, pixels[name], k, 0.0, time.monotonic() + 120)

    threads = [threading.Thread(target=ask, args=(names[0], 3))]
    threads[0].start()
    while not batcher.batch_sizes:  # the worker has taken the first query
        time.sleep(0.01)
    threads += [threading.Thread(target=ask, args=(name, 1 + i)) for i, name in enumerate(names[1:])]
    for thread in threads[1:]:
        thread.start()
    while batcher._pending.qsize() < 3:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join()
    assert batcher.batch_sizes == [1, 3]
    monkeypatch.setattr(neighbors, "kneighbors", original)
    for name, (distances, indices) in answers.items():
        expected = recommend(embedded, image=_photo(index_dir, name), n_neighbors=len(indices), colour_weight=0)
        assert embedded.catalog["product_id"].iloc[indices].tolist()[0] == name
        np.testing.assert_allclose(distances, expected["distance"], rtol=0, atol=1e-5)
