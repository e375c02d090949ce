"""Find the same product photographed twice, and keep copies out of recommendations.

A **duplicate** is a second photo of the same product: the same file (``exact``, from
the catalog's ``sha256``) or a transformed copy (``near``: re-encoded, resized, mirrored,
cropped a little, made brighter). :func:`find_duplicates` finds them in two stages:

1. **Candidates** from the index's own vectors: each product's ``n_candidates`` nearest
   within the cosine ``threshold``, from the exact search in blocks of bounded memory, or
   the approximate structure when the index has one (:func:`simrec.search.pairs.close_pairs`);
   never an ``n x n`` matrix. And, when photos are compared, from the photos' own pixels:
   each product's :data:`~simrec.core.defaults.PIXEL_CANDIDATES` nearest by pixel vector
   (:func:`simrec.pipeline.thumbnails.pixel_vectors`, a mirror image included) within
   :data:`~simrec.core.defaults.PIXEL_THRESHOLD`, which finds copies the network places far
   apart (half-size copies of small photos).
2. **Verification** of each candidate pair by its photos
   (:mod:`simrec.pipeline.thumbnails`): once aligned (a crop of up to 10% of each border,
   a scale, a mirror), a copy's photo differs by at most ``photo_threshold`` and a
   look-alike product's by more. Every photo is decoded once for its pixel vector (only the
   candidates' photos with ``pixel_candidates=False``).

An index of vectors made outside simrec (no readable photos) uses the vector stage alone,
with the tighter :data:`~simrec.core.defaults.VECTOR_DUPLICATE_THRESHOLD`, and the report
says so. When photos are compared, a pair is a copy only when it is proven one: the same
bytes, or photos that match. A candidate pair with a photo that cannot be read (deleted
from the photo store, damaged) is not judged by its vectors, whose distances between
look-alike products are as small as between copies: it is counted in
:attr:`DuplicateReport.unverified`, and the report's note says how many and names a photo.
:class:`DuplicateTest` is the same test for one pair at a time, as ``distinct``
recommendations use it (:mod:`simrec.app.distinct`): a pair within the vectors' ``threshold``
whose photos match. It does not decode every photo of the catalog for pixel vectors, so a copy
found only by its pixels is listed by :func:`find_duplicates` but not left out of distinct
results: remove such copies from the catalog with the list.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simrec.core.defaults import (
    DUPLICATE_CANDIDATES,
    DUPLICATE_THRESHOLD,
    PHOTO_DUPLICATE_THRESHOLD,
    PIXEL_CANDIDATES,
    PIXEL_THRESHOLD,
    VECTOR_DUPLICATE_THRESHOLD,
)
from simrec.core.durability import NewFile, fsync_file, is_no_room, no_room_error
from simrec.core.errors import ImageDecodeError, InvalidArgumentError, MissingDependencyError, NotWritableError
from simrec.core.validation import check_int, check_number_in, check_suffix
from simrec.embedded_catalog import EmbeddedCatalog, pair_distances
from simrec.pipeline.thumbnails import (
    PIXEL_GRID,
    photo_pixels,
    photo_thumbnails,
    pixel_vectors,
    thumbnail_difference,
)
from simrec.search.exact import CosineNeighbors
from simrec.search.pairs import close_pairs, mirrored_close_pairs

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["product_id", "duplicate_id", "distance", "kind", "difference", "group"]
"""Columns of :attr:`DuplicateReport.pairs`."""

GROUP_COLUMNS = ["group", "product_id", "keep", "n_pixels"]
"""Columns of :attr:`DuplicateReport.groups`, one row per product of a group."""

TABLE_SUFFIXES = (".parquet", ".csv")
"""The files :func:`write_duplicates` writes, by suffix (as ``simrec export``'s)."""

_THUMBNAIL_CACHE = 4096  # photos whose pyramids are kept (at most 26 KB each)
_PAIR_CACHE = 1 << 18  # pairs whose answer is kept (about 100 bytes each)
_TESTS: weakref.WeakKeyDictionary[EmbeddedCatalog, DuplicateTest] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class DuplicateReport:
    """What :func:`find_duplicates` found.

    Attributes:
        pairs: One row per duplicate pair: ``product_id`` and ``duplicate_id`` (str),
            ``distance`` (float64 cosine distance, 0 for ``exact``), ``kind`` (``"exact"``:
            the same bytes; ``"near"``: a transformed copy), ``difference`` (float64 photo
            difference of :func:`simrec.pipeline.thumbnails.thumbnail_difference`, NaN
            when the photos were not compared) and ``group`` (int).
        groups: One row per product in a group of duplicates: ``group`` (int, connected
            pairs), ``product_id``, ``keep`` (bool, the suggested photo to keep: the
            largest in pixels, or the first in catalog order) and ``n_pixels`` (int, 0
            when not decoded).
        threshold: Cosine distance bound of the candidates from the network's vectors.
        photo_threshold: Photo difference bound, or None when photos were not compared.
        model: What made the vectors (``meta.model``).
        photos_compared: Whether candidates were verified by their photos.
        candidates: Candidate pairs looked at.
        seconds: Wall time.
        note: Why photos were not compared (or how many could not be read), else None.
        unverified: Candidate pairs left unjudged because a photo could not be read
            (0 when photos are not compared).
        pixel_threshold: Cosine distance bound of the pixel vectors that gave candidates
            beside the vectors, or None when they were not used.
    """

    pairs: pd.DataFrame
    groups: pd.DataFrame
    threshold: float
    photo_threshold: float | None
    model: str
    photos_compared: bool
    candidates: int
    seconds: float
    note: str | None = None
    unverified: int = 0
    pixel_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"pairs": [...], "groups": [{"group", "keep", "product_ids"}], "threshold", "model", ...}``."""
        pairs = [
            {
                "product_id": str(row.product_id),
                "duplicate_id": str(row.duplicate_id),
                "distance": float(row.distance),
                "kind": str(row.kind),
                "difference": None if math.isnan(row.difference) else float(row.difference),
                "group": int(row.group),
            }
            for row in self.pairs.itertuples(index=False)
        ]
        groups = [
            {
                "group": int(group),
                "keep": str(members.loc[members["keep"], "product_id"].iloc[0]),
                "product_ids": members["product_id"].astype(str).tolist(),
            }
            for group, members in self.groups.groupby("group", sort=True)
        ]
        return {
            "pairs": pairs,
            "groups": groups,
            "threshold": self.threshold,
            "photo_threshold": self.photo_threshold,
            "model": self.model,
            "photos_compared": self.photos_compared,
            "candidates": self.candidates,
            "note": self.note,
            "unverified": self.unverified,
            "pixel_threshold": self.pixel_threshold,
        }


class DuplicateTest:
    """Whether two catalog products are duplicates: the same bytes, or close vectors and matching photos.

    Thumbnails are decoded on first use and the most recent few thousand kept, so a long
    run (an export) decodes each photo about once.

    Args:
        embedded: The index.
        threshold: Cosine distance bound (default: :data:`DUPLICATE_THRESHOLD` when photos
            are compared, :data:`VECTOR_DUPLICATE_THRESHOLD` when not).
        photo_threshold: Photo difference bound of a copy.
        photos: Compare photos: ``"auto"`` (when the catalog names readable photos),
            True (required) or False (vectors alone).

    Raises:
        InvalidArgumentError: A threshold out of range, ``photos`` other than ``"auto"``, True or False, or
            ``photos=True`` on an index without readable photos.
    """

    def __init__(
        self,
        embedded: EmbeddedCatalog,
        *,
        threshold: float | None = None,
        photo_threshold: float = PHOTO_DUPLICATE_THRESHOLD,
        photos: bool | str = "auto",
    ) -> None:
        self.embedded = embedded
        catalog = embedded.catalog
        self.note: str | None = None
        readable = _readable_photos(catalog)
        if photos == "auto":
            photos = readable
            if not readable:
                self.note = (
                    "the catalog names no readable photos (vectors made outside simrec?): "
                    "duplicates are judged by the vectors alone"
                )
        elif photos is True and not readable:
            raise InvalidArgumentError("photos=True, but the index's catalog names no readable photos")
        elif photos not in (True, False):
            raise InvalidArgumentError(f"Expected photos to be 'auto', True or False, got {photos!r}")
        self.photos_compared = bool(photos)
        default = DUPLICATE_THRESHOLD if self.photos_compared else VECTOR_DUPLICATE_THRESHOLD
        self.threshold = check_number_in(default if threshold is None else threshold, "threshold", 0, 2)
        self.photo_threshold = (
            check_number_in(photo_threshold, "photo_threshold", 0, 1) if self.photos_compared else None
        )
        hashes = catalog["sha256"].astype(str).to_numpy() if "sha256" in catalog.columns else None
        self._hashes = None if hashes is None else np.where(pd.isna(catalog["sha256"]), "", hashes)
        self._paths = (
            np.where(catalog["path"].isna(), "", catalog["path"].astype(str)) if "path" in catalog.columns else None
        )  # a row without a path names no photo
        self._thumbnails: OrderedDict[int, tuple[np.ndarray, int] | None] = OrderedDict()
        self.unreadable: set[int] = set()
        self.unverified = 0
        self._copies: OrderedDict[tuple[int, int], bool] = OrderedDict()
        self.first_unreadable: str | None = None
        self.warn_unreadable = True

    def same_bytes(self, first: int, second: int) -> bool:
        """Whether two catalog rows are the same file (equal, non-empty ``sha256``)."""
        if self._hashes is None:
            return False
        return bool(self._hashes[first]) and self._hashes[first] == self._hashes[second]

    def kind(self, first: int, second: int, distance: float) -> tuple[str | None, float]:
        """``("exact" | "near" | None, photo difference or NaN)`` for two catalog rows at a cosine distance."""
        if self.same_bytes(first, second):
            return "exact", 0.0
        if distance > self.threshold:
            return None, math.nan
        if not self.photos_compared:  # vectors made outside simrec: the vector stage alone
            return ("near" if distance <= min(self.threshold, VECTOR_DUPLICATE_THRESHOLD) else None), math.nan
        return self.photos_kind(first, second)

    def photos_kind(self, first: int, second: int) -> tuple[str | None, float]:
        """``("near" | None, photo difference or NaN)``: whether two rows' photos match, whatever the network's vectors.

        A pair with a photo that cannot be read is no proven copy: None, counted in :attr:`unverified`.
        """
        a, b = self.thumbnails(first), self.thumbnails(second)
        if a is None or b is None:
            self.unverified += 1
            return None, math.nan
        difference = thumbnail_difference(a[0], b[0])
        return ("near" if difference <= self.photo_threshold else None), difference

    def is_copy(self, first: int, second: int, distance: float) -> bool:
        """Whether two catalog rows are duplicates, as :meth:`kind` says; remembered for the pair.

        Only a pair within the network's :attr:`threshold` (or the same bytes) can be one: the
        pixel vectors' candidates are :func:`find_duplicates`'s alone.

        ``distance`` must be the pair's own cosine distance, the same whichever way round
        (as :func:`simrec.embedded_catalog.pair_distances` gives it), so the answer does not
        depend on who asks first. Distinct results ask about the same pairs again and again.
        """
        key = (first, second) if first <= second else (second, first)
        found = self._copies.get(key)
        if found is None:
            found = self.kind(key[0], key[1], distance)[0] is not None
            self._copies[key] = found
            if len(self._copies) > _PAIR_CACHE:
                self._copies.popitem(last=False)
        return found

    def n_pixels(self, row: int) -> int:
        """The row's photo's width times height (0 when photos are not compared or it cannot be read).

        From the thumbnails when they are kept, else from the file's header: nothing decoded,
        and the same answer whatever the thumbnails kept.
        """
        if not self.photos_compared or self._paths is None or not self._paths[row]:
            return 0
        kept = self._thumbnails.get(row)
        return kept[1] if kept is not None else photo_pixels(self._paths[row])

    def thumbnails(self, row: int) -> tuple[np.ndarray, int] | None:
        """The row's :func:`photo_thumbnails`, or None: photos not compared, no photo named, or it cannot be read."""
        if not self.photos_compared or self._paths is None or not self._paths[row]:
            return None
        if row in self._thumbnails:
            self._thumbnails.move_to_end(row)
            return self._thumbnails[row]
        try:
            found = photo_thumbnails(self._paths[row])
        except ImageDecodeError as error:
            if self.first_unreadable is None and self.warn_unreadable:  # once: a deleted store says it a thousand times
                logger.warning("%s; a pair with a photo that cannot be read is not judged a copy", error)
            self.first_unreadable = self.first_unreadable or str(error)
            found = None
        if found is None:
            self.unreadable.add(row)
        self._thumbnails[row] = found
        if len(self._thumbnails) > _THUMBNAIL_CACHE:
            self._thumbnails.popitem(last=False)
        return found


