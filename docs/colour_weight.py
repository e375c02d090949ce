"""Make the README's colour-weight figures from the harder synthetic catalog.

    python docs/colour_weight.py [WORK_DIR]

Writes docs/colour_weight.png (the same queries at colour weight 0 and 0.5) and
docs/colour_sweep.png (precision@5 and mAP@5 by colour and by product type against the
colour weight), and prints the sweep table. Uses untrained weights (``--weights random``)
unless ImageNet weights are cached.
"""

import sys
from pathlib import Path

from PIL import Image

import simrec
from simrec.pipeline.model import imagenet_available

DOCS = Path(__file__).resolve().parent
work = Path(sys.argv[1] if len(sys.argv) > 1 else "simrec-work/colour")
zip_path = simrec.make_synthetic_catalog(work / "Colors_Products.zip", realistic=True)
weights = "imagenet" if imagenet_available() else "random"
embedded, _ = simrec.build_index(zip_path, work / "index", weights=weights, verbose=False)

queries = ["red/shirt_1", "blue/bag_2", "yellow/shoe_3"]
results = [
    simrec.recommend(embedded, product_id=pid, n_neighbors=5, colour_weight=weight)
    for pid in queries
    for weight in (0.0, 0.5)
]
for table, weight in zip(results, [0.0, 0.5] * len(queries)):
    table.attrs["colour_weight"] = weight  # caption every row, W = 0 included
title = f"colour weight 0 (look only) vs 0.5, {weights} weights"
figure = simrec.plot_recommendation_grid(results, title=title, panel_size=1.5)
figure.savefig(DOCS / "colour_weight.png", dpi=72)
Image.open(DOCS / "colour_weight.png").convert("RGB").quantize(128).save(DOCS / "colour_weight.png", optimize=True)

types = simrec.label_from(embedded.catalog["product_id"], r"/([a-z]+)_\d+$")
sweep = simrec.sweep_colour_weight(embedded, {"colour": embedded.catalog["label"], "type": types}, n_neighbors=5)
simrec.plot_colour_sweep(sweep, title=f"harder synthetic catalog, {weights} weights").savefig(
    DOCS / "colour_sweep.png", dpi=80
)
overall = sweep[sweep["label"] == "(all)"]
print(overall.pivot(index="colour_weight", columns="labelling", values=["precision_at_k", "map_at_k"]).round(3))
