"""Keras, OpenVINO float32 and OpenVINO int8 on real shop photos with real features, in one run.

    python benchmarks/runtime.py                      # MobileNet v1 0.25, ImageNet weights, fashion-small
    python benchmarks/runtime.py --limit 1000         # the first 1,000 photos only

Embeds the photos of ``../shared/data/fashion-small`` three times with simrec's own pipeline
(``build_index``): on Keras, on OpenVINO in float32 and on OpenVINO in int8 (quantised by NNCF,
calibrated on the catalog's own photos), then prints for each against Keras's vectors the
per-row cosine (lowest and mean), the top-5 overlap of the leave-one-out neighbours, the product
type precision@5, and the forward pass's speed on one batch of those photos (best of 3). It also
re-indexes the Keras index with OpenVINO and checks that nothing is embedded again.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "data" / "fashion-small"
WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="fashion-small (images/ and styles.csv)")
    parser.add_argument("--model", default="mobilenet-0.25")
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--limit", type=int, default=0, help="use the first N photos only (0: all)")
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    if not (args.photos / "styles.csv").is_file():
        raise SystemExit(f"fashion-small not found at {args.photos} (see ../shared/data/fashion-small/README.md)")

    from simrec import build_index
    from simrec.app.evaluate import evaluate, labels_from_table
    from simrec.bench import cpu_name
    from simrec.pipeline.embedding import compiled_forward
    from simrec.pipeline.images import load_image
    from simrec.pipeline.model import build_extractor
    from simrec.pipeline.runtime import row_cosines
    from simrec.search.exact import CosineNeighbors

    with tempfile.TemporaryDirectory(prefix="simrec-runtime-") as folder:
        source = args.photos / "images"
        if args.limit:
            source = Path(folder) / "photos"
            source.mkdir()
            for path in sorted((args.photos / "images").iterdir())[: args.limit]:
                shutil.copyfile(path, source / path.name)  # a catalog refuses links that point outside it
        runs = {"keras": ("keras", "float32"), "openvino": ("openvino", "float32"), "int8": ("auto", "int8")}
        indexes = {}
        for name, (runtime, precision) in runs.items():
            started = time.perf_counter()
            embedded, report = build_index(
                source,
                Path(folder) / name,
                model=args.model,
                weights=args.weights,
                runtime=runtime,
                precision=precision,
                verbose=False,
            )
            indexes[name] = embedded
            print(
                f"{name}: indexed {report.indexed} photos in {time.perf_counter() - started:.1f} s "
                f"(runtime {embedded.meta.runtime}, precision {embedded.meta.precision})"
            )
        _, again = build_index(source, Path(folder) / "keras", weights=args.weights, runtime="openvino", verbose=False)
        print(f"re-indexing the Keras index with OpenVINO embedded {again.embedded} photos again (0 expected)")

        reference = indexes["keras"]
        ids = reference.catalog["product_id"]
        types = labels_from_table(ids, args.photos / "styles.csv", "articleType")
        _, truth = CosineNeighbors(n_neighbors=args.k).fit(reference.embeddings).kneighbors()
        image_size = int(reference.meta.image_size)
        batch = np.stack([load_image(path, image_size) for path in reference.catalog["path"].iloc[:32]])
        print(
            f"\n{len(reference)} photos of {args.photos.name}; {reference.meta.model} ({reference.meta.weights}, "
            f"{image_size} px); CPU: {cpu_name()}; speed: forward pass on 32 of the photos, best of 3"
        )
        print("\n| run | lowest cosine | mean cosine | top-5 overlap | type P@5 | img/s | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        speeds = {}
        for name, embedded in indexes.items():
            assert (embedded.catalog["product_id"].to_numpy() == ids.to_numpy()).all()
            cosines = row_cosines(embedded.embeddings, reference.embeddings)
            _, found = CosineNeighbors(n_neighbors=args.k).fit(embedded.embeddings).kneighbors()
            overlap = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found, truth)])
            quality = evaluate(embedded.neighbors, types, n_neighbors=args.k)["precision_at_k"]
            runtime, precision = runs[name]
            calibration = batch if precision == "int8" else None
            extractor = build_extractor(
                args.weights, model=args.model, runtime=runtime, precision=precision, calibration=calibration
            )
            speeds[name] = _speed(compiled_forward(extractor), batch)
            ratio = f"{speeds[name] / speeds['keras']:.2f}x Keras"
            if name == "int8":
                ratio += f", {speeds['int8'] / speeds['openvino']:.2f}x float32"
            print(
                f"| {name} ({precision}) | {cosines.min():.6f} | {cosines.mean():.6f} | {overlap:.3f} | "
                f"{quality:.3f} | {speeds[name]:.0f} | {ratio} |"
            )


def _speed(forward, batch: np.ndarray, repeats: int = 3) -> float:
    forward(batch)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        forward(batch)
        best = max(best, len(batch) / (time.perf_counter() - started))
    return best


if __name__ == "__main__":
    main()