def find_duplicates(
    embedded: EmbeddedCatalog,
    *,
    threshold: float | None = None,
    photo_threshold: float = PHOTO_DUPLICATE_THRESHOLD,
    n_candidates: int = DUPLICATE_CANDIDATES,
    photos: bool | str = "auto",
    exact: bool = False,
    pixel_candidates: bool = True,
    verbose: bool = False,
) -> DuplicateReport:
    """Every pair of products that are the same photo, and their connected groups.

    Args:
        embedded: From :func:`simrec.load_index` (``mmap=True`` keeps the vectors on disk).
        threshold: Largest cosine distance of a candidate pair (default
            :data:`~simrec.core.defaults.DUPLICATE_THRESHOLD` when photos are compared,
            :data:`~simrec.core.defaults.VECTOR_DUPLICATE_THRESHOLD` for the vectors alone).
        photo_threshold: Largest photo difference of a copy (default
            :data:`~simrec.core.defaults.PHOTO_DUPLICATE_THRESHOLD`).
        n_candidates: Nearest neighbors of each product looked at.
        photos: ``"auto"`` compares photos when the catalog names readable ones; False
            uses the vectors alone; True requires photos.
        exact: Exact search even when the index has an approximate-search structure.
        pixel_candidates: When photos are compared, also take as candidates each product's
            :data:`~simrec.core.defaults.PIXEL_CANDIDATES` nearest by pixel vector
            within :data:`~simrec.core.defaults.PIXEL_THRESHOLD`, whatever the network's vectors'
            distance (:func:`simrec.pipeline.thumbnails.pixel_vectors`). This decodes every
            photo once (about 1 ms for a small one); False decodes only the candidates' photos
            and misses copies the network places far apart, such as half-size copies of small
            photos.
        verbose: Show a progress bar while the photos are read.

    Returns:
        A :class:`DuplicateReport`. Exact copies (equal ``sha256``) are always listed,
        with distance 0, whatever the network's vectors; each group's other exact copies are
        paired with its first product.

    Raises:
        InvalidArgumentError: A threshold or ``n_candidates`` out of range, ``pixel_candidates`` not a bool, or
            ``photos`` as :class:`DuplicateTest` refuses it.
        MissingDependencyError: The index has an ann structure, ``exact`` is False and faiss is not installed.

    Example:
        >>> report = find_duplicates(load_index("index", mmap=True))  # doctest: +SKIP
        >>> report.pairs.head()  # doctest: +SKIP
    """
    started = time.perf_counter()
    check_int(n_candidates, "n_candidates", 1)
    if not isinstance(pixel_candidates, (bool, np.bool_)):
        raise InvalidArgumentError(
            f"Expected pixel_candidates to be True or False, got {pixel_candidates!r}", parameters=("pixel_candidates",)
        )
    test = DuplicateTest(embedded, threshold=threshold, photo_threshold=photo_threshold, photos=photos)
    test.warn_unreadable = False  # the report's note says it, once
    catalog = embedded.catalog
    n_items = len(catalog)
    found: dict[tuple[int, int], tuple[float, str, float]] = {}
    if test._hashes is not None:
        for rows in pd.Series(np.arange(n_items)).groupby(test._hashes, sort=False):
            members = rows[1].to_numpy()
            if len(members) > 1 and test._hashes[members[0]]:
                for other in members[1:]:
                    found[(int(members[0]), int(other))] = (0.0, "exact", 0.0)
    if n_items > 1:
        first, second, distances = close_pairs(embedded.search(exact=exact), test.threshold, int(n_candidates))
    else:
        first, second, distances = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    for a, b, distance in zip(first.tolist(), second.tolist(), distances.tolist()):
        if test.same_bytes(a, b):
            continue  # listed with its group's first product
        kind, difference = test.kind(a, b, distance)
        if kind is not None:
            found[(a, b)] = (distance, kind, difference)
    n_candidates_seen = len(first)
    pixel_candidates = bool(pixel_candidates) and test.photos_compared
    if pixel_candidates and n_items > 1:
        looked_at = set(zip(first.tolist(), second.tolist()))
        approximate = embedded.ann is not None and not exact
        extra = [pair for pair in _pixel_pairs(test, n_items, approximate, verbose) if pair not in looked_at]
        n_candidates_seen += len(extra)
        if extra:
            rows = np.array(extra, dtype=np.int64)
            vector_distances = pair_distances(embedded, rows[:, 0], rows[:, 1])
            for (a, b), distance in zip(extra, vector_distances.tolist()):
                if test.same_bytes(a, b):
                    continue
                kind, difference = test.photos_kind(a, b)
                if kind is not None:
                    found[(a, b)] = (float(distance), kind, difference)
    pairs, groups = _tables(catalog, found, test)
    note = test.note
    if test.photos_compared and test.unreadable:
        photos = "1 photo" if len(test.unreadable) == 1 else f"{len(test.unreadable)} photos"
        if test.unverified:
            pairs_left = "1 candidate pair was" if test.unverified == 1 else f"{test.unverified} candidate pairs were"
            consequence = (
                f"so {pairs_left} not judged: a pair is reported only when its photos match or are the same file"
            )
        else:
            consequence = "so only a copy with the same bytes can be found for them"
        note = (
            f"{photos} could not be read ({test.first_unreadable}), {consequence}; "
            "'simrec verify' checks the index's photos"
        )
    report = DuplicateReport(
        pairs=pairs,
        groups=groups,
        threshold=test.threshold,
        photo_threshold=test.photo_threshold,
        model=embedded.meta.model,
        photos_compared=test.photos_compared,
        candidates=n_candidates_seen,
        seconds=time.perf_counter() - started,
        note=note,
        unverified=test.unverified,
        pixel_threshold=PIXEL_THRESHOLD if pixel_candidates else None,
    )
    logger.info(
        "%d duplicate pairs in %d groups from %d candidates", len(pairs), groups["group"].nunique(), n_candidates_seen
    )
    return report


