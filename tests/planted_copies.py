"""Real shop photos with planted copies of several kinds, and their MobileNet 0.25 ImageNet vectors.

Used by the duplicate tests and ``benchmarks/duplicates.py``. The photos are
``../shared/data/fashion-small``; the vectors come from Keras's MobileNet v1 (alpha 0.25,
ImageNet weights from ``../shared/weights``), computed here with Keras directly on the
photos as simrec decodes them, and written as an index with :func:`simrec.save_vectors`.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from paths import SHARED
from PIL import Image, ImageEnhance, ImageOps

PHOTOS = SHARED / "data" / "fashion-small" / "images"
WEIGHTS = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
MODEL = "mobilenet-0.25"

KINDS = ("identical", "png", "upscale-q60", "crop-6%", "mirror", "brightness+12%")
"""The planted kinds of copy: the same bytes; a PNG re-encode; 1.5x upscale re-saved at JPEG
quality 60; 6% cut from every border; a mirror image; brightness +12%."""


SPLIT_KINDS = (
    "identical",
    "png",
    "upscale-q60",
    "downscale",
    "crop-8%",
    "mirror",
    "brightness+12%",
    "brightness-12%",
)
"""The kinds of copy planted on a part of the photos by ``benchmarks/duplicates.py``: the same
bytes; a PNG re-encode; 1.5x upscale at JPEG quality 60; half the size (Lanczos, quality 90);
up to 8% cut from each border, a different amount per border (quality 90); a mirror image;
brightness +12% and -12% (quality 90)."""


def missing_reason() -> str | None:
    """Why the real photos or weights cannot be used here, or None."""
    if not PHOTOS.is_dir():
        return f"real photos not found at {PHOTOS}"
    if not WEIGHTS.is_file():
        return f"MobileNet 0.25 ImageNet weights not found at {WEIGHTS}"
    return None


def plant_copies(out: Path, n_photos: int, n_copies: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copy ``n_photos`` real photos to ``out`` and plant ``n_copies`` copies, the kinds in turn.

    Returns:
        ``(catalog, truth)``: the catalog (``product_id``, ``path``, ``sha256``) of every
        photo, copies included; and one row per copy: ``original``, ``copy`` (product ids)
        and ``kind``.
    """
    rng = np.random.default_rng(seed)
    files = sorted(PHOTOS.glob("*.jpg"))
    chosen = [files[i] for i in sorted(rng.choice(len(files), n_photos, replace=False))]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for file in chosen:
        shutil.copyfile(file, out / file.name)
        paths.append(out / file.name)
    truth = []
    for j, source in enumerate(rng.choice(n_photos, n_copies, replace=False).tolist()):
        kind = KINDS[j % len(KINDS)]
        copy = make_copy(chosen[source], kind, out / f"copy{j:04d}_{chosen[source].stem}")
        paths.append(copy)
        truth.append({"original": chosen[source].stem, "copy": copy.stem, "kind": kind})
    catalog = pd.DataFrame(
        {
            "product_id": [p.stem for p in paths],
            "path": [str(p) for p in paths],
            "sha256": [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths],
        }
    )
    return catalog, pd.DataFrame(truth, columns=["original", "copy", "kind"])


def mobilenet_vectors(paths: list[str], batch_size: int = 64) -> np.ndarray:
    """``(len(paths), 256)`` float32 MobileNet 0.25 ImageNet vectors of the photos as simrec decodes them."""
    import keras

    from simrec import load_image

    model = keras.applications.MobileNet(
        alpha=0.25, include_top=False, weights=str(WEIGHTS), input_shape=(224, 224, 3), pooling="avg"
    )
    out = np.empty((len(paths), 256), dtype=np.float32)
    for start in range(0, len(paths), batch_size):
        pixels = np.stack([load_image(p) for p in paths[start : start + batch_size]]).astype(np.float32)
        batch = keras.applications.mobilenet.preprocess_input(pixels)
        out[start : start + len(pixels)] = np.asarray(model(batch, training=False))
    return out


