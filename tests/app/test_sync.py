"""simrec sync against a real PostgreSQL with pgvector (started here, see tests/postgres.py), never a mock.

Each test gets its own database on one server. What is checked: a re-sync writes only
the added, changed and removed products (PostgreSQL's ``xmin`` tells which rows a
transaction wrote), a sync with nothing to change writes nothing, the recommendations
equal ``simrec export``'s rows, SQL search agrees with ``simrec query``, another model is
refused, every bad input is one line with exit 2 and nothing written, and a ``kill -9`` at
every named moment leaves the previous catalog.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from paths import ROOT
from photos import write_image
from postgres import server_or_skip

from simrec import (
    InvalidArgumentError,
    MissingDependencyError,
    build_extractor,
    build_index,
    load_index,
    recommend,
    save_vectors,
    sync_index,
)
from simrec.app.export import export_neighbors
from simrec.cli import main

_names = itertools.count()


@pytest.fixture(scope="module")
def server():
    server = server_or_skip()
    yield server
    server.stop()


@pytest.fixture
def database(server):
    """A fresh database with the vector extension: its URL."""
    return server.create_database(f"shop{next(_names)}", vector=True)


def _clustered(n, dim, seed=0, clusters=20, pool=500):
    """``n`` vectors around ``clusters`` centres; the first rows are the same whatever ``n``."""
    rng, pool = np.random.default_rng(seed), max(pool, n)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(0, clusters, pool)] + 0.6 * rng.normal(size=(pool, dim))
    return vectors[:n].astype(np.float32)


def _index(folder, n, dim=2048, seed=0, model="outside-model", drop=(), changed=()):
    vectors = _clustered(n, dim, seed)
    for row in changed:
        vectors[row] += 1.0
    catalog = pd.DataFrame({"product_id": [f"p{i:04d}" for i in range(n)], "label": [f"c{i % 3}" for i in range(n)]})
    keep = np.setdiff1d(np.arange(n), np.asarray(drop, dtype=int))
    save_vectors(catalog.iloc[keep], vectors[keep], folder, model=model)
    return folder


def _rows(url, table="simrec_products", columns="product_id, xmin::text"):
    import psycopg

    with psycopg.connect(url) as connection:
        return dict(connection.execute(f"SELECT {columns} FROM {table}").fetchall())


def _tables(url):
    import psycopg

    with psycopg.connect(url) as connection:
        return sorted(
            r[0]
            for r in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname <> 'pg_catalog' "
                "AND schemaname <> 'information_schema'"
            )
        )


def test_a_resync_writes_only_what_changed_and_a_repeat_writes_nothing(tmp_path, database):
    first = sync_index(_index(tmp_path / "idx", 200), database, n_neighbors=5, verbose=False)
    assert (first.added, first.changed, first.removed, first.products) == (200, 0, 0, 200)
    assert first.recommendation_rows == 200 * 5 and first.wrote
    before = _rows(database)
    state_before = _rows(database, "simrec_products_sync", "generation, xmin::text")

    again = sync_index(tmp_path / "idx", database, verbose=False)
    assert not again.wrote and (again.added, again.changed, again.removed, again.recommended) == (0, 0, 0, 0)
    assert _rows(database) == before
    assert _rows(database, "simrec_products_sync", "generation, xmin::text") == state_before

    # the catalog loses 10 products and 3 others change; 20 products are added
    _index(tmp_path / "idx", 220, drop=range(0, 10), changed=(50, 51, 52))
    report = sync_index(tmp_path / "idx", database, verbose=False)
    assert (report.added, report.changed, report.removed, report.unchanged) == (20, 3, 10, 187)
    after = _rows(database)
    assert len(after) == 210 and not set(after) & {f"p{i:04d}" for i in range(10)}
    rewritten = {pid for pid, xmin in after.items() if before.get(pid) != xmin}
    assert rewritten == {f"p{i:04d}" for i in [50, 51, 52, *range(200, 220)]}
    recommendations = _rows(database, "simrec_recommendations", "product_id || ':' || rank, neighbor_id")
    assert len(recommendations) == 210 * 5  # kept up to date with the settings of the first sync
    assert 0 < report.recommended < 210  # only the products whose neighbors moved


def test_the_recommendations_are_the_rows_of_simrec_export(tmp_path, database):
    extractor = build_extractor(weights=None, image_size=32, seed=0)
    for i in range(24):
        write_image(tmp_path / "shop" / ("red", "blue")[i % 2] / f"item_{i}.jpg", (40 + 8 * i, 20, 200 - 8 * i))
    embedded, _ = build_index(tmp_path / "shop", tmp_path / "idx", extractor=extractor, verbose=False)
    options = {"colour_weight": 0.4, "distinct": True}
    sync_index(tmp_path / "idx", database, n_neighbors=4, photo="https://cdn.example.com/{name}", **options)
    export_neighbors(load_index(tmp_path / "idx"), tmp_path / "recs.csv", n_neighbors=4, verbose=False, **options)
    exported = pd.read_csv(tmp_path / "recs.csv", keep_default_na=False)
    import psycopg

    with psycopg.connect(database) as connection:
        stored = pd.DataFrame(
            connection.execute("SELECT * FROM simrec_recommendations ORDER BY product_id, rank").fetchall(),
            columns=exported.columns,
        )
        photos = dict(connection.execute("SELECT product_id, photo FROM simrec_products").fetchall())
    exported = exported.sort_values(["product_id", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, exported, check_dtype=False, rtol=1e-6)
    assert photos["red/item_0"] == "https://cdn.example.com/item_0.jpg"


@pytest.mark.parametrize("dim, kind, tolerance", [(2048, "halfvec", 2e-3), (256, "vector", 1e-6)])
def test_sql_exact_search_returns_the_top_k_of_simrec_query(tmp_path, database, dim, kind, tolerance):
    import psycopg
    from pgvector.psycopg import register_vector

    embedded = load_index(_index(tmp_path / "idx", 400, dim=dim))
    sync_index(embedded, database, verbose=False)
    k, mismatched = 10, 0
    with psycopg.connect(database) as connection:
        register_vector(connection)
        connection.execute("SET enable_indexscan = off")  # exact: scan every row instead of the HNSW index
        assert connection.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'embedding' "
            "AND attrelid = 'simrec_products'::regclass"
        ).fetchone() == (f"{kind}({dim})",)
        for product_id in embedded.catalog["product_id"][::20]:
            rows = connection.execute(
                "SELECT product_id, embedding <=> (SELECT embedding FROM simrec_products WHERE product_id = %s) "
                "FROM simrec_products WHERE product_id <> %s ORDER BY 2 LIMIT %s",
                [product_id, product_id, k],
            ).fetchall()
            expected = recommend(embedded, product_id=product_id, n_neighbors=k, colour_weight=0)
            assert np.allclose([d for _, d in rows], expected["distance"], atol=tolerance, rtol=0)
            ids = [pid for pid, _ in rows]
            mismatched += ids != expected["product_id"].tolist()
            # any difference in order is a tie within the rounding of the stored vectors
            by_id = dict(zip(expected["product_id"], expected["distance"]))
            for pid, distance in rows:
                assert pid in by_id or abs(distance - expected["distance"].iloc[-1]) <= tolerance
    if kind == "vector":
        assert mismatched == 0


def test_another_model_is_refused_and_nothing_is_written(tmp_path, database):
    sync_index(_index(tmp_path / "a", 50, model="model-a"), database, verbose=False)
    before = _rows(database)
    with pytest.raises(InvalidArgumentError, match=r"embedded differently \(model: tables 'model-a', index 'model-b'"):
        sync_index(_index(tmp_path / "b", 60, model="model-b"), database, verbose=False)
    assert _rows(database) == before
    # other tables take it
    report = sync_index(tmp_path / "b", database, products_table="other_products", verbose=False)
    assert report.added == 60


def _cli_fails(capsys, *argv):
    assert main(["sync", *map(str, argv), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simrec: error: "), err
    return err


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, server, capsys):
    index = _index(tmp_path / "idx", 30)
    assert "Expected a database URL" in _cli_fails(capsys, index, "mysql://shop@localhost/shop")
    err = _cli_fails(capsys, index, f"postgresql://shop:secret@/shop?host={tmp_path}")  # no server there
    assert "cannot connect to" in err and "secret" not in err

    # a database without pgvector, and a role that may not create it
    name = f"bare{next(_names)}"
    bare = server.create_database(name)
    server.sql("CREATE ROLE clerk LOGIN")
    server.sql(f'GRANT CREATE ON DATABASE "{name}" TO clerk; GRANT CREATE ON SCHEMA public TO clerk', database=name)
    clerk = server.url(name, role="clerk")
    assert "permission denied to create extension" in _cli_fails(capsys, index, clerk)
    assert _tables(bare) == []

    # pgvector there, but no permission to create tables
    server.sql("CREATE EXTENSION vector", database=name)
    server.sql("REVOKE CREATE ON SCHEMA public FROM clerk", database=name)
    assert "lacks a permission" in _cli_fails(capsys, index, clerk)
    assert _tables(bare) == []

    # a table of the same name that simrec did not write
    server.sql("CREATE TABLE simrec_products (product_id integer PRIMARY KEY, name text)", database=name)
    err = _cli_fails(capsys, index, bare)
    assert "public.simrec_products" in err and "is not one simrec wrote" in err
    assert _tables(bare) == ["simrec_products"] and _rows(bare, columns="product_id, name") == {}

    assert "--products-table" in _cli_fails(capsys, index, bare, "--products-table", "Bad-Name")
    assert "unknown: price" in _cli_fails(capsys, index, bare, "--photo", "https://cdn/{price}")
    assert "pass --neighbors K" in _cli_fails(capsys, index, bare, "--distinct")


def test_missing_client_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'simrec\[postgres\]'"):
        sync_index(tmp_path, "postgresql://shop@/shop")


def test_the_cli_says_what_it_wrote(tmp_path, database, capsys):
    index = _index(tmp_path / "idx", 40)
    assert main(["sync", str(index), database, "--neighbors", "3", "-q"]) == 0
    assert "added 40, changed 0, removed 0, unchanged 0; recommendations rewritten for 40 products (120 rows)" in (
        capsys.readouterr().out
    )
    assert main(["sync", str(index), database, "-q"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert main(["sync", str(index), database, "--neighbors", "0", "-q"]) == 0
    assert _rows(database, "simrec_recommendations", "product_id, rank") == {}


# A kill before the commit leaves the previous catalog; from the commit on, the new one.
BEFORE_COMMIT = ["sync-locked", "sync-deleted", "sync-product@1", "sync-product@15", "sync-products-written"]
BEFORE_COMMIT += ["sync-recommendations-written", "sync-before-commit"]


def _kill_at(moment, index, url):
    env = dict(os.environ, SIMREC_CRASH_AT=moment, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-m", "simrec", "sync", str(index), url, "-q"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, (moment, done.returncode, done.stderr[-2000:])


def _catalog(url):
    products = _rows(url, columns="product_id, encode(digest, 'hex')")
    recommendations = _rows(url, "simrec_recommendations", "product_id || ':' || rank, neighbor_id")
    state = _rows(url, "simrec_products_sync", "generation, dim")
    return products, recommendations, state


def test_kill_at_every_moment_of_a_sync_leaves_the_previous_catalog(tmp_path, server):
    template = f"pristine{next(_names)}"
    pristine = server.create_database(template, vector=True)
    sync_index(_index(tmp_path / "idx", 120), pristine, n_neighbors=4, verbose=False)
    old = _catalog(pristine)
    _index(tmp_path / "idx", 140, drop=range(5), changed=(40, 41))
    new = None
    for moment in [*BEFORE_COMMIT, "sync-committed"]:
        url = server.create_database(f"trial{next(_names)}", template=template)
        _kill_at(moment, tmp_path / "idx", url)
        survived = _catalog(url)
        assert survived == (old if moment != "sync-committed" else new or survived), moment
        report = sync_index(tmp_path / "idx", url, verbose=False)
        assert report.wrote == (moment != "sync-committed"), moment
        new = new or _catalog(url)
        assert _catalog(url) == new and new != old
    assert len(new[0]) == 135

    # killed during a first sync into a fresh database: no table is left at all
    fresh = server.create_database(f"fresh{next(_names)}", vector=True)
    _kill_at("sync-product@30", tmp_path / "idx", fresh)
    assert _tables(fresh) == []


def test_the_product_page_sql_of_the_docs_answers_and_uses_the_hnsw_index(tmp_path, database):
    import psycopg

    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "postgres.md").read_text(), flags=re.S)
    precomputed, live = (block.replace("$1", "%(id)s").rstrip().rstrip(";") for block in blocks[:2])
    sync_index(_index(tmp_path / "idx", 3000), database, n_neighbors=10, verbose=False)
    with psycopg.connect(database) as connection:
        connection.execute("ANALYZE simrec_products")
        rows = connection.execute(precomputed, {"id": "p0007"}).fetchall()
        stored = connection.execute(
            "SELECT rank, neighbor_id FROM simrec_recommendations WHERE product_id = 'p0007' ORDER BY rank"
        ).fetchall()
        assert [(rank, pid) for rank, pid, *_ in rows] == stored and len(rows) == 10
        plan = "\n".join(line for (line,) in connection.execute("EXPLAIN " + live, {"id": "p0007"}).fetchall())
        assert "Index Scan using simrec_products_embedding_hnsw" in plan, plan
        found = connection.execute(live, {"id": "p0007"}).fetchall()
        assert len(found) == 10 and "p0007" not in [row[0] for row in found]
        assert len({row[0] for row in found} & {pid for _, pid in stored}) >= 8  # approximate, close to exact
