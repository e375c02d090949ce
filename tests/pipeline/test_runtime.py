"""The OpenVINO runtime: its vectors agree with Keras's, and a network it cannot run falls back to Keras."""

import logging

import numpy as np
import pytest
from paths import SHARED
from photos import SMALL

from simrec import build_extractor, extractor_info
from simrec.core.errors import InvalidArgumentError, MissingDependencyError
from simrec.pipeline import runtime
from simrec.pipeline.embedding import compiled_forward, embed_arrays, keras_forward
from simrec.pipeline.runtime import AGREEMENT, choose_runtime, row_cosines, use_openvino

pytest.importorskip("openvino")

MOBILENET = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
PHOTOS = SHARED / "data" / "fashion-small" / "images"


def _pixels(n=6, size=SMALL, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _both(extractor, pixels):
    """Keras's vectors and OpenVINO's, of the same extractor."""
    on_keras = keras_forward(extractor)(pixels)
    assert use_openvino(extractor, strict=True) == "openvino"
    return on_keras, compiled_forward(extractor)(pixels)


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("resnet50", SMALL),
        ("mobilenet-v2-0.35", 96),
        ("efficientnet-b0", 96),
        ("convnext-tiny", 64),
        ("densenet121", 64),
    ],
)
def test_untrained_backbones_agree_with_keras(model, size):
    """Folded BatchNorm (ResNet), caffe/tf/torch preprocessing and the network's own (EfficientNet, ConvNeXt)."""
    extractor = build_extractor(None, size, model=model, runtime="keras")
    on_keras, on_openvino = _both(extractor, _pixels(size=size))
    assert extractor_info(extractor).runtime == "openvino"
    assert on_openvino.shape == on_keras.shape and on_openvino.dtype == np.float32
    assert row_cosines(on_openvino, on_keras).min() >= AGREEMENT


@pytest.mark.skipif(not MOBILENET.is_file() or not PHOTOS.is_dir(), reason="needs ../shared weights and photos")
def test_real_weights_on_real_photos_agree_with_keras():
    """ImageNet MobileNet v1 0.25 on shop photos: features a preprocessing slip would change."""
    from simrec.pipeline.images import load_image

    photos = np.stack([load_image(path, 224) for path in sorted(PHOTOS.iterdir())[::400][:12]])
    extractor = build_extractor(MOBILENET, model="mobilenet-0.25", runtime="keras")
    on_keras, on_openvino = _both(extractor, photos)
    assert row_cosines(on_openvino, on_keras).min() >= AGREEMENT

    # and each photo's nearest other photo is the same on both
    def nearest(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        similarity = v @ v.T - 2 * np.eye(len(v))
        return similarity.argmax(axis=1)

    np.testing.assert_array_equal(nearest(on_openvino), nearest(on_keras))


def test_auto_picks_openvino_on_a_cpu_and_records_it(caplog):
    with caplog.at_level(logging.INFO, logger="simrec"):
        extractor = build_extractor(None, SMALL)
    info = extractor_info(extractor)
    assert info.runtime == "openvino" and info.device == "CPU" and info.precision == "float32"
    assert "runtime: OpenVINO" in caplog.text and "LATENCY" in caplog.text and "f32" in caplog.text


def test_choice_of_runtime(monkeypatch):
    assert choose_runtime("auto", device="GPU", backend="tensorflow") == "keras"
    assert choose_runtime("auto", device="CPU", backend="jax") == "keras"
    assert choose_runtime("keras", device="CPU", backend="tensorflow") == "keras"
    assert choose_runtime("auto", device="CPU", backend="tensorflow") == "openvino"
    with pytest.raises(InvalidArgumentError, match="runtime"):
        choose_runtime("onnx", device="CPU", backend="tensorflow")
    with pytest.raises(InvalidArgumentError, match="'int8' runs on OpenVINO"):
        choose_runtime("keras", device="CPU", backend="tensorflow", precision="int8")
    with pytest.raises(InvalidArgumentError, match="backend is 'torch'"):
        choose_runtime("openvino", device="CPU", backend="torch")
    monkeypatch.setattr(runtime, "openvino_installed", lambda: False)
    assert choose_runtime("auto", device="CPU", backend="tensorflow") == "keras"
    with pytest.raises(MissingDependencyError, match="pip install openvino"):
        choose_runtime("openvino", device="CPU", backend="tensorflow")


def _broken_conversion(*args, **kwargs):
    raise RuntimeError("Cannot convert operation SomeOp")


def _wrong_vectors(*args, **kwargs):
    return lambda pixels: np.random.default_rng(1).normal(size=(len(pixels), 2048)).astype(np.float32)


@pytest.mark.parametrize("failure", [_broken_conversion, _wrong_vectors], ids=["no-conversion", "wrong-vectors"])
def test_a_network_openvino_cannot_run_falls_back_to_keras_with_one_warning(monkeypatch, caplog, failure):
    monkeypatch.setattr(runtime, "openvino_forward", failure)
    with caplog.at_level(logging.WARNING):
        extractor = build_extractor(None, SMALL, runtime="auto")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "OpenVINO" in r.getMessage()]
    assert len(warnings) == 1 and "embedding with Keras instead" in warnings[0].getMessage()
    assert extractor_info(extractor).runtime == "keras"
    pixels = _pixels()
    np.testing.assert_allclose(embed_arrays(pixels, extractor), keras_forward(extractor)(pixels), rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="does not run on OpenVINO"):
        build_extractor(None, SMALL, runtime="openvino")


def test_int8_needs_calibration_then_stays_close_to_float32():
    extractor = build_extractor(None, SMALL, precision="int8")
    info = extractor_info(extractor)
    assert info.precision == "int8" and info.runtime == "openvino"
    with pytest.raises(InvalidArgumentError, match="no calibration"):
        embed_arrays(_pixels(), extractor)
    use_openvino(extractor, calibration=_pixels(16, seed=2), strict=True)
    reference = build_extractor(None, SMALL, runtime="keras")
    cosines = row_cosines(embed_arrays(_pixels(), extractor), embed_arrays(_pixels(), reference))
    assert cosines.min() >= runtime.LOW_PRECISION_AGREEMENT


def test_threads_and_precision_are_pinned():
    extractor = build_extractor(None, SMALL, runtime="keras")
    forward = runtime.openvino_forward(extractor, "float32", threads=1)
    assert forward.openvino_settings == {"performance_hint": "LATENCY", "inference_precision": "f32", "threads": 1}
