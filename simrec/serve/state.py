"""What every request shares: the opened index and the photo-query extractor.

One :class:`Service` is made by :func:`simrec.serve.create_app` and reached by the
routes through the :func:`get_service` dependency, never through a module global.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request

from simrec.embedded_catalog import EmbeddedCatalog
from simrec.serve.batching import NeighbourBatcher, PhotoBatcher

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Service:
    """The index being served.

    Attributes:
        embedded: The index, loaded read-only with memory-mapped vectors.
        index_dir: Its folder (never written).
        max_upload_bytes: Largest photo upload accepted.
        weights_path: Where the index's weights file is now, if it has moved.
        exact: Exact search even when the index has an approximate-search structure.
        rows: ``product_id`` -> catalog row, for lookups in constant time.
        labels: Every label, sorted.
        batcher: Answers concurrent similar-product queries together.
        photo_batcher: Embeds concurrent photo queries together; the only user of the extractor.
    """

    embedded: EmbeddedCatalog
    index_dir: Path
    max_upload_bytes: int
    weights_path: str | os.PathLike | None = None
    exact: bool = False
    rows: dict[str, int] = field(init=False)
    labels: list[str] = field(init=False)

    def __post_init__(self) -> None:
        catalog = self.embedded.catalog
        self.rows = {product_id: row for row, product_id in enumerate(catalog["product_id"].astype(str))}
        self.labels = sorted(set(catalog["label"].astype(str))) if "label" in catalog.columns else []
        self._has_photo = [bool(p) for p in catalog["path"].astype(str)] if "path" in catalog.columns else []
        _ = self.embedded.neighbors  # fit once now, not racing in the first requests
        search = self.embedded.search(exact=self.exact)
        self.batcher = NeighbourBatcher(self.embedded, search)
        self.photo_batcher = PhotoBatcher(self.embedded, search, self.weights_path)

    def image_url(self, product_id: str) -> str | None:
        """The URL of a product's photo, or None when the index holds none for it."""
        row = self.rows.get(product_id)
        if row is None or not self._has_photo[row]:
            return None
        return "/images/" + quote(product_id, safe="/")

    def photo_path(self, product_id: str) -> Path | None:
        """A catalog product's photo file: the only files the service ever reads for a request."""
        row = self.rows.get(product_id)
        if row is None or not self._has_photo[row]:
            return None
        return Path(self.embedded.catalog["path"].iat[row])

    def products(self, label: str | None, offset: int, limit: int) -> tuple[int, pd.DataFrame]:
        catalog = self.embedded.catalog
        if label:
            catalog = catalog[catalog["label"].astype(str) == label]
        return len(catalog), catalog.iloc[offset : offset + limit]

    def warning(self) -> str | None:
        return self.embedded.warning

    def describe(self) -> dict[str, Any]:
        meta = self.embedded.meta
        return {
            "status": "ok",
            "items": len(self.embedded),
            "model": meta.get("model"),
            "weights": meta.get("weights"),
            "pretrained": bool(meta.get("pretrained", True)),
            "warning": self.warning(),
        }


def get_service(request: Request) -> Service:
    """FastAPI dependency: the :class:`Service` of the app serving this request."""
    return request.app.state.service
