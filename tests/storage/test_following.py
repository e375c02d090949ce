"""A reader of the previous generation keeps its photos and vectors; a follower moves to each commit."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import numpy as np
from photos import write_image
from tables import read_table, write_table

import simrec
from simrec import build_index, load_index
from simrec.core.checksum import file_fingerprint
from simrec.storage.photo_store import STORE


def _zip(tree, path):
    with zipfile.ZipFile(path, "w") as archive:
        for photo in sorted(tree.rglob("*.jpg")):
            archive.write(photo, photo.relative_to(tree.parent).as_posix())
    return path


def _photos_present(embedded):
    return all(os.path.isfile(p) for p in embedded.catalog["path"])


def test_a_reader_of_the_previous_version_keeps_every_photo_until_the_commit_after_next(
    colour_tree, tmp_path, extractor
):
    source, out = tmp_path / "shop.zip", tmp_path / "idx"
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    first = load_index(out, mmap=True)
    assert all(p.startswith(str((out / STORE).absolute())) for p in first.catalog["path"])

    write_image(colour_tree / "red" / "item_1.jpg", (10, 200, 10))  # a changed product
    (colour_tree / "blue" / "item_4.jpg").unlink()  # a removed one
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))  # a new one
    second, report = build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert (report.added, report.updated, report.removed) == (1, 1, 1)
    assert _photos_present(first)  # the changed and removed products' old photos too
    assert float(np.abs(np.asarray(first.embeddings)).sum()) > 0  # its removed vectors file is still mapped
    unchanged = "green/item_2"
    path_of = dict(zip(first.catalog["product_id"], first.catalog["path"]))
    assert path_of[unchanged] == dict(zip(second.catalog["product_id"], second.catalog["path"]))[unchanged]

    write_image(colour_tree / "green" / "item_3.jpg", (0, 0, 0))
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert _photos_present(second)
    gone = [path_of["red/item_1"], path_of["blue/item_4"]]
    assert not any(os.path.exists(p) for p in gone)  # collected at the commit after next
    meta = json.loads((out / "meta.json").read_text())
    stored = {f"{STORE}/{p.parent.name}/{p.name}" for p in (out / STORE).glob("*/*")}
    catalog = read_table(out / meta["files"]["catalog"]["name"])
    assert stored == set(catalog["path"]) | set(meta["retired_photos"])


def test_a_follower_moves_to_each_commit_and_a_held_version_stays_whole(colour_tree, tmp_path, extractor):
    source, out = tmp_path / "shop.zip", tmp_path / "idx"
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    follower = simrec.follow_index(out, poll_seconds=3600)
    held = follower.current
    assert len(held.embedded) == 12 and held.generation == held.embedded.meta.generation

    write_image(colour_tree / "red" / "item_5.jpg", (255, 10, 10))
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert follower.refresh() is False  # asked again within poll_seconds: no look at the folder
    assert len(follower.snapshot()) == 12
    assert follower.refresh(force=True) is True
    assert len(follower.current.embedded) == 13 and "red/item_5" in set(follower.current.embedded.catalog["product_id"])
    assert len(held.embedded) == 12 and _photos_present(held.embedded)
    assert follower.refresh(force=True) is False  # nothing new


def test_a_follower_keeps_its_version_when_a_new_one_cannot_be_opened(colour_tree, tmp_path, extractor, caplog):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    follower = simrec.IndexFollower(out, poll_seconds=0)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["embeddings"]["bytes"] += 4  # a ``meta.json`` whose files do not match
    meta_path.with_name("meta.tmp").write_text(json.dumps(meta))
    os.replace(meta_path.with_name("meta.tmp"), meta_path)
    assert follower.refresh() is False
    assert len(follower.current.embedded) == 12
    assert "keeping generation" in caplog.text


def test_an_index_from_before_the_photo_store_loads_and_moves_its_photos_in(colour_tree, tmp_path, extractor):
    source, out = tmp_path / "shop.zip", tmp_path / "idx"
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    legacy = _as_before_the_store(out)
    old = load_index(out, mmap=True, verify=True)
    assert _photos_present(old) and all(f"/{legacy}/" in p for p in old.catalog["path"])

    write_image(colour_tree / "red" / "item_5.jpg", (255, 10, 10))
    new, report = build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert report.unchanged == 12 and _photos_present(old) and _photos_present(new)
    assert (out / legacy).is_dir()  # retired: a reader of the old version still serves from it
    write_image(colour_tree / "red" / "item_6.jpg", (240, 10, 10))  # a change: the commit after next
    build_index(_zip(colour_tree, source), out, extractor=extractor, verbose=False)
    assert not (out / legacy).exists()


def _as_before_the_store(out):
    """Rewrite a fresh index in the layout of simrec before the photo store: photos under images-GEN/."""
    meta = json.loads((out / "meta.json").read_text())
    legacy = f"images-{meta['generation']}"
    entry = meta["files"]["catalog"]
    catalog = read_table(out / entry["name"])
    paths = []
    for product_id, stored in zip(catalog["product_id"], catalog["path"]):
        relative = f"{legacy}/Colors_Products/{product_id}{os.path.splitext(stored)[1]}"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / stored, out / relative)
        paths.append(relative)
    (out / legacy / ".simrec-extracted").write_text("extracted\n")
    shutil.rmtree(out / STORE)
    catalog["path"] = paths
    write_table(catalog, out / entry["name"])
    meta["files"]["catalog"] = {"name": entry["name"], **file_fingerprint(out / entry["name"])}
    meta["photo_folders"] = [legacy]
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return legacy


def test_a_broken_commit_is_said_once_and_the_next_commit_is_followed(colour_tree, tmp_path, extractor, caplog):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    follower = simrec.IndexFollower(out, poll_seconds=0)
    first = follower.current.name
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    embeddings = out / json.loads((out / "meta.json").read_text())["files"]["embeddings"]["name"]
    damaged = bytearray(embeddings.read_bytes())
    damaged[20] ^= 0x5A  # the header no longer parses
    embeddings.write_bytes(bytes(damaged))
    caplog.clear()
    for _ in range(5):  # a service looks once a second
        assert follower.refresh(force=True) is False
    said = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and embeddings.name in said[0].getMessage() and "\n" not in said[0].getMessage()
    assert follower.current.name == first and len(follower.current.embedded) == 12
    build_index(colour_tree, out, extractor=extractor, verbose=False, rebuild=True)
    assert follower.refresh(force=True) is True and len(follower.current.embedded) == 13
