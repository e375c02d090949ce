"""Soak: clients query a running ``simrec serve --workers 2`` while its zip grows and is re-indexed into its folder.

Every request must succeed, new products must be served without a restart, memory must
stay flat, the start must be quiet, and a client that sends its request head one byte a
second must be cut off. Short here: three re-indexes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from photos import write_image
from processes import free_port, tree_rss_mb

from simrec import build_index

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

ROUNDS, GROWTH = 3, 3
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _write_photos(root, start, stop):
    for i in range(start, stop):
        name, colour = list(COLOURS.items())[i % 3]
        write_image(root / name / f"item_{i}.jpg", tuple((c + 7 * i) % 256 for c in colour), size=(40 + i, 36))


def _zip(tree, path):
    temporary = path.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w") as archive:
        for photo in sorted(tree.rglob("*.jpg")):
            archive.write(photo, photo.relative_to(tree).as_posix())
    os.replace(temporary, path)
    return path


def _fresh_get(url, **kwargs):
    with httpx.Client(timeout=60) as client:  # a new connection: either worker may answer
        return client.get(url, **kwargs)


def _slow_head(port, seconds):
    """Send a request head one byte a second; the seconds until the server closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(1.0)
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
            except OSError:
                return time.monotonic() - started
            if time.monotonic() - started > seconds:
                return None
    return None


def test_queries_never_fail_while_the_served_index_is_re_indexed(tmp_path, extractor):
    tree, source, out = tmp_path / "shop", tmp_path / "shop.zip", tmp_path / "idx"
    _write_photos(tree / "Colors_Products", 0, 12)
    write_image(tree / "Colors_Products" / "red" / "per%cent.jpg", (240, 20, 20))  # an id with a % in its URL
    build_index(_zip(tree, source), out, extractor=extractor, verbose=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "simrec", "serve", str(out), "--port", str(port), "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    stderr = open(tmp_path / "serve.err", "w+")
    server = subprocess.Popen([*argv, "--timeout", "30"], env=env, stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        _soak(server, url, port, tree, source, out, extractor, stderr)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        stderr.close()


def _soak(server, url, port, tree, source, out, extractor, stderr):
    stop = time.monotonic() + 180
    while time.monotonic() < stop:
        assert server.poll() is None, Path(stderr.name).read_text()[-3000:]
        try:
            if all(_fresh_get(f"{url}/health").status_code == 200 for _ in range(4)):
                break
        except httpx.TransportError:
            time.sleep(0.5)
    generation = _fresh_get(f"{url}/health").json()["generation"]
    ids = [item["product_id"] for item in _fresh_get(f"{url}/api/products", params={"limit": 500}).json()["items"]]
    assert "red/per%cent" in ids and _fresh_get(f"{url}/images/{quote('red/per%cent')}").status_code == 200
    upload = (tree / "Colors_Products" / "green" / "item_1.jpg").read_bytes()
    failures, counts, done = [], {"ids": 0, "photos": 0, "uploads": 0}, threading.Event()
    lock = threading.Lock()

    def client(kind):
        import random

        rng = random.Random(kind)
        with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            while not done.is_set():
                product_id = quote(rng.choice(ids), safe="/")
                if kind == "ids":
                    answer = http.get(f"/api/products/{product_id}/similar", params={"k": 3})
                elif kind == "photos":
                    answer = http.get(f"/images/{product_id}")
                else:
                    answer = http.post("/api/similar", params={"k": 3}, files={"image": ("mine.jpg", upload)})
                with lock:
                    counts[kind] += 1
                    if answer.status_code != 200:
                        failures.append((kind, product_id, answer.status_code, answer.text[:200]))

    threads = [threading.Thread(target=client, args=(kind,)) for kind in counts]
    slow = {}
    threads.append(threading.Thread(target=lambda: slow.setdefault("closed_after", _slow_head(port, 40))))
    for thread in threads:
        thread.start()
    time.sleep(2)
    rss_start = tree_rss_mb(server.pid)
    try:
        for round_ in range(ROUNDS):
            first = 12 + round_ * GROWTH
            _write_photos(tree / "Colors_Products", first, first + GROWTH)
            build_index(_zip(tree, source), out, extractor=extractor, verbose=False)
            new = _fresh_get(f"{url}/health")  # any answer: the service never stops answering
            assert new.status_code == 200
            target = __import__("json").loads((out / "meta.json").read_text())["generation"]
            assert target != generation
            stop = time.monotonic() + 60
            while time.monotonic() < stop:  # both workers: 8 fresh connections in a row see it
                if all(_fresh_get(f"{url}/health").json()["generation"] == target for _ in range(8)):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"the service did not move to generation {target} within 60 s")
            generation = target
            added = [f"{list(COLOURS)[i % 3]}/item_{i}" for i in range(first, first + GROWTH)]
            for product_id in added:
                assert _fresh_get(f"{url}/api/products/{product_id}/similar").status_code == 200
                assert _fresh_get(f"{url}/images/{product_id}").status_code == 200
            with lock:
                ids.extend(added)
            time.sleep(1)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=120)
    rss_end = tree_rss_mb(server.pid)
    print(f"soak: {counts}, {len(failures)} failed, memory {rss_start:.0f} -> {rss_end:.0f} MB")
    assert failures == []
    assert all(count > 0 for count in counts.values()), counts
    assert _fresh_get(f"{url}/health").json()["items"] == 13 + ROUNDS * GROWTH
    assert rss_end - rss_start < 300, (rss_start, rss_end)
    assert slow["closed_after"] is not None and slow["closed_after"] < 30, slow
    stderr.flush()
    printed = Path(stderr.name).read_text()
    for noise in ("cudart", "cuInit", "absl", "oneDNN", "cpu_feature_guard"):
        assert noise not in printed, printed[-3000:]
    assert printed.startswith("serving ")
