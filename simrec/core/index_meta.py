"""The index's meta (``meta.json``), typed: what made its vectors, how many there are, which files hold them.

``meta.json`` in an index folder is :meth:`IndexMeta.to_dict` written as JSON, and
:meth:`IndexMeta.from_dict` reads it back, refusing a ``meta.json`` whose required entries are missing,
null or of the wrong type. A key this simrec does not know is kept in :attr:`IndexMeta.extra`, and
saving a loaded index again (``save_index``, ``simrec colours``, ``simrec ann``) writes it unchanged;
``simrec index`` writes a new ``meta.json`` describing the model it ran.

Three rules about an index's model live here and nowhere else: whether its vectors were made
outside simrec (:attr:`IndexMeta.made_outside`), how weights are named (:func:`weights_name`),
and whether an extractor makes vectors comparable with the index's (:meth:`IndexMeta.differences`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simrec.core.backbones import BACKBONES
from simrec.core.defaults import SEED
from simrec.core.errors import IndexIntegrityError, InvalidArgumentError, MissingFileError
from simrec.core.hub_backbones import HUB_BACKBONES, is_model_file
from simrec.core.records import FORMAT_VERSION, ExtractorInfo

EXTERNAL_WEIGHTS = "external"
"""The weights of an index whose vectors were made outside simrec (:func:`simrec.save_vectors`)."""

OLDER_BACKEND = "tensorflow"
"""The Keras backend of indexes written before simrec recorded it."""

QUERY_KEYS = ("model", "weights", "image_size", "preprocessing")
"""What a query extractor must share with the index (its precision and runtime may differ)."""

REUSE_KEYS = (*QUERY_KEYS, "precision")
"""What an extractor must share with the index for ``simrec index`` to keep the index's vectors (the runtime
may differ: Keras and OpenVINO give the same vectors to float32 rounding)."""

_REQUIRED = ("format_version", "model", "weights", "count", "dim", "files")
_ALWAYS_WRITTEN = ("files", "photo_folders")
_TYPES = {
    "format_version": int,
    "model": str,
    "weights": str,
    "count": int,
    "dim": int,
    "failures": int,
    "image_size": int,
    "pretrained": bool,
    "runtime": str,
    "files": dict,
    "photo_folders": list,
    "ann": dict,
    "stored_neighbors": dict,
}
PRESET_WEIGHTS = "kerashub:"
"""Prefix of the weights of a KerasHub preset named by KerasHub (``"kerashub:dinov2_small"``)."""

MODEL_FILE_WEIGHTS = "sha256:"
"""Prefix of the weights of a Keras model file: its checksum, so a changed file is a different model."""

_RANDOM = "random(seed="
_FILE = "file:"
_FOLDER = "preset:"


def _is_a(value: Any, kind: type) -> bool:
    """JSON types as Python reads them: a bool is not a count."""
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def weights_name(weights: str | os.PathLike | None, seed: int | None = None) -> str:
    """How ``meta.json`` names weights: ``"imagenet"``, ``"random(seed=N)"``, ``"file:NAME"`` or ``"preset:NAME"``.

    Args:
        weights: ``"imagenet"``, ``"random"`` or None (untrained), a weights file, a KerasHub preset folder
            (``"preset:NAME"``), or a KerasHub preset name or handle (kept as it is).
        seed: The seed of untrained weights (default: :data:`~simrec.core.defaults.SEED`).

    Example:
        >>> weights_name("random", 3), weights_name("imagenet"), weights_name("/models/shop.weights.h5")
        ('random(seed=3)', 'imagenet', 'file:shop.weights.h5')
    """
    if weights is None or weights == "random":
        return f"{_RANDOM}{SEED if seed is None else seed})"
    if weights == "imagenet" or str(weights).startswith(PRESET_WEIGHTS) or "://" in str(weights):
        return str(weights)
    if Path(weights).is_dir():
        return f"{_FOLDER}{Path(weights).name}"
    return f"{_FILE}{Path(weights).name}"


@dataclass
class IndexMeta:
    """What an index's ``meta.json`` says.

    Attributes:
        model: The backbone (``"resnet50"``), or a description of an outside model.
        weights: :func:`weights_name` of the weights, or ``"external"``.
        pretrained: False for untrained (random) weights: results are not meaningful.
        image_size: Side of the square model input in pixels (None: made outside simrec).
        preprocessing: Description of the pixel pipeline.
        precision: Compute precision the index was embedded with.
        device: ``"GPU"`` or ``"CPU"``.
        weights_path: Absolute path of the weights file when it was last used.
        backend: The Keras backend that embedded it (None in older indexes: see :attr:`keras_backend`).
        runtime: What executed the network, ``"keras"`` or ``"openvino"`` (None in older indexes: Keras).
            Not part of what queries and re-indexing must share (:data:`QUERY_KEYS`, :data:`REUSE_KEYS`).
        format_version: The index folder format.
        simrec_version: The simrec that wrote it.
        count: Number of embedded items.
        dim: Dimension of each vector.
        failures: Number of files given but not embedded.
        created: When the vectors were assembled (ISO 8601, UTC).
        source: The catalog source the index was made from.
        generation: The committed generation of the folder.
        colour_signature: How the colour signatures were made, or None without them.
        ann: Description of the approximate-search structure (type, parameters, recall), or None.
        stored_neighbors: Description of the stored nearest products (``n_neighbors``,
            ``colour_weight``, ``seconds``), or None without them.
        files: Each stored file by role: ``{"name", "bytes", "sha256"}``.
        photo_folders: Folders inside the index holding its photos.
        format_1_files: Files the index's first format left, recorded at the upgrade.
        retired_photos: Photos of the previous generation still stored while it can be read.
        extra: Keys this simrec does not know, kept as they were.

    Example:
        >>> meta = IndexMeta(model="resnet50", weights="imagenet", image_size=224, count=2, dim=2048)
        >>> meta.made_outside, meta.keras_backend
        (False, 'tensorflow')
        >>> IndexMeta.from_dict(meta.to_dict()) == meta
        True
    """

    model: str
    weights: str
    pretrained: bool = True
    image_size: int | None = None
    preprocessing: str | None = None
    precision: str | None = None
    device: str | None = None
    weights_path: str | None = None
    backend: str | None = None
    runtime: str | None = None
    format_version: int = FORMAT_VERSION
    simrec_version: str | None = None
    count: int = 0
    dim: int = 0
    failures: int = 0
    created: str | None = None
    source: str | None = None
    generation: str | None = None
    colour_signature: str | None = None
    ann: dict[str, Any] | None = None
    stored_neighbors: dict[str, Any] | None = None
    files: dict[str, Any] = field(default_factory=dict)
    photo_folders: list[str] = field(default_factory=list)
    format_1_files: list[str] = field(default_factory=list)
    retired_photos: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, parsed: dict[str, Any], where: str = "meta.json") -> IndexMeta:
        """The meta of a parsed ``meta.json``.

        Args:
            parsed: The parsed JSON.
            where: The file, for the message.

        Raises:
            IndexIntegrityError: A required key is missing.
        """
        if not isinstance(parsed, dict):
            raise IndexIntegrityError(f"{where} lacks {', '.join(_REQUIRED)}: it is not a JSON object")
        absent = [key for key in _REQUIRED if parsed.get(key) is None]
        if absent:
            raise IndexIntegrityError(f"{where} lacks {', '.join(absent)}")
        wrong = [
            f"{key} is {parsed[key]!r}, expected {kind.__name__}"
            for key, kind in _TYPES.items()
            if key in parsed and parsed[key] is not None and not _is_a(parsed[key], kind)
        ]
        if wrong:
            raise IndexIntegrityError(f"{where} is damaged: {'; '.join(wrong)}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in parsed.items() if key in names}
        extra = {key: value for key, value in parsed.items() if key not in names}
        if known.get("pretrained", True) is None:  # unknown: say the results may not be meaningful
            known["pretrained"] = False
        return cls(**{key: value for key, value in known.items() if value is not None}, extra=extra)

    @classmethod
    def from_mapping(cls, described: Mapping[str, Any]) -> IndexMeta:
        """The meta of a plain mapping that describes vectors, as ``EmbeddedCatalog`` once took.

        Only ``model`` is needed; ``weights`` defaults to ``"external"`` (vectors made outside simrec).

        Raises:
            InvalidArgumentError: No ``model`` in it.
        """
        if not described.get("model"):
            raise InvalidArgumentError(
                f"Expected meta to name the model that made the vectors, got {dict(described)!r}; "
                "pass simrec.IndexMeta(model=..., weights=...)"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in described.items() if key in names and value is not None}
        extra = {key: value for key, value in described.items() if key not in names}
        return cls(**{"weights": EXTERNAL_WEIGHTS, **known}, extra=extra)

    @classmethod
    def from_extractor(cls, info: ExtractorInfo, **fields: Any) -> IndexMeta:
        """The meta of vectors made by the extractor ``info`` describes, with more ``fields``."""
        return cls(**info.to_dict(), **fields)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``meta.json``: unset entries left out, unknown keys written back."""
        written = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None or (value in ([], {}) and f.name not in _ALWAYS_WRITTEN):
                continue
            written[f.name] = value
        return {**written, **{key: value for key, value in self.extra.items() if key not in written}}

    def __getitem__(self, key: str) -> Any:
        """``meta["model"]`` as when ``meta.json`` was a dict (deprecated: use ``meta.model``).

        Raises:
            KeyError: ``meta.json`` has no such entry.
        """
        warnings.warn(f'meta["{key}"] is now meta.{key}; the dict access will be removed', FutureWarning, stacklevel=2)
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``meta.get("model")`` as when ``meta.json`` was a dict (deprecated: use ``meta.model``)."""
        warnings.warn(
            f'meta.get("{key}") is now meta.{key}; the dict access will be removed', FutureWarning, stacklevel=2
        )
        return self.to_dict().get(key, default)

    def replace(self, **changes: Any) -> IndexMeta:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @property
    def made_outside(self) -> bool:
        """Whether the vectors come from outside simrec (:func:`simrec.save_vectors`), so simrec cannot
        embed photos comparable with them."""
        known = self.model in BACKBONES or self.model in HUB_BACKBONES or is_model_file(self.model)
        return self.weights == EXTERNAL_WEIGHTS or not known or not self.image_size

    @property
    def keras_backend(self) -> str:
        """The Keras backend that embedded the index (TensorFlow for indexes older than this entry)."""
        return self.backend or OLDER_BACKEND

    def differences(self, info: ExtractorInfo, keys: tuple[str, ...] = QUERY_KEYS, other: str = "now") -> list[str]:
        """How vectors of the extractor ``info`` would differ from the index's, one ``"key: index X, now Y"``
        each (``other`` names the extractor's side); empty when they are comparable.

        Untrained weights must also come from the same Keras backend: the same seed draws different
        weights on different backends, while a weights file gives the same everywhere.
        """
        keys = keys + (("backend",) if not self.pretrained else ())
        actual = info.to_dict()
        own = {key: self.keras_backend if key == "backend" else getattr(self, key) for key in keys}
        return [f"{key}: index {own[key]!r}, {other} {actual[key]!r}" for key in keys if own[key] != actual[key]]

    def identity(self) -> dict[str, Any]:
        """What vectors must share to sit beside the index's: the keys ``simrec index`` compares before it
        reuses vectors (:data:`REUSE_KEYS`, and the Keras backend of untrained weights), as a JSON-ready dict.

        Example:
            >>> IndexMeta(model="resnet50", weights="imagenet", image_size=224).identity()["model"]
            'resnet50'
        """
        keys = REUSE_KEYS + (("backend",) if not self.pretrained else ())
        return {key: self.keras_backend if key == "backend" else getattr(self, key) for key in keys}

    def identity_differences(self, identity: Mapping[str, Any], other: str) -> list[str]:
        """How :meth:`identity` differs from another ``identity``, one ``"key: OTHER X, index Y"`` each
        (``other`` names where that identity comes from); empty when the vectors are comparable."""
        own = self.identity()
        keys = list(dict.fromkeys([*own, *identity]))
        return [
            f"{key}: {other} {identity.get(key)!r}, index {own.get(key)!r}"
            for key in keys
            if identity.get(key) != own.get(key)
        ]

    def weights_argument(self, weights_path: str | os.PathLike | None = None) -> tuple[str | Path | None, int]:
        """The ``(weights, seed)`` that rebuild the index's extractor with :func:`simrec.build_extractor`.

        Args:
            weights_path: Where the index's weights file is now, if it has moved.

        Raises:
            MissingFileError: The index used a weights file that is not there.
        """
        if self.weights.startswith(_RANDOM):
            return None, int(self.weights[len(_RANDOM) : -1])
        if self.weights.startswith((_FILE, _FOLDER, MODEL_FILE_WEIGHTS)):
            folder = self.weights.startswith(_FOLDER)
            name = self.model if self.weights.startswith(MODEL_FILE_WEIGHTS) else self.weights.split(":", 1)[1]
            path = Path(weights_path or self.weights_path or name)
            if not (path.is_dir() if folder else path.is_file()):
                what = "preset folder" if folder else "model file" if is_model_file(self.model) else "weights file"
                raise MissingFileError(
                    f"the index was embedded with the {what} {name} (last seen at "
                    f"{self.weights_path or 'an unknown place'}), which is not at {path}; "
                    "pass its path as weights_path",
                    parameters=("weights_path",),
                )
            return path, SEED
        return self.weights, SEED
