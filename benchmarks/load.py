"""Bounded load test of `simrec serve` on a loopback port.

    python benchmarks/load.py                       # 8 clients, 30 s per phase, 20,000 items
    python benchmarks/load.py --seconds 10 --items 5000

Phase 1 serves a 20,000 x 2048 index of generated vectors (``simrec.save_vectors``) and
asks for similar products by id (k=10) and for catalog pages. Phase 2 serves a small
index of real photos (ResNet50, untrained weights, 224 px) and uploads photos. Each phase
runs ``--clients`` threads, each with its own HTTP connection, for ``--seconds``, then
stops. Prints requests/s, p50 and p99 latency per endpoint and the error count; for
photo queries also the in-process rate of the same one-photo query without HTTP, and
the ratio, all measured in this one run.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--photos", type=int, default=24, help="photos in the phase-2 index")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    import httpx  # noqa: F401  (fail early if missing)

    with tempfile.TemporaryDirectory(prefix="simrec-load-") as folder:
        folder = Path(folder)
        vectors_index = _vectors_index(folder / "vectors", args.items, args.dim)
        product_ids = [f"c{i % 50:02d}/item_{i}" for i in range(args.items)]
        print(f"load average before: {_load_average()}")
        id_baseline = _in_process_id_rate(vectors_index, product_ids, seconds=min(args.seconds, 10.0), k=args.k)
        print(f"phase 1: {args.items} x {args.dim} vectors, {args.clients} clients, {args.seconds:.0f} s")
        with _server(vectors_index) as url:

            def id_request(client, rng):
                if rng.random() < 0.8:
                    product_id = product_ids[rng.randrange(len(product_ids))]
                    return "GET /api/products/{id}/similar", client.get(
                        f"{url}/api/products/{product_id}/similar", params={"k": args.k}
                    )
                offset = rng.randrange(0, args.items - 50)
                return "GET /api/products", client.get(f"{url}/api/products", params={"offset": offset, "limit": 50})

            stats = _report(_load(id_request, args.clients, args.seconds))
        served = stats.get("GET /api/products/{id}/similar", 0.0)
        print(
            f"id queries in-process, one at a time, no HTTP: {id_baseline:.1f}/s; served: {served:.1f}/s "
            f"(ratio {served / id_baseline:.2f})"
        )

        photos_index, photos = _photos_index(folder / "photos", args.photos, args.image_size)
        baseline, pipeline = _in_process_rates(photos_index, photos, seconds=min(args.seconds, 15.0))
        print(f"\nphase 2: {args.photos} photos at {args.image_size} px, {args.clients} clients, {args.seconds:.0f} s")
        contents = [p.read_bytes() for p in photos]
        with _server(photos_index) as url:
            _warm_up(url, contents[0])

            def photo_request(client, rng):
                if rng.random() < 0.8:
                    data = contents[rng.randrange(len(contents))]
                    return "POST /api/similar", client.post(
                        f"{url}/api/similar", params={"k": args.k}, files={"image": ("q.jpg", data, "image/jpeg")}
                    )
                return "GET /images/{id}", client.get(f"{url}/images/{_photo_id(photos[rng.randrange(len(photos))])}")

            stats = _report(_load(photo_request, args.clients, args.seconds))
        served = stats.get("POST /api/similar", 0.0)
        print(
            f"photo queries in-process, one at a time, no HTTP: {baseline:.2f}/s; served: {served:.2f}/s "
            f"(ratio {served / baseline:.2f})"
        )
        print(
            f"embedding pipeline (embed_images on the photo files, batch 32, as simrec bench's pipeline figure): "
            f"{pipeline:.2f} img/s; served photo queries / pipeline = {served / pipeline:.2f}"
        )
        print(f"load average after: {_load_average()} (other processes share these cores)")


def _vectors_index(directory: Path, n_items: int, dim: int) -> Path:
    import pandas as pd

    from simrec import save_vectors

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    labels = np.arange(n_items) % 50
    vectors = centres[labels] + 0.5 * rng.normal(size=(n_items, dim)).astype(np.float32)
    catalog = pd.DataFrame(
        {"product_id": [f"c{c:02d}/item_{i}" for i, c in enumerate(labels)], "label": [f"c{c:02d}" for c in labels]}
    )
    return save_vectors(catalog, vectors, directory, model="generated")


def _photos_index(directory: Path, n_photos: int, image_size: int) -> tuple[Path, list[Path]]:
    from simrec import make_synthetic_catalog
    from simrec.cli import main as simrec

    colours = ["red", "blue", "green", "yellow"]
    shapes = ["shirt", "bag", "shoe"]
    variants = max(1, n_photos // (len(colours) * len(shapes)))
    zip_path = make_synthetic_catalog(
        directory / "c.zip", colours=colours, shapes=shapes, n_variants=variants, image_size=256
    )
    index = directory / "index"
    argv = ["index", str(zip_path), "--out", str(index), "--weights", "random", "--image-size", str(image_size), "-q"]
    if simrec(argv) != 0:
        raise SystemExit("could not build the photo index")
    return index, sorted(index.rglob("*.jpg"))


def _photo_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _in_process_rates(index: Path, photos: list[Path], seconds: float) -> tuple[float, float]:
    """Photo queries per second in this process, one at a time (decode, embed, search; no HTTP),
    and the batched embedding pipeline's images per second."""
    from simrec import embed_images, load_index, recommend
    from simrec.app.querying import query_extractor

    embedded = load_index(index, mmap=True)
    extractor = query_extractor(embedded)
    recommend(embedded, image=photos[0], n_neighbors=10, extractor=extractor)  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        recommend(embedded, image=photos[count % len(photos)], n_neighbors=10, extractor=extractor)
        count += 1
    one_at_a_time = count / (time.perf_counter() - started)
    paths = [str(p) for p in photos] * max(1, 96 // len(photos))
    embed_images(paths[:32], extractor, batch_size=32, verbose=False)  # warm up
    started = time.perf_counter()
    embed_images(paths, extractor, batch_size=32, verbose=False)
    return one_at_a_time, len(paths) / (time.perf_counter() - started)


def _in_process_id_rate(index: Path, product_ids: list[str], seconds: float, k: int) -> float:
    """Similar-product queries per second in this process, one at a time, no HTTP."""
    from simrec import load_index, recommend

    embedded = load_index(index, mmap=True)
    rng = random.Random(1)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        recommend(embedded, product_id=product_ids[rng.randrange(len(product_ids))], n_neighbors=k)
        count += 1
    return count / (time.perf_counter() - started)


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


class _server:
    """``simrec serve`` in a child process on a free loopback port, stopped on exit."""

    def __init__(self, index: Path) -> None:
        self.index = index

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simrec", "serve", str(self.index), "--port", str(port)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    return url
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("simrec serve did not start") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _warm_up(url: str, photo: bytes) -> None:
    """The first photo query builds the model; keep that out of the figures."""
    import httpx

    httpx.post(f"{url}/api/similar", files={"image": ("q.jpg", photo, "image/jpeg")}, timeout=300).raise_for_status()


def _load(request, clients: int, seconds: float) -> tuple[dict[str, list[float]], dict[str, int], float]:
    import httpx

    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=60) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    name, response = request(client, rng)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    name, ok = "connection", False
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[name].append(elapsed)
                    if not ok:
                        errors[name] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def _report(measured) -> dict[str, float]:
    latencies, errors, wall = measured
    rates = {}
    print(f"{'endpoint':<34} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, values in sorted(latencies.items()):
        ms = np.array(values) * 1000
        rates[name] = len(values) / wall
        print(
            f"{name:<34} {len(values):>8} {rates[name]:>8.1f} {np.percentile(ms, 50):>8.1f} "
            f"{np.percentile(ms, 99):>8.1f} {errors.get(name, 0):>6}"
        )
    total = sum(len(v) for v in latencies.values())
    print(f"{'all':<34} {total:>8} {total / wall:>8.1f} {'':>8} {'':>8} {sum(errors.values()):>6}")
    return rates


if __name__ == "__main__":
    main()
