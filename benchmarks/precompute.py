"""What storing every product's nearest products costs at a commit, and what it saves per id query.

    python benchmarks/precompute.py                          # 20,000 x 2048, with and without colours
    python benchmarks/precompute.py --items 1000000 --dim 256 --sample 512

Generated vectors (50 clusters) and colour signatures (Dirichlet histograms), so the figures
are for synthetic data; what a commit does with them is what it does with real ones. Printed:

* the seconds of :func:`simrec.app.precompute.compute_stored_neighbors` for the whole catalog
  (ranked and distinct lists, ``K`` = ``--k``) at colour weight 0.15 (with colours) and 0;
* the bytes the two stored files add to the folder, beside the embeddings' bytes;
* the seconds of one id query by a scan (``recommend``) and by a lookup, and their ratio.

With ``--sample R`` the catalog is only scanned for ``R`` products (all-products blocks of
``R`` query rows each, and their distinct lists), and the whole is projected as
``items / R`` times that: every product costs the same scan of every vector, so the cost is
linear in the products asked for (and, for one of them, in the vectors scanned).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simrec import EmbeddedCatalog, IndexMeta, load_index, recommend, save_index  # noqa: E402
from simrec.app.distinct import distinct_neighbors  # noqa: E402
from simrec.app.duplicates import copy_test_for  # noqa: E402
from simrec.app.precompute import compute_stored_neighbors  # noqa: E402
from simrec.bench import cpu_name  # noqa: E402
from simrec.core.colour_signature import N_BINS  # noqa: E402
from simrec.embedded_catalog import default_colour_weight, neighbors_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=20, help="K: neighbors stored per product")
    parser.add_argument("--sample", type=int, default=0, help="scan for this many products and project (0: all)")
    parser.add_argument("--queries", type=int, default=20, help="id queries timed by scan and by lookup")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; {args.items:,} x {args.dim} generated vectors, K = {args.k}")
    rows = []
    for with_colours in (True, False):
        embedded = _generated(args.items, args.dim, with_colours)
        weight = default_colour_weight(embedded)
        started = time.perf_counter()
        if args.sample:
            seconds = _sampled_seconds(embedded, args.k, args.sample) * args.items / args.sample
            how = f"projected from {args.sample} products"
        else:
            embedded.stored_neighbors = compute_stored_neighbors(embedded, args.k)
            seconds = time.perf_counter() - started
            how = "measured"
        stored_bytes = args.items * 2 * args.k * (4 + 4)
        row = {
            "items": args.items,
            "dim": args.dim,
            "colour_weight": weight,
            "precompute_s": round(seconds, 1),
            "how": how,
            "stored_mb": round(stored_bytes / 1e6, 1),
            "embeddings_mb": round(args.items * args.dim * 4 / 1e6, 1),
        }
        if not args.sample:
            row.update(_query_seconds(embedded, args.k, args.queries))
        rows.append(row)
        print(row, flush=True)
    print(json.dumps(rows))


def _generated(n_items: int, dim: int, with_colours: bool) -> EmbeddedCatalog:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    labels = np.arange(n_items) % 50
    vectors = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 65536):  # bounded temporaries at a million rows
        stop = min(start + 65536, n_items)
        vectors[start:stop] = centres[labels[start:stop]] + 0.5 * rng.standard_normal((stop - start, dim), np.float32)
    colours = rng.dirichlet(np.full(N_BINS, 0.05), size=n_items).astype(np.float32) if with_colours else None
    catalog = pd.DataFrame({"product_id": [f"p{i}" for i in range(n_items)], "path": "", "label": labels.astype(str)})
    meta = IndexMeta(model="generated", weights="external", count=n_items, dim=dim)
    return EmbeddedCatalog(catalog, vectors, meta, colours=colours)


def _sampled_seconds(embedded: EmbeddedCatalog, k: int, sample: int) -> float:
    """Seconds of what compute_stored_neighbors does for ``sample`` products: their scan and distinct lists."""
    search = neighbors_for(embedded, default_colour_weight(embedded))
    test = copy_test_for(embedded)
    rows = np.arange(sample)
    fetch = 2 * k + 10
    started = time.perf_counter()
    options = (
        {"colours": embedded.colours[rows]} if embedded.colours is not None and search is not embedded.neighbors else {}
    )
    found, indices = search.kneighbors(embedded.embeddings[rows], n_neighbors=fetch + 1, **options)
    for j, row in enumerate(rows):
        keep = indices[j] != row
        colours = {"colours": embedded.colours[row]} if options else {}
        distinct_neighbors(
            test, search, k, query_row=int(row), search_options=colours, first=(found[j][keep], indices[j][keep])
        )
    return time.perf_counter() - started


def _query_seconds(embedded: EmbeddedCatalog, k: int, n_queries: int) -> dict:
    """One id query's seconds by scan and by lookup, from an index folder as the service opens it."""
    with tempfile.TemporaryDirectory() as folder:
        save_index(embedded, folder)
        loaded = load_index(folder, mmap=True)
        scanned = EmbeddedCatalog(
            loaded.catalog, loaded.embeddings, loaded.meta, loaded.failures, loaded.inverse_norms, loaded.colours
        )
        ids = loaded.catalog["product_id"].iloc[:: max(1, len(loaded) // n_queries)][:n_queries].tolist()
        times = {}
        for name, which in (("scan", scanned), ("lookup", loaded)):
            recommend(which, product_id=ids[0], n_neighbors=10)  # fit and warm
            started = time.perf_counter()
            for product_id in ids:
                recommend(which, product_id=product_id, n_neighbors=10)
            times[name] = (time.perf_counter() - started) / len(ids)
        folder_mb = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 1e6
    return {
        "scan_ms": round(1000 * times["scan"], 2),
        "lookup_ms": round(1000 * times["lookup"], 3),
        "speedup": round(times["scan"] / times["lookup"], 1),
        "folder_mb": round(folder_mb, 1),
    }


if __name__ == "__main__":
    main()
