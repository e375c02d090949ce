"""A full disk is a full disk: one message, the previous generation kept, nothing left behind.

Every byte simrec writes goes through ``os.write`` (``simrec.core.durability.NewFile``), so
these tests fill the disk by replacing ``os.write`` and ``os.fsync``: from a named moment
of a run on (the crash test's moments), or after a budget of bytes, with the short write a
real disk gives when it fills up. One test fills a real small filesystem (a tmpfs it mounts,
which needs root: skipped with the reason elsewhere, never in CI).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import zipfile
from collections import Counter

import pandas as pd
import pytest
from photos import write_image

import simrec.core.crashpoints as crashpoints
from simrec import DiskFullError, build_extractor, build_index, load_index
from simrec.app.export import export_embeddings, export_neighbors
from simrec.app.indexing import add_colours
from simrec.cli import main
from simrec.storage.locking import LOCK_FILE

OLD, NEW = 6, 12
BEFORE_COMMIT = ["locked", "catalogued", "batch@1", "batch@4", *(f"data-file@{i}" for i in range(1, 6))]
BEFORE_COMMIT += ["meta-written"]
ZIP_MOMENTS = ["zip-entry@1", "zip-entry@7", "zip-entry@12"]  # after the last entry: the extraction marker
AFTER_COMMIT = ["committed", "cleanup@1"]


@pytest.fixture(scope="module")
def small_extractor():
    return build_extractor(weights=None, image_size=32, seed=0)


class FullDisk:
    """``os.write`` and ``os.fsync`` that fail with ``code`` once the disk is full.

    The disk fills at a named moment (:meth:`at`) or after ``room`` more bytes (:meth:`after`);
    the write that passes the room is a short write, as a real disk's is.
    """

    def __init__(self, monkeypatch, code: int = errno.ENOSPC) -> None:
        self.code = code
        self.room: int | None = None
        self._write, self._fsync, self._kill = os.write, os.fsync, os.kill
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)
        monkeypatch.setattr(os, "kill", self.kill)
        self._monkeypatch = monkeypatch
        self.at(None)

    def _error(self) -> OSError:
        return OSError(self.code, os.strerror(self.code))

    def write(self, descriptor, data):
        if self.room is None:
            return self._write(descriptor, data)
        if self.room == 0:
            raise self._error()
        written = self._write(descriptor, memoryview(data)[: self.room])
        self.room -= written
        return written

    def fsync(self, descriptor):
        if self.room == 0:
            raise self._error()
        return self._fsync(descriptor)

    def kill(self, pid, sig):
        if pid == os.getpid() and sig == signal.SIGKILL:  # the moment was reached: the disk is full from now on
            self.room = 0
            return
        self._kill(pid, sig)

    def at(self, moment: str | None) -> None:
        name, _, nth = (moment or "").partition("@")
        self._monkeypatch.setattr(crashpoints, "_NAME", name)
        self._monkeypatch.setattr(crashpoints, "_WHEN", int(nth) if nth else 1)
        self._monkeypatch.setattr(crashpoints, "_seen", Counter())
        self.room = None

    def after(self, room: int) -> None:
        self.at(None)
        self.room = room


def _grow(root, start, stop):
    for i in range(start, stop):
        write_image(root / ("red", "blue")[i % 2] / f"item_{i}.jpg", (40 + 10 * i, 20, 200 - 10 * i))


def _zip(tree, path):
    with zipfile.ZipFile(path, "w") as archive:
        for photo in sorted(tree.rglob("*.jpg")):
            archive.write(photo, photo.relative_to(tree).as_posix())
    return path


def _assert_clean(out):
    meta = json.loads((out / "meta.json").read_text())
    expected = {"meta.json", LOCK_FILE, *meta["photo_folders"], *(e["name"] for e in meta["files"].values())}
    assert set(os.listdir(out)) == expected


@pytest.fixture
def shop(tmp_path, small_extractor):
    """A folder source and a zip source, each indexed with OLD photos, then grown to NEW."""
    folder, tree = tmp_path / "shop", tmp_path / "tree"
    _grow(folder, 0, OLD)
    _grow(tree / "Colors_Products", 0, OLD)
    sources = {"folder": folder, "zip": _zip(tree, tmp_path / "shop.zip")}
    pristine = {}
    for kind, source in sources.items():
        pristine[kind] = tmp_path / f"pristine-{kind}"
        build_index(source, pristine[kind], extractor=small_extractor, verbose=False)
    _grow(folder, OLD, NEW)
    _grow(tree / "Colors_Products", OLD, NEW)
    _zip(tree, tmp_path / "shop.zip")
    return sources, pristine


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_a_full_disk_at_every_moment_of_a_reindex_keeps_the_previous_version(
    kind, shop, tmp_path, small_extractor, monkeypatch
):
    sources, pristine = shop
    source, out = sources[kind], tmp_path / "idx"
    disk = FullDisk(monkeypatch)
    moments = BEFORE_COMMIT + (ZIP_MOMENTS if kind == "zip" else [])
    for moment in ["start", *moments, *AFTER_COMMIT]:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(pristine[kind], out, symlinks=True)
        if moment == "start":
            disk.after(0)
        else:
            disk.at(moment)
        if moment in AFTER_COMMIT:  # the new generation stands: only the tidying up meets the full disk
            embedded, _ = build_index(source, out, extractor=small_extractor, batch_size=1, verbose=False)
            assert len(embedded) == NEW, moment
        else:
            with pytest.raises(DiskFullError) as caught:
                build_index(source, out, extractor=small_extractor, batch_size=1, verbose=False)
                pytest.fail(f"no full disk at {moment}")
            message = str(caught.value)
            assert message.startswith(f"cannot write {out}: the disk is full"), (moment, message)
            assert "the previous generation is unchanged" in message and "\n" not in message
            survived = load_index(out, verify=True)
            assert len(survived) == OLD, moment
            _assert_clean(out)  # no staging folder, no half-written file
        disk.at(None)
        embedded, report = build_index(source, out, extractor=small_extractor, verbose=False)
        assert len(embedded) == NEW and not len(embedded.failures), moment  # no photo became "corrupt"
        assert report.removed == 0, moment
        _assert_clean(out)


@pytest.mark.parametrize("room", [0, 700, 5_000, 40_000, 90_000, 150_000, 400_000])
def test_a_disk_that_fills_up_part_way_says_so_and_keeps_the_previous_version(
    room, shop, tmp_path, small_extractor, monkeypatch
):
    sources, pristine = shop
    out = tmp_path / "idx"
    shutil.copytree(pristine["zip"], out, symlinks=True)
    disk = FullDisk(monkeypatch)
    disk.after(room)  # a short write, then ENOSPC: what numpy used to report as "N requested and M written"
    try:
        embedded, report = build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
    except DiskFullError as error:
        assert "the disk is full" in str(error) and "requested" not in str(error)
        assert len(load_index(out, verify=True)) == OLD
    else:
        assert len(embedded) == NEW and report.removed == 0
    disk.at(None)
    _assert_clean(out)
    embedded, report = build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
    assert len(embedded) == NEW and not len(embedded.failures) and report.removed == 0


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.EDQUOT, "the disk is full for this user (its quota)"), (errno.EROFS, "the disk is read-only")],
)
def test_a_quota_or_a_read_only_disk_reads_like_a_full_disk(code, words, shop, tmp_path, small_extractor, monkeypatch):
    sources, pristine = shop
    out = tmp_path / "idx"
    shutil.copytree(pristine["zip"], out, symlinks=True)
    FullDisk(monkeypatch, code).after(0)
    with pytest.raises(DiskFullError, match=re.escape(f"cannot write {out}: {words} ({os.strerror(code)})")):
        build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
    assert len(load_index(out, verify=True)) == OLD


def test_a_full_disk_is_one_line_and_exit_status_2(shop, tmp_path, monkeypatch, capsys):
    sources, pristine = shop
    out = tmp_path / "idx"
    shutil.copytree(pristine["zip"], out, symlinks=True)
    FullDisk(monkeypatch).at("zip-entry@2")
    argv = ["index", str(sources["zip"]), "--out", str(out), "--image-size", "32", "-q"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("simrec: WARNING")]
    assert err == [
        f"simrec: error: cannot write {out}: the disk is full (No space left on device); the previous generation is "
        "unchanged; free some space and run it again"
    ]


def test_colours_and_ann_on_a_full_disk_keep_the_previous_version(shop, tmp_path, monkeypatch):
    sources, pristine = shop
    out = tmp_path / "idx"
    shutil.copytree(pristine["folder"], out, symlinks=True)
    before = sorted(os.listdir(out))
    disk = FullDisk(monkeypatch)
    disk.after(1000)
    with pytest.raises(DiskFullError, match=f"cannot write {out}: the disk is full"):
        add_colours(out, verbose=False)
    assert sorted(os.listdir(out)) == before and len(load_index(out, verify=True)) == OLD
    pytest.importorskip("faiss", reason="simrec ann needs faiss: pip install 'simrec[faiss]'")
    from simrec.app.ann import attach_ann

    disk.after(1000)
    with pytest.raises(DiskFullError, match=f"cannot write {out}: the disk is full"):
        attach_ann(out, "hnsw")
    assert sorted(os.listdir(out)) == before and load_index(out, verify=True).ann is None


@pytest.mark.parametrize("room", [0, 300])
@pytest.mark.parametrize("what", ["recs.csv", "recs.parquet", "vectors.parquet"])
def test_an_export_to_a_full_disk_leaves_no_partial_file(what, room, shop, tmp_path, monkeypatch, capsys):
    sources, pristine = shop
    exports = tmp_path / "exports"
    exports.mkdir()
    embedded = load_index(pristine["folder"], mmap=True)
    FullDisk(monkeypatch).after(room)
    with pytest.raises(DiskFullError, match=f"cannot write {exports / what}: the disk is full"):
        if what == "vectors.parquet":
            export_embeddings(embedded, exports / what, verbose=False)
        else:
            export_neighbors(embedded, exports / what, n_neighbors=3, verbose=False)
    assert os.listdir(exports) == []
    monkeypatch.undo()
    FullDisk(monkeypatch).after(room)
    argv = ["export", str(pristine["folder"]), "--out", str(exports / what), "-k", "3", "-q"]
    assert main(argv + (["--embeddings"] if what == "vectors.parquet" else [])) == 2
    assert "the disk is full" in capsys.readouterr().err and os.listdir(exports) == []


def _mount_tmpfs(where, size):
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()}); it needs root"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI runs as root, where mounting works: there this test never skips
        pytest.skip(message)


def _fill(disk, leave):
    """Fill ``disk`` with a ballast file, then give back ``leave`` bytes."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    os.truncate(ballast, max(0, os.path.getsize(ballast) - leave))


