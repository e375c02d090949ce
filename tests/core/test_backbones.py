"""The backbone registry: each network's constructor, preprocessing, dimension and size, and --model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simrec import build_extractor, extractor_info
from simrec.cli import main
from simrec.core.backbones import BACKBONES, DEFAULT_BACKBONE, PREPROCESSING_MODES, backbone
from simrec.pipeline.embedding import embed_arrays
from simrec.pipeline.model import preprocess_function, weights_file_parameters

FAST = ["--image-size", "32", "-q"]
ONE_OF_EACH_FAMILY = [
    "resnet50-v2",
    "mobilenet-0.25",
    "mobilenet-v2-0.35",
    "mobilenet-v3-small",
    "efficientnet-b0",
    "efficientnet-v2-b0",
    "convnext-tiny",
    "densenet121",
    "vgg16",
    "xception",
    "nasnet-mobile",
]


def test_the_names_users_guess_are_there():
    expected = {"resnet50", "resnet101", "resnet152", "resnet50-v2", "mobilenet", "mobilenet-v2", "densenet121"}
    expected |= {"mobilenet-0.25", "mobilenet-0.5", "mobilenet-0.75", "mobilenet-v3-small", "mobilenet-v3-large"}
    expected |= {f"efficientnet-b{i}" for i in range(8)} | {
        f"efficientnet-v2-{v}" for v in ("b0", "b1", "b2", "b3", "s")
    }
    expected |= {"convnext-tiny", "convnext-small", "convnext-base"}
    assert expected <= set(BACKBONES) and DEFAULT_BACKBONE == "resnet50"


def test_every_backbone_names_a_keras_application_and_a_known_preprocessing():
    import keras

    for spec in BACKBONES.values():
        assert callable(getattr(keras.applications, spec.application)), spec.name
        assert spec.preprocessing in PREPROCESSING_MODES, spec.name
        assert spec.image_size >= 32 and spec.dim > 0 and spec.parameters > 0


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_preprocessing_is_the_applications_own(name):
    """simrec's preprocessing layer computes what keras.applications.<module>.preprocess_input does."""
    import keras

    spec = BACKBONES[name]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    own = getattr(keras.applications, spec.module).preprocess_input(pixels.copy())
    ours = preprocess_function(spec.preprocessing)(pixels.copy())
    np.testing.assert_allclose(np.asarray(ours), np.asarray(own), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", ONE_OF_EACH_FAMILY)
def test_dimension_and_parameters_match_the_network(name):
    spec = backbone(name)
    extractor = build_extractor(weights=None, image_size=96, model=name)
    assert extractor.output_shape == (None, spec.dim)
    network = next(layer for layer in extractor.layers if hasattr(layer, "layers"))
    assert network.count_params() == spec.parameters
    info = extractor_info(extractor)
    assert info.model == name and info.preprocessing == spec.preprocessing_description
    vectors = embed_arrays(
        np.random.default_rng(0).integers(0, 256, (2, *extractor.input_shape[1:]), np.uint8), extractor
    )
    assert vectors.shape == (2, spec.dim) and np.isfinite(vectors).all()


def test_default_input_size_is_the_backbones_own_and_a_size_it_refuses_is_named():
    assert build_extractor(weights=None, model="mobilenet-0.25").input_shape == (None, 224, 224, 3)
    assert backbone("efficientnet-b3").image_size == 300 and backbone("xception").image_size == 299
    with pytest.raises(ValueError, match=r"image_size 64 does not suit xception: .*at least 71x71"):
        build_extractor(weights=None, image_size=64, model="xception")


def test_an_unknown_name_suggests_close_ones(capsys):
    with pytest.raises(ValueError, match=r"got 'mobilnet-0.25'; did you mean 'mobilenet-0.25'"):
        backbone("mobilnet-0.25")
    assert main(["index", "anything", "--out", "x", "--model", "resnet-50"]) == 2
    assert "did you mean 'resnet50'" in capsys.readouterr().err


def test_a_weights_file_of_another_model_names_the_model_it_fits(tmp_path):
    import keras

    other = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "small.weights.h5"
    other.save_weights(path)
    assert weights_file_parameters(path) == backbone("mobilenet-0.25").parameters
    with pytest.raises(ValueError, match=r"does not fit resnet50 \(ResNet50 without its top, 23,587,712 parameters\)"):
        build_extractor(path, image_size=64)
    with pytest.raises(ValueError, match=r"it holds 218,544 parameters, like mobilenet-0\.25: pass model=mobilenet"):
        build_extractor(path, image_size=64, model="mobilenet-0.5")
    loaded = build_extractor(path, image_size=64, model="mobilenet-0.25")
    np.testing.assert_allclose(loaded.get_layer(other.name).get_weights()[0], other.get_weights()[0])


def test_reindexing_keeps_the_index_model_and_another_needs_rebuild(colour_tree, tmp_path, capsys):
    out = tmp_path / "idx"
    assert (
        main(["index", str(colour_tree), "--out", str(out), "--model", "mobilenet-0.25", "--weights", "random", *FAST])
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["model"] == "mobilenet-0.25" and meta["dim"] == 256
    assert main(["index", str(colour_tree), "--out", str(out), "-q"]) == 0  # its own model, weights and size
    assert "unchanged 12" in capsys.readouterr().out
    assert main(["index", str(colour_tree), "--out", str(out), "--model", "resnet50", "-q"]) == 2
    error = capsys.readouterr().err
    assert "model 'resnet50' (the index has 'mobilenet-0.25')" in error and "--rebuild" in error
    assert main(["index", str(colour_tree), "--out", str(out), "--model", "resnet50", "--rebuild", *FAST]) == 0
    assert json.loads((out / "meta.json").read_text())["model"] == "resnet50"


def test_photo_queries_export_and_colours_use_the_index_model(colour_tree, tmp_path, capsys):
    out = tmp_path / "idx"
    assert (
        main(["index", str(colour_tree), "--out", str(out), "--model", "mobilenet-0.25", "--weights", "random", *FAST])
        == 0
    )
    photo = next(colour_tree.rglob("item_1.jpg"))
    capsys.readouterr()
    assert main(["query", str(out), "--image", str(photo), "-k", "1", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["results"][0]["distance"] < 1e-4
    assert main(["colours", str(out), "-q"]) == 0
    assert main(["export", str(out), "--out", str(tmp_path / "recs.csv"), "-k", "2", "-q"]) == 0
    assert json.loads((out / "meta.json").read_text())["model"] == "mobilenet-0.25"


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    from simrec.pipeline.backend import cpu_flags, native_bfloat16

    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    amd = tmp_path / "amd"
    amd.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert native_bfloat16(cpu_flags(intel)) and not native_bfloat16(cpu_flags(amd))
    assert native_bfloat16({"avx512_bf16"}) and native_bfloat16({"amx_bf16"}) and not native_bfloat16(set())
    assert cpu_flags(tmp_path / "missing") == set()
