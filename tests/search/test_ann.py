"""Approximate search with faiss: same answers as exact search where it must, stored atomically, kept up to date."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from photos import COLOURS, write_image

from simrec import CosineNeighbors, MissingDependencyError, load_index, verify_index
from simrec.app.ann import attach_ann
from simrec.cli import main
from simrec.core import errors as simrec_errors
from simrec.search.approximate import ApproximateNeighbors, build_ann, default_params, read_ann, serialize

pytest.importorskip("faiss", reason="pip install 'simrec[faiss]' runs these tests")

TYPES = ("hnsw", "ivf-flat", "ivf-pq")


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """Tests on a shared machine: faiss's OpenMP threads spin when cores are busy."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n=600, dim=32, clusters=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * 4
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture
def built(colour_tree, tmp_path):
    out = tmp_path / "index"
    code = main(["index", str(colour_tree), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"])
    assert code == 0
    return colour_tree, out


@pytest.mark.parametrize("ann_type", TYPES)
def test_searching_every_list_gives_the_exact_neighbors_and_cosine_distances(ann_type):
    X = clustered()
    params = {"nprobe": default_params(ann_type, len(X), X.shape[1])["nlist"]} if ann_type != "hnsw" else {"ef": 600}
    index, info = build_ann(X, ann_type=ann_type, **params)
    exact_d, exact_i = CosineNeighbors().fit(X).kneighbors(X[:50] + 0.01, n_neighbors=10)
    rerank = 60 if ann_type == "ivf-pq" else 1  # lossy codes: exact re-scoring of every candidate list
    approx = ApproximateNeighbors(read_ann(serialize(index)), info, embeddings=X, rerank=rerank)
    d, i = approx.kneighbors(X[:50] + 0.01, n_neighbors=10)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (50, 10)
    np.testing.assert_array_equal(i, exact_i)
    np.testing.assert_allclose(d, exact_d, atol=1e-5)
    assert info["count"] == len(X) and info["type"] == ann_type
    assert info["recall_at_10"] == 1.0 or ann_type == "ivf-pq"


def test_all_items_query_leaves_each_item_out_of_its_own_results():
    X = clustered(n=300)
    index, info = build_ann(X, ann_type="ivf-flat", nprobe=7)
    d, i = ApproximateNeighbors(index, info, embeddings=X).kneighbors(n_neighbors=5)
    assert i.shape == (300, 5)
    assert not (i == np.arange(300)[:, None]).any()
    assert (np.diff(d, axis=1) >= -1e-6).all()


def test_too_few_found_are_completed_by_exact_search():
    X = clustered(n=400)
    index, info = build_ann(X, ann_type="ivf-flat", nlist=10, nprobe=1)
    _, i = ApproximateNeighbors(index, info, embeddings=X, rerank=0).kneighbors(X[:5], n_neighbors=390)
    assert (i >= 0).all() and all(len(set(row)) == 390 for row in i)


def test_ivf_pq_stores_far_fewer_bytes_per_vector_than_the_vectors():
    X = clustered(n=2000, dim=256)
    _, info = build_ann(X, ann_type="ivf-pq", m=16)
    assert info["bytes_per_vector"] < 256 * 4 / 4
    assert info["params"]["m"] == 16


def test_bad_parameters_are_refused_naming_them():
    X = clustered(n=100)
    with pytest.raises(ValueError, match="nlist does not apply to ann_type 'hnsw'"):
        build_ann(X, ann_type="hnsw", nlist=4)
    with pytest.raises(ValueError, match="Expected nlist <= the number of items"):
        build_ann(X, ann_type="ivf-flat", nlist=1000)
    with pytest.raises(ValueError, match="m to divide the dimension 32"):
        build_ann(X, ann_type="ivf-pq", m=5)
    with pytest.raises(ValueError, match="ann_type in"):
        build_ann(X, ann_type="lsh")


def test_ann_command_stores_the_structure_and_query_uses_it_with_the_same_json(built, capsys):
    _, out = built
    main(["query", str(out), "--id", "red/item_1", "-k", "4", "--format", "json", "--colour-weight", "0"])  # look alone
    exact = json.loads(capsys.readouterr().out)
    assert main(["ann", str(out), "--type", "ivf-flat"]) == 0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "bytes/vector" in printed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["ann"]["type"] == "ivf-flat" and meta["ann"]["count"] == 12
    assert {"recall_at_10", "bytes_per_vector", "params", "built"} <= set(meta["ann"])
    assert meta["files"]["ann"]["name"].endswith(".faiss")
    verify_index(out)  # the ann file is checksummed like the others
    embedded = load_index(out)
    assert isinstance(embedded.search(), ApproximateNeighbors)
    assert isinstance(embedded.search(exact=True), CosineNeighbors)
    main(["query", str(out), "--id", "red/item_1", "-k", "4", "--format", "json", "--nprobe", "64"])
    approximate = json.loads(capsys.readouterr().out)
    assert approximate.keys() == exact.keys()
    assert [r["product_id"] for r in approximate["results"]] == [r["product_id"] for r in exact["results"]]
    for a, e in zip(approximate["results"], exact["results"]):
        assert a.keys() == e.keys() and a["distance"] == pytest.approx(e["distance"], abs=1e-5)
    assert main(["query", str(out), "--id", "red/item_1", "-k", "4", "--format", "json", "--exact"]) == 0
    assert json.loads(capsys.readouterr().out) == exact


def test_type_none_removes_the_structure(built, capsys):
    _, out = built
    assert main(["ann", str(out), "--type", "hnsw"]) == 0
    assert list(out.glob("ann-*.faiss"))
    assert main(["ann", str(out), "--type", "none"]) == 0
    assert not list(out.glob("ann-*.faiss"))
    embedded = load_index(out)
    assert embedded.ann is None and embedded.meta.ann is None and "ann" not in embedded.meta.files


@pytest.mark.parametrize(("ann_type", "how"), [("ivf-flat", "updated without retraining"), ("hnsw", "rebuilt")])
def test_reindexing_keeps_the_structure_up_to_date(built, ann_type, how, capsys):
    tree, out = built
    assert main(["ann", str(out), "--type", ann_type]) == 0
    before = json.loads((out / "meta.json").read_text())["ann"]
    (tree / "red" / "item_2.jpg").unlink()
    write_image(tree / "blue" / "item_9.jpg", COLOURS["blue"], size=(50, 40))
    write_image(tree / "green" / "item_1.jpg", (10, 250, 10), size=(44, 36))  # changed photo
    capsys.readouterr()
    assert main(["index", str(tree), "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"ann {ann_type}: {how}" in printed
    embedded = load_index(out)
    assert embedded.meta.ann["count"] == len(embedded) == 12
    if ann_type == "ivf-flat":
        assert embedded.meta.ann["params"] == before["params"]
    index = read_ann(embedded.ann)
    assert index.ntotal == 12
    wide = {"nprobe": 64} if ann_type != "hnsw" else {"ef": 64}
    approx = embedded.search(**wide)
    exact_d, exact_i = embedded.neighbors.kneighbors(n_neighbors=5)
    d, i = approx.kneighbors(n_neighbors=5)
    np.testing.assert_array_equal(i, exact_i)  # ids follow the rows after removal and renumbering
    np.testing.assert_allclose(d, exact_d, atol=1e-5)


def test_a_failure_while_writing_leaves_the_previous_version(built, monkeypatch):
    import simrec.storage.index_folder

    _, out = built
    attach_ann(out, "ivf-flat")
    before = (out / "meta.json").read_text()

    def broken(ann, handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(simrec.storage.index_folder, "_write_ann", broken)
    with pytest.raises(simrec.storage.index_folder.NotWritableError, match="previous generation is unchanged"):
        attach_ann(out, "hnsw")
    assert (out / "meta.json").read_text() == before
    embedded = verify_index(out)
    assert embedded.meta.ann["type"] == "ivf-flat"
    assert len(list(out.glob("ann-*.faiss"))) == 1


@pytest.mark.parametrize("moment", ["data-file@5", "meta-written"])
def test_a_killed_writer_leaves_the_previous_version(built, moment):
    _, out = built
    attach_ann(out, "ivf-flat")
    before = (out / "meta.json").read_text()
    env = {**os.environ, "SIMREC_CRASH_AT": moment}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-m", "simrec", "ann", str(out), "--type", "hnsw"], env=env)
    assert run.returncode == -signal.SIGKILL
    assert (out / "meta.json").read_text() == before
    embedded = verify_index(out)
    assert embedded.meta.ann["type"] == "ivf-flat"
    assert read_ann(embedded.ann).ntotal == 12
    attach_ann(out, "hnsw")  # the next write clears the leftovers
    assert len(list(out.glob("ann-*.faiss"))) == 1


def test_the_ann_structure_survives_a_copy_of_the_folder(built, tmp_path):
    _, out = built
    attach_ann(out, "ivf-pq")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    embedded = load_index(copy)
    assert embedded.search().kneighbors(n_neighbors=3)[1].shape == (12, 3)


def test_missing_faiss_is_one_line_and_exit_2(built, monkeypatch, capsys):
    _, out = built
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert main(["ann", str(out), "--type", "hnsw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'simrec[faiss]'" in err
    with pytest.raises(MissingDependencyError):
        build_ann(clustered(n=10), ann_type="hnsw")


def test_bench_ann_prints_each_type_and_the_ratio_line(built):
    from simrec.bench import run_ann_benchmark

    _, out = built
    lines = []
    figures = run_ann_benchmark(600, 32, index_dir=out, n_queries=10, print_fn=lines.append)
    text = "\n".join(lines)
    for label in ("hnsw", "ivf-flat", "ivf-pq rerank=0", "ivf-pq rerank=8"):
        assert f"clustered 600x32: {label} (" in text and f"index {out} 12x2048: {label} (" in text
    assert lines[-1].startswith("ratio ann_recall_at_10=") and " ann_speedup=" in lines[-1]
    assert 0 <= figures["ann_recall_at_10"] <= 1 and figures["ann_speedup"] > 0
    assert figures["ivf-pq rerank=8"]["recall_at_10"] >= figures["ivf-pq rerank=0"]["recall_at_10"]


def test_bench_index_needs_ann(capsys):
    assert main(["bench", "--index", "somewhere"]) == 2
    assert "pass --ann N too" in capsys.readouterr().err


def test_an_ann_entry_that_does_not_describe_the_items_is_refused(built):
    _, out = built
    attach_ann(out, "ivf-flat")
    meta = json.loads((out / "meta.json").read_text())
    meta["ann"]["count"] = 11
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(simrec_errors.IndexIntegrityError, match="ann structure does not describe the 12 items"):
        load_index(out)


def test_ivf_training_reads_a_bounded_sample(monkeypatch):
    import simrec.search.approximate

    seen = []
    original = simrec.search.approximate.normalized_blocks

    def spy(embeddings, inverse_norms=None, rows=None):
        seen.append(len(embeddings) if rows is None else len(rows))
        return original(embeddings, inverse_norms, rows)

    monkeypatch.setattr(simrec.search.approximate, "TRAIN_SAMPLE", 200)
    monkeypatch.setattr(simrec.search.approximate, "normalized_blocks", spy)
    _, info = build_ann(clustered(n=1000), ann_type="ivf-flat", nlist=4)
    assert seen[0] == 200  # the training sample; then every row is added
    assert info["count"] == 1000


def test_export_and_the_service_use_the_ann_structure(tmp_path):
    import pandas as pd
    from fastapi.testclient import TestClient

    from simrec import load_index, recommend, save_vectors
    from simrec.app.export import export_neighbors
    from simrec.serve import create_app

    products = pd.DataFrame({"product_id": [f"sku/{i}" for i in range(600)], "label": ["a"] * 600})
    out = save_vectors(products, clustered(), tmp_path / "vectors", model="outside")
    attach_ann(out, "ivf-pq", m=4, nlist=8, nprobe=1, rerank=0)  # coarse on purpose: it differs from exact
    embedded = load_index(out)
    approximate = pd.read_csv(export_neighbors(embedded, tmp_path / "a.csv", n_neighbors=5, verbose=False).path)
    exact = pd.read_csv(export_neighbors(embedded, tmp_path / "e.csv", n_neighbors=5, exact=True, verbose=False).path)
    assert not approximate["neighbor_id"].equals(exact["neighbor_id"])
    search = embedded.search()
    for product_id in ("sku/0", "sku/17", "sku/599"):
        rows = approximate[approximate["product_id"] == product_id].sort_values("rank")
        expected = recommend(embedded, product_id=product_id, n_neighbors=5, search=search)
        assert rows["neighbor_id"].tolist() == expected["product_id"].tolist()
        with TestClient(create_app(out)) as client:
            answer = client.get(f"/api/products/{product_id}/similar", params={"k": 5}).json()
        assert [r["product_id"] for r in answer["results"]] == expected["product_id"].tolist()


def test_colours_keeps_the_structure_and_each_search_keeps_its_own_settings(built, monkeypatch, capsys):
    from simrec import load_index

    _, out = built
    attach_ann(out, "ivf-flat", nlist=2)
    assert main(["colours", str(out), "-q"]) == 0
    embedded = load_index(out, verify=True)
    assert embedded.meta.ann["type"] == "ivf-flat" and embedded.colours is not None
    wide, narrow = embedded.search(nprobe=2), embedded.search(nprobe=1)
    vector = embedded.embeddings[0]
    first = wide.kneighbors(vector, n_neighbors=5)
    narrow.kneighbors(vector, n_neighbors=5)
    again = wide.kneighbors(vector, n_neighbors=5)
    np.testing.assert_array_equal(first[1], again[1])
    capsys.readouterr()
    assert main(["query", str(out), "--id", "red/item_1", "--ef", "10"]) == 2
    assert "--ef applies to hnsw" in capsys.readouterr().err

    import simrec.search.approximate

    def no_faiss():
        raise simrec.MissingDependencyError("approximate search needs faiss")

    monkeypatch.setattr(simrec.search.approximate, "import_faiss", no_faiss)
    # The colour blend compares every product exactly: it needs no faiss, even on an index with a structure.
    assert main(["query", str(out), "--id", "red/item_1", "--colour-weight", "0.5"]) == 0
    assert main(["query", str(out), "--id", "red/item_1", "--exact"]) == 0


def test_reindexing_an_unchanged_catalog_keeps_the_structure_as_it_was(built, capsys):
    tree, out = built
    assert main(["ann", str(out), "--type", "hnsw"]) == 0
    before = load_index(out)
    structure = before.ann.read_bytes()
    capsys.readouterr()
    assert main(["index", str(tree), "--out", str(out), "-q"]) == 0
    said = capsys.readouterr().out
    assert "nothing changed: nothing committed" in said  # so the structure stays as it was
    after = load_index(out, verify=True)
    assert after.ann.read_bytes() == structure and after.meta.ann == before.meta.ann
