"""Speed of `simrec sync` and of live SQL kNN in PostgreSQL + pgvector, as ratios to simrec's own search.

    python benchmarks/postgres.py                          # 20,000 and 100,000 x 2048 vectors
    python benchmarks/postgres.py --sizes 20000 --queries 20

For each size: generated vectors (``simrec.bench.clustered_vectors``: clusters on a
low-dimensional subspace, like image embeddings; synthetic, not photos) are saved as an
index, synced into a fresh database of a throwaway server (tests/postgres.py) and then
1% of them are changed and synced again. Printed: rows per second of the first sync
(COPY and the HNSW index build, in one transaction) and of the 1% re-sync (rows written
per second of the whole sync, which also reads every product's digest); per-query latency
of ``ORDER BY embedding <=> $1 LIMIT 10`` scanning every row (exact) and through the HNSW
index (``hnsw.ef_search`` 40, pgvector's default, and 100), and of simrec's exact search
(``CosineNeighbors.kneighbors`` for one vector) in the same run, with their ratios; and
HNSW recall@10 against SQL exact search. The server gets ``maintenance_work_mem=1GB`` so
the HNSW graph is built in memory. Other processes share the cores: compare the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway server the tests use

from postgres import missing_server, start_server  # noqa: E402


def _latency(run, queries) -> float:
    """Median seconds per query."""
    times = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(server, n: int, dim: int, n_queries: int, folder: Path) -> dict[str, float]:
    import pandas as pd
    import psycopg
    from pgvector import HalfVector, Vector
    from pgvector.psycopg import register_vector

    from simrec import load_index, save_vectors, sync_index
    from simrec.bench import clustered_vectors
    from simrec.storage.postgres import vector_type

    vectors, _ = clustered_vectors(n, dim, seed=0)
    catalog = pd.DataFrame({"product_id": [f"p{i:07d}" for i in range(n)], "label": ["x"] * n})
    save_vectors(catalog, vectors, folder / "index", model="bench")
    url = server.create_database(f"bench{n}", vector=True)

    first = sync_index(folder / "index", url, verbose=False)
    changed = np.random.default_rng(1).choice(n, max(1, n // 100), replace=False)
    vectors[changed] = clustered_vectors(len(changed), dim, seed=2)[0]
    save_vectors(catalog, vectors, folder / "index", model="bench")
    again = sync_index(folder / "index", url, verbose=False)
    assert again.changed == len(changed), again

    embedded = load_index(folder / "index")
    search = embedded.neighbors
    rows = np.random.default_rng(3).choice(n, n_queries, replace=False)
    queries = [vectors[row] for row in rows]
    wrap = HalfVector if vector_type(dim) == "halfvec" else Vector
    sql = "SELECT product_id FROM simrec_products ORDER BY embedding <=> %s LIMIT 10"
    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)

        def ask(query):
            # never prepared: a plan cached while index scans were off would stay a full scan
            vector = wrap(query / np.linalg.norm(query))
            return [r[0] for r in connection.execute(sql, [vector], prepare=False).fetchall()]

        connection.execute("SET enable_indexscan = off")
        exact_ids = [ask(q) for q in queries]
        sql_exact = _latency(ask, queries)
        connection.execute("SET enable_indexscan = on")
        # At 100,000 rows PostgreSQL 15's planner may cost a parallel full scan below the HNSW index:
        # the approximate figures are the index's, so the full scan is ruled out (EXPLAIN checks it below).
        connection.execute("SET enable_seqscan = off")
        figures = {}
        for ef in (40, 100):
            connection.execute(f"SET hnsw.ef_search = {ef}")
            found = [ask(q) for q in queries]
            figures[f"hnsw_ef{ef}_s"] = _latency(ask, queries)
            figures[f"recall_at_10_ef{ef}"] = float(
                np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_ids)])
            )
        plan = connection.execute(f"EXPLAIN {sql}", [wrap(queries[0])]).fetchall()
        assert any("hnsw" in line[0] for line in plan), plan
    simrec_exact = _latency(lambda q: search.kneighbors(q[None, :], n_neighbors=10), queries)
    simrec_ids = [
        embedded.catalog["product_id"].iloc[search.kneighbors(q[None, :], n_neighbors=10)[1][0]].tolist()
        for q in queries
    ]
    agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, simrec_ids)])
    return {
        "first_sync_rows_per_s": first.added / first.seconds,
        "first_sync_s": first.seconds,
        "resync_rows_per_s": again.changed / again.seconds,
        "resync_s": again.seconds,
        "sql_exact_s": sql_exact,
        "simrec_exact_s": simrec_exact,
        "sql_exact_vs_simrec_top10_overlap": float(agreement),
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    reason = missing_server()
    if reason:
        sys.exit(f"benchmarks/postgres.py needs a PostgreSQL server with pgvector: {reason}")
    server = start_server({"maintenance_work_mem": "1GB"})
    from simrec.bench import cpu_name

    print(f"CPU: {cpu_name()}; vectors: synthetic clustered, {args.dim}-d; {args.queries} queries, k=10")
    try:
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix="simrec-pg-bench-") as folder:
                f = measure(server, n, args.dim, args.queries, Path(folder))
            print(f"\n{n:,} x {args.dim}:")
            print(f"  first sync: {f['first_sync_rows_per_s']:,.0f} rows/s ({f['first_sync_s']:.1f}s, with HNSW build)")
            print(f"  1% re-sync: {f['resync_rows_per_s']:,.0f} rows/s ({f['resync_s']:.1f}s)")
            print(f"  simrec exact search: {f['simrec_exact_s'] * 1e3:.2f} ms/query")
            print(
                f"  SQL exact: {f['sql_exact_s'] * 1e3:.2f} ms/query; "
                f"ratio sql_exact/simrec_exact={f['sql_exact_s'] / f['simrec_exact_s']:.2f}; "
                f"top-10 overlap with simrec {f['sql_exact_vs_simrec_top10_overlap']:.3f}"
            )
            for ef in (40, 100):
                latency = f[f"hnsw_ef{ef}_s"]
                print(
                    f"  SQL HNSW ef_search={ef}: {latency * 1e3:.2f} ms/query; "
                    f"ratio sql_hnsw/simrec_exact={latency / f['simrec_exact_s']:.2f}; "
                    f"recall@10 vs exact {f[f'recall_at_10_ef{ef}']:.3f}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
