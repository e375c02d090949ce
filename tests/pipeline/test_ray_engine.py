"""The Ray engine: same catalog, same failures and the same vectors as the local engine, on a local Ray."""

import shutil
import sys

import numpy as np
import pytest
from photos import write_image

from simrec import MissingDependencyError, build_index, load_index
from simrec.cli import main

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray", reason="pip install 'simrec[ray]' runs these tests")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def awkward_zip(colour_tree, tmp_path):
    """The colour catalog plus an empty and a truncated photo."""
    (colour_tree / "red" / "empty.jpg").write_bytes(b"")
    good = write_image(tmp_path / "whole.jpg", size=(60, 40)).read_bytes()
    (colour_tree / "blue" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return shutil.make_archive(str(tmp_path / "awkward"), "zip", colour_tree.parent, colour_tree.name)


def test_ray_engine_gives_the_local_catalog_failures_and_vectors(awkward_zip, tmp_path, extractor, local_ray):
    local, _ = build_index(awkward_zip, tmp_path / "local", extractor=extractor, batch_size=4, verbose=False)
    remote, report = build_index(
        awkward_zip, tmp_path / "ray", extractor=extractor, batch_size=4, verbose=False, engine="ray"
    )
    assert report.indexed == 12 and report.skipped == 2
    assert local.catalog["product_id"].tolist() == remote.catalog["product_id"].tolist()
    # Each index holds its own extracted copy of the zip: compare failures inside it.
    local_failures = local.failures.assign(path=local.failures["path"].str.split("Colors_Products/").str[-1])
    remote_failures = remote.failures.assign(path=remote.failures["path"].str.split("Colors_Products/").str[-1])
    assert local_failures.to_dict("records") == remote_failures.to_dict("records")
    assert set(remote_failures["path"]) == {"red/empty.jpg", "blue/truncated.jpg"}
    a, b = np.asarray(local.embeddings), np.asarray(remote.embeddings)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999


def test_ray_reindexing_sends_only_new_and_changed_photos(colour_tree, tmp_path, extractor, local_ray):
    out = tmp_path / "index"
    build_index(colour_tree, out, extractor=extractor, verbose=False, engine="ray", engine_options={"workers": 1})
    write_image(colour_tree / "green" / "item_9.jpg", (20, 200, 20), size=(50, 40))
    (colour_tree / "red" / "item_1.jpg").unlink()
    embedded, report = build_index(colour_tree, out, extractor=extractor, verbose=False, engine="ray")
    assert (report.added, report.removed, report.unchanged, report.embedded) == (1, 1, 11, 1)
    assert len(load_index(out)) == 12


def test_cli_engine_ray(colour_tree, tmp_path, capsys, local_ray):
    out = tmp_path / "index"
    argv = ["index", str(colour_tree), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]
    assert main([*argv, "--engine", "ray", "--workers", "1"]) == 0
    assert "indexed 12 images" in capsys.readouterr().out


def test_ray_workers_build_the_index_model(colour_tree, tmp_path, local_ray):
    """The actors rebuild the extractor's own backbone, not the default one, and give the local vectors."""
    from simrec import build_extractor

    extractor = build_extractor(weights=None, image_size=32, model="mobilenet-0.25")
    local, _ = build_index(colour_tree, tmp_path / "local", extractor=extractor, verbose=False)
    remote, _ = build_index(colour_tree, tmp_path / "ray", extractor=extractor, verbose=False, engine="ray")
    assert remote.meta.model == "mobilenet-0.25" and remote.embeddings.shape == (12, 256)
    np.testing.assert_allclose(np.asarray(remote.embeddings), np.asarray(local.embeddings), rtol=1e-4, atol=1e-4)


def test_ray_options_need_the_ray_engine_and_a_missing_ray_is_one_line(colour_tree, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "index")
    argv = ["index", str(colour_tree), "--out", out, "--weights", "random", "--image-size", "32", "-q"]
    assert main([*argv, "--workers", "2"]) == 2
    assert "--workers only apply to --engine 'ray'" in capsys.readouterr().err  # the command line's own words
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main([*argv, "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'simrec[ray]'" in err
    with pytest.raises(MissingDependencyError):
        build_index(colour_tree, out, engine="ray")
