"""Damage anywhere in an index folder is one line naming the file, never a traceback.

A fuzz test flips every byte of the first 256 bytes of each small data file and a fixed
random sample of the rest; opening either works (opening reads no checksum) or raises
:class:`IndexIntegrityError` naming the file, and verifying always names it.
"""

import json

import numpy as np
import pytest

from simrec import IndexIntegrityError, load_index, save_index, verify_index
from simrec.cli import main

ROLES = ("embeddings", "inverse_norms", "colours", "catalog", "failures")


def _data_file(folder, role):
    return folder / json.loads((folder / "meta.json").read_text())["files"][role]["name"]


def _positions(size: int, seed: int, sample: int = 48) -> list[int]:
    head = list(range(min(size, 256)))
    rest = np.arange(256, size)
    if len(rest):
        head += sorted(np.random.default_rng(seed).choice(rest, size=min(sample, len(rest)), replace=False).tolist())
    return head


@pytest.mark.parametrize("role", ROLES)
def test_every_flipped_byte_is_one_line_naming_the_file(embedded, tmp_path, role):
    folder = save_index(embedded, tmp_path / "idx")
    path = _data_file(folder, role)
    original = path.read_bytes()
    failures = []
    for number, position in enumerate(_positions(len(original), seed=ROLES.index(role))):
        damaged = bytearray(original)
        damaged[position] ^= 0x5A if number % 2 else 0xFF
        path.write_bytes(bytes(damaged))
        for verify in (False, True):
            try:
                load_index(folder, mmap=bool(number % 3 == 0), verify=verify)
            except IndexIntegrityError as error:
                if path.name not in str(error) or "\n" in str(error):
                    failures.append(f"byte {position}: {error}")
                continue
            except Exception as error:  # noqa: BLE001 - the point: nothing else may escape
                failures.append(f"byte {position}, verify={verify}: {type(error).__name__}: {error}")
                continue
            if verify:
                failures.append(f"byte {position}: verify said intact")
    path.write_bytes(original)
    assert not failures, f"{len(failures)} flips of {path.name} misreported, e.g. {failures[:3]}"


@pytest.mark.parametrize("role", ["embeddings", "catalog"])
def test_commands_on_a_damaged_file_say_one_line(embedded, tmp_path, role, capsys):
    folder = save_index(embedded, tmp_path / "idx")
    path = _data_file(folder, role)
    damaged = bytearray(path.read_bytes())
    if role == "embeddings":
        damaged[20] ^= 0x5A  # inside the header's dictionary
    else:
        damaged[damaged.index(b"blue/item_1")] ^= 0xFF  # the first product id is no longer UTF-8
    path.write_bytes(bytes(damaged))
    for command in (["query", str(folder), "--id", "red/item_1"], ["verify", str(folder)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert path.name in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_damaged_npy_header_is_refused_with_its_name(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    path = _data_file(folder, "embeddings")
    damaged = bytearray(path.read_bytes())
    damaged[20] ^= 0x5A  # inside the header's dictionary: a tokenize error in numpy
    path.write_bytes(bytes(damaged))
    with pytest.raises(IndexIntegrityError, match=path.name):
        load_index(folder)


@pytest.mark.parametrize("role", ["embeddings", "catalog"])
def test_index_embeds_everything_again_over_a_damaged_file(colour_tree, tmp_path, role, capsys, caplog):
    out = tmp_path / "idx"
    fast = ["--image-size", "32", "--weights", "random", "-q"]
    assert main(["index", str(colour_tree), "--out", str(out), *fast]) == 0
    path = _data_file(out, role)
    damaged = bytearray(path.read_bytes())
    if role == "embeddings":
        damaged[20] ^= 0x5A
    else:
        damaged[damaged.index(b"blue/item_1")] ^= 0xFF
    path.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert main(["index", str(colour_tree), "--out", str(out), *fast]) == 0
    assert "added 12, updated 0, removed 0, unchanged 0" in capsys.readouterr().out
    assert any(
        path.name in record.getMessage() and "embedding everything" in record.getMessage() for record in caplog.records
    )
    assert len(verify_index(out)) == 12


def test_verify_names_a_photo_missing_from_the_store(colour_zip, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_zip), "--out", str(out), "--image-size", "32", "--weights", "random", "-q"]) == 0
    assert main(["verify", str(out)]) == 0
    assert "the 12 photos it holds" in capsys.readouterr().out
    photo = next((out / "photos").glob("*/*"))
    content = photo.read_bytes()
    photo.unlink()
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert photo.name in err and "is missing" in err and len(err.splitlines()) == 1
    photo.write_bytes(content[:-10])
    with pytest.raises(IndexIntegrityError, match=rf"{photo.name} has {len(content) - 10} bytes, not {len(content)}"):
        verify_index(out)
    photo.unlink()
    assert main(["index", str(colour_zip), "--out", str(out), "--image-size", "32", "-q"]) == 0
    assert photo.read_bytes() == content and len(verify_index(out)) == 12  # the next index run puts it back
