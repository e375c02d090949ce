"""What every request shares: the index generation being served, the batchers, and the limits.

One :class:`Service` is made by :func:`simrec.serve.create_app` and reached by the
routes through the :func:`get_service` and :func:`get_generation` dependencies, never
through a module global.

The service follows the index's commits (:class:`simrec.IndexFollower`): a thread looks
at ``meta.json`` once a second, opens a new generation beside the one being served, prepares
its lookup tables and search, and only then makes it current. Each request takes the
current :class:`ServedGeneration` once, when it starts, and is answered wholly from it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request

from simrec.embedded_catalog import EmbeddedCatalog, default_colour_weight, neighbors_for
from simrec.serve.batching import NeighborBatcher, PhotoBatcher
from simrec.serve.limits import DecodeGate, ServiceBusy
from simrec.storage.following import POLL_SECONDS, IndexFollower

logger = logging.getLogger(__name__)

_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")
"""The characters ``urllib.parse.quote(..., safe="/")`` never percent-encodes."""


@dataclass
class ServedGeneration:
    """One committed generation of the index, ready to answer requests.

    Attributes:
        embedded: The index, loaded read-only with memory-mapped vectors.
        search: Its search (approximate when it has an ann structure, unless ``exact``).
        ids: Each catalog row's ``product_id``.
        label_of: Each catalog row's label.
        rows: ``product_id`` -> catalog row, for lookups in constant time.
        labels: Every label, sorted.

    Raises:
        MissingDependencyError: The index has an ann structure, ``exact`` is False and faiss is not installed.
        IndexIntegrityError: Its ann structure is unreadable or holds other vectors than the index.
    """

    embedded: EmbeddedCatalog
    exact: bool = False
    search: Any = field(init=False)
    ids: list[str] = field(init=False)
    label_of: list[str] = field(init=False)
    rows: dict[str, int] = field(init=False)
    labels: list[str] = field(init=False)

    def __post_init__(self) -> None:
        catalog = self.embedded.catalog
        self.ids = catalog["product_id"].astype(str).tolist()
        self.label_of = catalog["label"].astype(str).tolist() if "label" in catalog.columns else [""] * len(catalog)
        self.rows = {product_id: row for row, product_id in enumerate(self.ids)}
        self.labels = sorted(set(catalog["label"].astype(str))) if "label" in catalog.columns else []
        self._has_photo = [bool(p) for p in catalog["path"].astype(str)] if "path" in catalog.columns else []
        self._rows_of_label: dict[str, list[int]] | None = None
        _ = self.embedded.neighbors  # fit once now, not racing in the first requests
        self.search = self.embedded.search(exact=self.exact)
        weight = default_colour_weight(self.embedded)
        if weight > 0:  # the blend too: id queries are planned on the event loop, which must not wait for a fit
            neighbors_for(self.embedded, weight)

    @property
    def generation(self) -> str | None:
        return self.embedded.meta.generation

    def image_url(self, product_id: str) -> str | None:
        """The URL of a product's photo, or None when the index holds none for it."""
        row = self.rows.get(product_id)
        return None if row is None else self.image_url_of(row)

    def image_url_of(self, row: int) -> str | None:
        """The URL of catalog row ``row``'s photo, or None when the index holds none for it."""
        if not self._has_photo[row]:
            return None
        product_id = self.ids[row]
        if _URL_SAFE.fullmatch(product_id):  # what quote() would leave as it is: skip its per-character work
            return "/images/" + product_id
        return "/images/" + quote(product_id, safe="/")

    def photo_path(self, product_id: str) -> Path | None:
        """A catalog product's photo file: the only files the service ever reads for a request."""
        row = self.rows.get(product_id)
        if row is None or not self._has_photo[row]:
            return None
        return Path(self.embedded.catalog["path"].iat[row])

    def product_rows(self, label: str | None, offset: int, limit: int) -> tuple[int, range | list[int]]:
        """How many products have ``label`` (all: None or empty), and the catalog rows of one page of them."""
        if not label:
            return len(self.ids), range(min(offset, len(self.ids)), min(offset + limit, len(self.ids)))
        if self._rows_of_label is None:
            by_label: dict[str, list[int]] = {}
            for row, name in enumerate(self.label_of):
                by_label.setdefault(name, []).append(row)
            self._rows_of_label = by_label
        rows = self._rows_of_label.get(label, [])
        return len(rows), rows[offset : offset + limit]

    def warning(self) -> str | None:
        return self.embedded.warning

    def describe(self) -> dict[str, Any]:
        meta = self.embedded.meta
        return {
            "status": "ok",
            "generation": self.generation,
            "items": len(self.embedded),
            "model": meta.model,
            "weights": meta.weights,
            "pretrained": meta.pretrained,
            "warning": self.warning(),
        }


