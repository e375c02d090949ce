"""Plain records shared by every layer: what made an index's vectors, and what was not indexed.

:class:`ExtractorInfo` is stored in every index so queries use a matching extractor;
:class:`Failure` is one file that was given but not indexed, with its reason. Tables of
them use :data:`FAILURE_COLUMNS`; the catalog's own columns are :data:`CATALOG_COLUMNS`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

FORMAT_VERSION = 3
"""Version of the index folder format that simrec writes (3: the catalog and failures tables in Parquet)."""

READABLE_FORMATS = (1, 2, 3)
"""Index folder formats that simrec reads."""

CATALOG_COLUMNS = ["product_id", "path", "label"]
"""The columns every catalog has (metadata columns may follow)."""

FAILURE_COLUMNS = ["path", "reason", "stage"]
"""The columns of every failures table: the file, why it was not indexed, and the stage that found it."""

UNTRAINED_WARNING = (
    "UNTRAINED WEIGHTS: this index was embedded with untrained (random) weights, so "
    "recommendations are not meaningful (see README: 'Weights and offline use')"
)


@dataclass
class Failure:
    """A file that was given but not indexed, and why.

    Attributes:
        path: The file (or zip entry) as given.
        reason: Why it was not indexed, in words a person can act on.
        stage: ``"scan"`` (listing and identifying), ``"extract"`` (a zip entry) or
            ``"embed"`` (decoding and the model).
    """

    path: str
    reason: str
    stage: str = "scan"


def printable_path(path: str | os.PathLike) -> str:
    """A file name safe to write to CSV/JSON, even if it is not valid UTF-8."""
    raw = os.fsencode(path)  # the bytes on disk, even for names that are not UTF-8
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ExtractorInfo:
    """What an extractor is, stored in every index so queries use a matching one.

    Attributes:
        model: Backbone name (``"resnet50"``).
        weights: ``"imagenet"``, ``"random(seed=N)"`` or ``"file:NAME"``.
        pretrained: False for untrained (random) weights: results are not meaningful.
        image_size: Side of the square input, in pixels.
        preprocessing: Description of the pixel pipeline.
        precision: Compute precision (``"float32"``, ``"bfloat16"`` or ``"float16"``).
        device: ``"GPU"`` or ``"CPU"``.
        weights_path: Absolute path of the weights file, when one was used.
        backend: The Keras backend that ran it (``"tensorflow"``, ``"jax"`` or ``"torch"``).
            The same weights give the same embeddings on every backend, so an index made
            on one can be queried from another; untrained weights differ between backends.
        runtime: What executed the network: ``"keras"`` (the backend itself) or ``"openvino"``
            (OpenVINO's CPU plugin). Both give the same vectors to float32 rounding, so it is not
            part of what an index and its queries must share.
    """

    model: str
    weights: str
    pretrained: bool
    image_size: int
    preprocessing: str
    precision: str
    device: str
    weights_path: str = ""
    backend: str = "tensorflow"
    runtime: str = "keras"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extractor_info(model: Any) -> ExtractorInfo:
    """The :class:`ExtractorInfo` of a model made by :func:`build_extractor`.

    Raises:
        TypeError: ``model`` was not made by :func:`build_extractor` (it has no ``simrec_info``).
    """
    info = getattr(model, "simrec_info", None)
    if not isinstance(info, ExtractorInfo):
        raise TypeError("Expected an extractor made by simrec.build_extractor, got a model without simrec_info")
    return info
