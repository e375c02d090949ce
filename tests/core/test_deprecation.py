"""Former names keep working for a while, each with a FutureWarning that says the new one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import simrec
from simrec import CosineNeighbors, load_index, save_vectors


@pytest.fixture
def folder(tmp_path):
    catalog = pd.DataFrame({"product_id": ["a/1", "a/2", "b/1"], "label": ["a", "a", "b"]})
    return save_vectors(catalog, np.eye(3, dtype=np.float32), tmp_path / "idx", model="clip-vit-b32")


def test_the_former_keyword_of_the_index_folder(folder):
    with pytest.warns(FutureWarning, match=r"load_index\(directory=...\) is now load_index\(index_dir=...\)"):
        embedded = load_index(directory=folder)
    assert len(embedded) == 3
    with pytest.warns(FutureWarning, match=r"IndexFollower\(directory=...\) is now IndexFollower\(index_dir=...\)"):
        simrec.IndexFollower(directory=folder)
    with pytest.raises(TypeError, match="got both directory= and index_dir="):
        load_index(directory=folder, index_dir=folder)


def test_dict_access_to_the_meta(folder):
    meta = load_index(folder).meta
    with pytest.warns(FutureWarning, match=r'meta\["model"\] is now meta.model'):
        assert meta["model"] == "clip-vit-b32"
    with pytest.warns(FutureWarning, match=r'meta.get\("image_size"\) is now meta.image_size'):
        assert meta.get("image_size", "none") == "none"
    with pytest.warns(FutureWarning), pytest.raises(KeyError):
        meta["no_such_entry"]


def test_a_plain_dict_as_the_record_s_meta():
    catalog = pd.DataFrame({"product_id": ["p1", "p2"], "path": ["", ""], "label": ["", ""]})
    with pytest.warns(FutureWarning, match="pass simrec.IndexMeta"):
        embedded = simrec.EmbeddedCatalog(catalog, np.eye(2, dtype=np.float32), {"model": "outside"})
    assert embedded.meta.model == "outside" and embedded.meta.made_outside and embedded.warning is None
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="name the model"):
        simrec.EmbeddedCatalog(catalog, np.eye(2, dtype=np.float32), {"weights": "imagenet"})
    with pytest.raises(TypeError, match="Expected meta to be a simrec.IndexMeta, got list"):
        simrec.EmbeddedCatalog(catalog, np.eye(2, dtype=np.float32), ["outside"])


def test_the_former_name_of_the_exact_search_implementation():
    with pytest.warns(FutureWarning, match=r"now CosineNeighbors\(implementation=...\)"):
        search = CosineNeighbors(backend="sklearn")
    with pytest.warns(FutureWarning, match="CosineNeighbors.backend is now CosineNeighbors.implementation"):
        assert search.backend == "sklearn"


def test_the_former_neighbor_count_keyword_of_evaluate():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    labels = ["red", "red", "blue", "blue"]
    with pytest.warns(FutureWarning, match=r"evaluate\(k=...\) is now evaluate\(n_neighbors=...\)"):
        former = simrec.evaluate(CosineNeighbors().fit(X), labels, k=1)
    assert former == simrec.evaluate(CosineNeighbors().fit(X), labels, n_neighbors=1)


def test_the_former_name_of_a_followed_generations_name(folder):
    current = simrec.IndexFollower(folder).current
    with pytest.warns(FutureWarning, match=r"Generation.generation is now Generation.name"):
        assert current.generation == current.name

    with pytest.warns(FutureWarning, match="following.Version is now Generation"):
        from simrec.storage.following import Version
    assert Version is type(current)
