"""No public function changes the process's global random state.

Each check draws the next numbers of every global generator (Python's ``random``,
NumPy's legacy global, TensorFlow's op seeds and Keras's global ``SeedGenerator``)
after the call, and compares them with the draws a run without the call gives.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from photos import SMALL

import simrec


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # the test's own setup: all four generators
    tf.random.set_seed(seed)


def _next_draws() -> dict[str, list[float]]:
    import keras
    import tensorflow as tf

    return {
        "python random": [random.random() for _ in range(3)],
        "numpy global": np.random.random(3).tolist(),
        "tensorflow": tf.random.uniform([3]).numpy().tolist(),
        "keras global": keras.random.uniform((3,)).numpy().tolist(),
    }


def _draws_after(call) -> dict[str, list[float]]:
    _seed_everything(1234)
    call()
    return _next_draws()


@pytest.fixture(scope="module")
def untouched() -> dict[str, list[float]]:
    return _draws_after(lambda: None)


def test_the_check_notices_a_reseed(untouched):
    import keras

    assert _draws_after(lambda: keras.utils.set_random_seed(0)) != untouched


def test_building_an_untrained_extractor_leaves_global_random_state_alone(untouched):
    assert _draws_after(lambda: simrec.build_extractor(weights=None, image_size=32, seed=7)) == untouched


def test_the_whole_pipeline_leaves_global_random_state_alone(untouched, tmp_path, extractor):
    def pipeline() -> None:
        zip_path = simrec.make_synthetic_catalog(tmp_path / "demo.zip")
        catalog, skipped = simrec.load_catalog(zip_path, extract_to=tmp_path / "photos")
        result = simrec.embed_images(catalog["path"][:12], extractor, verbose=False)
        embedded = simrec.EmbeddedCatalog.from_embeddings(catalog[:12], result, extractor, skipped)
        simrec.recommend(embedded, product_id=embedded.catalog["product_id"].iloc[0], n_neighbors=3)
        simrec.recommend(embedded, image=np.zeros((SMALL, SMALL, 3), np.uint8), n_neighbors=3)
        simrec.evaluate(embedded.neighbors, embedded.catalog["label"], n_neighbors=3)
        simrec.save_index(embedded, tmp_path / "index")
        simrec.load_index(tmp_path / "index")

    assert _draws_after(pipeline) == untouched
