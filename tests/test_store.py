import json

import numpy as np
import pandas as pd
import pytest

from simrec import IndexIntegrityError, load_index, save_index


def test_round_trip(catalog_index, tmp_path):
    folder = save_index(catalog_index, tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["catalog.csv", "embeddings.npy", "failures.csv", "meta.json"]
    loaded = load_index(folder)
    np.testing.assert_array_equal(loaded.embeddings, catalog_index.embeddings)
    assert loaded.catalog["product_id"].tolist() == catalog_index.catalog["product_id"].tolist()
    assert loaded.catalog["path"].tolist() == catalog_index.catalog["path"].tolist()
    meta = json.loads((folder / "meta.json").read_text())
    for key in ("model", "weights", "image_size", "preprocessing", "simrec_version", "count", "precision"):
        assert key in meta
    assert meta["count"] == 12 and meta["model"] == "resnet50" and meta["weights"] == "random(seed=0)"
    assert load_index(folder, mmap=True).embeddings.shape == (12, 2048)


def test_paths_inside_the_folder_are_relative_so_it_can_move(catalog_index, tmp_path):
    folder = tmp_path / "idx"
    photos = folder / "images"
    photos.mkdir(parents=True)
    first = catalog_index.catalog["path"].iloc[0]
    moved = photos / "first.jpg"
    moved.write_bytes(open(first, "rb").read())
    catalog_index.catalog.loc[0, "path"] = str(moved)
    save_index(catalog_index, folder)
    assert pd.read_csv(folder / "catalog.csv")["path"].iloc[0] == "images/first.jpg"
    folder.rename(tmp_path / "elsewhere")
    moved_back = load_index(tmp_path / "elsewhere").catalog["path"].iloc[0]
    assert moved_back == str(tmp_path / "elsewhere" / "images" / "first.jpg")


def test_missing_folder_and_missing_files(catalog_index, tmp_path):
    with pytest.raises(FileNotFoundError, match="index folder not found"):
        load_index(tmp_path / "nope")
    folder = save_index(catalog_index, tmp_path / "idx")
    (folder / "failures.csv").unlink()
    with pytest.raises(IndexIntegrityError, match="missing failures.csv"):
        load_index(folder)


def test_truncated_embeddings_are_refused(catalog_index, tmp_path):
    folder = save_index(catalog_index, tmp_path / "idx")
    data = (folder / "embeddings.npy").read_bytes()
    (folder / "embeddings.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexIntegrityError, match="embeddings.npy does not match meta.json"):
        load_index(folder)


def test_row_count_mismatch_is_refused_even_with_fresh_checksums(catalog_index, tmp_path):
    folder = save_index(catalog_index, tmp_path / "idx")
    pd.read_csv(folder / "catalog.csv").iloc[:-1].to_csv(folder / "catalog.csv", index=False)
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match="catalog.csv has 11 rows but embeddings.npy has 12"):
        load_index(folder)


def test_nan_vectors_and_wrong_dimension_are_refused(catalog_index, tmp_path):
    folder = save_index(catalog_index, tmp_path / "idx")
    vectors = np.load(folder / "embeddings.npy")
    vectors[3, 7] = np.nan
    np.save(folder / "embeddings.npy", vectors)
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match="NaN"):
        load_index(folder)
    np.save(folder / "embeddings.npy", np.zeros((12, 100), np.float32))
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match=r"shape \(12, 100\) but meta.json says \(12, 2048\)"):
        load_index(folder)


def test_damaged_meta_is_refused(catalog_index, tmp_path):
    folder = save_index(catalog_index, tmp_path / "idx")
    (folder / "meta.json").write_text("{ not json")
    with pytest.raises(IndexIntegrityError, match="meta.json is damaged"):
        load_index(folder)


def test_unwritable_folder(catalog_index, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot write the index folder"):
        save_index(catalog_index, blocker / "idx")


def test_failures_account_for_skipped_files(tmp_path, extractor, colour_tree):
    from simrec import CatalogIndex, embed_images, load_catalog

    (colour_tree / "red" / "broken.jpg").write_bytes(b"garbage")
    (colour_tree / "red" / "readme.txt").write_text("x")
    catalog = load_catalog(colour_tree)
    result = embed_images(catalog["path"], extractor, verbose=False)
    built = CatalogIndex.from_embeddings(catalog, result, extractor)
    assert len(built) == 12 and len(built.failures) == 2
    assert sorted(built.failures["stage"]) == ["decode", "scan"]
    loaded = load_index(save_index(built, tmp_path / "idx"))
    assert len(loaded.failures) == 2 and loaded.meta["failures"] == 2


def _refresh_checksums(folder):
    from simrec.store import file_fingerprint

    meta = json.loads((folder / "meta.json").read_text())
    meta["files"] = {name: file_fingerprint(folder / name) for name in meta["files"]}
    (folder / "meta.json").write_text(json.dumps(meta))
