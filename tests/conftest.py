"""Shared fixtures: tiny photos written to tmp_path and one small untrained extractor (helpers: tests/photos.py)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from photos import COLOURS, SMALL, write_image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def colour_tree(tmp_path: Path) -> Path:
    """Colors_Products/{red,green,blue}/item_{1..4}.jpg with small jitter."""
    rng = np.random.default_rng(0)
    root = tmp_path / "Colors_Products"
    for name, colour in COLOURS.items():
        for i in range(1, 5):
            jitter = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
            write_image(root / name / f"item_{i}.jpg", jitter, size=(40 + 8 * i, 36))
    return root


@pytest.fixture
def colour_zip(colour_tree: Path, tmp_path: Path) -> Path:
    zip_path = tmp_path / "Colors_Products.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(colour_tree.rglob("*.jpg")):
            archive.write(path, path.relative_to(colour_tree.parent).as_posix())
        archive.writestr("__MACOSX/Colors_Products/red/._item_1.jpg", b"junk")
        archive.writestr("Colors_Products/.DS_Store", b"junk")
        archive.writestr("Colors_Products/notes.txt", b"hello")
    return zip_path


@pytest.fixture(scope="session")
def extractor():
    """One small untrained extractor for the whole test run."""
    from simrec import build_extractor

    return build_extractor(weights=None, image_size=SMALL, seed=0)


@pytest.fixture
def embedded(colour_tree, extractor):
    """The 12-photo colour catalog, embedded with the small extractor."""
    from simrec import EmbeddedCatalog, embed_images, load_catalog

    catalog, skipped = load_catalog(colour_tree)
    result = embed_images(catalog["path"], extractor, verbose=False)
    return EmbeddedCatalog.from_embeddings(catalog, result, extractor, skipped)