def test_a_small_real_filesystem_filling_up_at_every_level(shop, tmp_path, small_extractor):
    sources, pristine = shop
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "4m")
    try:
        outcomes = []
        for leave in [0, 4096, 16384, 65536, 131072, 262144, 524288, 1048576]:
            for entry in os.listdir(disk):
                shutil.rmtree(disk / entry) if (disk / entry).is_dir() else os.unlink(disk / entry)
            out = disk / "idx"
            shutil.copytree(pristine["zip"], out, symlinks=True)
            _fill(disk, leave)
            try:
                embedded, report = build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
            except DiskFullError as error:
                assert str(error).startswith(f"cannot write {out}: the disk is full (No space left on device)")
                assert len(load_index(out, verify=True)) == OLD, leave
                outcomes.append("full")
            else:
                assert len(embedded) == NEW and not len(embedded.failures) and report.removed == 0, leave
                outcomes.append("indexed")
            _assert_clean(out)
            os.unlink(disk / "ballast")
            embedded, report = build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
            assert len(embedded) == NEW and not len(embedded.failures) and report.removed == 0
        assert outcomes[0] == "full" and outcomes[-1] == "indexed"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_short_write_says_the_disk_is_full(embedded, tmp_path, monkeypatch):
    from simrec import save_index

    out = tmp_path / "idx"
    FullDisk(monkeypatch).after(5000)  # the embeddings (12 x 2048 float32) are taken in part, then ENOSPC
    with pytest.raises(DiskFullError) as caught:
        save_index(embedded, out)
    message = str(caught.value)
    assert message.startswith(f"cannot write {out}: the disk is full (No space left on device)")
    assert "requested" not in message and "written" not in message
    assert sorted(os.listdir(out)) == [LOCK_FILE]


