"""The FastAPI application: routers, error answers, the upload limit and the static page."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simrec.core.errors import ImageDecodeError, InvalidArgumentError, SimrecError, UnknownProductError
from simrec.serve import api, pages
from simrec.serve.state import Service
from simrec.storage.index_folder import load_index

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024**2
_MULTIPART_OVERHEAD = 64 * 1024  # field headers and boundaries around the photo's bytes


def create_app(
    index_dir: str | os.PathLike,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    weights_path: str | os.PathLike | None = None,
    exact: bool = False,
):
    """The web service for one index folder.

    The index is opened once, memory-mapped and read-only; nothing is ever written to its
    folder. Photo queries build the index's extractor on first use and share it, one
    request at a time.

    Args:
        index_dir: Folder written by ``simrec index`` or :func:`simrec.save_vectors`.
        max_upload_bytes: Largest photo accepted by ``POST /api/similar``; bigger uploads
            get 413 before their body is read.
        weights_path: Where the index's weights file is now, if it has moved.
        exact: Exact search even when the index has an approximate-search structure
            (``simrec ann``), which is used otherwise.

    Returns:
        A ``fastapi.FastAPI`` app; run it with ``uvicorn.run(app)`` or ``simrec serve``.

    Raises:
        MissingFileError: The folder does not exist.
        IndexIntegrityError: It is not a complete index.

    Example:
        >>> app = create_app("simrec-demo/index")  # doctest: +SKIP
    """
    index_dir = Path(index_dir)
    embedded = load_index(index_dir, mmap=True)
    service = Service(embedded, index_dir, max_upload_bytes, weights_path, exact)
    app = FastAPI(
        title="simrec",
        description="Products that look alike, from their photos: the catalog, similar products for a product "
        "or an uploaded photo, and a web page at /.",
        version=_version(),
    )
    app.state.service = service
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes, paths=("/api/similar",))
    _add_error_answers(app)
    if embedded.warning:
        logger.warning(embedded.warning)
    return app


class UploadLimit:
    """Refuse request bodies over a limit with 413, without reading more than the limit.

    A declared ``Content-Length`` over the limit is refused before any of the body is
    read; a body without one (chunked) is counted as it arrives and refused as soon as it
    passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + _MULTIPART_OVERHEAD
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": self._detail(int(declared))}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, self._detail(received, more=True))
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self, size: int, more: bool = False) -> str:
        return (
            f"the upload is {'more than ' if more else ''}{size} bytes, over this server's limit of "
            f"{self.max_bytes} bytes for a photo (simrec serve --max-upload-mb); send a smaller photo"
        )


def _add_error_answers(app: FastAPI) -> None:
    """simrec's own exceptions become JSON ``{"detail": "..."}`` with the status that fits."""

    def answer(status: int):
        async def handler(request: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(error)}, status_code=status)

        return handler

    app.add_exception_handler(UnknownProductError, answer(404))
    app.add_exception_handler(InvalidArgumentError, answer(422))
    app.add_exception_handler(ImageDecodeError, answer(422))
    app.add_exception_handler(SimrecError, answer(409))

    async def validation(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            where = " ".join(str(part) for part in problem.get("loc", ()))
            received = problem.get("input")
            got = f" (got {received!r})" if received is not None and not isinstance(received, dict) else ""
            problems.append(f"{where}: {problem.get('msg')}{got}")
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    app.add_exception_handler(RequestValidationError, validation)


def _version() -> str:
    from simrec.core.version import __version__

    return __version__
