"""`simrec sync` of a real 4,776-photo shop catalog, its re-index, and a re-sync that writes only the changes.

The index is ``../shared/data/fashion-small`` embedded with the shared MobileNet 0.25
weights (256-d vectors, so a ``vector`` column); the re-index removes 10 photos and adds
40 new ones (mirrored copies of other photos, saved as new files). The database is a
real PostgreSQL with pgvector started for the test (tests/postgres.py).
"""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest
from paths import SHARED
from PIL import Image, ImageOps
from postgres import server_or_skip

from simrec import build_index, load_index
from simrec.cli import main

PHOTOS = SHARED / "data" / "fashion-small" / "images"
WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
ADDED, REMOVED = 40, 10


@pytest.fixture(scope="module")
def server():
    server = server_or_skip()
    yield server
    server.stop()


def _xmins(url):
    with psycopg.connect(url) as connection:
        return dict(connection.execute("SELECT product_id, xmin::text FROM simrec_products").fetchall())


def _count(url, table):
    with psycopg.connect(url) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_sync_a_real_catalog_then_only_what_a_reindex_changed(tmp_path, server, capsys):
    if not (PHOTOS.is_dir() and WEIGHTS.is_file()):
        message = f"real photos and weights not found at {SHARED} (fashion-small and the MobileNet 0.25 weights)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    photos = sorted(PHOTOS.glob("*.jpg"), key=lambda p: int(p.stem))
    assert len(photos) == 4776
    source, index = tmp_path / "shop", tmp_path / "index"
    source.mkdir()
    for photo in photos:
        shutil.copyfile(photo, source / photo.name)
    options = {"model": "mobilenet-0.25", "weights": WEIGHTS, "verbose": False}
    build_index(source, index, **options)
    url = server.create_database("fashion", vector=True)

    assert main(["sync", str(index), url, "--neighbors", "10", "-q"]) == 0
    assert "added 4776, changed 0, removed 0, unchanged 0" in capsys.readouterr().out
    assert _count(url, "simrec_products") == 4776 and _count(url, "simrec_recommendations") == 47760
    before = _xmins(url)

    removed = [photo.stem for photo in photos[:REMOVED]]
    for photo_id in removed:
        (source / f"{photo_id}.jpg").unlink()
    added = []
    for photo in photos[-ADDED:]:
        with Image.open(photo) as image:
            ImageOps.mirror(image.convert("RGB")).save(source / f"new_{photo.stem}.jpg", quality=90)
        added.append(f"new_{photo.stem}")
    embedded, report = build_index(source, index, **options)
    assert (report.added, report.removed, report.embedded) == (ADDED, REMOVED, ADDED)

    assert main(["sync", str(index), url, "-q"]) == 0
    out = capsys.readouterr().out
    assert f"added {ADDED}, changed 0, removed {REMOVED}, unchanged {4776 - REMOVED}" in out
    after = _xmins(url)
    assert set(after) == set(load_index(index).catalog["product_id"]) and len(after) == 4776 - REMOVED + ADDED
    assert not set(after) & set(removed)
    assert {pid for pid, xmin in after.items() if before.get(pid) != xmin} == set(added)  # only those were written
    assert _count(url, "simrec_recommendations") == 10 * len(after)

    assert main(["sync", str(index), url, "-q"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert _xmins(url) == after