def planted_index(folder: Path, n_photos: int, n_copies: int, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """An index folder of planted photos with MobileNet 0.25 vectors, and the planted truth."""
    from simrec import save_vectors

    catalog, truth = plant_copies(folder / "photos", n_photos, n_copies, seed)
    vectors = mobilenet_vectors(catalog["path"].tolist())
    save_vectors(catalog, vectors, folder / "index", model=MODEL)
    return folder / "index", truth


def copy_groups(catalog: pd.DataFrame, truth: pd.DataFrame) -> dict[str, int]:
    """The true group of every product that has a copy: planted pairs, and photos with the same bytes."""
    links = list(zip(truth["original"], truth["copy"]))
    for _, same in catalog.groupby("sha256")["product_id"]:
        same = list(same)
        links += [(same[0], other) for other in same[1:]]
    roots = _linked(links)
    names = sorted(set(roots.values()))
    return {item: names.index(root) for item, root in roots.items()}


def score(found_pairs: list[tuple[str, str]], catalog: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Recall (planted copies whose pair ends up in one found group), precision (found pairs that are
    true copies) and the recall of each kind."""
    groups = copy_groups(catalog, truth)
    roots = _linked(found_pairs)
    hit = [roots.get(o, o) == roots.get(c, c) for o, c in zip(truth["original"], truth["copy"])]
    correct = [a in groups and groups.get(a) == groups.get(b) for a, b in found_pairs]
    per_kind = {kind: float(np.mean([h for h, k in zip(hit, truth["kind"]) if k == kind])) for kind in KINDS}
    return {
        "recall": float(np.mean(hit)),
        "precision": float(np.mean(correct)) if correct else 1.0,
        "pairs": len(found_pairs),
        "false_pairs": [pair for pair, ok in zip(found_pairs, correct) if not ok],
        "per_kind_recall": per_kind,
    }


def _linked(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Every item of ``pairs`` -> one item of the group the pairs link it into (union-find)."""
    parent: dict[str, str] = {}

    def root(item: str) -> str:
        parent.setdefault(item, item)
        while parent[item] != item:
            item = parent[item]
        return item

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    return {item: root(item) for item in list(parent)}


def make_copy(source: Path, kind: str, stem: Path, rng: np.random.Generator | None = None) -> Path:
    """Write one copy of ``source`` of a kind of :data:`KINDS` or :data:`SPLIT_KINDS`; its path (``stem``, a suffix)."""
    if kind == "identical":
        shutil.copyfile(source, stem.with_suffix(".jpg"))
        return stem.with_suffix(".jpg")
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    if kind == "png":
        image.save(stem.with_suffix(".png"))
        return stem.with_suffix(".png")
    if kind == "upscale-q60":
        image.resize((round(width * 1.5), round(height * 1.5)), Image.Resampling.BICUBIC).save(
            stem.with_suffix(".jpg"), quality=60
        )
        return stem.with_suffix(".jpg")
    if kind == "downscale":
        image.resize((max(1, round(width * 0.5)), max(1, round(height * 0.5))), Image.Resampling.LANCZOS).save(
            stem.with_suffix(".jpg"), quality=90
        )
        return stem.with_suffix(".jpg")
    if kind == "crop-8%":
        cut = (rng or np.random.default_rng(0)).uniform(0.0, 0.08, 4)
        image = image.crop(
            (
                round(cut[0] * width),
                round(cut[1] * height),
                width - round(cut[2] * width),
                height - round(cut[3] * height),
            )
        )
    elif kind == "brightness-12%":
        image = ImageEnhance.Brightness(image).enhance(0.88)
    elif kind == "crop-6%":
        dx, dy = round(width * 0.06), round(height * 0.06)
        image = image.crop((dx, dy, width - dx, height - dy))
    elif kind == "mirror":
        image = ImageOps.mirror(image)
    elif kind == "brightness+12%":
        image = ImageEnhance.Brightness(image).enhance(1.12)
    image.save(stem.with_suffix(".jpg"), quality=90)
    return stem.with_suffix(".jpg")