def _pixel_pairs(test: DuplicateTest, n_items: int, approximate: bool, verbose: bool) -> list[tuple[int, int]]:
    """Candidate pairs ``(first, second)``, ``first < second``, by pixel vector (every photo read once).

    The search over the pixel vectors is exact, or HNSW when ``approximate`` (an index with an
    approximate structure, searched approximately): the vectors' search is too.
    """
    from tqdm.auto import tqdm

    found = []
    for row in tqdm(range(n_items), unit="photo", desc="pixel vectors", disable=not verbose):
        thumbnails = test.thumbnails(row)
        found.append(None if thumbnails is None else pixel_vectors(thumbnails[0]))
    length = PIXEL_GRID * PIXEL_GRID * 3
    vectors = np.zeros((n_items, length), dtype=np.float32)  # an unreadable photo's stays zero: no pair
    mirrored = np.zeros_like(vectors)
    for row, pair in enumerate(found):
        if pair is not None:
            vectors[row], mirrored[row] = pair
    if approximate:
        from simrec.search.approximate import approximate_search  # faiss is imported only here

        search = approximate_search(vectors)
    else:
        search = CosineNeighbors().fit(vectors)
    logger.info("searching the pixel vectors of %d photos", n_items)
    first, second, _ = mirrored_close_pairs(search, mirrored, PIXEL_THRESHOLD, PIXEL_CANDIDATES)
    return list(zip(first.tolist(), second.tolist()))


