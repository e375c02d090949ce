"""A shop's own Keras model file (``--model shop.keras``) as a simrec extractor.

Any Keras model saved with ``model.save("shop.keras")`` that maps a batch of square RGB images to
one vector each (``(batch, S, S, 3)`` to ``(batch, dim)``) will do: a backbone fine-tuned on the
shop's catalog, for instance. Its input side comes from the model (or ``image_size`` where the
model takes any size); its preprocessing is "inside the model" unless a mode of
:data:`simrec.core.backbones.PREPROCESSING_MODES` is named. The index records the file's SHA-256,
so a changed file is a different model: queries with it are refused and re-indexing embeds anew.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simrec.core.backbones import DECODING, PREPROCESSING_MODES
from simrec.core.checksum import file_fingerprint
from simrec.core.errors import InvalidArgumentError, MissingFileError
from simrec.core.index_meta import MODEL_FILE_WEIGHTS
from simrec.core.records import ExtractorInfo
from simrec.core.validation import check_image_size
from simrec.pipeline.backend import accelerators

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

DEFAULT_PREPROCESSING = "model"
"""A model file's preprocessing unless told otherwise: none, the model rescales 0-255 pixels itself."""

_DESCRIBED = "own Keras model, preprocessing: "


def preprocessing_description(mode: str) -> str:
    """How an index made with a model file describes its pixel pipeline (``meta.json``'s ``preprocessing``).

    Raises:
        InvalidArgumentError: ``mode`` is not a key of :data:`~simrec.core.backbones.PREPROCESSING_MODES`.
    """
    if mode not in PREPROCESSING_MODES:
        raise InvalidArgumentError(
            f"Expected preprocessing to be one of {', '.join(PREPROCESSING_MODES)}, got {mode!r}",
            parameters=("preprocessing",),
        )
    return f"{DECODING}; {_DESCRIBED}{PREPROCESSING_MODES[mode]}"


def preprocessing_mode(value: str | None) -> str:
    """The mode of a ``--preprocessing`` value or of a description :func:`preprocessing_description` wrote.

    Raises:
        InvalidArgumentError: Neither a mode nor such a description.
    """
    if value is None:
        return DEFAULT_PREPROCESSING
    for mode in PREPROCESSING_MODES:
        if value in (mode, preprocessing_description(mode)):
            return mode
    raise InvalidArgumentError(
        f"Expected preprocessing to be one of {', '.join(PREPROCESSING_MODES)}, got {value!r}",
        parameters=("preprocessing",),
    )


def build_model_file_extractor(
    path: str | os.PathLike,
    image_size: int | None,
    *,
    preprocessing: str | None,
    precision: str,
    preprocess_function: Callable[[str], Callable[[Any], Any]],
) -> keras.Model:
    """The extractor of a Keras model file (call it through :func:`simrec.build_extractor`).

    Args:
        path: The ``.keras`` file.
        image_size: Side of the square input; default: the model's own (224 when it takes any size).
        preprocessing: A mode of :data:`~simrec.core.backbones.PREPROCESSING_MODES` (default ``"model"``: none, the
            model takes 0-255 pixels), or the description an index recorded.
        precision: ``"auto"`` or ``"float32"``: a model file runs in the precision it was saved with.
        preprocess_function: The pixel preprocessing of a mode (:func:`simrec.pipeline.model.preprocess_function`).

    Returns:
        A ``keras.Model`` mapping ``(batch, S, S, 3)`` pixels to ``(batch, dim)`` float32 vectors, with ``simrec_info``.

    Raises:
        MissingFileError: The file does not exist.
        InvalidArgumentError: It is not a Keras model mapping square images to vectors, a size it does not take, an
            unknown preprocessing mode, or a precision other than its own.
    """
    path = Path(path)
    mode = preprocessing_mode(preprocessing)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    if precision not in ("auto", "float32"):
        raise InvalidArgumentError(
            f"a model file runs in the precision it was saved with: pass precision=auto or precision=float32 for "
            f"{path.name}, got {precision!r}",
            parameters=("precision",),
        )
    import keras

    try:
        network = keras.models.load_model(path, compile=False)
    except Exception as error:  # a zip that is not a Keras model fails in many ways; all mean "not a model file"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidArgumentError(f"cannot load the Keras model file {path}: {reason[:300]}") from None
    size = _input_size(network, path, image_size)
    pixels = keras.Input((size, size, 3), name="pixels")
    features = pixels
    if mode != "model":
        features = keras.layers.Lambda(preprocess_function(mode), dtype="float32", name=f"{mode}_preprocess")(pixels)
    vectors = network(features)
    if len(vectors.shape) != 2:
        raise InvalidArgumentError(
            f"the model file {path} maps images to shape {tuple(vectors.shape)}, expected (batch, dim) vectors: "
            "end it with a pooling layer"
        )
    embedding = keras.layers.Activation("linear", dtype="float32", name="embedding")
    extractor = keras.Model(pixels, embedding(vectors), name="simrec_model_file")
    gpus = accelerators()
    extractor.simrec_info = ExtractorInfo(
        model=path.name,
        weights=f"{MODEL_FILE_WEIGHTS}{file_fingerprint(path)['sha256']}",
        pretrained=True,
        image_size=size,
        preprocessing=preprocessing_description(mode),
        precision="float32",
        device="GPU" if gpus else "CPU",
        weights_path=str(path.absolute()),
        backend=keras.config.backend(),
    )
    logger.info("extractor: model file %s, input %dpx, preprocessing %s", path, size, mode)
    return extractor


def _input_size(network: keras.Model, path: Path, image_size: int | None) -> int:
    """The square input side: the model's own, or ``image_size`` where it takes any."""
    shape = network.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] != 3:
        raise InvalidArgumentError(
            f"the model file {path} takes inputs of shape {shape}, expected (batch, height, width, 3) RGB images"
        )
    height, width = shape[1], shape[2]
    if height != width:
        raise InvalidArgumentError(f"the model file {path} takes {height}x{width} images, expected square ones")
    if height is None:
        return check_image_size(224 if image_size is None else image_size)
    if image_size is not None and image_size != height:
        raise InvalidArgumentError(f"image_size {image_size} does not suit the model file {path}: it takes {height}px")
    return check_image_size(height)
