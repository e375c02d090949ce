"""KerasHub backbones: tiny DINOv2, SigLIP and CLIP presets saved to tmp_path and loaded back offline through simrec."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from hub_presets import SAVERS, SIZE

from simrec import build_extractor
from simrec.core.errors import InvalidArgumentError, MissingFileError
from simrec.core.hub_backbones import HUB_BACKBONES
from simrec.core.index_meta import IndexMeta

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {family: save(root / family) for family, save in SAVERS.items()}


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)


def _preset_vectors(family: str, folder, pixels: np.ndarray) -> np.ndarray:
    """What the preset itself computes: its image converter, then its backbone's image vector."""
    converter = keras_hub.layers.ImageConverter.from_preset(str(folder))
    backbone = keras_hub.models.Backbone.from_preset(str(folder))
    images = converter(pixels)
    if family == "dinov2":
        return np.asarray(backbone({"images": images}))[:, 0]
    return np.asarray(backbone.get_vision_embeddings(images))


@pytest.mark.parametrize("family", sorted(SAVERS))
def test_extractor_computes_what_the_preset_computes(presets, pixels, family):
    extractor = build_extractor(presets[family], model=family)
    converter = keras_hub.layers.ImageConverter.from_preset(str(presets[family]))
    rescaled = extractor.get_layer("image_converter")(pixels.astype("float32"))
    np.testing.assert_allclose(np.asarray(rescaled), np.asarray(converter(pixels)), rtol=1e-6, atol=1e-6)
    vectors = extractor.predict(pixels, verbose=0)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 12 if family == "clip" else 16)
    np.testing.assert_allclose(vectors, _preset_vectors(family, presets[family], pixels), rtol=1e-4, atol=1e-5)
    again = build_extractor(presets[family], model=family).predict(pixels, verbose=0)
    np.testing.assert_array_equal(vectors, again)  # the same preset gives the same vectors
    info = extractor.simrec_info
    assert info.model == family and info.weights == f"preset:{family}" and info.pretrained and info.image_size == SIZE
    assert info.weights_path == str(presets[family].absolute())
    assert HUB_BACKBONES[family].vector in info.preprocessing


def test_a_named_backbone_refuses_a_preset_of_another_size_or_family(presets):
    with pytest.raises(InvalidArgumentError, match="is not dinov2-small: its image tower has patch_size 8"):
        build_extractor(presets["dinov2"], model="dinov2-small")
    with pytest.raises(InvalidArgumentError, match="holds a SigLIPBackbone, not the DINOV2Backbone .*model=siglip"):
        build_extractor(presets["siglip"], model="dinov2")
    with pytest.raises(InvalidArgumentError, match="runs at 32px only"):
        build_extractor(presets["clip"], 64, model="clip")
    assert build_extractor(presets["dinov2"], 48, model="dinov2").output_shape == (None, 16)  # DINOv2 interpolates


def test_weights_that_are_not_a_preset_are_refused(presets, tmp_path):
    with pytest.raises(MissingFileError, match="KerasHub preset folder not found"):
        build_extractor(tmp_path / "gone", model="clip")
    with pytest.raises(InvalidArgumentError, match="a KerasHub preset folder"):
        build_extractor(tmp_path, model="clip")
    with pytest.raises(InvalidArgumentError, match="takes any CLIPBackbone preset and needs one"):
        build_extractor("random", model="clip")
    with pytest.raises(InvalidArgumentError, match="is for a .keras model file"):
        build_extractor(presets["clip"], model="clip", preprocessing="tf")


def test_an_unreachable_preset_offline_is_one_line_and_never_untrained(monkeypatch):
    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(MissingFileError, match="cannot load .* KerasHub preset 'dinov2_small' .*local preset folder"):
        build_extractor("auto", model="dinov2-small")


def test_untrained_weights_follow_the_published_architecture(pixels):
    extractor = build_extractor("random", 56, model="dinov2-small", seed=3)
    assert extractor.output_shape == (None, 384)
    assert extractor.simrec_info.weights == "random(seed=3)" and not extractor.simrec_info.pretrained
    again = build_extractor("random", 56, model="dinov2-small", seed=3)
    pictures = np.resize(pixels, (2, 56, 56, 3))
    np.testing.assert_array_equal(extractor.predict(pictures, verbose=0), again.predict(pictures, verbose=0))


def test_the_published_configurations_have_the_stated_sizes():
    """dinov2-small built untrained: the registry's count at 224 px, and KerasHub's own count of its preset at 518."""
    spec = HUB_BACKBONES["dinov2-small"]
    assert build_extractor("random", model="dinov2-small").count_params() == spec.parameters
    backbone = keras_hub.models.DINOV2Backbone(**spec.vision, image_shape=(518, 518, 3))  # as KerasHub counts
    assert backbone.count_params() == spec.preset_parameters and backbone.output_shape[-1] == spec.dim


def test_text_vectors_come_from_the_preset_the_index_was_embedded_with(presets, pixels):
    from simrec.pipeline.hub import text_embedder_for

    for family in ("siglip", "clip"):
        info = build_extractor(presets[family], model=family).simrec_info
        meta = IndexMeta.from_extractor(info, dim=12 if family == "clip" else 16)
        embedder = text_embedder_for(meta)
        vectors = embedder.embed(["red checked shirt", "blue jeans"])
        assert vectors.shape == (2, meta.dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        assert not np.allclose(vectors[0], vectors[1])
        np.testing.assert_array_equal(vectors[:1], embedder.embed(["red checked shirt"]))
        with pytest.raises(InvalidArgumentError, match="a text with words"):
            embedder.embed([" "])
        with pytest.raises(Exception, match="not the preset the index was embedded with"):
            text_embedder_for(meta.replace(dim=7))
    dinov2 = IndexMeta.from_extractor(build_extractor(presets["dinov2"], model="dinov2").simrec_info, dim=16)
    with pytest.raises(InvalidArgumentError, match="embedded with 'dinov2', which has none"):
        text_embedder_for(dinov2)
    with pytest.raises(InvalidArgumentError, match="embedded with 'resnet50', which has none"):
        text_embedder_for(IndexMeta(model="resnet50", weights="imagenet", image_size=224, dim=2048))
    untrained = IndexMeta(model="clip-vit-b32", weights="random(seed=0)", pretrained=False, image_size=224, dim=512)
    with pytest.raises(InvalidArgumentError, match="untrained clip-vit-b32 weights"):
        text_embedder_for(untrained)
