"""A catalog of every kind of bad file: nothing crashes, nothing is lost, nothing escapes."""

import io
import os
import zipfile

import numpy as np
import pytest
from photos import write_image
from PIL import Image

from simrec import build_index, load_index
from simrec.cli import main

EXPECTED_EMBEDDED = {
    "good/plain",
    "good/cmyk",
    "good/palette_alpha",
    "good/grey_alpha",
    "good/sixteen_bit",
    "good/rotated",
    "good/animated",
    "good/one_pixel",
    "good/panorama",
    "good/caf\u00e9_cr\u00e8me",
    "good/\u65e5\u672c",
    "good/looks_like.jpg/inside",
}
EXPECTED_SKIPPED = {  # file name -> words the reason must contain
    "zero.jpg": "empty",
    "truncated.jpg": "truncated",
    "random.png": "not an image",
    "text.jpg": "not an image",
    "bomb.png": "too large",
    "outside.jpg": "outside the catalog",
    "notes.txt": "not an image file",
    ".hidden.jpg": "hidden",
}


@pytest.fixture
def hostile(tmp_path):
    """A folder mixing good photos with every kind of bad file, and a secret outside it."""
    root = tmp_path / "shop"
    good, bad = root / "good", root / "bad"
    write_image(good / "plain.jpg")
    write_image(good / "cmyk.jpg", mode="CMYK")
    palette = Image.new("P", (30, 20), 1)
    palette.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 10, 20))
    palette.save(good / "palette_alpha.png", transparency=0)
    write_image(good / "grey_alpha.png", mode="LA")
    Image.fromarray(np.full((20, 30), 40000, dtype=np.uint16)).save(good / "sixteen_bit.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    write_image(good / "rotated.jpg", size=(60, 20), exif=exif)
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGB", (1, 1), (10, 200, 10)).save(good / "one_pixel.png")
    write_image(good / "panorama.jpg", size=(8000, 40))
    write_image(good / "caf\u00e9_cr\u00e8me.jpg")
    write_image(good / "\u65e5\u672c.png")
    write_image(good / "looks_like.jpg" / "inside.png")  # a directory named like an image

    bad.mkdir(parents=True)
    (bad / "zero.jpg").write_bytes(b"")
    data = (good / "plain.jpg").read_bytes()
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(big, "JPEG")
    (bad / "truncated.jpg").write_bytes(big.getvalue()[: len(big.getvalue()) // 2])
    (bad / "random.png").write_bytes(np.random.default_rng(1).bytes(2000))
    (bad / "text.jpg").write_text("this is not a photo")
    Image.new("1", (9500, 9500)).save(bad / "bomb.png")  # 90 M pixels: above Pillow's limit
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(data)
    os.symlink(secret, bad / "outside.jpg")
    (bad / "notes.txt").write_text("x")
    (bad / ".hidden.jpg").write_bytes(data)
    os.mkdir(bad / "empty_dir.png")
    non_utf8 = os.fsencode(bad) + b"/caf\xe9.jpg"
    with open(non_utf8, "wb") as handle:
        handle.write(data)
    return root


def test_every_file_is_indexed_or_listed_with_a_reason(hostile, tmp_path, extractor):
    embedded, report = build_index(hostile, tmp_path / "idx", extractor=extractor, verbose=False)
    assert set(embedded.catalog["product_id"]) == EXPECTED_EMBEDDED
    failures = embedded.failures
    by_name = {os.path.basename(p): r for p, r in zip(failures["path"], failures["reason"])}
    for name, words in EXPECTED_SKIPPED.items():
        assert words in by_name[name], (name, by_name[name])
    assert "not valid UTF-8" in by_name["caf\\xe9.jpg"]
    files_given = sum(len(files) for _, _, files in os.walk(hostile))
    assert report.candidates == report.indexed + report.skipped == files_given
    assert report.indexed == len(EXPECTED_EMBEDDED) and report.skipped == len(EXPECTED_SKIPPED) + 1
    assert np.isfinite(embedded.embeddings).all()
    reloaded = load_index(tmp_path / "idx")  # failures.csv is readable with the odd names in it
    assert len(reloaded.failures) == report.skipped


def test_hostile_zip_writes_nothing_outside_the_output(tmp_path, extractor):
    zip_path = tmp_path / "evil.zip"
    jpeg = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 0, 0)).save(jpeg, "JPEG")
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in ["shop/red/a.jpg", "shop/red/b.jpg", "../escaped.jpg", "/tmp/abs_escape.jpg", "shop/../../up.jpg"]:
            archive.writestr(name, jpeg.getvalue())
        link = zipfile.ZipInfo("shop/red/link.jpg")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("shop/red/bad.jpg", b"garbage")
    before = set(tmp_path.rglob("*"))
    _, report = build_index(zip_path, tmp_path / "out" / "idx", extractor=extractor, verbose=False)
    created = set(tmp_path.rglob("*")) - before
    assert all((tmp_path / "out") in p.parents or p == tmp_path / "out" for p in created)
    assert not os.path.exists("/tmp/abs_escape.jpg")
    assert report.indexed == 2 and report.skipped == 5 and report.candidates == 7


def test_incremental_reindex_embeds_only_new_and_changed(colour_tree, tmp_path, extractor, monkeypatch):
    out = tmp_path / "idx"
    first, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert (report.added, report.embedded) == (12, 12)
    before = load_index(out)

    for i in range(5):
        write_image(colour_tree / "green" / f"new_{i}.jpg", (20, 200 + i, 20))
    write_image(colour_tree / "red" / "item_2.jpg", (255, 255, 0))  # changed content
    (colour_tree / "blue" / "item_4.jpg").unlink()

    import simrec.app.indexing

    seen = []
    real = simrec.app.indexing.embed_images
    monkeypatch.setattr(
        simrec.app.indexing, "embed_images", lambda paths, *a, **k: seen.extend(paths) or real(paths, *a, **k)
    )
    _, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert sorted(os.path.basename(p) for p in seen) == sorted([f"new_{i}.jpg" for i in range(5)] + ["item_2.jpg"])
    assert (report.added, report.updated, report.removed, report.unchanged) == (5, 1, 1, 10)
    after = load_index(out)
    old_rows = dict(zip(before.catalog["product_id"], before.embeddings))
    for pid, vector in zip(after.catalog["product_id"], after.embeddings):
        if pid in old_rows and pid != "red/item_2":
            assert vector.tobytes() == old_rows[pid].tobytes()  # byte-identical, not recomputed
    assert "blue/item_4" not in set(after.catalog["product_id"]) and len(after) == 16

    seen.clear()
    _, report = build_index(colour_tree, out, extractor=extractor, verbose=False, rebuild=True)
    assert len(seen) == 16 and report.added == 16


def test_rerunning_the_cli_after_adding_five_photos_embeds_five(colour_zip, tmp_path, capsys):
    out = tmp_path / "idx"
    argv = ["index", str(colour_zip), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]
    assert main(argv) == 0
    with zipfile.ZipFile(colour_zip, "a") as archive:
        for i in range(5):
            archive.write(
                write_image(tmp_path / "extra" / f"x{i}.jpg", (0, 0, 50 * i)), f"Colors_Products/blue/x{i}.jpg"
            )
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "added 5, updated 0, removed 0, unchanged 12; embedded 5 in" in printed
    assert len(load_index(out)) == 17


def test_a_failed_commit_keeps_the_previous_version(colour_tree, tmp_path, extractor, monkeypatch):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    before = sorted(p.name for p in out.iterdir())
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
    import simrec.storage.index_folder

    def dying_replace(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(simrec.storage.index_folder.os, "replace", dying_replace)
    with pytest.raises(OSError, match="disk vanished"):
        build_index(colour_tree, out, extractor=extractor, verbose=False)
    monkeypatch.undo()
    assert len(load_index(out, verify=True)) == 12  # the previous generation, intact
    assert sorted(p.name for p in out.iterdir()) == before  # the new generation's files are gone
    assert len(build_index(colour_tree, out, extractor=extractor, verbose=False)[0]) == 13


def test_ctrl_c_during_indexing_keeps_the_previous_index(colour_zip, tmp_path, monkeypatch, capsys):
    out = tmp_path / "idx"
    argv = ["index", str(colour_zip), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]
    assert main(argv) == 0
    saved = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    photos = sorted(p.relative_to(out) for p in out.rglob("*"))
    import simrec.app.indexing

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(simrec.app.indexing, "embed_images", interrupted)
    first = load_index(out).catalog.set_index("product_id").at["red/item_1", "path"]
    with zipfile.ZipFile(colour_zip, "a") as archive:
        archive.writestr("Colors_Products/red/new.jpg", open(first, "rb").read())
    capsys.readouterr()
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == saved
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == photos  # no half-extracted zip either
    assert len(load_index(out)) == 12


def test_unwritable_output_folder_is_a_clear_error(colour_tree, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["index", str(colour_tree), "--out", str(blocker / "idx"), "--weights", "random"]) == 2
    assert "cannot write to the index folder" in capsys.readouterr().err


def test_folder_without_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    assert main(["index", str(tmp_path / "docs"), "--out", str(tmp_path / "idx"), "--weights", "random"]) == 2
    assert "no usable images found" in capsys.readouterr().err
