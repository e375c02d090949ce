"""The same weights give the same embeddings on every Keras backend, TensorFlow or not."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from simrec import build_extractor, build_index, extractor_info
from simrec.cli import main
from simrec.pipeline.embedding import embed_arrays

pytestmark = pytest.mark.backend

# Run in a child process on another backend, on a machine where TensorFlow cannot be imported.
WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("TensorFlow is not installed on this machine")

    sys.meta_path.insert(0, NoTensorFlow())
    """
)
EMBED = WITHOUT_TENSORFLOW + textwrap.dedent(
    """
    import numpy as np, simrec
    from simrec.pipeline.embedding import embed_arrays

    extractor = simrec.build_extractor(weights=sys.argv[1], image_size=32)
    np.save(sys.argv[3], embed_arrays(np.load(sys.argv[2]), extractor, batch_size=3))
    print(simrec.extractor_info(extractor).backend, "tensorflow" in sys.modules)
    """
)
CLI = WITHOUT_TENSORFLOW + "from simrec.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import keras

    plain = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3))
    rng = np.random.default_rng(7)
    for layer in plain.layers:  # non-trivial normalisation statistics, as trained weights have
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))
    path = tmp_path_factory.mktemp("weights") / "shared.weights.h5"
    plain.save_weights(path)
    return path


def _run(backend, script, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_weights_give_the_same_embeddings_on_another_backend(backend, weights_file, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here")  # JAX is in requirements-dev.txt; PyTorch is optional
    pixels = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "pixels.npy", pixels)
    here = embed_arrays(pixels, build_extractor(weights=weights_file, image_size=32), batch_size=3)
    printed = _run(backend, EMBED, weights_file, tmp_path / "pixels.npy", tmp_path / "there.npy")
    assert printed.split() == [backend, "False"]  # ran on that backend, and TensorFlow was never needed
    there = np.load(tmp_path / "there.npy")
    assert there.shape == here.shape == (7, 2048)
    assert _cosine(here, there).min() >= 0.9999


def test_an_index_embedded_on_tensorflow_is_queried_from_jax(weights_file, colour_tree, tmp_path):
    out = tmp_path / "idx"
    build_index(colour_tree, out, weights=weights_file, image_size=32, verbose=False)
    assert json.loads((out / "meta.json").read_text())["backend"] == "tensorflow"
    photo = tmp_path / "copy.jpg"
    photo.write_bytes((colour_tree / "green" / "item_3.jpg").read_bytes())
    answer = json.loads(_run("jax", CLI, "query", out, "--image", photo, "-k", "2", "--format", "json"))
    best = answer["results"][0]
    assert best["product_id"] == "green/item_3" and best["distance"] < 1e-3


def test_untrained_weights_are_tied_to_their_backend(colour_tree, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(colour_tree), "--out", str(out), "--weights", "random", "--image-size", "32", "-q"]) == 0
    photo = next(colour_tree.rglob("*.jpg"))
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", CLI, "query", str(out), "--image", str(photo)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and "backend: index 'tensorflow', extractor 'jax'" in done.stderr


def test_the_backend_is_named_by_version_meta_and_info(extractor, capsys):
    assert extractor_info(extractor).backend == "tensorflow"
    assert main(["--version"]) == 0
    assert "Keras backend: tensorflow" in capsys.readouterr().out