def test_a_full_disk_while_photos_are_copied_where_links_are_refused_leaves_no_file(
    shop, tmp_path, small_extractor, monkeypatch
):
    sources, pristine = shop
    out = tmp_path / "idx"
    shutil.copytree(pristine["zip"], out, symlinks=True)
    files_before = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())

    def no_links(*args, **kwargs):  # some network and FUSE mounts: the photos are copied instead
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    disk = FullDisk(monkeypatch)
    disk.at("catalogued")  # the zip is extracted; the copies into the photo store meet the full disk
    with pytest.raises(DiskFullError, match=f"cannot write {out}: the disk is full"):
        build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files_before
    assert len(load_index(out, verify=True)) == OLD
    disk.at(None)
    embedded, report = build_index(sources["zip"], out, extractor=small_extractor, verbose=False)
    assert len(embedded) == NEW and report.removed == 0


@pytest.mark.parametrize("room", [0, 300])
@pytest.mark.parametrize("what", ["pairs.csv", "pairs.parquet"])
def test_a_duplicates_table_to_a_full_disk_leaves_no_partial_file(what, room, shop, tmp_path, monkeypatch):
    from simrec import find_duplicates
    from simrec.app.duplicates import write_duplicates

    sources, pristine = shop
    report = find_duplicates(load_index(pristine["folder"], mmap=True), threshold=2.0, photos=False)
    assert len(report.pairs)  # every pair is within distance 2: something to write
    tables = tmp_path / "tables"
    tables.mkdir()
    FullDisk(monkeypatch).after(room)
    with pytest.raises(DiskFullError, match=f"cannot write {tables / what}: the disk is full"):
        write_duplicates(report, tables / what)
    assert os.listdir(tables) == []
    monkeypatch.undo()
    written = write_duplicates(report, tables / what)
    back = pd.read_csv(written, dtype=str) if what.endswith(".csv") else pd.read_parquet(written)
    assert back["product_id"].astype(str).tolist() == report.pairs["product_id"].astype(str).tolist()
