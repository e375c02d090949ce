import json

import numpy as np
import pandas as pd
import pytest

from simrec import IndexIntegrityError, load_index, save_index, verify_index
from simrec.cli import main


def _meta(folder):
    return json.loads((folder / "meta.json").read_text())


def _data_file(folder, role):
    return folder / _meta(folder)["files"][role]["name"]


def test_round_trip(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    meta = _meta(folder)
    named = {entry["name"] for entry in meta["files"].values()}
    assert sorted(p.name for p in folder.iterdir()) == sorted({"meta.json", ".simrec-lock"} | named)
    assert set(meta["files"]) == {"catalog", "embeddings", "inverse_norms", "failures", "colours"}
    loaded = load_index(folder)
    np.testing.assert_array_equal(loaded.embeddings, embedded.embeddings)
    np.testing.assert_allclose(loaded.inverse_norms, 1 / np.linalg.norm(embedded.embeddings, axis=1), rtol=1e-6)
    assert loaded.catalog["product_id"].tolist() == embedded.catalog["product_id"].tolist()
    assert loaded.catalog["path"].tolist() == embedded.catalog["path"].tolist()
    for key in ("model", "weights", "image_size", "preprocessing", "simrec_version", "count", "precision"):
        assert key in meta
    assert meta["count"] == 12 and meta["model"] == "resnet50" and meta["weights"] == "random(seed=0)"
    assert meta["format_version"] == 3
    assert load_index(folder, mmap=True).embeddings.shape == (12, 2048)


def test_a_second_save_replaces_the_first_generation(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    first = {entry["name"] for entry in _meta(folder)["files"].values()}
    save_index(embedded, folder)
    second = {entry["name"] for entry in _meta(folder)["files"].values()}
    assert not first & second
    assert not [p for p in folder.iterdir() if p.name in first]  # the old generation is removed
    assert len(load_index(folder, verify=True)) == 12


def test_paths_inside_the_folder_are_relative_so_it_can_move(embedded, tmp_path):
    folder = tmp_path / "idx"
    photos = folder / "images"
    photos.mkdir(parents=True)
    first = embedded.catalog["path"].iloc[0]
    moved = photos / "first.jpg"
    moved.write_bytes(open(first, "rb").read())
    embedded.catalog.loc[0, "path"] = str(moved)
    save_index(embedded, folder)
    assert pd.read_parquet(_data_file(folder, "catalog"))["path"].iloc[0] == "images/first.jpg"
    folder.rename(tmp_path / "elsewhere")
    moved_back = load_index(tmp_path / "elsewhere").catalog["path"].iloc[0]
    assert moved_back == str(tmp_path / "elsewhere" / "images" / "first.jpg")


def test_missing_folder_and_missing_files(embedded, tmp_path):
    with pytest.raises(FileNotFoundError, match="index folder not found"):
        load_index(tmp_path / "nope")
    folder = save_index(embedded, tmp_path / "idx")
    _data_file(folder, "failures").unlink()
    with pytest.raises(IndexIntegrityError, match="a file named by meta.json is missing"):
        load_index(folder)


def test_truncated_embeddings_are_refused_at_open(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    path = _data_file(folder, "embeddings")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexIntegrityError, match=rf"{path.name} has {len(data) // 2} bytes but meta.json says"):
        load_index(folder)


def test_opening_reads_no_checksum_but_verify_checks_every_one(embedded, tmp_path, monkeypatch, capsys):
    folder = save_index(embedded, tmp_path / "idx")
    assert main(["verify", str(folder)]) == 0
    assert "intact (12 items" in capsys.readouterr().out
    path = _data_file(folder, "embeddings")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # same size, different bytes: an edit or a bad sector
    path.write_bytes(bytes(data))

    import simrec.storage.index_folder

    def no_hashing(path):
        raise AssertionError(f"opening hashed {path}")

    monkeypatch.setattr(simrec.storage.index_folder, "file_fingerprint", no_hashing)
    assert len(load_index(folder)) == 12  # cheap: sizes and shapes only
    monkeypatch.undo()
    with pytest.raises(IndexIntegrityError, match=rf"{path.name} does not match its checksum"):
        verify_index(folder)
    capsys.readouterr()
    assert main(["verify", str(folder)]) == 2
    assert path.name in capsys.readouterr().err


def test_row_count_mismatch_is_refused_even_with_fresh_checksums(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    catalog = _data_file(folder, "catalog")
    pd.read_parquet(catalog).iloc[:-1].to_parquet(catalog, index=False)
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match="the catalog has 11 rows but the embeddings have 12"):
        load_index(folder)


def test_nan_vectors_and_wrong_dimension_are_refused(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    path = _data_file(folder, "embeddings")
    vectors = np.load(path)
    vectors[3, 7] = np.nan
    np.save(path, vectors)
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match="NaN"):
        verify_index(folder)
    np.save(path, np.zeros((12, 100), np.float32))
    _refresh_checksums(folder)
    with pytest.raises(IndexIntegrityError, match=r"shape \(12, 100\) but meta.json says \(12, 2048\)"):
        load_index(folder)


def test_saving_nan_vectors_is_refused(embedded, tmp_path):
    embedded.embeddings[2, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite values in 1 rows, e.g. row 2"):
        save_index(embedded, tmp_path / "idx")


def test_damaged_meta_is_refused(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    (folder / "meta.json").write_text("{ not json")
    with pytest.raises(IndexIntegrityError, match="meta.json is damaged"):
        load_index(folder)


def test_unwritable_folder(embedded, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot write the index folder"):
        save_index(embedded, blocker / "idx")


def test_failures_account_for_skipped_files(tmp_path, extractor, colour_tree):
    from simrec import EmbeddedCatalog, embed_images, load_catalog

    (colour_tree / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")  # a JPEG signature, then nothing
    (colour_tree / "red" / "readme.txt").write_text("x")
    catalog, skipped = load_catalog(colour_tree)
    result = embed_images(catalog["path"], extractor, verbose=False)
    built = EmbeddedCatalog.from_embeddings(catalog, result, extractor, skipped)
    assert len(built) == 12 and len(built.failures) == 2
    assert sorted(built.failures["stage"]) == ["decode", "scan"]
    loaded = load_index(save_index(built, tmp_path / "idx"))
    assert len(loaded.failures) == 2 and loaded.meta.failures == 2


def test_format_1_folders_still_load_and_upgrade_at_the_next_save(embedded, tmp_path):
    from simrec.core.checksum import file_fingerprint

    folder = tmp_path / "old"
    folder.mkdir()
    embedded.catalog.to_csv(folder / "catalog.csv", index=False)
    np.save(folder / "embeddings.npy", embedded.embeddings)
    embedded.failures.to_csv(folder / "failures.csv", index=False)
    meta = {key: value for key, value in embedded.meta.to_dict().items() if key != "files"}
    meta["format_version"] = 1
    names = ("catalog.csv", "embeddings.npy", "failures.csv")
    meta["files"] = {name: file_fingerprint(folder / name) for name in names}
    (folder / "meta.json").write_text(json.dumps(meta))
    loaded = load_index(folder)
    np.testing.assert_array_equal(loaded.embeddings, embedded.embeddings)
    assert loaded.neighbors.kneighbors(n_neighbors=3)[1].shape == (12, 3)
    save_index(loaded, folder)
    assert _meta(folder)["format_version"] == 3
    assert not (folder / "embeddings.npy").exists() and not (folder / "catalog.csv").exists()
    assert len(load_index(folder, verify=True)) == 12


def _refresh_checksums(folder):
    from simrec.core.checksum import file_fingerprint

    meta = _meta(folder)
    for entry in meta["files"].values():
        entry.update(file_fingerprint(folder / entry["name"]))
    (folder / "meta.json").write_text(json.dumps(meta))


def test_opening_and_searching_make_no_pass_over_the_embeddings(embedded, tmp_path, monkeypatch):
    from simrec import recommend

    folder = save_index(embedded, tmp_path / "idx")
    expected = recommend(embedded, product_id="red/item_1", n_neighbors=3)
    import simrec.search.exact
    import simrec.storage.index_folder

    def no_pass(*args, **kwargs):
        raise AssertionError("the norms were recomputed from the embeddings")

    monkeypatch.setattr(simrec.storage.index_folder, "compute_inverse_norms", no_pass)
    monkeypatch.setattr(simrec.search.exact, "compute_inverse_norms", no_pass)
    loaded = load_index(folder, mmap=True)
    assert isinstance(loaded.embeddings, np.memmap) and not loaded.embeddings.flags.writeable
    results = recommend(loaded, product_id="red/item_1", n_neighbors=3)
    assert results["product_id"].tolist() == expected["product_id"].tolist()


def test_files_simrec_did_not_write_are_left_alone(embedded, tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    mine = {"catalog.csv": "product_id,price\nred/item_1,3\n", "failures.csv": "my notes", "embeddings.npy": "x"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    (folder / "images").mkdir()
    (folder / "images" / "mine.jpg").write_text("a photo of mine")
    save_index(embedded, folder)
    save_index(embedded, folder)  # a second generation replaces the first
    for name, text in mine.items():
        assert (folder / name).read_text() == text
    assert (folder / "images" / "mine.jpg").read_text() == "a photo of mine"
