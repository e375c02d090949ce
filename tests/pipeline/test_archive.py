import stat
import zipfile

import pytest
from photos import jpeg_bytes

from simrec.pipeline.archive import extract_zip


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            if isinstance(name, zipfile.ZipInfo):
                archive.writestr(name, data)
            else:
                archive.writestr(name, data)
    return path


def test_path_traversal_and_absolute_entries_are_refused(tmp_path):
    zip_path = _zip(
        tmp_path / "evil.zip",
        [
            ("../escape.jpg", jpeg_bytes()),
            ("/abs/escape.jpg", jpeg_bytes()),
            ("ok/../../x.jpg", jpeg_bytes()),
            ("C:/windows.jpg", jpeg_bytes()),
            ("good/fine.jpg", jpeg_bytes()),
        ],
    )
    result = extract_zip(zip_path, tmp_path / "out" / "target")
    assert [p.name for p in result.extracted] == ["fine.jpg"]
    assert len(result.skipped) == 4
    assert all(s.reason.startswith("refused") for s in result.skipped)
    assert not (tmp_path / "escape.jpg").exists() and not (tmp_path / "out" / "escape.jpg").exists()
    assert not (tmp_path / "x.jpg").exists()


def test_symlink_entries_are_refused(tmp_path):
    link = zipfile.ZipInfo("cat/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = _zip(tmp_path / "links.zip", [(link, "/etc/passwd"), ("cat/real.jpg", jpeg_bytes())])
    result = extract_zip(zip_path, tmp_path / "target")
    assert [s.reason for s in result.skipped] == ["refused: symbolic link entry"]
    assert not (tmp_path / "target" / "cat" / "link.jpg").exists()


def test_zip_bomb_is_refused_by_declared_and_actual_size(tmp_path):
    zip_path = _zip(tmp_path / "bomb.zip", [("big/bomb.jpg", b"\0" * 5_000_000), ("big/ok.jpg", jpeg_bytes())])
    result = extract_zip(zip_path, tmp_path / "target", max_entry_bytes=1_000_000)
    assert [p.name for p in result.extracted] == ["ok.jpg"]
    assert "declared size" in result.skipped[0].reason

    # A lying header: declared small, actual large. Patch the sizes the archive claims.
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo("big/bomb.jpg")
    for offset in _all(data, (5_000_000).to_bytes(4, "little")):
        data[offset : offset + 4] = (1000).to_bytes(4, "little")
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    assert info.file_size == 5_000_000
    result = extract_zip(liar, tmp_path / "target2", max_entry_bytes=1_000_000)
    assert [p.name for p in result.extracted] == ["ok.jpg"]
    # zipfile stops at the declared 1000 bytes, so the CRC check is what catches the lie.
    assert "corrupt" in result.skipped[0].reason
    assert not (tmp_path / "target2" / "big" / "bomb.jpg").exists()


def _all(data: bytearray, needle: bytes):
    start = 0
    while (found := data.find(needle, start)) != -1:
        yield found
        start = found + 1


def test_total_size_limit(tmp_path):
    zip_path = _zip(tmp_path / "many.zip", [(f"c/{i}.jpg", b"x" * 1000) for i in range(10)])
    result = extract_zip(zip_path, tmp_path / "target", max_total_bytes=3500)
    assert len(result.extracted) == 3 and len(result.skipped) == 7
    assert "total size" in result.skipped[0].reason


def test_corrupt_entry_is_reported_and_others_extracted(tmp_path):
    zip_path = _zip(tmp_path / "crc.zip", [("c/a.jpg", b"A" * 1000), ("c/b.jpg", jpeg_bytes())])
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo("c/a.jpg")
    start = info.header_offset + 30 + len(info.filename)
    data[start + 2] ^= 0xFF  # damage compressed bytes
    zip_path.write_bytes(bytes(data))
    result = extract_zip(zip_path, tmp_path / "target")
    assert [p.name for p in result.extracted] == ["b.jpg"]
    assert "corrupt" in result.skipped[0].reason


def test_missing_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match="zip file not found"):
        extract_zip(tmp_path / "nope.zip", tmp_path / "t")


def test_unsupported_compression_is_refused(tmp_path):
    zip_path = _zip(tmp_path / "odd.zip", [("c/a.jpg", jpeg_bytes()), ("c/b.jpg", jpeg_bytes())])
    data = bytearray(zip_path.read_bytes())
    central = data.find(b"PK\x01\x02")  # the first central-directory record is c/a.jpg
    data[central + 10 : central + 12] = (99).to_bytes(2, "little")  # AES, which zipfile cannot read
    zip_path.write_bytes(bytes(data))
    result = extract_zip(zip_path, tmp_path / "target")
    assert [p.name for p in result.extracted] == ["b.jpg"]
    assert result.skipped[0].reason == "refused: unsupported compression method 99"
