"""Every product's neighbors written to Parquet or CSV, equal to one query at a time."""

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from simrec import CosineNeighbors, load_index, make_synthetic_catalog, save_vectors
from simrec.app.export import EXPORT_COLUMNS, export_neighbors
from simrec.cli import main


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    zip_path = make_synthetic_catalog(
        folder / "c.zip", colours=["red", "blue", "green"], shapes=["shirt", "bag"], n_variants=2, image_size=64
    )
    out = folder / "index"
    assert main(["index", str(zip_path), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]) == 0
    return out


def _read(path):
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=False)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_rows_equal_query_by_id(index_dir, tmp_path, capsys, suffix):
    out = tmp_path / f"recs{suffix}"
    assert main(["export", str(index_dir), "-k", "3", "--out", str(out), "--colour-weight", "0", "-q"]) == 0
    assert "wrote 36 rows (12 products x 3 neighbors)" in capsys.readouterr().out
    table = _read(out)
    assert list(table.columns) == EXPORT_COLUMNS and len(table) == 36
    for product_id, rows in table.groupby("product_id", sort=False):
        assert (
            main(["query", str(index_dir), "--id", product_id, "-k", "3", "--colour-weight", "0", "--format", "json"])
            == 0
        )
        payload = json.loads(capsys.readouterr().out)
        expected = payload["results"]
        assert rows["rank"].tolist() == [r["rank"] for r in expected]
        assert rows["neighbor_id"].tolist() == [r["product_id"] for r in expected]
        assert rows["neighbor_label"].tolist() == [r["label"] for r in expected]
        assert (rows["label"] == payload["query"]["label"]).all()
        assert product_id not in rows["neighbor_id"].tolist()
        # One query is a matrix-vector product, a block a matrix product: float32 rounding may differ.
        np.testing.assert_allclose(rows["distance"], [r["distance"] for r in expected], rtol=0, atol=1e-6)


def test_export_writes_block_by_block(index_dir, tmp_path):
    import pyarrow.parquet as pq

    embedded = load_index(index_dir, mmap=True)
    embedded.neighbors.chunk_size = 5  # 12 products: blocks of 5, 5 and 2
    report = export_neighbors(embedded, tmp_path / "r.parquet", n_neighbors=2, colour_weight=0, verbose=False)
    assert (report.products, report.rows) == (12, 24)
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_row_groups == 3


def test_export_memory_is_bounded_by_a_block(tmp_path):
    n = 20_000  # a full n x n float32 distance matrix would be 1.6 GB
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    save_vectors(pd.DataFrame({"product_id": [f"p{i}" for i in range(n)]}), vectors, tmp_path / "idx", model="x")
    embedded = load_index(tmp_path / "idx", mmap=True)
    tracemalloc.start()
    try:
        export_neighbors(embedded, tmp_path / "r.csv", n_neighbors=2, verbose=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300 * 1024**2
    assert len(pd.read_csv(tmp_path / "r.csv")) == 2 * n


def test_interrupted_export_leaves_no_file(index_dir, tmp_path, monkeypatch):
    import simrec.app.export as export

    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args)

    original = export._block_frame
    monkeypatch.setattr(export, "_block_frame", failing)
    embedded = load_index(index_dir, mmap=True)
    embedded.neighbors.chunk_size = 4
    with pytest.raises(KeyboardInterrupt):
        export_neighbors(embedded, tmp_path / "r.csv", n_neighbors=2, colour_weight=0, verbose=False)
    assert list(tmp_path.iterdir()) == []


def test_export_user_errors(index_dir, tmp_path, capsys):
    assert main(["export", str(index_dir), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "Expected --out to end in .parquet or .csv" in capsys.readouterr().err
    assert main(["export", str(index_dir), "-k", "12", "--out", str(tmp_path / "r.csv")]) == 2
    assert "Expected -k <= 11 (other products in the catalog), got 12" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_kneighbors_blocks_match_kneighbors():
    X = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    neighbors = CosineNeighbors(chunk_size=7).fit(X)
    distances, indices = neighbors.kneighbors(n_neighbors=4)
    blocks = list(neighbors.kneighbors_blocks(n_neighbors=4))
    assert [start for start, _, _ in blocks] == list(range(0, 50, 7))
    assert max(len(d) for _, d, _ in blocks) == 7
    np.testing.assert_array_equal(np.concatenate([i for _, _, i in blocks]), indices)
    np.testing.assert_array_equal(np.concatenate([d for _, d, _ in blocks]), distances)
    queries = X[:3] + 0.1
    q_blocks = list(neighbors.kneighbors_blocks(queries, n_neighbors=2))
    np.testing.assert_array_equal(np.concatenate([i for _, _, i in q_blocks]), neighbors.kneighbors(queries, 2)[1])
    with pytest.raises(ValueError, match="n_neighbors = 50"):
        neighbors.kneighbors_blocks(n_neighbors=50)  # refused before any block is computed


def test_kneighbors_blocks_with_the_sklearn_backend():
    X = np.random.default_rng(2).normal(size=(30, 6)).astype(np.float32)
    neighbors = CosineNeighbors(implementation="sklearn").fit(X)
    ((start, distances, indices),) = list(neighbors.kneighbors_blocks(n_neighbors=3))
    expected_distances, expected_indices = neighbors.kneighbors(n_neighbors=3)
    assert start == 0
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)
    np.testing.assert_array_equal(indices, CosineNeighbors().fit(X).kneighbors(n_neighbors=3)[1])


def test_export_embeddings_writes_every_vector_as_a_fixed_size_list(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    products = pd.DataFrame({"product_id": [f"sku/{i}" for i in range(50)], "label": ["a", "b"] * 25})
    out = save_vectors(products, rng.normal(size=(50, 16)), tmp_path / "idx", model="outside")
    assert main(["export", str(out), "--embeddings", "--out", str(tmp_path / "v.parquet"), "-q"]) == 0
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column_names == ["product_id", "label", "path", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    embedded = load_index(out)
    assert table.column("product_id").to_pylist() == embedded.catalog["product_id"].tolist()
    np.testing.assert_array_equal(
        np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), embedded.embeddings
    )
    assert main(["export", str(out), "--embeddings", "--out", str(tmp_path / "v.csv")]) == 2
    assert ".parquet" in capsys.readouterr().err
