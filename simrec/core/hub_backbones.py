"""The KerasHub backbones simrec embeds with (DINOv2, SigLIP 2, CLIP), and a shop's own ``.keras`` model.

Pure data, no Keras import. Each :class:`HubBackbone` names a KerasHub preset (downloaded by
KerasHub from Kaggle when online), its family, the image tower's architecture (so untrained
weights can be built and a preset folder checked against the name), its input side, its vector's
dimension and how that vector is taken. The three family names (``dinov2``, ``siglip``, ``clip``)
take any preset folder of their family (``--weights PRESET_DIR``), whatever its size.

A ``--model`` ending in ``.keras`` is a shop's own Keras model file (:func:`is_model_file`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAMILIES = {
    "dinov2": "DINOV2Backbone",
    "siglip": "SigLIPBackbone",
    "clip": "CLIPBackbone",
}
"""Each family and the KerasHub backbone class its presets hold."""

VECTORS = {
    "dinov2": "CLS token of the last layer (layer-normalised)",
    "siglip": "image embedding (the attention-pooling head)",
    "clip": "image embedding (CLS token through the image projection)",
}
"""The vector each family gives: the one its own retrieval uses (DINOv2's class token; the image-text
embedding of SigLIP and CLIP, so text queries land in the same space)."""

TEXT_FAMILIES = ("siglip", "clip")
"""Families with a text tower: their indexes answer text queries."""

CONVERTER_DEFAULTS = {
    "dinov2": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "siglip": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "clip": {"mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)},
}
"""Pixel normalisation of each family's published checkpoints, used only for untrained weights
(a preset brings its own image converter)."""

MODEL_FILE_SUFFIX = ".keras"
"""A ``--model`` with this ending is a Keras model file."""


@dataclass(frozen=True)
class HubBackbone:
    """One KerasHub backbone simrec can embed with.

    Attributes:
        name: What ``--model`` calls it (``"dinov2-small"``).
        family: A key of :data:`FAMILIES`.
        preset: The KerasHub preset name (``"dinov2_small"``), or ``""`` for a family name that
            takes any preset folder of its family.
        image_size: The input side of the preset's image converter: the default.
        dim: Length of its vector.
        parameters: Parameters of the extractor at ``image_size`` (the image tower that runs per photo),
            counted on the published architecture built with untrained weights.
        preset_parameters: Parameters of the whole preset (with a text tower for SigLIP and CLIP; DINOv2's
            with position embeddings for 518 px), as KerasHub's preset list states them.
        vision: The image tower's architecture (KerasHub constructor arguments).
    """

    name: str
    family: str
    preset: str = ""
    image_size: int = 224
    dim: int = 0
    parameters: int = 0
    preset_parameters: int = 0
    vision: dict[str, Any] = field(default_factory=dict)

    @property
    def has_text(self) -> bool:
        """Whether the family has a text tower (SigLIP, CLIP)."""
        return self.family in TEXT_FAMILIES

    @property
    def vector(self) -> str:
        """How the vector is taken, in words."""
        return VECTORS[self.family]


def _dinov2(name: str, preset: str, dim: int, layers: int, heads: int, parameters: int, total: int) -> HubBackbone:
    vision = {"patch_size": 14, "num_layers": layers, "hidden_dim": dim, "num_heads": heads}
    vision["intermediate_dim"] = 4 * dim
    return HubBackbone(name, "dinov2", preset, 224, dim, parameters, total, vision)


def _siglip(name: str, preset: str, size: int, patch: int, width: tuple[int, int, int, int], counts: tuple[int, int]):
    dim, layers, heads, mlp = width
    vision = {"patch_size": patch, "hidden_dim": dim, "num_layers": layers, "num_heads": heads, "intermediate_dim": mlp}
    return HubBackbone(name, "siglip", preset, size, dim, counts[0], counts[1], vision)


def _clip(
    name: str, preset: str, size: int, patch: int, width: tuple[int, int, int, int, int], counts: tuple[int, int]
):
    dim, layers, heads, mlp, projection = width
    vision = {"patch_size": patch, "hidden_dim": dim, "num_layers": layers, "num_heads": heads, "intermediate_dim": mlp}
    vision["projection_dim"] = projection
    return HubBackbone(name, "clip", preset, size, projection, counts[0], counts[1], vision)


_SIGLIP_BASE = (768, 12, 12, 3072)
_SIGLIP_LARGE = (1024, 24, 16, 4096)
_SIGLIP_SO400M = (1152, 27, 16, 4304)
_CLIP_BASE = (768, 12, 12, 3072, 512)
_CLIP_LARGE = (1024, 24, 16, 4096, 768)

HUB_BACKBONES: dict[str, HubBackbone] = {
    spec.name: spec
    for spec in [
        _dinov2("dinov2-small", "dinov2_small", 384, 12, 6, 22_155_264, 22_582_656),
        _dinov2("dinov2-base", "dinov2_base", 768, 12, 12, 86_777_856, 87_632_640),
        _dinov2("dinov2-large", "dinov2_large", 1024, 24, 16, 304_631_808, 305_771_520),
        _siglip("siglip2-base-16-224", "siglip2_base_patch16_224", 224, 16, _SIGLIP_BASE, (92_884_420, 375_188_230)),
        _siglip("siglip2-base-16-256", "siglip2_base_patch16_256", 256, 16, _SIGLIP_BASE, (92_930_560, 375_234_370)),
        _siglip("siglip2-base-16-384", "siglip2_base_patch16_384", 384, 16, _SIGLIP_BASE, (93_176_640, 376_856_194)),
        _siglip("siglip2-base-32-256", "siglip2_base_patch32_256", 256, 32, _SIGLIP_BASE, (94_552_384, 376_856_194)),
        _siglip(
            "siglip2-large-16-256", "siglip2_large_patch16_256", 256, 16, _SIGLIP_LARGE, (315_956_480, 881_527_106)
        ),
        _siglip(
            "siglip2-so400m-14-224", "siglip2_so400m_patch14_224", 224, 14, _SIGLIP_SO400M, (427_680_960, 1_135_463_922)
        ),
        _clip("clip-vit-b32", "clip_vit_base_patch32", 224, 32, _CLIP_BASE, (87_849_266, 151_277_363)),
        _clip("clip-vit-b16", "clip_vit_base_patch16", 224, 16, _CLIP_BASE, (86_192_837, 149_620_934)),
        _clip("clip-vit-l14", "clip_vit_large_patch14", 224, 14, _CLIP_LARGE, (303_966_465, 427_616_770)),
        HubBackbone("dinov2", "dinov2"),
        HubBackbone("siglip", "siglip"),
        HubBackbone("clip", "clip"),
    ]
}
"""Every KerasHub backbone by name, in the order of the table in docs/backbones.md; the last three
are the family names, which take any preset folder of their family."""


def is_model_file(name: object) -> bool:
    """Whether ``--model`` names a Keras model file (``shop.keras``) rather than a backbone."""
    return str(name).endswith(MODEL_FILE_SUFFIX)


def model_label(name: str) -> str:
    """What an index records as its model: a backbone's name, or a model file's name without its folder."""
    return Path(name).name if is_model_file(name) else name
