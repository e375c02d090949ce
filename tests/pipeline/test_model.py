import os

import numpy as np
import pytest
from photos import SMALL

from simrec import build_extractor, extractor_info
from simrec.pipeline.embedding import embed_arrays


def _pixels(n=4, size=SMALL, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_shapes_dtype_and_info(extractor):
    assert extractor.input_shape == (None, SMALL, SMALL, 3)
    assert extractor.output_shape == (None, 2048)
    vectors = embed_arrays(_pixels(), extractor)
    assert vectors.shape == (4, 2048) and vectors.dtype == np.float32
    info = extractor_info(extractor)
    assert info.weights == "random(seed=0)" and not info.pretrained
    assert info.image_size == SMALL and info.device in ("CPU", "GPU")
    assert "caffe" in info.preprocessing


def test_uint8_and_float_inputs_agree(extractor):
    pixels = _pixels()
    from_uint8 = embed_arrays(pixels, extractor)
    from_float = np.asarray(extractor(pixels.astype(np.float32), training=False))
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-4, atol=1e-4)


def test_preprocessing_is_resnet50_caffe(extractor):
    """The model's first layer flips RGB to BGR and subtracts the ImageNet means."""
    layer = extractor.get_layer("resnet50_preprocess")
    out = np.asarray(layer(np.array([[[[255.0, 0.0, 0.0]]]], dtype=np.float32)))
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 255 - 123.68], atol=1e-3)


def test_untrained_weights_are_reproducible_per_seed(extractor):
    again = build_extractor(weights=None, image_size=SMALL, seed=0)
    other = build_extractor(weights="random", image_size=SMALL, seed=1)
    pixels = _pixels()
    reference = embed_arrays(pixels, extractor)
    np.testing.assert_allclose(embed_arrays(pixels, again), reference, rtol=1e-5, atol=1e-5)
    assert not np.allclose(embed_arrays(pixels, other), reference)


def test_weights_file_round_trip(tmp_path, extractor):
    """A ResNet50 (no top) weights file, as a user would save one, loads back exactly."""
    import keras

    keras.utils.set_random_seed(3)
    plain = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(SMALL, SMALL, 3))
    weights = tmp_path / "resnet50_notop.weights.h5"
    plain.save_weights(weights)
    loaded = build_extractor(weights=weights, image_size=SMALL)
    info = extractor_info(loaded)
    assert info.weights == "file:resnet50_notop.weights.h5" and info.pretrained
    pixels = _pixels()
    expected = plain.predict(keras.applications.resnet50.preprocess_input(pixels.astype("float32")), verbose=0)
    np.testing.assert_allclose(embed_arrays(pixels, loaded), expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(embed_arrays(pixels, extractor), expected, rtol=1e-2)


def test_folded_network_matches_plain_resnet50_with_trained_statistics():
    """BatchNorm folding keeps the outputs, also with non-trivial normalisation statistics."""
    import keras

    keras.utils.set_random_seed(4)
    plain = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(SMALL, SMALL, 3))
    rng = np.random.default_rng(4)
    for layer in plain.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, size),
                    rng.normal(0, 0.1, size),
                    rng.normal(0, 0.1, size),
                    rng.uniform(0.5, 2.0, size),
                ]
            )
    from simrec.pipeline.model import _fold_batch_norm

    folded = _fold_batch_norm(plain)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    inputs = rng.normal(0, 50, (3, SMALL, SMALL, 3)).astype(np.float32)
    a, b = plain.predict(inputs, verbose=0), folded.predict(inputs, verbose=0)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_bfloat16_agrees_with_float32(extractor):
    pixels = _pixels(8)
    low = build_extractor(weights=None, image_size=SMALL, seed=0, precision="bfloat16")
    assert extractor_info(low).precision == "bfloat16"
    a, b = embed_arrays(pixels, extractor), embed_arrays(pixels, low)
    assert b.dtype == np.float32
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        build_extractor(weights=None, image_size=8)
    with pytest.raises(ValueError, match="precision"):
        build_extractor(weights=None, precision="int4")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_extractor(weights=tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="Expected weights"):
        build_extractor(weights="imagenet21k")
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="does not fit resnet50"):
        build_extractor(weights=broken, image_size=SMALL)


def test_weights_cache_is_where_keras_puts_it(tmp_path, monkeypatch):
    import tempfile

    import keras
    from keras.src.backend import config

    from simrec.pipeline.model import IMAGENET_NOTOP_FILE, imagenet_weights_cached, keras_cache_dir

    home = tmp_path / "keras-home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))
    assert keras_cache_dir() == home and not imagenet_weights_cached()
    (home / "models" / IMAGENET_NOTOP_FILE).write_bytes(b"cached")
    assert imagenet_weights_cached()

    # A Keras home that cannot be written: keras.utils.get_file uses .keras in the temp folder.
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "missing"))
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: p != "/tmp" and real_isdir(p))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    assert keras_cache_dir() == tmp_path / "temp" / ".keras" and not imagenet_weights_cached()
    # Keras itself, downloading into its cache, puts the file where simrec looks.
    source = tmp_path / "source.h5"
    source.write_bytes(b"weights")
    keras.utils.get_file(IMAGENET_NOTOP_FILE, source.as_uri(), cache_subdir="models")
    assert imagenet_weights_cached()
