"""Load test of `simrec serve` with Debian's `wrk` (`apt-get install wrk`), so the clients are not Python.

    python benchmarks/load.py                              # --workers 1 and 2, 15 s per endpoint
    python benchmarks/load.py --workers 2 --seconds 30 --connections 16
    python benchmarks/load.py --source /path/to/other/simrec   # the same load on another checkout

Two indexes are served from a temporary folder, each by ``simrec serve`` in a child
process on a loopback port:

* 20,000 x 2048 generated vectors (``simrec.save_vectors``; ``--items``, ``--dim``), whose
  products name 24 generated photos, with stored neighbors (``simrec neighbors``; not with
  ``--no-stored``, and not for a ``--source`` whose simrec does not look them up), for id
  queries (``GET /api/products/{id}/similar?k=10``),
  product pages (``GET /api/products?limit=50``) and photos (``GET /images/{id}``);
* 24 generated photos embedded by ResNet50 at 224 px (untrained weights), for photo
  uploads (``POST /api/similar``, multipart).

Each endpoint is driven by its Lua script in ``benchmarks/wrk/`` for ``--seconds`` with
``--connections`` connections on one wrk thread, at each ``--workers`` count. Printed per
run: requests/s, p50 and p99 latency (wrk's), answers 2xx / 503 / other, socket errors,
and the load average before and after (other processes share these cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "wrk"
sys.path.insert(0, str(ROOT / "tests"))  # the helpers for a server in a child process, shared with the tests

from processes import free_port, tree_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="simrec serve --workers values")
    parser.add_argument("--seconds", type=int, default=15, help="length of each endpoint's run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--source", type=Path, default=ROOT, help="the simrec checkout whose serve is measured")
    parser.add_argument("--endpoints", nargs="+", default=["similar", "products", "photos", "upload"])
    parser.add_argument(
        "--no-stored", action="store_true", help="serve the vectors index without stored neighbors (id queries scan)"
    )
    args = parser.parse_args()
    if args.photos < 10:
        parser.error(f"--photos must be at least 10 (each upload asks for 10 similar products), got {args.photos}")
    if shutil.which("wrk") is None:
        raise SystemExit("benchmarks/load.py needs wrk: apt-get install wrk")
    args.source = args.source.resolve()
    from simrec.bench import cpu_name

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; simrec from {args.source}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="simrec-load-") as folder:
        folder = Path(folder)
        photos = _photos(folder / "photos", args.photos)
        vectors = _vectors_index(folder / "vectors", args.items, args.dim, photos)
        if not args.no_stored:
            started = time.perf_counter()
            from simrec.app.precompute import store_neighbors

            # The photos are moved aside meanwhile, so duplicates are judged by the vectors alone: 20,000 products
            # sharing 24 photos would have each photo decoded again for every product whose neighbors it is among.
            # Only the distinct lists depend on it, and no query here asks for them.
            aside = photos[0].parents[1].with_name("photos-aside")
            photos[0].parents[1].rename(aside)
            store_neighbors(vectors)
            aside.rename(photos[0].parents[1])
            size = sum(p.stat().st_size for p in vectors.glob("neighbor_*")) / 1e6
            seconds = time.perf_counter() - started
            print(f"stored neighbors of {args.items:,} products in {seconds:.1f} s, {size:.1f} MB", flush=True)
        ids_file = folder / "ids.txt"
        ids_file.write_text("".join(quote(f"c{i % 50:02d}/item_{i}", safe="/") + "\n" for i in range(args.items)))
        photo_index = _photo_index(folder / "photo-index", photos, args.image_size, args.source)
        for workers in args.workers:
            plan = {
                "similar": (vectors, "similar.lua", [str(ids_file), "10"]),
                "products": (vectors, "products.lua", [str(args.items)]),
                "photos": (vectors, "photos.lua", [str(ids_file)]),
                "upload": (photo_index, "upload.lua", [str(p) for p in photos[:8]]),
            }
            for index_dir in (vectors, photo_index):
                endpoints = [e for e in args.endpoints if plan[e][0] == index_dir]
                if not endpoints:
                    continue
                with _server(index_dir, workers, args.source) as (url, pid):
                    if index_dir == photo_index:
                        _upload_once(url, photos[0])
                    for endpoint in endpoints:
                        _, script, script_args = plan[endpoint]
                        before = _load_average()
                        result = _wrk(url, script, script_args, args.seconds, args.connections)
                        result.update(workers=workers, endpoint=endpoint, load_before=before)
                        result["load_after"] = _load_average()
                        result["server_rss_mb"] = tree_rss_mb(pid)
                        rows.append(result)
                        _print_row(result)
    print(json.dumps(rows))


def _print_row(row: dict) -> None:
    rate = row["requests"] / row["seconds"]
    print(
        f"workers {row['workers']}  {row['endpoint']:<9} {rate:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  "
        f"p99 {row['p99_ms']:8.1f} ms  2xx {row['ok']}  503 {row['busy_503']}  other {row['other_status']}  "
        f"socket errors {row['socket_errors']}  server RSS {row['server_rss_mb']:.0f} MB  "
        f"load {row['load_before']} -> {row['load_after']}",
        flush=True,
    )


def _wrk(url: str, script: str, script_args: list[str], seconds: int, connections: int) -> dict:
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s"]
    argv += ["-s", str(SCRIPTS / script), url, "--", *script_args]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "SIMREC_WRK_DIR": str(SCRIPTS)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return json.loads(lines[-1])


def _photos(directory: Path, n: int) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    paths = []
    for i in range(n):
        image = Image.new("RGB", (600, 800), tuple(int(c) for c in rng.integers(0, 256, 3)))
        ImageDraw.Draw(image).ellipse((100, 150, 500, 650), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        path = directory / f"{['red', 'blue', 'green'][i % 3]}" / f"item_{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        image.save(path, quality=90)
        paths.append(path)
    return paths


def _vectors_index(index_dir: Path, n_items: int, dim: int, photos: list[Path]) -> Path:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from simrec import save_vectors

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    labels = np.arange(n_items) % 50
    vectors = centres[labels] + 0.5 * rng.normal(size=(n_items, dim)).astype(np.float32)
    catalog = pd.DataFrame(
        {
            "product_id": [f"c{c:02d}/item_{i}" for i, c in enumerate(labels)],
            "label": [f"c{c:02d}" for c in labels],
            "path": [str(photos[i % len(photos)]) for i in range(n_items)],
        }
    )
    return save_vectors(catalog, vectors, index_dir, model="generated")


def _photo_index(index_dir: Path, photos: list[Path], image_size: int, source: Path) -> Path:
    root = photos[0].parents[1]
    argv = [sys.executable, "-m", "simrec", "index", str(root), "--out", str(index_dir)]
    argv += ["--weights", "random", "--image-size", str(image_size), "-q"]
    subprocess.run(argv, check=True, env=_env(source), cwd=source, stderr=subprocess.DEVNULL)
    return index_dir


def _env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source)}


def _upload_once(url: str, photo: Path) -> None:
    """One upload before measuring: an older simrec builds its model on the first one."""
    import httpx

    data = photo.read_bytes()
    httpx.post(f"{url}/api/similar", files={"image": ("q.jpg", data)}, timeout=300).raise_for_status()


class _server:
    """``simrec serve`` in a child process on a free loopback port, stopped on exit."""

    def __init__(self, index_dir: Path, workers: int, source: Path) -> None:
        self.index_dir, self.workers, self.source = index_dir, workers, source

    def __enter__(self) -> tuple[str, int]:
        port = free_port()
        argv = [sys.executable, "-m", "simrec", "serve", str(self.index_dir), "--port", str(port)]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        # From the checkout's folder: python -m puts the working folder first on the path.
        self.process = subprocess.Popen(argv, env=_env(self.source), cwd=self.source, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                for _ in range(2 * self.workers):  # new connections: every worker has started
                    with urllib.request.urlopen(url + "/health", timeout=5):
                        pass
                return url, self.process.pid
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("simrec serve did not start") from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