class Service:
    """The index being served, following its commits, and what bounds the work.

    Args:
        index_dir: The index folder (never written).
        max_upload_bytes: Largest photo upload accepted.
        weights_path: Where the index's weights file is now, if it has moved.
        exact: Exact search even when the index has an approximate-search structure.
        timeout: Seconds a request may wait before it is answered 503 with Retry-After.
        poll_seconds: How often ``meta.json`` is looked at for a new commit.
        decode_gate: Bounds the uploads decoded at once and their memory.
        runtime: What runs the network of photo queries (``"auto"``, ``"keras"``, ``"openvino"``).

    Raises:
        MissingFileError: The folder does not exist.
        IndexIntegrityError: It holds no complete index.
        MissingDependencyError: The index has an ann structure, ``exact`` is False and faiss is not installed.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        max_upload_bytes: int,
        weights_path: str | os.PathLike | None = None,
        exact: bool = False,
        timeout: float = 5.0,
        poll_seconds: float = POLL_SECONDS,
        decode_gate: DecodeGate | None = None,
        *,
        runtime: str = "auto",
    ) -> None:
        self.index_dir = Path(index_dir)
        self.max_upload_bytes = max_upload_bytes
        self.weights_path = weights_path
        self.exact = exact
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.decode_gate = decode_gate or DecodeGate()
        self.follower = IndexFollower(index_dir, mmap=True, poll_seconds=poll_seconds, prepare=self._prepare)
        self.batcher = NeighborBatcher()
        self.photo_batcher = PhotoBatcher(weights_path, runtime=runtime)
        self._stop = threading.Event()
        self._follow = threading.Thread(target=self._follow_commits, name="simrec-follow", daemon=True)
        self._follow.start()

    @property
    def current(self) -> ServedGeneration:
        """The generation new requests are answered from."""
        return self.follower.current.prepared

    def warm_up(self) -> None:
        """Build the photo extractor now, when the index can embed photos, instead of on the first upload.

        Raises:
            MissingFileError: The index used a weights file that is not there.
        """
        if not self.current.embedded.meta.made_outside:
            self.photo_batcher.warm_up(self.current)

    def close(self) -> None:
        """Stop following commits."""
        self._stop.set()

    def _prepare(self, embedded: EmbeddedCatalog) -> ServedGeneration:
        return ServedGeneration(embedded, self.exact)

    def _follow_commits(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.follower.refresh(force=True)
            except Exception:  # a bug here must not stop the service from answering from its generation
                logger.exception("could not look for a new generation of %s", self.index_dir)


async def get_service(request: Request) -> Service:
    """FastAPI dependency: the :class:`Service` of the app serving this request.

    ``async`` so FastAPI calls it on the event loop: a plain function would be sent to a
    worker thread and back on every request.
    """
    return request.app.state.service


async def get_generation(request: Request) -> ServedGeneration:
    """FastAPI dependency: the generation this request is answered from, taken once when it starts.

    ``async``, as :func:`get_service`.

    Raises:
        ServiceBusy: The request reached its route past its deadline.
    """
    deadline = getattr(request.state, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline:
        limit = request.app.state.service.timeout
        raise ServiceBusy(f"the request waited past this server's time limit ({limit:g} s) before it could start")
    return request.app.state.service.current


def deadline_of(request: Request, service: Service) -> float:
    """The ``time.monotonic()`` by which this request must be answered."""
    return getattr(request.state, "deadline", None) or time.monotonic() + service.timeout
