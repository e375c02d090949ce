import zipfile

import pandas as pd
import pytest
from photos import write_image

from simrec import load_catalog


def test_zip_becomes_sorted_catalog_with_labels(colour_zip, tmp_path):
    catalog, skipped = load_catalog(colour_zip, extract_to=tmp_path / "out")
    assert list(catalog.columns[:3]) == ["product_id", "path", "label"]
    assert len(catalog) == 12
    assert catalog["product_id"].tolist() == sorted(catalog["product_id"])
    row = catalog.set_index("product_id").loc["red/item_1"]
    assert row["label"] == "red"
    assert row["path"].endswith("Colors_Products/red/item_1.jpg")
    assert catalog["label"].value_counts().to_dict() == {"blue": 4, "green": 4, "red": 4}


def test_zip_junk_is_listed_not_lost(colour_zip, tmp_path):
    catalog, skipped = load_catalog(colour_zip, extract_to=tmp_path / "out")
    assert set(skipped.columns) == {"path", "reason", "stage"}
    assert len(skipped) == 3
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert "__MACOSX" in reasons["__MACOSX/Colors_Products/red/._item_1.jpg"]
    assert "not an image" in reasons["Colors_Products/notes.txt"]


def test_default_extraction_is_next_to_the_zip(colour_zip):
    catalog, skipped = load_catalog(colour_zip)
    assert (colour_zip.parent / "Colors_Products_extracted" / "Colors_Products" / "red" / "item_1.jpg").is_file()
    assert len(catalog) == 12


def test_directory_source_and_same_names_in_different_folders(tmp_path):
    write_image(tmp_path / "shop" / "red" / "shirt.jpg")
    write_image(tmp_path / "shop" / "blue" / "shirt.jpg")
    write_image(tmp_path / "shop" / "loose.png")
    catalog, skipped = load_catalog(tmp_path / "shop")
    assert catalog["product_id"].tolist() == ["blue/shirt", "loose", "red/shirt"]
    assert catalog["label"].tolist() == ["blue", "", "red"]


def test_same_id_with_two_extensions_keeps_one_and_lists_the_other(tmp_path):
    write_image(tmp_path / "c" / "red" / "a.jpg")
    write_image(tmp_path / "c" / "red" / "a.png")
    write_image(tmp_path / "c" / "blue" / "b.png")
    catalog, skipped = load_catalog(tmp_path / "c")
    assert catalog["product_id"].tolist() == ["blue/b", "red/a"]
    assert "duplicate product_id" in skipped["reason"].iloc[0]


def test_extensions_any_case(tmp_path):
    for i, suffix in enumerate([".JPG", ".Jpeg", ".PNG", ".webp", ".bmp", ".gif", ".TIF", ".tiff"]):
        write_image(tmp_path / "c" / "x" / f"p{i}{suffix}")
    assert len(load_catalog(tmp_path / "c")[0]) == 8


def test_list_of_paths(tmp_path):
    paths = [write_image(tmp_path / "red" / "a.jpg"), write_image(tmp_path / "blue" / "b.jpg")]
    catalog, skipped = load_catalog([str(p) for p in paths] + [str(tmp_path / "missing.jpg")])
    assert catalog["product_id"].tolist() == ["blue/b", "red/a"]
    assert skipped["reason"].tolist() == ["skipped: file not found"]


def test_metadata_join(tmp_path):
    write_image(tmp_path / "c" / "red" / "a.jpg")
    write_image(tmp_path / "c" / "blue" / "b.jpg")
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"product_id": ["red/a"], "price": [9.5], "label": ["shirts"]}).to_csv(meta, index=False)
    catalog = load_catalog(tmp_path / "c", metadata=meta)[0].set_index("product_id")
    assert catalog.loc["red/a", "price"] == 9.5
    assert catalog.loc["red/a", "label"] == "red" and catalog.loc["red/a", "label_meta"] == "shirts"
    assert pd.isna(catalog.loc["blue/b", "price"])


def test_metadata_errors(tmp_path):
    write_image(tmp_path / "c" / "red" / "a.jpg")
    with pytest.raises(FileNotFoundError, match="metadata file not found"):
        load_catalog(tmp_path / "c", metadata=tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="product_id"):
        load_catalog(tmp_path / "c", metadata=pd.DataFrame({"id": [1]}))
    with pytest.raises(ValueError, match="duplicate"):
        load_catalog(tmp_path / "c", metadata=pd.DataFrame({"product_id": ["red/a", "red/a"]}))


def test_clear_errors_for_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_catalog(tmp_path / "nope.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable images"):
        load_catalog(tmp_path / "empty")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="1 files skipped"):
        load_catalog(tmp_path / "texts")
    (tmp_path / "single.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="must be a .zip file, a directory or a list"):
        load_catalog(tmp_path / "single.jpg")


def test_not_a_zip(tmp_path):
    from simrec import UnsafeArchiveError

    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchiveError, match="not a readable zip"):
        load_catalog(fake)


def test_extraction_never_overwrites_a_users_folder(colour_zip, tmp_path):
    from simrec import UnsafeArchiveError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("precious")
    with pytest.raises(UnsafeArchiveError, match="not empty"):
        load_catalog(colour_zip, extract_to=mine)
    assert (mine / "thesis.docx").read_text() == "precious"


def test_reextraction_drops_files_removed_from_the_zip(colour_zip, tmp_path):
    target = tmp_path / "out"
    assert len(load_catalog(colour_zip, extract_to=target)[0]) == 12
    smaller = tmp_path / "smaller.zip"
    with zipfile.ZipFile(colour_zip) as src, zipfile.ZipFile(smaller, "w") as dst:
        for info in src.infolist()[:5]:
            dst.writestr(info, src.read(info))
    assert len(load_catalog(smaller, extract_to=target)[0]) == 5


def test_a_single_folder_of_photos_is_a_label_not_a_wrapper(tmp_path):
    """``shop/red/*.jpg``: the one folder holds photos, so it is the label of each."""
    write_image(tmp_path / "shop" / "red" / "a.jpg")
    write_image(tmp_path / "shop" / "red" / "noext", fmt="JPEG")
    catalog, _ = load_catalog(tmp_path / "shop")
    assert catalog["product_id"].tolist() == ["red/a", "red/noext"]
    assert catalog["label"].tolist() == ["red", "red"]


def test_a_single_folder_of_folders_is_unwrapped(tmp_path):
    """``shop/Colors_Products/red/*.jpg``: the one folder holds folders and no photos: a wrapper."""
    write_image(tmp_path / "shop" / "Colors_Products" / "red" / "a.jpg")
    write_image(tmp_path / "shop" / "Colors_Products" / "blue" / "b.jpg", colour=(20, 30, 200))
    catalog, _ = load_catalog(tmp_path / "shop")
    assert catalog["product_id"].tolist() == ["blue/b", "red/a"]
    assert catalog["label"].tolist() == ["blue", "red"]


def test_a_single_folder_with_photos_and_folders_is_not_unwrapped(tmp_path):
    write_image(tmp_path / "shop" / "all" / "top.jpg")
    write_image(tmp_path / "shop" / "all" / "red" / "a.jpg")
    catalog, _ = load_catalog(tmp_path / "shop")
    assert catalog["product_id"].tolist() == ["all/red/a", "all/top"]
    assert set(catalog["label"]) == {"all"}
