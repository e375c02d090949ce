"""Opening an index and querying it at a shop's scale: time and memory, measured in one run.

Writes an index of N x 2048 clustered float32 vectors (default N = 300,000: a 2.4 GB
embeddings file) with ``simrec.save_vectors``, then measures:

* ``simrec query IDX --id X`` as a new process: wall-clock seconds and peak resident memory;
* the Python API: ``load_index(mmap=True)``, the first query, and the median of the next 20;
* ``simrec verify IDX``: what checking every checksum costs (opening does not do it).

It ends with one ``ratio`` line. Targets on a 2-core machine at 300,000 x 2048: the command
at most 2.5 s and at most the embeddings file size plus 600 MB of memory; API queries after
the first at most 0.15 s.

Usage: python benchmarks/open_query.py [--items N] [--dim D] [--folder DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--folder", help="where to write the index (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the index folder")
    parser.add_argument("--write-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import simrec
    import simrec.storage.index_folder

    products = _products(args.items)
    if args.write_only:
        simrec.save_vectors(products, _clustered(args.items, args.dim), args.write_only, model="benchmark-vectors")
        return
    folder = Path(args.folder or tempfile.mkdtemp(prefix="simrec-open-"))
    index_dir = folder / "index"
    try:
        started = time.perf_counter()
        # Written by a child process, so that this one stays small: a child forked from a large
        # process would report that process's memory as its own peak.
        writer = [sys.executable, __file__, "--items", str(args.items), "--dim", str(args.dim)]
        subprocess.run([*writer, "--write-only", str(index_dir)], check=True)
        meta = simrec.storage.index_folder.read_meta(index_dir)
        file_mb = meta.files["embeddings"]["bytes"] / 1024**2
        print(f"wrote {args.items} x {args.dim} ({file_mb:.0f} MB embeddings) in {time.perf_counter() - started:.1f}s")

        product = products["product_id"].iloc[args.items // 2]
        cli_s, cli_mb = _run([sys.executable, "-m", "simrec", "query", str(index_dir), "--id", product, "-k", "10"])
        print(f"query_cli_s {cli_s:.2f}")
        print(f"query_cli_peak_mb {cli_mb:.0f} (embeddings file {file_mb:.0f} MB, over it {cli_mb - file_mb:.0f} MB)")

        started = time.perf_counter()
        embedded = simrec.load_index(index_dir, mmap=True)
        open_s = time.perf_counter() - started
        ids = products["product_id"].sample(21, random_state=0).tolist()
        started = time.perf_counter()
        simrec.recommend(embedded, product_id=ids[0], n_neighbors=10)
        first_s = time.perf_counter() - started
        times = []
        for pid in ids[1:]:
            started = time.perf_counter()
            simrec.recommend(embedded, product_id=pid, n_neighbors=10)
            times.append(time.perf_counter() - started)
        api_s = float(np.median(times))
        print(f"api_open_s {open_s:.2f}")
        print(f"api_first_query_s {first_s:.3f}")
        print(f"api_query_s {api_s:.3f} (median of {len(times)})")
        verify_s, _ = _run([sys.executable, "-m", "simrec", "verify", str(index_dir)])
        print(f"verify_cli_s {verify_s:.2f}")
        print(
            f"ratio query_cli_s/target={cli_s / 2.5:.2f} query_cli_extra_mb/target={(cli_mb - file_mb) / 600:.2f} "
            f"api_query_s/target={api_s / 0.15:.2f} verify_s/query_cli_s={verify_s / cli_s:.1f}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def _products(n: int) -> pd.DataFrame:
    return pd.DataFrame({"product_id": [f"sku/{i:07d}" for i in range(n)], "label": [f"c{i % 50}" for i in range(n)]})


def _clustered(n: int, dim: int, clusters: int = 200, block: int = 50_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        out[start:stop] = centres[rng.integers(0, clusters, stop - start)]
        out[start:stop] += 0.5 * rng.normal(size=(stop - start, dim)).astype(np.float32)
    return out


def _run(argv: list[str]) -> tuple[float, float]:
    """Wall-clock seconds and peak resident MB of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {child.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


if __name__ == "__main__":
    main()
