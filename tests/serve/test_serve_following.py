"""The service follows re-indexing, sheds load with 503, bounds decoding, and keeps its file layout to itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from paths import ROOT
from photos import write_image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from simrec import build_index, load_index, save_vectors  # noqa: E402
from simrec.cli import main  # noqa: E402
from simrec.serve import create_app  # noqa: E402
from simrec.serve.batching import NeighborBatcher  # noqa: E402
from simrec.serve.limits import DecodeGate, ServiceBusy  # noqa: E402


def _zip(tree, path):
    with zipfile.ZipFile(path, "w") as archive:
        for photo in sorted(tree.rglob("*.jpg")):
            archive.write(photo, photo.relative_to(tree.parent).as_posix())
    return path


def _wait_for(condition, seconds=30.0):
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_running_service_moves_to_each_commit_without_a_restart(colour_tree, tmp_path, extractor):
    source, out = tmp_path / "shop.zip", tmp_path / "idx"
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    with TestClient(create_app(out, poll_seconds=0.05)) as client:
        first = client.get("/health").json()
        assert first["items"] == 12 and first["generation"] == load_index(out).meta.generation
        assert client.get("/api/products/red/item_9/similar").status_code == 404
        write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
        build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
        assert _wait_for(lambda: client.get("/health").json()["generation"] != first["generation"])
        assert client.get("/health").json()["items"] == 13
        assert client.get("/api/products/red/item_9/similar", params={"k": 3}).status_code == 200
        assert client.get("/images/red/item_9").status_code == 200
        assert client.get("/images/red/item_1").status_code == 200


def test_a_request_is_answered_from_the_version_it_started_on(colour_tree, tmp_path, extractor):
    source, out = tmp_path / "shop.zip", tmp_path / "idx"
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    app = create_app(out, poll_seconds=3600)
    service = app.state.service
    held = service.current  # what a request took when it started
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert service.follower.refresh(force=True) and service.current is not held
    row = held.rows["red/item_1"]
    distances, indices = service.batcher.query(held, row, 11, time.monotonic() + 60)
    assert len(indices) == 11 and max(indices) < 12  # only the 12 rows of its own version
    assert all(held.photo_path(pid).is_file() for pid in held.rows)


def test_ids_with_newlines_and_url_characters_are_routable_and_no_answer_names_a_server_path(tmp_path):
    photo = write_image(tmp_path / "photos" / "p.jpg", (10, 200, 30))
    # "%" is left to the test with a real server: the test client decodes a path twice.
    ids = ["line\nbreak", "what?no#hash", "space d/slash", "ünï/代码", "plain"]
    catalog = pd.DataFrame({"product_id": ids, "label": ["x"] * len(ids), "path": [str(photo)] * len(ids)})
    out = tmp_path / "vectors"
    save_vectors(catalog, np.random.default_rng(0).normal(size=(len(ids), 8)), out, model="test-model")
    with TestClient(create_app(out)) as client:
        page = client.get("/api/products").json()
        assert [item["product_id"] for item in page["items"]] == ids
        for item in page["items"]:
            assert client.get(item["image_url"]).status_code == 200, item
            similar = client.get(item["image_url"].replace("/images/", "/api/products/", 1) + "/similar?k=2")
            assert similar.status_code == 200, item
            assert similar.json()["query"]["product_id"] == item["product_id"]
            assert str(tmp_path) not in similar.text
        for text in (json.dumps(page), client.get("/health").text):
            assert str(tmp_path) not in text


def test_docs_render_from_assets_the_service_serves_itself(tmp_path):
    out = tmp_path / "vectors"
    save_vectors(pd.DataFrame({"product_id": ["a", "b"]}), np.eye(2), out, model="m")
    with TestClient(create_app(out)) as client:
        for page, assets in (
            ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
            ("/redoc", ["redoc.standalone.js"]),
        ):
            html = client.get(page).text
            assert "https://" not in html and "http://" not in html, page
            for asset in assets:
                assert f"/docs-assets/{asset}" in html
                answer = client.get(f"/docs-assets/{asset}")
                assert answer.status_code == 200 and len(answer.content) > 100_000


def test_a_full_queue_is_refused_at_once_and_a_late_query_is_withdrawn_unanswered(tmp_path):
    embedded = SimpleNamespace(embeddings=np.eye(4, dtype=np.float32))
    release, computed = threading.Event(), []

    class HeldSearch:
        def kneighbors(self, vectors, n_neighbors):
            release.wait(timeout=60)
            computed.append(len(vectors))
            return np.zeros((len(vectors), n_neighbors)), np.tile(np.arange(n_neighbors), (len(vectors), 1))

    version = SimpleNamespace(embedded=_Sized(embedded, 4), search=HeldSearch())
    batcher = NeighborBatcher(max_pending=1)
    first = threading.Thread(target=batcher.query, args=(version, 0, 1, time.monotonic() + 60))
    first.start()
    assert _wait_for(lambda: batcher._pending.qsize() == 0)  # the worker holds the first query
    late = []
    second = threading.Thread(target=lambda: late.append(_busy(batcher.query, version, 1, 1, time.monotonic() + 0.3)))
    second.start()
    assert _wait_for(lambda: batcher._pending.qsize() == 1)
    with pytest.raises(ServiceBusy, match="already waiting"):  # the queue of 1 is full
        batcher.query(version, 2, 1, time.monotonic() + 60)
    second.join()
    assert late == ["busy"]  # its deadline passed while it waited
    release.set()
    first.join()
    assert _wait_for(lambda: computed == [1])  # the withdrawn query was never computed
    assert batcher.batch_sizes == [1]


class _Sized:
    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __len__(self):
        return self.n

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _busy(function, *args):
    try:
        function(*args)
    except ServiceBusy:
        return "busy"
    return "answered"


@pytest.mark.parametrize("colour_weight", [0.0, 0.3])
def test_a_request_past_its_deadline_gets_503_with_retry_after(
    colour_tree, tmp_path, extractor, monkeypatch, colour_weight
):
    from simrec import ColourBlendNeighbors

    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    app = create_app(out, timeout=0.5)
    search = app.state.service.current.search
    original, blended = search.kneighbors, ColourBlendNeighbors.kneighbors
    monkeypatch.setattr(search, "kneighbors", lambda *a, **k: (time.sleep(3), original(*a, **k))[1])
    monkeypatch.setattr(ColourBlendNeighbors, "kneighbors", lambda *a, **k: (time.sleep(3), blended(*a, **k))[1])
    with TestClient(app) as client:
        answer = client.get(f"/api/products/red/item_1/similar?colour_weight={colour_weight}")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "time limit" in answer.json()["detail"]  # in words an HTTP client knows: it passes no options
        assert client.get("/health").status_code == 200


def test_the_decode_gate_bounds_memory_and_concurrency_and_gives_up_at_the_deadline(tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (2000, 1500), (200, 10, 10)).save(big)
    cost = 2000 * 1500 * 8
    gate = DecodeGate(max_concurrent=4, max_bytes=2 * cost)
    inside, most = [0], [0]
    lock = threading.Lock()

    def decode():
        with gate.admit(big, time.monotonic() + 60):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.2)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2 and gate.peak_in_use == 2 * cost and gate.in_use == 0
    with gate.admit(big, time.monotonic() + 60), gate.admit(big, time.monotonic() + 60):
        with pytest.raises(ServiceBusy, match="decoding"):
            with gate.admit(big, time.monotonic() + 0.2):
                pass


def test_memory_of_large_decodes_goes_back_to_the_system(tmp_path):
    script = textwrap.dedent(
        """
        import sys, threading, time
        from PIL import Image
        from simrec.pipeline.images import load_image
        from simrec.serve.limits import DecodeGate, return_freed_memory

        if sys.argv[1] == "returned":
            assert return_freed_memory()
        path = sys.argv[2]
        Image.new("RGB", (5000, 5000), (200, 10, 10)).save(path)
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 1024**2
        load_image(path, 32)
        before = rss()
        gate = DecodeGate(max_concurrent=4)
        def decode():
            with gate.admit(path, time.monotonic() + 600):
                load_image(path, 32)
        threads = [threading.Thread(target=decode) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(rss() - before)
        """
    )
    grown = {}
    for mode in ("returned", "kept"):
        done = subprocess.run(
            [sys.executable, "-c", script, mode, str(tmp_path / f"{mode}.png")],
            capture_output=True,
            text=True,
            timeout=600,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        grown[mode] = float(done.stdout.split()[-1])
    assert grown["returned"] < 100, grown  # MB kept after eight 5000 x 5000 decodes
    assert grown["kept"] > grown["returned"] + 100, grown  # what the default allocator would have kept


def test_port_out_of_range_and_port_in_use_are_one_line_errors(tmp_path, capsys):
    import socket

    out = tmp_path / "vectors"
    save_vectors(pd.DataFrame({"product_id": ["a", "b"]}), np.eye(2), out, model="m")
    assert main(["serve", str(out), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--port" in err and "70000" in err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        assert main(["serve", str(out), "--port", str(port)]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "serving" not in err


def test_a_query_the_queue_would_keep_past_its_deadline_is_refused_at_once():
    batcher = NeighborBatcher()
    batcher.seconds_per_query = 10.0  # as measured after slow batches
    batcher._pending.qsize = lambda: 1  # one query waiting ahead
    version = SimpleNamespace(embedded=_Sized(SimpleNamespace(embeddings=np.eye(4, dtype=np.float32)), 4), search=None)
    with pytest.raises(ServiceBusy, match="about 20.0 s of work"):
        batcher.query(version, 0, 1, time.monotonic() + 1.0)
    assert batcher.batch_sizes == []  # never queued
