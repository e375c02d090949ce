import pytest

from simrec import MissingFileError, colab
from simrec.colab import named_file


def test_nothing_named_is_none_and_a_file_is_itself(tmp_path):
    assert named_file("", name="ZIP_PATH") is None and named_file(None) is None
    (tmp_path / "Colors_Products.zip").write_bytes(b"zip")
    assert named_file(str(tmp_path / "Colors_Products.zip")) == tmp_path / "Colors_Products.zip"


def test_a_missing_file_stops_with_its_name_and_the_nearest_folder(tmp_path):
    (tmp_path / "Colors_Products.zip").write_bytes(b"zip")
    (tmp_path / "photos").mkdir()
    wrong = tmp_path / "typo" / "Colours_Products.zip"
    with pytest.raises(FileNotFoundError, match="ZIP_PATH = '.*typo/Colours_Products.zip' does not exist") as info:
        named_file(str(wrong), name="ZIP_PATH", on_colab=False)
    assert isinstance(info.value, MissingFileError)
    assert f"{tmp_path} holds: Colors_Products.zip, photos/." in str(info.value)
    assert "Google Drive" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="is a folder, not a file.*photos is empty"):
        named_file(tmp_path / "photos", name="ZIP_PATH", on_colab=False)


def test_long_folders_are_cut_short(tmp_path):
    for i in range(25):
        (tmp_path / f"f{i:02d}.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"f19.jpg, \.\.\. \(5 more\)\.$"):
        named_file(tmp_path / "missing.zip", on_colab=False)


def test_on_colab_says_whether_drive_is_mounted(tmp_path, monkeypatch):
    drive = tmp_path / "drive"
    monkeypatch.setattr(colab, "DRIVE_ROOT", drive)
    wrong = drive / "MyDrive" / "Colors_Products.zip"
    with pytest.raises(FileNotFoundError, match="Google Drive is not mounted.*Run the cell that mounts it"):
        named_file(wrong, name="ZIP_PATH", on_colab=True)

    (drive / "MyDrive" / "shop").mkdir(parents=True)
    (drive / "MyDrive" / "Colors_Products (1).zip").write_bytes(b"zip")
    with pytest.raises(FileNotFoundError, match="Google Drive is mounted") as info:
        named_file(wrong, name="ZIP_PATH", on_colab=True)
    assert "MyDrive holds: Colors_Products (1).zip, shop/." in str(info.value)
