"""Would a float16 copy of the vectors make the exact scan faster? One query's scan, measured, and its exactness bound.

    python benchmarks/half_scan.py --items 20000 --dim 2048 --queries 30

What cannot be looked up in the stored neighbors (a photo upload, another colour weight) is
answered by scanning every vector: ``(n, d)`` float32, ``4 n d`` bytes a query. A float16
copy halves the bytes; its distances are off by more than float32's, but by a provable
bound, so re-ranking the candidates within that bound canonically (``simrec.search.rerank``)
would keep the answers identical. This measures, in one run and interleaved, one query's
fast distances over generated vectors by:

* ``float32``: the exact search's own scan (one matrix-vector product, all cores);
* ``float16 numpy``: a float16 copy, converted to float32 block by block, then the same product;
* ``float16 faiss``: ``faiss.IndexScalarQuantizer(d, QT_fp16, METRIC_INNER_PRODUCT)`` on the unit
  vectors, top ``k + 16`` (faiss is an optional extra: skipped without it);

and prints the median milliseconds, the bytes each reads, and the bound on a float16
distance next to float32's, with the number of candidates within it of the 10th neighbor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from simrec.bench import cpu_name
from simrec.search.exact import CosineNeighbors
from simrec.search.rerank import cosine_bound

HALF_ROUNDOFF = 2.0**-11
"""float16's unit roundoff: a normal float16 is within ``2**-11`` of the value it rounds, relatively."""
HALF_SUBNORMAL_STEP = 2.0**-24
"""The spacing of float16's subnormals (below ``2**-14``): one is within half of it, ``2**-25``, absolutely."""


def half_bound(dim: int) -> float:
    """Most a float16-copy cosine distance can differ from the canonical one.

    With ``h_i`` the float16 of the float32 unit vector's ``x_i``, ``|h_i - x_i| <= 2**-11 |x_i| + 2**-25``,
    so ``|Σ q_i h_i - Σ q_i x_i| <= 2**-11 Σ|q_i x_i| + 2**-25 Σ|q_i| <= 2**-11 + 2**-25 sqrt(d)`` for unit
    ``q`` and ``x`` (Cauchy-Schwarz); the float32 sum over ``h`` adds at most :func:`cosine_bound`
    (its ``Σ|q_i h_i|`` is at most ``1 + 2**-11``).
    """
    return 1.01 * (HALF_ROUNDOFF + HALF_SUBNORMAL_STEP / 2 * np.sqrt(dim)) + cosine_bound(dim) * (1 + HALF_ROUNDOFF)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--block-rows", type=int, default=4096)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, args.dim)).astype(np.float32)
    vectors = centres[np.arange(args.items) % 50] + 0.5 * rng.normal(size=(args.items, args.dim)).astype(np.float32)
    search = CosineNeighbors().fit(vectors)
    units = vectors * search._inv_norms[:, None]
    half = units.astype(np.float16)
    queries = units[rng.choice(args.items, args.queries, replace=False)]

    def float32_scan(q):
        return 1.0 - (vectors @ q) * search._inv_norms

    def float16_numpy(q):
        out = np.empty(args.items, dtype=np.float32)
        for start in range(0, args.items, args.block_rows):
            block = half[start : start + args.block_rows].astype(np.float32)
            out[start : start + len(block)] = block @ q
        return 1.0 - out

    methods = {"float32": (float32_scan, vectors.nbytes), "float16 numpy": (float16_numpy, half.nbytes)}
    try:
        import faiss

        index = faiss.IndexScalarQuantizer(args.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        index.train(units)
        index.add(units)

        def float16_faiss(q):
            return index.search(q[None, :], args.k + 16)

        methods["float16 faiss"] = (float16_faiss, index.sa_code_size() * args.items)
    except ImportError:
        print("faiss not installed: its float16 scan is skipped (pip install 'simrec[faiss]')")
    times: dict[str, list[float]] = {name: [] for name in methods}
    for q in queries:
        for name, (scan, _) in methods.items():
            started = time.perf_counter()
            scan(q)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["float32"])
    for name, (_, nbytes) in methods.items():
        median = statistics.median(times[name])
        print(f"{name:<14} {median * 1e3:7.2f} ms a query  {nbytes / 1e6:6.1f} MB read  speed-up x{base / median:.2f}")
    fast32, fast16 = float32_scan(queries[0]), float16_numpy(queries[0])
    kth = np.sort(fast32)[args.k - 1]
    bound32, bound16 = cosine_bound(args.dim), half_bound(args.dim)
    print(f"bound on a distance: float32 {bound32:.2e}, float16 copy {bound16:.2e}")
    print(f"largest float16 error seen: {np.abs(fast16 - fast32).max():.2e}")
    for name, fast, bound in (("float32", fast32, bound32), ("float16", fast16, bound16)):
        within = int((fast <= kth + 2 * bound).sum())
        print(f"candidates within 2 x bound of the {args.k}th distance ({name}): {within}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
