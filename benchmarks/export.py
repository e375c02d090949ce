"""Time and peak memory of `simrec export` (every product's k nearest neighbors).

    python benchmarks/export.py                         # 100,000 x 2048 vectors, k=10, Parquet
    python benchmarks/export.py --items 20000 --dim 2048 --format csv

Writes generated vectors to an index with ``simrec.save_vectors``, opens it memory-mapped
as ``simrec export`` does, and exports every product's neighbors. Prints the seconds,
the peak memory allocated during the export (``tracemalloc``: numpy's arrays included,
the memory-mapped vectors not, as they stay in the page cache) and the process's peak
resident size, next to the size of the full n x n distance matrix the blocks avoid.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()

    from simrec import load_index, save_vectors
    from simrec.app.export import export_neighbors

    with tempfile.TemporaryDirectory(prefix="simrec-export-") as folder:
        folder = Path(folder)
        rng = np.random.default_rng(0)
        vectors = np.empty((args.items, args.dim), dtype=np.float32)
        for start in range(0, args.items, 10_000):  # in blocks, to keep this script's own peak low
            stop = min(start + 10_000, args.items)
            vectors[start:stop] = rng.standard_normal((stop - start, args.dim), dtype=np.float32)
        catalog = pd.DataFrame({"product_id": [f"item_{i}" for i in range(args.items)]})
        catalog["label"] = [f"label_{i % 20}" for i in range(args.items)]
        save_vectors(catalog, vectors, folder / "index", model="generated")
        del vectors, catalog
        embedded = load_index(folder / "index", mmap=True)
        out = folder / f"recs.{args.format}"
        tracemalloc.start()
        started = time.perf_counter()
        report = export_neighbors(embedded, out, n_neighbors=args.k, verbose=False)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = out.stat().st_size
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"export {args.items} x {args.dim}, k={args.k}, {args.format}: {report.rows} rows, {size / 1e6:.1f} MB file")
    print(f"seconds {seconds:.1f} ({args.items / seconds:.0f} products/s)")
    print(
        f"peak_allocated_mb {peak / 1024**2:.1f} during the export (a full {args.items} x {args.items} float32 "
        f"distance matrix would be {args.items**2 * 4 / 1024**2:.0f} MB; the vectors are "
        f"{args.items * args.dim * 4 / 1024**2:.0f} MB, memory-mapped)"
    )
    print(f"peak_rss_mb {rss_mb:.0f} (whole process, including the generated vectors and mapped pages)")


if __name__ == "__main__":
    main()
