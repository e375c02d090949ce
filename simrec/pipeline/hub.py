"""KerasHub backbones (DINOv2, SigLIP 2, CLIP) as simrec extractors, and the text towers of SigLIP and CLIP.

The extractor is a plain Keras model like every other simrec extractor: ``(batch, S, S, 3)`` pixels
(uint8 or float, 0-255) in, ``(batch, dim)`` float32 vectors out. Its first layer is the preset's
own image converter's rescaling (its ``scale`` and ``offset``; the photo is already square and at the
converter's size, so the converter's resize has nothing to do), then the image tower, then the
vector of :data:`simrec.core.hub_backbones.VECTORS`.

Weights come from a KerasHub preset: a local preset folder (what ``save_to_preset`` writes), a
KerasHub preset name or handle (downloaded by KerasHub when online), or untrained weights built
from the published architecture. keras-hub is the optional extra ``simrec[hub]``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simrec.core.backbones import DECODING
from simrec.core.errors import (
    IndexIntegrityError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
)
from simrec.core.hub_backbones import CONVERTER_DEFAULTS, FAMILIES, HUB_BACKBONES, HubBackbone
from simrec.core.index_meta import PRESET_WEIGHTS, IndexMeta, weights_name
from simrec.core.records import ExtractorInfo
from simrec.core.validation import check_image_size
from simrec.pipeline.backend import accelerators

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def keras_hub_module() -> Any:
    """The ``keras_hub`` package.

    Raises:
        MissingDependencyError: keras-hub is not installed.
    """
    try:
        import keras_hub
    except ImportError as error:
        raise MissingDependencyError(
            f"KerasHub backbones need keras-hub: pip install 'simrec[hub]' ({error})"
        ) from None
    return keras_hub


def build_hub_extractor(
    spec: HubBackbone,
    weights: str | os.PathLike | None,
    image_size: int | None,
    *,
    seed: int,
    precision: str,
) -> keras.Model:
    """The extractor of one KerasHub backbone (call it through :func:`simrec.build_extractor`).

    Args:
        spec: The backbone.
        weights: ``"auto"`` or ``"imagenet"`` (the backbone's KerasHub preset, downloaded by KerasHub
            when online); a KerasHub preset name or handle (``"kaggle://..."``, ``"hf://..."``); a local
            preset folder; or ``None``/``"random"`` (untrained, from the published architecture).
        image_size: Side of the square input (default: the preset's image converter's). Only DINOv2
            runs at other sizes (its position embeddings are interpolated).
        seed: Recorded for untrained weights (the caller seeds Python's ``random`` while this builds).
        precision: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"float16"``.

    Returns:
        A ``keras.Model`` mapping ``(batch, S, S, 3)`` pixels to ``(batch, dim)`` float32 vectors, with
        ``simrec_info``.

    Raises:
        InvalidArgumentError: Bad ``weights``, ``image_size`` or ``precision``, or a preset that is not of the named
            backbone.
        MissingFileError: A preset folder that does not exist, or a preset that cannot be downloaded.
        MissingDependencyError: keras-hub is not installed.
    """
    if precision not in ("auto", *_POLICIES):
        raise InvalidArgumentError(
            f"Expected precision in ('auto', {', '.join(map(repr, _POLICIES))}), got {precision!r}"
        )
    preset = _resolve_preset(spec, weights)
    keras_hub = keras_hub_module()
    import keras

    gpus = accelerators()
    if precision == "auto":
        precision = "float16" if gpus else "float32"
    policy = _POLICIES[precision]
    if preset is None:
        size = check_image_size(image_size or spec.image_size)
        scale, offset = _default_rescaling(spec.family)
        converter_name = f"{spec.family} default normalisation (no preset)"
        tower = _untrained_tower(keras_hub, spec, size, policy)
    else:
        converter = _load_converter(keras_hub, spec, preset)
        own_size = int(converter.image_size[0]) if converter.image_size else spec.image_size
        size = check_image_size(image_size or own_size)
        if size != own_size and spec.family != "dinov2":
            raise InvalidArgumentError(
                f"image_size {size} does not suit {spec.name}: its preset runs at {own_size}px only"
            )
        scale, offset = converter.scale, converter.offset
        converter_name = f"{type(converter).__name__} of the preset"
        tower = _load_tower(keras_hub, spec, preset, size, policy)
    pixels = keras.Input((size, size, 3), name="pixels")
    scaled = keras.layers.Rescaling(
        _as_array(scale, 1.0), _as_array(offset, 0.0), dtype="float32", name="image_converter"
    )
    vector = keras.layers.Activation("linear", dtype="float32", name="embedding")
    extractor = keras.Model(pixels, vector(tower(scaled(pixels))), name=f"simrec_{spec.name}")

    named = _weights_label(spec, preset, seed)
    extractor.simrec_info = ExtractorInfo(
        model=spec.name,
        weights=named,
        pretrained=preset is not None,
        image_size=size,
        preprocessing=f"{DECODING}; {converter_name}: x * {_rounded(scale)} + {_rounded(offset)}; "
        f"vector: {spec.vector}",
        precision=precision,
        device="GPU" if gpus else "CPU",
        weights_path=str(preset.absolute()) if isinstance(preset, Path) else "",
        backend=keras.config.backend(),
    )
    logger.info("extractor: %s, weights=%s, %s, input %dpx", spec.name, named, precision, size)
    return extractor


def _resolve_preset(spec: HubBackbone, weights: str | os.PathLike | None) -> str | Path | None:
    """A preset folder (Path), a KerasHub preset name or handle (str), or None for untrained weights."""
    if weights is None or weights == "random":
        if not spec.preset:
            raise InvalidArgumentError(
                f"model={spec.name} takes any {FAMILIES[spec.family]} preset and needs one: pass weights="
                f"PRESET_DIR, or name a backbone ({', '.join(s.name for s in HUB_BACKBONES.values() if s.preset)})",
                parameters=("model", "weights"),
            )
        return None
    text = str(weights)
    if text in ("auto", "imagenet"):
        if not spec.preset:
            raise InvalidArgumentError(
                f"model={spec.name} needs weights=PRESET_DIR (a KerasHub preset folder)",
                parameters=("model", "weights"),
            )
        return spec.preset
    if text.startswith(PRESET_WEIGHTS):
        return text[len(PRESET_WEIGHTS) :]
    if "://" in text:
        return text
    path = Path(weights)
    if not path.exists():
        raise MissingFileError(
            f"KerasHub preset folder not found: {path} (weights of model={spec.name})", parameters=("weights", "model")
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InvalidArgumentError(
            f"Expected weights of model={spec.name} to be a KerasHub preset folder (with config.json, as "
            f"save_to_preset writes), 'auto' or 'random', got {str(weights)!r}",
            parameters=("weights", "model"),
        )
    return path


def _weights_label(spec: HubBackbone, preset: str | Path | None, seed: int) -> str:
    """How ``meta.json`` names the weights: a folder like a weights file, a KerasHub preset by name."""
    if preset is None:
        return weights_name("random", seed)
    if isinstance(preset, Path):
        return weights_name(preset)
    return f"{PRESET_WEIGHTS}{preset}"


def _load(what: str, spec: HubBackbone, preset: str | Path, load: Any) -> Any:
    """``load()``, with a preset that cannot be fetched (offline) said in one line."""
    try:
        return load()
    except OSError as error:  # network failures (requests, kagglehub) are OSErrors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MissingFileError(
            f"cannot load the {what} of KerasHub preset {str(preset)!r} (model={spec.name}): {reason[:200]}; "
            "offline, pass weights=PRESET_DIR, a local preset folder (written by save_to_preset)",
            parameters=("model", "weights"),
        ) from None


def _load_converter(keras_hub: Any, spec: HubBackbone, preset: str | Path) -> Any:
    load = keras_hub.layers.ImageConverter.from_preset
    try:
        return _load("image converter", spec, preset, lambda: load(str(preset)))
    except ValueError as error:  # KerasHub's answer to a preset without image_converter.json
        raise InvalidArgumentError(
            f"KerasHub preset {str(preset)!r} has no image converter, which simrec takes the preprocessing from "
            f"({str(error).splitlines()[0]})"
        ) from None


def _load_tower(keras_hub: Any, spec: HubBackbone, preset: str | Path, size: int, policy: str) -> Any:
    """The preset's backbone, checked against ``spec``, as a function from scaled pixels to vectors."""
    options: dict[str, Any] = {"dtype": policy}
    if spec.family == "dinov2":
        options["image_shape"] = (size, size, 3)
    backbone = _load("backbone", spec, preset, lambda: keras_hub.models.Backbone.from_preset(str(preset), **options))
    check_preset_family(spec, backbone, preset)
    return lambda images: _vision_vector(spec.family, backbone, images)


def check_preset_family(spec: HubBackbone, backbone: Any, preset: str | Path) -> None:
    """Refuse a preset of another family, or of another size than the named backbone's.

    Raises:
        InvalidArgumentError: It is.
    """
    found = type(backbone).__name__
    if found != FAMILIES[spec.family]:
        family = next((name for name, cls in FAMILIES.items() if cls == found), None)
        hint = f": pass model={family}" if family else ""
        raise InvalidArgumentError(
            f"KerasHub preset {str(preset)!r} holds a {found}, not the {FAMILIES[spec.family]} of model="
            f"{spec.name}{hint}",
            parameters=("model",),
        )
    if not spec.vision:
        return
    config = backbone.get_config() if spec.family == "dinov2" else backbone.vision_encoder.get_config()
    if spec.family == "clip":
        config = {**config, "projection_dim": backbone.projection_dim}
    wrong = [
        f"{key} {config.get(key)!r} (not {value!r})" for key, value in spec.vision.items() if config.get(key) != value
    ]
    if wrong:
        raise InvalidArgumentError(
            f"KerasHub preset {str(preset)!r} is not {spec.name}: its image tower has {', '.join(wrong)}; "
            f"pass model={spec.family} for any {FAMILIES[spec.family]} preset",
            parameters=("model",),
        )


def _vision_vector(family: str, backbone: Any, images: Any) -> Any:
    """The family's vector of scaled images, from a whole backbone."""
    if family == "dinov2":
        return _first_token("cls_token")(backbone({"images": images}))
    if family == "siglip":
        return backbone.vision_encoder({"images": images})
    return backbone.get_vision_embeddings(images)


def _untrained_tower(keras_hub: Any, spec: HubBackbone, size: int, policy: str) -> Any:
    """The image tower of the published architecture, untrained."""
    models = keras_hub.models
    shape = (size, size, 3)
    if spec.family == "dinov2":
        backbone = models.DINOV2Backbone(**spec.vision, image_shape=shape, dtype=policy)
        return lambda images: _vision_vector("dinov2", backbone, images)
    if spec.family == "siglip":
        encoder = models.SigLIPVisionEncoder(**spec.vision, image_shape=shape, dtype=policy)
        return lambda images: encoder({"images": images})
    import keras

    vision = {key: value for key, value in spec.vision.items() if key != "projection_dim"}
    encoder = models.CLIPVisionEncoder(**vision, image_shape=shape, dtype=policy)
    pooler = _first_token("vision_pooler")  # what CLIP's own pooler does
    projection = keras.layers.Dense(
        spec.vision["projection_dim"], use_bias=False, dtype=policy, name="vision_projection"
    )
    return lambda images: projection(pooler(encoder({"images": images})))


def _first_token(name: str) -> Any:
    """A layer taking token 0 (the class token) of ``(batch, tokens, width)``."""
    import keras

    return keras.layers.Lambda(lambda tokens: tokens[:, 0, :], name=name)


def _default_rescaling(family: str) -> tuple[list[float], list[float]]:
    """The converter's ``scale`` and ``offset`` of the family's published normalisation."""
    mean, std = CONVERTER_DEFAULTS[family]["mean"], CONVERTER_DEFAULTS[family]["std"]
    return [1.0 / (255.0 * s) for s in std], [-m / s for m, s in zip(mean, std)]


def _as_array(value: Any, identity: float) -> Any:
    """A converter's scale or offset as Rescaling takes it (None: none applied)."""
    return identity if value is None else np.asarray(value, np.float32)


def _rounded(value: Any) -> str:
    if value is None:
        return "none"
    return str([round(float(v), 6) for v in np.ravel(value)]) if np.ndim(value) else f"{float(value):.6g}"


class TextEmbedder:
    """The text tower of an index's SigLIP or CLIP preset: texts in, vectors comparable with the index's out.

    Build it with :func:`text_embedder_for`.

    Attributes:
        model: The index's backbone.
        weights: The index's weights (the preset both towers come from).
        dim: Length of each vector.
    """

    def __init__(self, model: str, weights: str, backbone: Any, preprocessor: Any, image_size: int) -> None:
        self.model = model
        self.weights = weights
        self.dim = int(backbone.projection_dim) if hasattr(backbone, "projection_dim") else None
        self._backbone = backbone
        self._preprocessor = preprocessor
        self._image_size = image_size

    def embed(self, texts: list[str]) -> np.ndarray:
        """The vectors of ``texts``: ``(len(texts), dim)`` float32, of unit length (only their direction counts).

        Raises:
            InvalidArgumentError: An empty text.
        """
        texts = [str(text) for text in texts]
        if not texts or not all(text.strip() for text in texts):
            raise InvalidArgumentError(f"Expected a text with words in it, got {texts!r}")
        # The preprocessors take images and prompts together; blank images stand in for the ones not used.
        blank = np.zeros((len(texts), self._image_size, self._image_size, 3), np.float32)
        tokens = self._preprocessor({"images": blank, "prompts": texts})["token_ids"]
        from sklearn.preprocessing import normalize

        vectors = np.asarray(self._backbone.get_text_embeddings(tokens), dtype=np.float32).reshape(len(texts), -1)
        return normalize(vectors).astype(np.float32)


def text_embedder_for(meta: IndexMeta, weights_path: str | os.PathLike | None = None) -> TextEmbedder:
    """The text tower of the preset an index's vectors came from.

    Args:
        meta: The index's meta.
        weights_path: Where the index's preset folder is now, if it has moved.

    Returns:
        A :class:`TextEmbedder` whose vectors live in the index's space.

    Raises:
        InvalidArgumentError: The index's backbone has no text tower, or it was embedded with untrained weights.
        MissingFileError: The index's preset folder is not there, or its preset cannot be downloaded.
        IndexIntegrityError: The preset's text vectors do not have the index's dimension.
        MissingDependencyError: keras-hub is not installed.
    """
    spec = HUB_BACKBONES.get(meta.model)
    if spec is None or not spec.has_text:
        with_text = ", ".join(s.name for s in HUB_BACKBONES.values() if s.has_text)
        raise InvalidArgumentError(
            f"text queries need an index embedded with a backbone that has a text tower ({with_text}); this index "
            f"was embedded with {meta.model!r}, which has none"
        )
    if not meta.pretrained:
        raise InvalidArgumentError(
            f"text queries need the index's preset, and this index was embedded with untrained {meta.model} "
            "weights, which have no trained text tower: index it again with its preset's own weights ('auto') or a "
            "preset folder"
        )
    weights, _ = meta.weights_argument(weights_path)
    preset = _resolve_preset(spec, weights)
    keras_hub = keras_hub_module()
    preprocessor_class = {"siglip": keras_hub.models.SigLIPPreprocessor, "clip": keras_hub.models.CLIPPreprocessor}
    preprocessor = _load(
        "text preprocessor", spec, preset, lambda: preprocessor_class[spec.family].from_preset(str(preset))
    )
    backbone = _load("backbone", spec, preset, lambda: keras_hub.models.Backbone.from_preset(str(preset)))
    check_preset_family(spec, backbone, preset)
    embedder = TextEmbedder(meta.model, meta.weights, backbone, preprocessor, int(meta.image_size))
    dim = embedder.embed(["a"]).shape[1]
    if dim != meta.dim:
        raise IndexIntegrityError(
            f"the text vectors of preset {str(preset)!r} have {dim} numbers, the index's {meta.dim}: it is not the "
            "preset the index was embedded with"
        )
    embedder.dim = dim
    return embedder
