"""Scan-time benchmark: recognising photos by content against the former extension-only scan.

    python benchmarks/scan.py --files 20000 --photo-share 0.2 --rounds 7

Writes a catalog folder of small non-image files (text, JSON, CSV, HTML, binary blobs,
each starting with different bytes) and photos (JPEG, PNG, WebP), then times, in this one
run and interleaved, ``simrec.load_catalog`` on it and the scan simrec did before photos
were recognised by content (kept below, as it was, for the comparison). Pillow's plugins
are loaded before timing; their one-off loading cost per process (measured in a fresh
process) is printed separately, and with it added. Prints one line per figure and a final
``ratio ...`` line.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from simrec.core.records import Failure
from simrec.pipeline.catalog import _catalog_root, load_catalog
from simrec.pipeline.images import register_openers

# The extension-only scan simrec used before, unchanged apart from names ----------------

_OLD_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def _old_is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _old_walk(directory: Path) -> tuple[list[Path], list[Failure]]:
    files: list[Path] = []
    skipped: list[Failure] = []
    real_root = directory.resolve()
    for current, dirnames, filenames in os.walk(directory, followlinks=False):
        current_path = Path(current)
        for name in sorted(dirnames):
            sub = current_path / name
            if _old_is_hidden(name):
                dirnames.remove(name)
                skipped.extend(
                    Failure(str(p), "skipped: hidden or __MACOSX metadata file")
                    for p in sorted(sub.rglob("*"))
                    if not p.is_dir()
                )
            elif sub.is_symlink():
                dirnames.remove(name)
                skipped.append(Failure(str(sub), "skipped: symbolic link to a folder"))
        for name in sorted(filenames):
            if name.startswith(".simrec"):
                continue
            path = current_path / name
            reason = _old_file_refusal(path, name, real_root)
            if reason is None:
                files.append(path)
            else:
                skipped.append(Failure(str(path), reason))
    return files, skipped


def _old_file_refusal(path: Path, name: str, real_root: Path) -> str | None:
    if _old_is_hidden(name):
        return "skipped: hidden or __MACOSX metadata file"
    if path.suffix.lower() not in _OLD_EXTENSIONS:
        return f"skipped: not an image file (extension {path.suffix or 'none'!r})"
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(real_root):
            return f"skipped: symbolic link pointing outside the catalog ({target})"
        if not target.is_file():
            return "skipped: broken symbolic link"
    if not path.is_file():
        return "skipped: not a regular file"
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "skipped: file name is not valid UTF-8 (rename the file)"
    return None


def _old_rows(files: list[Path], root: Path) -> tuple[pd.DataFrame, list[Failure]]:
    rows: dict[str, tuple[str, str, str]] = {}
    skipped: list[Failure] = []
    root = root.absolute()
    for path in sorted(files, key=lambda p: p.as_posix()):
        path = path.absolute()
        if not path.is_relative_to(root):
            skipped.append(Failure(str(path), "skipped: outside the catalog root folder"))
            continue
        relative = path.relative_to(root)
        product_id = relative.with_suffix("").as_posix()
        label = relative.parts[0] if len(relative.parts) > 1 else ""
        if product_id in rows:
            first = rows[product_id][1]
            skipped.append(
                Failure(str(path), f"skipped: duplicate product_id {product_id!r} (already used by {Path(first).name})")
            )
            continue
        rows[product_id] = (product_id, str(path), label)
    return pd.DataFrame(sorted(rows.values()), columns=["product_id", "path", "label"]), skipped


def extension_only_catalog(directory: Path) -> tuple[pd.DataFrame, list[Failure]]:
    """The former scan of a folder: walk, refuse by extension, build the rows."""
    files, skipped = _old_walk(directory)
    root = _catalog_root(directory, [(str(path), "") for path in files])
    catalog, more = _old_rows(files, root)
    return catalog, skipped + more


# The corpus ---------------------------------------------------------------------------


def write_corpus(root: Path, n_files: int, photo_share: float, seed: int = 0) -> None:
    """``n_files`` files in 20 label folders; about ``photo_share`` of them photos."""
    rng = np.random.default_rng(seed)
    photos = []
    for fmt, suffix in [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")]:
        pixels = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt)
        photos.append((suffix, buffer.getvalue()))
    texts = [
        (".txt", "{i} product description: red cotton shirt, size {i}\n"),
        (".json", '{{"id{i}": {i}, "price": 9.5, "colour": "red"}}'),
        (".csv", "sku_{i},name,price\n{i},shirt,9.50\n"),
        (".html", "<!-- page {i} --><html><body>shirt {i}</body></html>"),
        (".md", "# Product {i}\n\nA red shirt.\n"),
    ]
    for i in range(n_files):
        folder = root / f"label_{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if rng.random() < photo_share:
            suffix, data = photos[rng.choice(3, p=[0.7, 0.2, 0.1])]  # mostly JPEG, as in shops
            (folder / f"photo_{i}{suffix}").write_bytes(data)
        elif i % 7 == 0:
            (folder / f"blob_{i}.bin").write_bytes(rng.bytes(int(rng.integers(100, 2000))))
        else:
            suffix, template = texts[i % len(texts)]
            (folder / f"note_{i}{suffix}").write_text(template.format(i=i))


def _plugin_seconds() -> float:
    """What :func:`register_openers` costs a fresh process (PIL.Image itself already imported)."""
    code = (
        "import time; from PIL import Image; t = time.perf_counter(); Image.init(); "
        "from pillow_heif import register_heif_opener; register_heif_opener(); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--photo-share", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the corpus (default: a temp folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch) / "shop"
        write_corpus(root, args.files, args.photo_share)

        register_openers()
        old_catalog, old_skipped = extension_only_catalog(root)  # warm the page cache for both
        new_catalog, new_skipped = load_catalog(root)
        assert len(old_catalog) == len(new_catalog), (len(old_catalog), len(new_catalog))
        times: dict[str, list[float]] = {"extension": [], "content": []}
        for _ in range(args.rounds):
            for name, scan in (("extension", extension_only_catalog), ("content", load_catalog)):
                started = time.perf_counter()
                scan(root)
                times[name].append(time.perf_counter() - started)

    old, new = statistics.median(times["extension"]), statistics.median(times["content"])
    print(f"corpus: {args.files:,} files, {len(new_catalog):,} photos, {len(new_skipped):,} other files")
    print(f"formats: {', '.join(f'{k.lower()} {v:,}' for k, v in new_catalog['format'].value_counts().items())}")
    print(f"extension-only scan: median {old:.3f}s of {args.rounds} ({old / args.files * 1e6:.1f} us/file)")
    print(f"content scan (load_catalog): median {new:.3f}s of {args.rounds} ({new / args.files * 1e6:.1f} us/file)")
    plugins = _plugin_seconds()
    print(f"one-off per process: loading Pillow's plugins and pillow-heif {plugins * 1000:.0f} ms")
    print(f"ratio with that one-off cost added to the content scan: {(new + plugins) / old:.2f}")
    print(f"ratio content/extension-only: {new / old:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
