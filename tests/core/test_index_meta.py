"""The index's meta (``meta.json``), typed: it reads back every meta.json this simrec writes exactly,
refuses damaged ones, and is the one home of the rules about what made an index's vectors."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simrec
from simrec import load_index, save_index, save_vectors
from simrec.core.errors import IndexIntegrityError, MissingFileError
from simrec.core.index_meta import IndexMeta, weights_name
from simrec.core.records import ExtractorInfo
from simrec.storage.index_folder import read_meta

PACKAGE = Path(simrec.__file__).parent
INFO = ExtractorInfo("resnet50", "random(seed=0)", False, 32, "caffe", "float32", "CPU", "", "tensorflow")


def _outside_index(folder: Path) -> Path:
    catalog = pd.DataFrame({"product_id": ["a/1", "a/2", "b/1"], "label": ["a", "a", "b"]})
    return save_vectors(catalog, np.eye(3, dtype=np.float32), folder, model="clip-vit-b32")


def test_the_meta_reads_and_writes_every_meta_json_exactly(embedded, tmp_path):
    for folder in (save_index(embedded, tmp_path / "own"), _outside_index(tmp_path / "outside")):
        written = json.loads((folder / "meta.json").read_text())
        assert IndexMeta.from_dict(written).to_dict() == written
        assert read_meta(folder).to_dict() == written


def test_keys_it_does_not_know_survive_a_save(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    path = folder / "meta.json"
    written = json.loads(path.read_text())
    written["written_by_a_newer_simrec"] = {"anything": [1, 2]}
    path.write_text(json.dumps(written))
    loaded = load_index(folder)
    assert loaded.meta.extra == {"written_by_a_newer_simrec": {"anything": [1, 2]}}
    save_index(loaded, folder)
    assert json.loads(path.read_text())["written_by_a_newer_simrec"] == {"anything": [1, 2]}


@pytest.mark.parametrize(
    "entry, value, words",
    [
        ("format_version", None, "lacks format_version"),
        ("model", None, "lacks model"),
        ("weights", None, "lacks weights"),
        ("count", "5", "count is '5', expected int"),
        ("count", True, "count is True, expected int"),
        ("pretrained", "false", "pretrained is 'false', expected bool"),
        ("files", [], "files is [], expected dict"),
        ("format_version", 3.0, "format_version is 3.0, expected int"),
    ],
)
def test_a_damaged_meta_json_is_one_line_naming_the_file(embedded, tmp_path, entry, value, words):
    folder = save_index(embedded, tmp_path / "idx")
    written = json.loads((folder / "meta.json").read_text())
    written[entry] = value
    (folder / "meta.json").write_text(json.dumps(written))
    with pytest.raises(IndexIntegrityError, match=rf"{folder / 'meta.json'} (is damaged: )?.*{re.escape(words)}"):
        load_index(folder)


def test_a_meta_json_that_does_not_say_whether_the_weights_were_trained_warns(embedded, tmp_path):
    folder = save_index(embedded, tmp_path / "idx")
    written = json.loads((folder / "meta.json").read_text())
    written["pretrained"] = None
    (folder / "meta.json").write_text(json.dumps(written))
    assert load_index(folder).warning is not None


def test_a_meta_json_without_its_required_keys_is_named(tmp_path):
    with pytest.raises(IndexIntegrityError, match=r"meta.json lacks count, dim, files"):
        IndexMeta.from_dict({"format_version": 3, "model": "resnet50", "weights": "imagenet"})
    with pytest.raises(IndexIntegrityError, match="lacks format_version"):
        IndexMeta.from_dict(["not", "a", "mapping"])


def test_vectors_made_outside_simrec(embedded, tmp_path):
    assert load_index(_outside_index(tmp_path / "outside")).meta.made_outside
    assert not embedded.meta.made_outside
    assert IndexMeta(model="not-a-backbone", weights="imagenet", image_size=224).made_outside
    assert IndexMeta(model="resnet50", weights="imagenet", image_size=None).made_outside


def test_one_home_for_the_outside_rule():
    """No module but the meta's own compares anything with the word that marks outside vectors."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "index_meta.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "external":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


def test_no_string_key_lookups_of_the_meta():
    """``meta["model"]`` and ``meta.get("model")`` on a ``meta.json`` are gone: the meta has attributes."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            target = None
            if isinstance(node, ast.Subscript):
                target = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                target = node.func.value
            named = getattr(target, "attr", None) or getattr(target, "id", None)
            if named in ("meta", "previous_meta") and path.name != "index_meta.py":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []


def test_differences_name_what_differs():
    meta = IndexMeta.from_extractor(INFO)
    assert meta.differences(INFO) == []
    other = ExtractorInfo("resnet50", "random(seed=0)", False, 64, "caffe", "bfloat16", "CPU", "", "tensorflow")
    assert meta.differences(other) == ["image_size: index 32, now 64"]  # the precision of queries may differ
    assert meta.differences(other, ("precision",), other="extractor") == [
        "precision: index 'float32', extractor 'bfloat16'"
    ]


def test_untrained_weights_must_come_from_the_same_backend():
    on_jax = ExtractorInfo("resnet50", "random(seed=0)", False, 32, "caffe", "float32", "CPU", "", "jax")
    assert IndexMeta.from_extractor(INFO).differences(on_jax) == ["backend: index 'tensorflow', now 'jax'"]
    older = IndexMeta.from_extractor(INFO).replace(backend=None)  # written before the backend was recorded
    assert older.keras_backend == "tensorflow" and older.differences(INFO) == []
    trained = ExtractorInfo("resnet50", "imagenet", True, 32, "caffe", "float32", "CPU", "", "tensorflow")
    on_jax_trained = ExtractorInfo("resnet50", "imagenet", True, 32, "caffe", "float32", "CPU", "", "jax")
    assert IndexMeta.from_extractor(trained).differences(on_jax_trained) == []


def test_weights_are_named_and_read_back_one_way(tmp_path):
    weights = tmp_path / "shop.weights.h5"
    weights.write_bytes(b"weights")
    for asked, seed, expected in [
        (None, 4, (None, 4)),
        ("random", None, (None, 0)),
        ("imagenet", None, ("imagenet", 0)),
    ]:
        named = weights_name(asked, seed)
        assert IndexMeta(model="resnet50", weights=named).weights_argument() == expected
    meta = IndexMeta(model="resnet50", weights=weights_name(weights), weights_path=str(weights))
    assert meta.weights == "file:shop.weights.h5" and meta.weights_argument() == (weights, 0)
    moved = tmp_path / "moved.weights.h5"
    with pytest.raises(
        MissingFileError,
        match=r"shop.weights.h5 \(last seen at .*gone.h5\), which is not at .*moved.weights.h5; .*weights_path",
    ):
        meta.replace(weights_path=str(tmp_path / "gone.h5")).weights_argument(moved)
