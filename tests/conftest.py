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
def checkout(tmp_path_factory) -> Path:
    """What a user uploads: the repository's files, in a folder like GitHub's zip has."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("upload") / "simrec-main"
    folder.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(repo / name, folder / name)
    shutil.copytree(repo / "simrec", folder / "simrec", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="session")
def simrec_wheel(checkout, tmp_path_factory) -> Path:
    """simrec's wheel, built once per test run from the checkout, offline (no build isolation, no index)."""
    import subprocess
    import sys

    wheels = tmp_path_factory.mktemp("wheels")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(checkout)]
    build = subprocess.run(command, capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("simrec-*.whl")
    return wheel


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
