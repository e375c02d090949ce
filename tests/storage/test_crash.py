"""Kill -9 the writer at every named moment of a re-index: the index always loads.

A child process runs ``simrec index`` into an existing index whose source grew, and
kills itself with SIGKILL at one named moment (``SIMREC_CRASH_AT``, see
``simrec/crashpoints.py``). After every kill the folder must load, and verify, as exactly
the previous generation (before the commit) or the new one (from the commit on), and the
next ``simrec index`` must complete and leave no leftovers behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest
from photos import write_image
from tables import read_table

from simrec import build_extractor, build_index, load_index
from simrec.core.defaults import STORED_NEIGHBORS
from simrec.storage.locking import LOCK_FILE
from simrec.storage.photo_store import STORE

OLD, NEW = 6, 18  # photos before and after the source grew
# Moments before the commit leave the previous generation, the commit and later the new one.
BEFORE_COMMIT = ["locked", "catalogued", *(f"batch@{i}" for i in range(1, NEW - OLD + 1))]
# Seven data files: catalog, embeddings, inverse norms, failures, colours and the two of the stored neighbors.
BEFORE_COMMIT += [f"data-file@{i}" for i in range(1, 8)] + ["meta-written"]
AFTER_COMMIT = ["committed", *(f"cleanup@{i}" for i in range(1, 5))]
ZIP_MOMENTS = [("zip-entry@1", OLD), ("zip-entry@9", OLD), ("zip-entry@17", OLD), ("batch@3", OLD)]
ZIP_MOMENTS += [("photo-stored@1", OLD), ("photo-stored@12", OLD)]  # the 12 new photos enter the store
ZIP_MOMENTS += [
    ("data-file@2", OLD),
    ("data-file@7", OLD),
    ("committed", NEW),
    ("cleanup@2", NEW),
    ("cleanup@5", NEW),
    ("cleanup@6", NEW),
]


@pytest.fixture(scope="module")
def small_extractor():
    """The extractor `simrec index --weights random --image-size 32` builds."""
    return build_extractor(weights=None, image_size=32, seed=0)


def _grow(root, start, stop):
    for i in range(start, stop):
        write_image(root / ("red", "blue")[i % 2] / f"item_{i}.jpg", (40 + 10 * i, 20, 200 - 10 * i))


def _kill_at(moment, source, out):
    env = dict(os.environ, SIMREC_CRASH_AT=moment, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-m", "simrec", "index", str(source), "--out", str(out)]
    argv += ["--weights", "random", "--image-size", "32", "--batch-size", "1", "-q"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, (moment, done.returncode, done.stderr[-2000:])


def _assert_clean(out):
    meta = json.loads((out / "meta.json").read_text())
    retired = meta.get("retired_photos", [])
    expected = {"meta.json", LOCK_FILE, *meta["photo_folders"], *(e["name"] for e in meta["files"].values())}
    assert set(os.listdir(out)) == expected | {name for name in retired if "/" not in name}
    if (out / STORE).is_dir():  # the photo store holds what the catalog names and the retired photos, nothing else
        catalog = read_table(out / meta["files"]["catalog"]["name"])
        stored = {f"{STORE}/{p.parent.name}/{p.name}" for p in (out / STORE).glob("*/*")}
        assert stored == set(catalog["path"]) | {name for name in retired if "/" in name}


def _check_trials(source, out, pristine, moments, small_extractor, tmp_path):
    new_ids = None
    for moment, expected in moments:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(pristine, out, symlinks=True)
        _kill_at(moment, source, out)
        survived = load_index(out, verify=True)  # loads, and every checksum holds
        assert len(survived) == expected, (moment, len(survived))
        assert survived.meta.count == len(survived.embeddings) == expected
        assert all(os.path.isfile(p) for p in survived.catalog["path"]), moment
        stored = survived.stored_neighbors  # the stored neighbors of the generation that survived, not of another
        assert stored is not None and stored.rows.shape == (expected, 2, min(expected - 1, STORED_NEIGHBORS)), moment
        embedded, report = build_index(source, out, extractor=small_extractor, verbose=False)
        assert len(embedded) == NEW and report.unchanged == expected, moment
        ids = sorted(embedded.catalog["product_id"])
        assert new_ids in (None, ids)
        new_ids = ids
        _assert_clean(out)
    return len(moments)


def test_kill_at_every_moment_of_a_folder_reindex_leaves_a_working_index(tmp_path, small_extractor):
    source, pristine = tmp_path / "shop", tmp_path / "pristine"
    _grow(source, 0, OLD)
    build_index(source, pristine, extractor=small_extractor, verbose=False)
    _grow(source, OLD, NEW)
    moments = [(m, OLD) for m in BEFORE_COMMIT] + [(m, NEW) for m in AFTER_COMMIT]
    covered = _check_trials(source, tmp_path / "idx", pristine, moments, small_extractor, tmp_path)
    assert covered >= 27


def test_kill_during_a_zip_reindex_leaves_a_working_index_and_its_photos(tmp_path, small_extractor):
    tree, pristine = tmp_path / "tree", tmp_path / "pristine"
    _grow(tree / "Colors_Products", 0, OLD)
    source = tmp_path / "Colors_Products.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for path in sorted(tree.rglob("*.jpg")):
            archive.write(path, path.relative_to(tree).as_posix())
    build_index(source, pristine, extractor=small_extractor, verbose=False)
    _grow(tree / "Colors_Products", OLD, NEW)
    with zipfile.ZipFile(source, "w") as archive:
        for path in sorted(tree.rglob("*.jpg")):
            archive.write(path, path.relative_to(tree).as_posix())
    covered = _check_trials(source, tmp_path / "idx", pristine, ZIP_MOMENTS, small_extractor, tmp_path)
    assert covered == 12  # with the 27 above: 39 kill moments
