"""Stored neighbors answer exactly as the scan does: the same ids, order and distances.

A small index of real shop photos with planted copies (ImageNet MobileNet 0.25, colour
signatures, the default colour weight 0.15, photos compared for ``distinct``) is checked for
every product; a larger index of generated vectors and colour signatures for a sample, at
weight 0.15 and 0.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from planted_copies import WEIGHTS, missing_reason, plant_copies

from simrec import EmbeddedCatalog, IndexMeta, build_index, load_index, recommend
from simrec.app.precompute import compute_stored_neighbors, store_neighbors, with_stored_neighbors
from simrec.core.colour_signature import N_BINS
from simrec.core.defaults import STORED_NEIGHBORS
from simrec.pipeline.model import build_extractor


def _scanned(embedded: EmbeddedCatalog) -> EmbeddedCatalog:
    """The same loaded version without its stored neighbors: every query scans."""
    copy = EmbeddedCatalog(
        embedded.catalog, embedded.embeddings, embedded.meta, embedded.failures, embedded.inverse_norms,
        embedded.colours, embedded.ann,
    )  # fmt: skip
    return copy


def _same_answers(stored: EmbeddedCatalog, scanned: EmbeddedCatalog, product_ids, ks, distinct_too=True) -> int:
    checked = 0
    for product_id in product_ids:
        for k in ks:
            for distinct in (False, True) if distinct_too else (False,):
                a = recommend(stored, product_id=product_id, n_neighbors=k, distinct=distinct)
                b = recommend(scanned, product_id=product_id, n_neighbors=k, distinct=distinct)
                assert a["product_id"].tolist() == b["product_id"].tolist(), (product_id, k, distinct)
                assert a["distance"].tolist() == b["distance"].tolist(), (product_id, k, distinct)  # bit for bit
                checked += 1
    return checked


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    reason = missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("stored")
    plant_copies(folder / "photos", n_photos=90, n_copies=18)
    extractor = build_extractor(WEIGHTS, model="mobilenet-0.25")
    build_index(folder / "photos", folder / "index", extractor=extractor, verbose=False)
    return folder / "index"


def test_every_product_of_a_real_shop_index_is_answered_as_the_scan_answers(shop):
    embedded = load_index(shop, mmap=True)
    stored = embedded.stored_neighbors
    assert stored is not None and stored.n_neighbors == STORED_NEIGHBORS and stored.colour_weight == 0.15
    assert embedded.meta.stored_neighbors == {"n_neighbors": STORED_NEIGHBORS, "colour_weight": 0.15}
    scanned = _scanned(embedded)
    ids = embedded.catalog["product_id"].tolist()
    assert _same_answers(embedded, scanned, ids, (1, 5, STORED_NEIGHBORS)) == len(ids) * 6
    # The planted copies are left out of distinct lists, so those differ from the ranked ones somewhere.
    assert (stored.rows[:, 0] != stored.rows[:, 1]).any()


def test_queries_the_stored_neighbors_do_not_cover_scan(shop, monkeypatch):
    embedded = load_index(shop, mmap=True)
    product_id = embedded.catalog["product_id"].iloc[3]
    calls = []
    search = embedded.neighbors
    original = type(search).kneighbors
    monkeypatch.setattr(type(search), "kneighbors", lambda self, *a, **kw: calls.append(1) or original(self, *a, **kw))
    recommend(embedded, product_id=product_id, n_neighbors=STORED_NEIGHBORS)  # stored weight 0.15: blend, no scan
    recommend(embedded, product_id=product_id, n_neighbors=5, colour_weight=0)  # another weight: a scan
    assert len(calls) == 1
    big = recommend(embedded, product_id=product_id, n_neighbors=STORED_NEIGHBORS + 5)  # k > K: scanned
    assert (
        big["product_id"].tolist()[:STORED_NEIGHBORS]
        == recommend(embedded, product_id=product_id, n_neighbors=STORED_NEIGHBORS)["product_id"].tolist()
    )


def _generated(n_items: int, dim: int, seed: int = 0) -> EmbeddedCatalog:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim)).astype(np.float32)
    labels = rng.integers(0, 40, n_items)
    vectors = centres[labels] + 0.7 * rng.normal(size=(n_items, dim)).astype(np.float32)
    vectors[5] = vectors[4]  # exact ties: ordered by row on both paths
    colours = rng.dirichlet(np.full(N_BINS, 0.05), size=n_items).astype(np.float32)
    catalog = pd.DataFrame({"product_id": [f"p{i}" for i in range(n_items)], "path": "", "label": labels.astype(str)})
    meta = IndexMeta(model="generated", weights="external", count=n_items, dim=dim, colour_signature=None)
    return EmbeddedCatalog(catalog, vectors, meta, colours=colours)


@pytest.mark.parametrize("with_colours", [True, False])
def test_a_sample_of_a_larger_index_is_answered_as_the_scan_answers(tmp_path, with_colours):
    from simrec import save_index

    embedded = _generated(3000, 96)
    if not with_colours:
        embedded.colours = None
    save_index(with_stored_neighbors(embedded), tmp_path / "index")
    loaded = load_index(tmp_path / "index", mmap=True)
    assert loaded.stored_neighbors.colour_weight == (0.15 if with_colours else 0.0)
    sample = [f"p{i}" for i in np.random.default_rng(1).choice(3000, 150, replace=False)] + ["p4", "p5"]
    assert _same_answers(loaded, _scanned(loaded), sample, (1, 7, STORED_NEIGHBORS)) == len(sample) * 6


def test_stored_neighbors_equal_one_query_at_a_time():
    embedded = _generated(500, 32)
    stored = compute_stored_neighbors(embedded, 8)
    blend = recommend  # the scan as recommend runs it, one product at a time
    for row in range(0, 500, 7):
        frame = blend(embedded, product_id=f"p{row}", n_neighbors=8)
        distances, rows = stored.lookup(row, 8)
        assert [f"p{r}" for r in rows] == frame["product_id"].tolist()
        assert distances.tolist() == frame["distance"].astype(np.float32).tolist()


def test_store_neighbors_commits_and_removes_them(tmp_path):
    from simrec import save_vectors

    embedded = _generated(200, 16)
    save_vectors(embedded.catalog, embedded.embeddings, tmp_path / "index", model="generated")
    assert load_index(tmp_path / "index").stored_neighbors is None  # save_vectors stores none
    added = store_neighbors(tmp_path / "index", 12)
    assert added.stored_neighbors.n_neighbors == 12 and added.stored_neighbors.colour_weight == 0.0
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "index").glob("neighbor_*")) == [
        "neighbor_distances",
        "neighbor_rows",
    ]
    removed = store_neighbors(tmp_path / "index", store=False)
    assert removed.stored_neighbors is None and not list((tmp_path / "index").glob("neighbor_*"))
    assert "stored_neighbors" not in removed.meta.to_dict()
