"""Folders as users make them: link loops, unreadable links, an index inside the photos, an empty --out."""

from __future__ import annotations

import errno
import os

import pytest
from photos import write_image

import simrec.pipeline.catalog
from simrec import InvalidArgumentError, build_index, load_catalog, load_index
from simrec.cli import main


@pytest.fixture
def shop(tmp_path):
    root = tmp_path / "shop"
    write_image(root / "red" / "a.jpg", (200, 30, 30))
    write_image(root / "blue" / "b.jpg", (30, 30, 200))
    return root


def test_symlink_loops_are_listed_with_a_reason(shop, tmp_path, extractor, capsys):
    os.symlink("self", shop / "red" / "self")
    os.symlink("b", shop / "red" / "a_link")
    os.symlink("a_link", shop / "red" / "b")
    os.symlink(shop / "blue" / "loop", shop / "blue" / "loop")
    catalog, skipped = load_catalog(shop)
    assert sorted(catalog["product_id"]) == ["blue/b", "red/a"]
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    for name in ("red/self", "red/a_link", "red/b", "blue/loop"):
        assert "symbolic link loop" in reasons[str(shop / name)], name
    assert main(["index", str(shop), "--out", str(tmp_path / "idx"), "--image-size", "32", "-q"]) == 0
    assert len(load_index(tmp_path / "idx").failures) == 4


class _Unsearchable:
    """A directory entry whose type cannot be looked up: a link in a folder that can be read but not searched."""

    def __init__(self, entry):
        self.name, self.path = entry.name, entry.path

    def _refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", self.path)

    is_dir = is_file = _refuse

    def is_symlink(self):
        return True


def test_links_that_cannot_be_read_are_listed_with_a_reason(shop, monkeypatch):
    os.symlink(shop / "red" / "a.jpg", shop / "red" / "locked.jpg")
    real = os.scandir

    class Listing:
        def __init__(self, path):
            self._scan = real(path)

        def __enter__(self):
            return (_Unsearchable(e) if e.name == "locked.jpg" else e for e in self._scan)

        def __exit__(self, *exc):
            self._scan.close()

    monkeypatch.setattr(simrec.pipeline.catalog.os, "scandir", Listing)  # root reads every folder
    catalog, skipped = load_catalog(shop)
    monkeypatch.undo()
    assert sorted(catalog["product_id"]) == ["blue/b", "red/a"]
    (row,) = skipped.itertuples(index=False)
    assert row.path == str(shop / "red" / "locked.jpg")
    assert row.reason == "skipped: symbolic link cannot be read (Permission denied)"


@pytest.mark.parametrize("layout", ["labels at the top", "one top folder"])
@pytest.mark.parametrize("where", ["index", "red/index", "."])
def test_an_index_folder_inside_the_source_is_refused(layout, where, tmp_path, capsys):
    data = tmp_path / "data"
    top = data / "Colors_Products" if layout == "one top folder" else data
    write_image(top / "red" / "a.jpg", (200, 30, 30))
    write_image(top / "blue" / "b.jpg", (30, 30, 200))
    out = (data / where) if where != "red/index" else (top / where)
    argv = ["index", str(data), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {out} is inside the source folder {data}" in err[0]
    assert where == "." or not out.exists()
    with pytest.raises(InvalidArgumentError, match="inside the source folder"):
        build_index(data, out, weights="random", verbose=False)


def test_an_index_folder_beside_the_source_keeps_the_labels(tmp_path, extractor):
    data = tmp_path / "data"
    write_image(data / "Colors_Products" / "red" / "a.jpg", (200, 30, 30))
    write_image(data / "Colors_Products" / "blue" / "b.jpg", (30, 30, 200))
    embedded, _ = build_index(data / "Colors_Products", data / "index", extractor=extractor, verbose=False)
    assert sorted(embedded.catalog["label"]) == ["blue", "red"]
    embedded, report = build_index(data / "Colors_Products", data / "index", extractor=extractor, verbose=False)
    assert report.unchanged == 2 and not len(embedded.failures)


def test_an_empty_out_is_refused(shop, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["index", str(shop), "--out", ""],
        ["index", str(shop), "--out", "  "],
        ["index", "", "--out", "idx"],
        ["demo", "--out", ""],
        ["export", str(shop), "--out", ""],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("name a file or folder" in err or "--out" in err), (argv, err)
        assert "index_dir" not in err, (argv, err)  # the command line says its own option
    assert sorted(os.listdir(tmp_path)) == ["shop"]  # nothing written into the current folder
    with pytest.raises(InvalidArgumentError, match="Expected index_dir to name a file or folder, got ''"):
        build_index(shop, "")