def write_duplicates(report: DuplicateReport, out: str | os.PathLike) -> Path:
    """Write :attr:`DuplicateReport.pairs` to a ``.csv`` or ``.parquet`` file (the suffix picks).

    Written under a temporary name and renamed into place, so ``out`` is complete or absent.

    Raises:
        InvalidArgumentError: Another suffix.
        MissingDependencyError: ``.parquet`` without pyarrow.
        DiskFullError: The disk has no room left (or is read-only); no file was written.
        NotWritableError: ``out`` cannot be written.
    """
    out = Path(out)
    suffix = check_suffix(out, "out", TABLE_SUFFIXES)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "writing .parquet needs pyarrow, which is not installed: pip install pyarrow (or write .csv)"
            ) from None
    partial = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)  # what a run killed earlier left
        with NewFile(partial) as raw, io.BufferedWriter(raw, 1024**2) as handle:
            if suffix == ".csv":
                report.pairs.to_csv(handle, index=False, encoding="utf-8")
            else:
                report.pairs.to_parquet(handle, index=False)
            handle.flush()
            fsync_file(raw)
        os.replace(partial, out)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if is_no_room(error):
            raise no_room_error(out, error, "no file was written") from None
        raise NotWritableError(f"cannot write {out}: {error.strerror or error}") from None
    return out


