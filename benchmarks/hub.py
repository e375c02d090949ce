"""Speed of the KerasHub backbones (DINOv2, SigLIP 2, CLIP) on this machine, in one run.

    python benchmarks/hub.py                          # the tiny test presets and every named backbone
    python benchmarks/hub.py --tiny-only              # the tiny test presets only (seconds)
    python benchmarks/hub.py --model dinov2-small --model clip-vit-b32

Each backbone is built with untrained weights (``build_extractor("random", model=NAME)``; the
speed does not depend on the weights, and nothing is downloaded) and its forward pass timed on
Keras: ``Model.predict`` of 16 random images, batch 8, float32, best of 2. The tiny presets are
the ones the tests save (32 px, two layers of width 16), loaded from a folder as a shop's own
preset would be. It prints the CPU and the load average before and after: rows measured while the
load changed do not compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def speed(model, rng: np.random.Generator, n_images: int = 16, batch: int = 8) -> float:
    """Images per second of ``model.predict``, best of 2, after one warm-up batch."""
    size = model.input_shape[1]
    images = rng.integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    model.predict(images[:batch], batch_size=batch, verbose=0)
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        model.predict(images, batch_size=batch, verbose=0)
        best = min(best, time.perf_counter() - started)
    return n_images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="named backbones to time (default: every one)")
    parser.add_argument("--tiny-only", action="store_true", help="time the tiny test presets only")
    args = parser.parse_args()

    import hub_presets

    from simrec.bench import cpu_name
    from simrec.core.hub_backbones import HUB_BACKBONES
    from simrec.pipeline.model import build_extractor

    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f}")
    print("| model | dim | input px | parameters | img/s, model only |")
    print("| --- | --- | --- | --- | --- |")

    def row(name: str, model) -> None:
        print(
            f"| {name} | {model.output_shape[-1]} | {model.input_shape[1]} | {model.count_params():,} | "
            f"{speed(model, rng):.2f} |",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="simrec-hub-") as folder:
        for family, save in (
            ("dinov2", hub_presets.save_dinov2),
            ("siglip", hub_presets.save_siglip),
            ("clip", hub_presets.save_clip),
        ):
            preset = save(Path(folder) / family)
            row(f"tiny {family}", build_extractor(str(preset), model=family, runtime="keras"))
    if not args.tiny_only:
        names = args.model or [name for name, spec in HUB_BACKBONES.items() if spec.preset]
        for name in names:
            row(name, build_extractor("random", model=name, runtime="keras"))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
