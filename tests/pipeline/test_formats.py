"""Photos are recognised by their content: every raster format Pillow reads, whatever the name."""

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pillow_heif  # a core dependency: the HEIC case must run, not be skipped
import pytest
from PIL import Image

from simrec import build_index, load_catalog, load_image
from simrec.cli import main
from simrec.pipeline.catalog import count_formats

RED, GREEN = (210, 30, 30), (30, 170, 40)


def _picture(mode="RGB", colour=RED, size=(48, 40)):
    image = Image.new("RGB", size, colour)
    image.paste(tuple(c // 2 for c in colour), (12, 10, 24, 20))
    return image.convert(mode) if mode != "RGB" else image


def _frames(path, fmt):
    first, second = _picture(), _picture(colour=GREEN)
    first.save(path, fmt, save_all=True, append_images=[second])


def _sixteen_bit(path, fmt):
    Image.fromarray(np.linspace(1000, 60000, 48 * 40).reshape(40, 48).astype(np.uint16)).save(path, fmt)


def _heic(path, fmt, brand=None):
    pillow_heif.register_heif_opener()
    _picture().save(path, fmt, quality=90)
    if brand is not None:  # some cameras write the generic HEIF brand, which AVIF files use too
        data = bytearray(path.read_bytes())
        data[8:12] = brand
        path.write_bytes(bytes(data))


PHOTOS = {  # file name -> (how to write it, Pillow's format name)
    "jpeg.jpg": (lambda p: _picture().save(p, "JPEG"), "JPEG"),
    "jfif.jfif": (lambda p: _picture().save(p, "JPEG"), "JPEG"),
    "jpe.jpe": (lambda p: _picture().save(p, "JPEG"), "JPEG"),
    "cmyk.jpeg": (lambda p: _picture("CMYK").save(p, "JPEG"), "JPEG"),
    "phone.mpo": (lambda p: _frames(p, "MPO"), "MPO"),
    "png.png": (lambda p: _picture("RGBA").save(p, "PNG"), "PNG"),
    "webp.webp": (lambda p: _picture().save(p, "WEBP"), "WEBP"),
    "avif.avif": (lambda p: _picture().save(p, "AVIF"), "AVIF"),
    "heic.heic": (lambda p: _heic(p, "HEIF"), "HEIF"),
    "mif1.heif": (lambda p: _heic(p, "HEIF", brand=b"mif1"), "HEIF"),
    "bmp.bmp": (lambda p: _picture().save(p, "BMP"), "BMP"),
    "animated.gif": (lambda p: _frames(p, "GIF"), "GIF"),
    "pages.tiff": (lambda p: _frames(p, "TIFF"), "TIFF"),
    "ppm.ppm": (lambda p: _picture().save(p, "PPM"), "PPM"),
    "pgm.pgm": (lambda p: _picture("L").save(p, "PPM"), "PPM"),
    "pgm16.pgm": (lambda p: _sixteen_bit(p, "PPM"), "PPM"),
    "pbm.pbm": (lambda p: _picture("1").save(p, "PPM"), "PPM"),
    "jp2.jp2": (lambda p: _picture().save(p, "JPEG2000"), "JPEG2000"),
    "j2k.j2k": (lambda p: _picture().save(p, "JPEG2000"), "JPEG2000"),
    "tga.tga": (lambda p: _picture().save(p, "TGA"), "TGA"),
    "qoi.qoi": (lambda p: _picture().save(p, "QOI"), "QOI"),
    "ico.ico": (lambda p: _picture().save(p, "ICO"), "ICO"),
    "dds.dds": (lambda p: _picture().save(p, "DDS"), "DDS"),
    "pcx.pcx": (lambda p: _picture().save(p, "PCX"), "PCX"),
    "sgi.sgi": (lambda p: _picture().save(p, "SGI"), "SGI"),
    "xbm.xbm": (lambda p: _picture("1").save(p, "XBM"), "XBM"),
    "msp.msp": (lambda p: _picture("1").save(p, "MSP"), "MSP"),
    "no_extension": (lambda p: _picture().save(p, "JPEG"), "JPEG"),
    "jpeg_named.svg": (lambda p: _picture().save(p, "JPEG"), "JPEG"),
    "png_named.txt": (lambda p: _picture().save(p, "PNG"), "PNG"),
}
COLOURLESS = {"pgm.pgm", "pgm16.pgm", "pbm.pbm", "xbm.xbm", "msp.msp"}

SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>\n'
NOT_PHOTOS = {  # file name -> (content, words the reason must contain)
    "drawing.svg": (SVG, "vector or document format, not a photo (SVG)"),
    "bom.svg": (b"\xef\xbb\xbf\n  " + SVG, "vector or document format, not a photo (SVG)"),
    "bare.svg": (b"<svg width='4' height='4'/>", "vector or document format, not a photo (SVG)"),
    "manual.pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "vector or document format, not a photo (PDF)"),
    "clipart.wmf": (b"\xd7\xcd\xc6\x9a\x00\x00" + b"\x00" * 40, "vector or document format, not a photo (WMF)"),
    "logo.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n", "vector or document format, not a photo (EPS)"),
    "text.avif": (b"this is not a photo, whatever its name says\n", "not an image file"),
    "zero.jfif": (b"", "file is empty (0 bytes)"),
    "notes.txt": (b"shirt, red, 9.50\n", "not an image file"),
    "model.pkl": (pickle.dumps({"weights": [1, 2, 3]}), "not an image file"),
    "bundle.zip": (b"PK\x05\x06" + b"\0" * 18, "not an image file"),
    "list.ppm": (b"P6 is the name of this product line\n", "starts like PPM, but Pillow"),
    "fake.tga": (b"this text only borrows the name of a TGA\n", "named like TGA, but Pillow does not recognise it"),
    "fake.jpg": (b"\xff\xd8\xff but then nothing like a JPEG", "not an image Pillow can read"),  # found when decoded
}


@pytest.fixture
def every_format(tmp_path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    for name, (write, _) in PHOTOS.items():
        write(root / name)
    for name, (content, _) in NOT_PHOTOS.items():
        (root / name).write_bytes(content)
    return root


def _product_id(name: str) -> str:
    return Path(name).stem if name != "no_extension" else name


def _check_reasons(failures, key):
    reasons = {key(path): reason for path, reason in zip(failures["path"], failures["reason"])}
    assert set(reasons) == set(NOT_PHOTOS)
    for name, (_, words) in NOT_PHOTOS.items():
        assert words in reasons[name], (name, reasons[name])


def test_every_photo_is_embedded_and_everything_else_listed(every_format, tmp_path, extractor):
    embedded, report = build_index(every_format, tmp_path / "idx", extractor=extractor, verbose=False)
    formats = dict(zip(embedded.catalog["product_id"], embedded.catalog["format"]))
    assert formats == {_product_id(name): fmt for name, (_, fmt) in PHOTOS.items()}
    assert np.isfinite(embedded.embeddings).all()
    _check_reasons(embedded.failures, os.path.basename)
    assert report.indexed == len(PHOTOS) and report.skipped == len(NOT_PHOTOS)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_each_format_decodes_to_its_first_frame_in_colour(every_format, name):
    pixels = load_image(every_format / name, image_size=32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
    if name in COLOURLESS:
        assert red == green == blue and 5 < red < 250  # grey or 1-bit, neither blank nor black
    else:
        assert red > 100 and red > green + 50 and red > blue + 50  # the red first frame, not the green one


def test_same_rules_in_a_zip_with_entries_listed_by_name(every_format, tmp_path, extractor):
    zip_path = tmp_path / "shop.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(every_format.iterdir()):
            archive.write(path, f"shop/{path.name}")
    embedded, _ = build_index(zip_path, tmp_path / "idx", extractor=extractor, verbose=False)
    formats = dict(zip(embedded.catalog["product_id"], embedded.catalog["format"]))
    # The one top folder holds photos, not folders: it is their label, not a wrapper to unwrap.
    assert formats == {f"shop/{_product_id(name)}": fmt for name, (_, fmt) in PHOTOS.items()}
    assert set(embedded.catalog["label"]) == {"shop"}
    assert all(p.startswith("shop/") for p in embedded.failures["path"] if "fake.jpg" not in p)
    _check_reasons(embedded.failures, os.path.basename)
    assert not [p for p in (tmp_path / "idx").iterdir() if p.name.startswith("images-")]  # extraction removed
    stored = {p.name for p in (tmp_path / "idx" / "photos").rglob("*") if p.is_file()}
    assert stored == {os.path.basename(p) for p in embedded.catalog["path"]}  # only indexed photos are kept


def test_same_rules_in_a_list_of_paths(every_format):
    catalog, skipped = load_catalog(sorted(str(p) for p in every_format.iterdir()))
    expected = {_product_id(name): fmt for name, (_, fmt) in PHOTOS.items()}
    assert dict(zip(catalog["product_id"], catalog["format"])) == {**expected, "fake": "JPEG"}
    reasons = {os.path.basename(p): r for p, r in zip(skipped["path"], skipped["reason"])}
    assert set(reasons) == set(NOT_PHOTOS) - {"fake.jpg"}  # its signature is trusted until it is decoded


def test_a_jpeg_and_a_heic_of_one_name_share_an_id_and_the_second_is_listed(tmp_path):
    (tmp_path / "c").mkdir()
    _picture().save(tmp_path / "c" / "shirt.jpg", "JPEG")
    _heic(tmp_path / "c" / "shirt.heic", "HEIF")
    _picture().save(tmp_path / "c" / "other.png")
    catalog, skipped = load_catalog(tmp_path / "c")
    assert catalog["product_id"].tolist() == ["other", "shirt"]
    assert catalog.set_index("product_id").at["shirt", "format"] == "HEIF"  # shirt.heic sorts first
    assert "duplicate product_id 'shirt' (already used by shirt.heic)" in skipped["reason"].iloc[0]


def test_index_prints_a_count_by_format(every_format, tmp_path, capsys):
    out = tmp_path / "idx"
    argv = ["index", str(every_format), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("formats: "))
    assert line.startswith("formats: jpeg 6, ppm 4, heif 2, jpeg2000 2, png 2, avif 1, ")
    assert "mpo 1" in line and "avif 1" in line and "qoi 1" in line


def test_count_formats_orders_by_count_with_thousands_separators():
    import pandas as pd

    catalog = pd.DataFrame({"format": ["JPEG"] * 1204 + ["PNG"] * 88 + ["AVIF"] * 12})
    assert count_formats(catalog) == "jpeg 1,204, png 88, avif 12"
    assert count_formats(pd.DataFrame({"product_id": []})) == ""


def test_no_photos_message_says_what_was_looked_for_and_why_files_were_skipped(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.svg").write_bytes(SVG)
    with pytest.raises(ValueError, match=r"any raster image Pillow reads.*2 files skipped: 1 not an image file"):
        load_catalog(tmp_path / "docs")


def test_vector_files_are_never_opened_by_pillow(every_format, monkeypatch):
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(os.fspath(fp)) or real_open(fp, *a, **k))
    load_catalog(every_format)
    assert opened and not [p for p in opened if p.endswith((".svg", ".pdf", ".eps", ".wmf"))]


def test_zip_entries_are_written_whatever_their_name(tmp_path):
    from simrec.pipeline.archive import extract_zip

    jpeg = io.BytesIO()
    _picture().save(jpeg, "JPEG")
    zip_path = tmp_path / "a.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("c/photo", jpeg.getvalue())
        archive.writestr("c/notes.txt", b"x")
        archive.writestr("c/.hidden.jpg", jpeg.getvalue())
    result = extract_zip(zip_path, tmp_path / "out")
    assert sorted(p.name for p in result.extracted) == ["notes.txt", "photo"]
    assert [s.reason for s in result.skipped] == ["skipped: hidden or __MACOSX metadata file"]


def _first_accepting(prefix, checks):
    for name, accept in checks:
        try:
            verdict = accept(prefix)
        except Exception:
            continue
        if verdict and not isinstance(verdict, str):
            return name
    return None


def test_the_signature_index_gives_what_asking_every_opener_gives(every_format):
    """The table of signature bytes must never hide an opener that would accept a file."""
    from simrec.pipeline import images

    openers = images._registered_openers()
    assert set(images._SIGNATURE_BYTES) <= {name for name, _ in openers.checks}  # no stale names
    rng = np.random.default_rng(0)
    pool = [path.read_bytes()[:16] for path in every_format.iterdir() if path.stat().st_size >= 16]
    pool += [rng.bytes(16) for _ in range(40)] + [b"%PDF-1.7\n" + b"\0" * 7, b"ftyp" * 4]
    for prefix in pool:
        for offset in (0, 4):
            for value in range(256):
                probe = prefix[:offset] + bytes([value]) + prefix[offset + 1 :]
                assert images._opener_for(probe, openers) == _first_accepting(probe, openers.checks), probe


def test_product_ids_drop_only_the_last_extension(tmp_path):
    for name in ["shirt.v2.jpg", "trailing.", "plain", "x.tar.png"]:
        (tmp_path / "c" / "red").mkdir(parents=True, exist_ok=True)
        _picture().save(tmp_path / "c" / "red" / name, "PNG")
    _picture().save(tmp_path / "c" / "top.jpg", "JPEG")
    catalog, _ = load_catalog(tmp_path / "c")
    assert dict(zip(catalog["product_id"], catalog["label"])) == {
        "red/plain": "red",
        "red/shirt.v2": "red",
        "red/trailing.": "red",
        "red/x.tar": "red",
        "top": "",
    }
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in catalog["path"])