def copy_test_for(embedded: EmbeddedCatalog) -> DuplicateTest:
    """The default :class:`DuplicateTest` of a loaded index, made once and kept while it lives (with its thumbnails)."""
    test = _TESTS.get(embedded)
    if test is None:
        test = _TESTS[embedded] = DuplicateTest(embedded)
    return test


def _tables(
    catalog: pd.DataFrame, found: dict[tuple[int, int], tuple[float, str, float]], test: DuplicateTest
) -> tuple[pd.DataFrame, pd.DataFrame]:
    parent: dict[int, int] = {}

    def root(row: int) -> int:
        parent.setdefault(row, row)
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    for a, b in found:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members = sorted(parent)
    roots = {row: root(row) for row in members}
    numbers = {r: i for i, r in enumerate(sorted(set(roots.values())))}
    ids = catalog["product_id"].astype(str).to_numpy()
    sizes = catalog["size_bytes"].to_numpy() if "size_bytes" in catalog.columns else np.zeros(len(catalog))
    n_pixels = {row: test.n_pixels(row) for row in members}
    keep: dict[int, int] = {}
    for row in members:  # catalog order: the first of equals stays
        group = roots[row]
        best = keep.get(group)
        if best is None or (n_pixels[row], sizes[row]) > (n_pixels[best], sizes[best]):
            keep[group] = row
    groups = pd.DataFrame(
        {
            "group": [numbers[roots[row]] for row in members],
            "product_id": [ids[row] for row in members],
            "keep": [keep[roots[row]] == row for row in members],
            "n_pixels": [int(n_pixels[row]) for row in members],
        },
        columns=GROUP_COLUMNS,
    )
    ordered = sorted(found)
    pairs = pd.DataFrame(
        {
            "product_id": [ids[a] for a, _ in ordered],
            "duplicate_id": [ids[b] for _, b in ordered],
            "distance": np.array([found[p][0] for p in ordered], dtype=np.float64),
            "kind": [found[p][1] for p in ordered],
            "difference": np.array([found[p][2] for p in ordered], dtype=np.float64),
            "group": np.array([numbers[roots[a]] for a, _ in ordered], dtype=np.int64),
        },
        columns=PAIR_COLUMNS,
    )
    return pairs, groups


def _readable_photos(catalog: pd.DataFrame) -> bool:
    if "path" not in catalog.columns or len(catalog) == 0:
        return False
    paths = [str(p) for p in catalog["path"].head(16) if isinstance(p, str) and p]
    return bool(paths) and any(os.path.isfile(p) for p in paths)
