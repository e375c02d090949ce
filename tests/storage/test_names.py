"""Any name a filesystem or a zip can hold round-trips through the index folder's tables."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from photos import jpeg_bytes, write_image

from simrec import IndexIntegrityError, build_index, load_index, save_index
from simrec.cli import main

HOSTILE = {
    "carriage return": "x\ry",
    "line feed": "x\ny",
    "both": "x\r\ny",
    "tab": "x\ty",
    "double quote": 'x"y',
    "single quote": "x'y",
    "comma": "x,y",
    "leading equals": "=HYPERLINK(1)",
    "leading plus": "+1",
    "semicolon": "x;y",
    "spaces": "  x  y  ",
    "unicode": "caf\u00e9 \u65e5\u672c \U0001f600",
    "long": "n" * 240,
}


def _meta(folder):
    return json.loads((folder / "meta.json").read_text())


def test_the_carriage_return_reproduction_ends_in_a_loadable_index(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        write_image(Path("cr/red") / f"{name}.jpg", (200, 30, 30))
    write_image(Path("cr/blue/c.jpg"), (30, 30, 200))
    common = ["--weights", "random", "--image-size", "32", "-q"]
    assert main(["index", "cr", "--out", "cr-idx", *common]) == 0
    write_image(Path("cr/red") / "x\ry.jpg", (220, 20, 20))
    assert main(["index", "cr", "--out", "cr-idx", "-q"]) == 0
    assert main(["verify", "cr-idx"]) == 0
    assert main(["query", "cr-idx", "--id", "red/x\ry", "-k", "2", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["query"]["product_id"] == "red/x\ry"
    assert main(["index", "cr", "--out", "cr-idx", "-q"]) == 0
    assert sorted(load_index("cr-idx", verify=True).catalog["product_id"]) == ["blue/c", "red/a", "red/b", "red/x\ry"]


@pytest.mark.parametrize("source_kind", ["folder", "zip"])
def test_every_hostile_name_round_trips_as_a_photo_and_as_a_failure(source_kind, tmp_path, extractor):
    photos = {f"red/{name}.jpg": jpeg_bytes((200, 30, 30)) for name in HOSTILE.values()}
    others = {f"blue/{name}.txt": b"not a photo" for name in HOSTILE.values()}
    photos["blue/plain.jpg"] = jpeg_bytes((30, 30, 200))
    if source_kind == "folder":
        source = tmp_path / "shop"
        for name, data in {**photos, **others}.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
    else:
        source = tmp_path / "shop.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for name, data in {**photos, **others}.items():
                archive.writestr(name, data)
    out = tmp_path / "idx"
    build_index(source, out, extractor=extractor, verbose=False)
    embedded, report = build_index(source, out, extractor=extractor, verbose=False)
    assert report.unchanged == len(photos) and report.added == 0
    loaded = load_index(out, verify=True)
    assert sorted(loaded.catalog["product_id"]) == sorted(name.removesuffix(".jpg") for name in photos)
    failed = loaded.failures["path"].tolist()
    if source_kind == "folder":
        failed = [Path(path).relative_to(source).as_posix() for path in failed]
    assert sorted(failed) == sorted(others)
    assert all(os.path.isfile(path) for path in loaded.catalog["path"])


def test_a_csv_export_reads_back_every_hostile_name(tmp_path, extractor):
    from simrec.app.export import export_neighbors

    source = tmp_path / "shop"
    for i, name in enumerate(HOSTILE.values()):
        write_image(source / ("red", "blue")[i % 2] / f"{name}.jpg", (200 - 10 * i, 30, 30 + 10 * i))
    embedded, _ = build_index(source, tmp_path / "idx", extractor=extractor, verbose=False)
    report = export_neighbors(embedded, tmp_path / "recs.csv", n_neighbors=2, verbose=False)
    exported = pd.read_csv(report.path, keep_default_na=False, dtype={"product_id": str, "neighbor_id": str})
    assert len(exported) == 2 * len(HOSTILE)
    assert set(exported["product_id"]) == set(exported["neighbor_id"]) == set(embedded.catalog["product_id"])


def test_a_zip_whose_names_claim_utf8_falsely_is_one_clear_error(tmp_path):
    from simrec import UnsafeArchiveError, load_catalog

    source = tmp_path / "shop.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("red/abc\u00e9.jpg", jpeg_bytes())  # flagged UTF-8: the name is not ASCII
    data = source.read_bytes().replace("abc\u00e9".encode(), b"abc\xff\xfe")
    source.write_bytes(data)
    with pytest.raises(UnsafeArchiveError, match="marked as UTF-8 but is not"):
        load_catalog(source, extract_to=tmp_path / "photos")


def test_names_that_are_not_utf8_are_listed_in_their_escaped_form(tmp_path, extractor):
    source = tmp_path / "shop"
    write_image(source / "red" / "good.jpg")
    write_image(source / "blue" / "good.jpg")
    bad = os.fsencode(source / "red") + b"/caf\xe9.jpg"
    with open(bad, "wb") as handle:
        handle.write(jpeg_bytes())
    build_index(source, tmp_path / "idx", extractor=extractor, verbose=False)
    loaded = load_index(tmp_path / "idx", verify=True)
    assert loaded.catalog["product_id"].tolist() == ["blue/good", "red/good"]
    (row,) = loaded.failures.itertuples(index=False)
    assert row.path == str(source / "red") + "/caf\\xe9.jpg" and "not valid UTF-8" in row.reason


def test_format_2_folders_with_csv_tables_still_load_and_upgrade(embedded, tmp_path):
    from simrec.core.checksum import file_fingerprint

    folder = save_index(embedded, tmp_path / "idx")
    meta = _meta(folder)
    for role in ("catalog", "failures"):
        parquet = folder / meta["files"][role]["name"]
        csv_name = parquet.with_suffix(".csv").name
        pd.read_parquet(parquet).to_csv(folder / csv_name, index=False)
        parquet.unlink()
        meta["files"][role] = {"name": csv_name, **file_fingerprint(folder / csv_name)}
    meta["format_version"] = 2
    (folder / "meta.json").write_text(json.dumps(meta))
    loaded = load_index(folder, verify=True)
    assert loaded.catalog["product_id"].tolist() == embedded.catalog["product_id"].tolist()
    save_index(loaded, folder)
    assert _meta(folder)["format_version"] == 3
    assert not [name for name in os.listdir(folder) if name.endswith(".csv")]
    assert len(load_index(folder, verify=True)) == 12


def test_a_version_that_would_not_load_is_never_committed(colour_tree, tmp_path, extractor, monkeypatch):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    before = sorted(os.listdir(out))
    write_image(colour_tree / "red" / "item_9.jpg", (250, 0, 0))
    real_save = np.save

    def drops_a_row(handle, array, *args, **kwargs):  # a writer that loses data
        real_save(handle, array[:-1] if array.ndim == 2 else array, *args, **kwargs)

    monkeypatch.setattr(np, "save", drops_a_row)
    with pytest.raises(IndexIntegrityError, match="not committed, and the previous generation is unchanged"):
        build_index(colour_tree, out, extractor=extractor, verbose=False)
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == before
    assert len(load_index(out, verify=True)) == 12


def test_an_index_that_cannot_be_opened_is_embedded_again_without_rebuild(colour_tree, tmp_path, extractor):
    out = tmp_path / "idx"
    build_index(colour_tree, out, extractor=extractor, verbose=False)
    embeddings = out / _meta(out)["files"]["embeddings"]["name"]
    embeddings.write_bytes(embeddings.read_bytes()[:-100])  # what a damaged disk, or an older simrec, left
    with pytest.raises(IndexIntegrityError):
        load_index(out)
    embedded, report = build_index(colour_tree, out, extractor=extractor, verbose=False)
    assert report.added == 12 and len(load_index(out, verify=True)) == 12


# A random mix of names, sizes and formats, in a folder and in a zip.
_CHARACTERS = st.sampled_from(list("abcXYZ019 _-.,;'\"=+#%&()[]{}!@$^~`\\\r\n\t\u00e9\u65e5\U0001f600"))
_NAMES = st.text(_CHARACTERS, min_size=1, max_size=12) | st.builds(lambda n: "L" * n, st.integers(200, 300))
_KINDS = st.sampled_from(["jpeg", "png", "empty", "text", "truncated", "big"])
_FILES = st.lists(
    st.tuples(st.sampled_from(["red", "blue", "x\ry", "=1", ""]), _NAMES, _KINDS),
    min_size=1,
    max_size=8,
    unique_by=lambda item: (item[0], item[1]),
)


def _content(kind: str, seed: int) -> bytes:
    import io

    from PIL import Image

    if kind in ("jpeg", "truncated", "big"):
        side = 300 if kind == "big" else 24
        data = jpeg_bytes((seed * 37 % 256, 90, 200 - seed * 13 % 200), size=(side, side))
        return data[: len(data) // 2] if kind == "truncated" else data
    if kind == "png":
        buffer = io.BytesIO()
        Image.new("RGB", (20, 16), (10, seed * 29 % 256, 60)).save(buffer, "PNG")
        return buffer.getvalue()
    return b"" if kind == "empty" else b"plain text, not a photo"


def _check_every_file_indexed_or_listed(source, expected: int, out: Path, extractor) -> None:
    embedded, report = build_index(source, out, extractor=extractor, verbose=False)
    assert report.candidates == expected == len(embedded) + len(embedded.failures)
    loaded = load_index(out, verify=True)
    assert len(loaded) == len(embedded) and len(loaded.failures) == len(embedded.failures)
    again, report = build_index(source, out, extractor=extractor, verbose=False)
    assert report.unchanged == len(embedded) and report.candidates == expected
    assert load_index(out, verify=True).catalog["product_id"].tolist() == embedded.catalog["product_id"].tolist()


_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_PROPERTY
@given(files=_FILES)
def test_any_mix_of_names_in_a_folder_is_indexed_or_listed_and_keeps_loading(files, extractor):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "shop"
        root.mkdir()
        made = 0
        for seed, (label, name, kind) in enumerate(files):
            path = root / label / name if label else root / name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.exists():
                    continue
                path.write_bytes(_content(kind, seed))
            except OSError:  # a name this filesystem refuses (too long): a user cannot have it either
                continue
            made += 1
        write_image(root / "green" / "anchor.jpg")  # at least one photo, whatever was drawn
        _check_every_file_indexed_or_listed(root, made + 1, Path(scratch) / "idx", extractor)


@_PROPERTY
@given(files=_FILES)
def test_any_mix_of_names_in_a_zip_is_indexed_or_listed_and_keeps_loading(files, extractor):
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "shop.zip"
        with zipfile.ZipFile(source, "w") as archive:
            archive.writestr("green/anchor.jpg", jpeg_bytes((20, 200, 20)))
            for seed, (label, name, kind) in enumerate(files):
                archive.writestr(f"{label}/{name}" if label else name, _content(kind, seed))
        _check_every_file_indexed_or_listed(source, len(files) + 1, Path(scratch) / "idx", extractor)
