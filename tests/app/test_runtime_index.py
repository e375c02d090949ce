"""The runtime is not part of an index's model: index with one, extend and query with the other."""

import json
import logging

import numpy as np
import pytest
from photos import SMALL, write_image

from simrec import build_index, recommend
from simrec.app.querying import query_extractor
from simrec.cli import main
from simrec.core.index_meta import IndexMeta
from simrec.pipeline.runtime import row_cosines

pytest.importorskip("openvino")


def test_index_on_openvino_then_extend_and_query_on_keras_without_embedding_again(colour_tree, tmp_path):
    index_dir = tmp_path / "index"
    first, report = build_index(
        colour_tree, index_dir, weights=None, image_size=SMALL, runtime="openvino", verbose=False
    )
    assert report.embedded == 12 and first.meta.runtime == "openvino"
    assert json.loads((index_dir / "meta.json").read_text())["runtime"] == "openvino"

    again, report = build_index(colour_tree, index_dir, weights=None, runtime="keras", verbose=False)
    assert report.embedded == 0 and report.unchanged == 12  # same model: nothing embedded again

    write_image(colour_tree / "red" / "item_9.jpg", (200, 40, 40), size=(50, 40))
    extended, report = build_index(colour_tree, index_dir, weights=None, runtime="keras", verbose=False)
    assert report.embedded == 1 and report.added == 1 and extended.meta.runtime == "keras"
    # the old rows, made by OpenVINO, sit beside the new one, made by Keras, and agree with Keras's own
    keras_extractor = query_extractor(extended, runtime="keras")
    assert keras_extractor.simrec_info.runtime == "keras"
    from simrec.pipeline.embedding import embed_images

    on_keras = embed_images(extended.catalog["path"], keras_extractor, verbose=False).embeddings
    assert row_cosines(np.asarray(extended.embeddings), on_keras).min() >= 0.9999

    # a photo query on either runtime finds the photo itself first
    for runtime in ("keras", "openvino"):
        extractor = query_extractor(extended, runtime=runtime)
        assert extractor.simrec_info.runtime == runtime
        found = recommend(extended, image=colour_tree / "blue" / "item_2.jpg", n_neighbors=1, extractor=extractor)
        assert found["product_id"].iloc[0] == "blue/item_2" and found["distance"].iloc[0] < 1e-4


def test_int8_index_is_calibrated_on_its_photos_and_queried_in_float32(colour_tree, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="simrec"):
        embedded, report = build_index(
            colour_tree, tmp_path / "i8", weights=None, image_size=SMALL, precision="int8", verbose=False
        )
    assert report.embedded == 12
    assert embedded.meta.precision == "int8" and embedded.meta.runtime == "openvino"
    assert "calibrating the quantisation on 12 photos" in caplog.text
    extractor = query_extractor(embedded)
    assert extractor.simrec_info.precision == "float32"  # the catalog's calibration is not at hand for queries
    found = recommend(embedded, image=colour_tree / "green" / "item_3.jpg", n_neighbors=3, extractor=extractor)
    assert found["product_id"].str.startswith("green/").all()
    with pytest.raises(ValueError, match="int8' runs on OpenVINO"):
        build_index(colour_tree, tmp_path / "i8k", weights=None, image_size=SMALL, precision="int8", runtime="keras")


def test_older_meta_without_runtime_reads_back():
    meta = IndexMeta.from_dict(
        {"format_version": 3, "model": "resnet50", "weights": "imagenet", "count": 1, "dim": 2, "files": {}}
    )
    assert meta.runtime is None and "runtime" not in meta.to_dict()
    with pytest.raises(Exception, match="runtime is 3, expected str"):
        IndexMeta.from_dict({**meta.to_dict(), "runtime": 3})


def test_cli_runtime_option(colour_tree, tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "index",
                str(colour_tree),
                "--out",
                str(out),
                "--weights",
                "random",
                "--image-size",
                "64",
                "-q",
                "--runtime",
                "keras",
            ]
        )
        == 0
    )
    assert json.loads((out / "meta.json").read_text())["runtime"] == "keras"
    capsys.readouterr()
    photo = str(colour_tree / "red" / "item_1.jpg")
    assert main(["query", str(out), "--image", photo, "-k", "1", "--format", "json", "--runtime", "openvino"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["product_id"] == "red/item_1"
    assert main(["index", str(colour_tree), "--out", str(out), "--runtime", "onnx"]) == 2
    assert "--runtime" in capsys.readouterr().err
