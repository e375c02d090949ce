"""Retrieval quality on real shop photos with real features, over the colour-weight sweep.

    python benchmarks/quality.py                                  # MobileNet v1 0.25, ImageNet weights
    python benchmarks/quality.py --index DIR                      # an index already made of the photos
    python benchmarks/quality.py --model resnet50 --weights random  # the untrained default, for comparison

Indexes every photo of ``../shared/data/fashion-small`` (4,776 real catalogue photos of a
fashion shop, labelled by the shop in ``styles.csv``) with simrec's own pipeline, by default
with the ImageNet-trained MobileNet v1 alpha 0.25 of ``../shared/weights``, then prints
leave-one-out precision@5 and mAP@5 for the product type (``articleType``), the colour
(``baseColour``) and both at once (same type *and* colour), at each colour weight, with
the chance level of each, and the colour weight chosen by the rule of simrec's default:
the largest joint gain that costs at most 0.01 of type precision.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "data" / "fashion-small"
WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
COLOUR_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0)
MAX_TYPE_LOSS = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="fashion-small (images/ and styles.csv)")
    parser.add_argument(
        "--index", dest="index_dir", type=Path, help="an index of those photos (default: made in a temporary folder)"
    )
    parser.add_argument("--model", default="mobilenet-0.25")
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("-k", type=int, default=5)
    args = parser.parse_args()
    if not (args.photos / "styles.csv").is_file():
        raise SystemExit(f"fashion-small not found at {args.photos} (see ../shared/data/fashion-small/README.md)")

    from simrec import build_index, load_index

    with tempfile.TemporaryDirectory(prefix="simrec-quality-") as folder:
        started = time.perf_counter()
        if args.index_dir is None:
            embedded, report = build_index(
                args.photos / "images", Path(folder) / "index", model=args.model, weights=args.weights, verbose=False
            )
            print(f"indexed {report.indexed} photos in {time.perf_counter() - started:.1f} s")
        else:
            embedded = load_index(args.index_dir, mmap=True)
        print_sweep(embedded, args.photos / "styles.csv", args.k)


def print_sweep(embedded, styles: Path, k: int) -> None:
    from simrec.app.evaluate import joint_labels, labels_from_table, sweep_colour_weight

    ids = embedded.catalog["product_id"]
    labellings = {
        "type": labels_from_table(ids, styles, "articleType"),
        "colour": labels_from_table(ids, styles, "baseColour"),
    }
    labellings["type and colour"] = joint_labels(labellings)
    sweep = sweep_colour_weight(embedded, labellings, n_neighbors=k, colour_weights=COLOUR_WEIGHTS)
    overall = sweep[sweep["label"] == "(all)"].set_index(["colour_weight", "labelling"])
    meta = embedded.meta
    print(
        f"{len(embedded)} photos of {styles.parent.name}; {meta.model} ({meta.weights}, "
        f"{meta.precision}, {meta.image_size} px); CPU: {cpu_name()}"
    )
    names = list(labellings)
    header = " | ".join(f"{name} P@{k} | {name} mAP@{k}" for name in names)
    print(f"\n| colour weight | {header} |")
    print("| --- " * (1 + 2 * len(names)) + "|")
    for weight in COLOUR_WEIGHTS:
        cells = " | ".join(
            f"{overall.loc[(weight, n), 'precision_at_k']:.3f} | {overall.loc[(weight, n), 'map_at_k']:.3f}"
            for n in names
        )
        print(f"| {weight:g} | {cells} |")
    chance = ", ".join(f"{n} {overall.loc[(0.0, n), 'chance_precision']:.3f}" for n in names)
    queries = ", ".join(f"{n} {int(overall.loc[(0.0, n), 'n'])}" for n in names)
    print(f"\nchance precision@{k}: {chance}; queries: {queries}")

    precision = overall["precision_at_k"].unstack("labelling")
    allowed = precision[precision["type"] >= precision.loc[0.0, "type"] - MAX_TYPE_LOSS]
    chosen = allowed.sort_values(["type and colour", "colour"], ascending=False).index[0]
    gain = precision.loc[chosen] - precision.loc[0.0]
    print(
        f"choice: colour weight {chosen:g} (the largest joint gain costing at most {MAX_TYPE_LOSS} of type "
        f"precision): type {gain['type']:+.3f}, colour {gain['colour']:+.3f}, type and colour "
        f"{gain['type and colour']:+.3f} against W=0"
    )


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
