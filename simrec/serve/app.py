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

from simrec.core.errors import ImageDecodeError, InvalidArgumentError, SimrecError, UnknownProductError, in_terms_of
from simrec.serve import api, pages
from simrec.serve.limits import DEFAULT_TIMEOUT, Deadline, DecodeGate, ServiceBusy, busy_response, return_freed_memory
from simrec.serve.state import Service
from simrec.storage.following import POLL_SECONDS

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024**2
_MULTIPART_OVERHEAD = 64 * 1024  # field headers and boundaries around the photo's bytes
SETTINGS_VARIABLE = "SIMREC_SERVE"


def create_app(
    index_dir: str | os.PathLike,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    weights_path: str | os.PathLike | None = None,
    runtime: str = "auto",
    exact: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    poll_seconds: float = POLL_SECONDS,
    decode_gate: DecodeGate | None = None,
    warm_up: bool = False,
    log_warning: bool = True,
):
    """The web service for one index folder, following its commits.

    The index is opened memory-mapped and read-only; nothing is ever written to its
    folder. Once a second the service looks for a newly committed generation, opens it beside
    the one it serves and switches to it; each request is answered wholly from the
    generation it started on. Photo queries share one extractor, called by one thread.

    Args:
        index_dir: Folder written by ``simrec index`` or :func:`simrec.save_vectors`.
        max_upload_bytes: Largest photo accepted by ``POST /api/similar``; bigger uploads
            get 413 before their body is read.
        weights_path: Where the index's weights file is now, if it has moved.
        runtime: What runs the network of photo queries: ``"auto"``, ``"keras"`` or ``"openvino"``
            (see :func:`simrec.build_extractor`).
        exact: Exact search even when the index has an approximate-search structure
            (``simrec ann``), which is used otherwise.
        timeout: Seconds a request may take to begin its answer; later, it is answered
            503 with ``Retry-After`` (``simrec serve --timeout``).
        poll_seconds: How often ``meta.json`` is looked at for a new commit.
        decode_gate: Bounds the uploads decoded at once and their memory (default: one
            per core, 1 GB together).
        warm_up: Build the photo extractor now rather than on the first upload.
        log_warning: Log the index's warning (untrained weights) now; ``simrec serve`` logs it
            itself, once for all its workers.

    Returns:
        A ``fastapi.FastAPI`` app; run it with ``uvicorn.run(app)`` or ``simrec serve``.

    Raises:
        MissingFileError: The folder does not exist, or with ``warm_up`` the index's weights file is not there.
        IndexIntegrityError: It is not a complete index.

    Example:
        >>> app = create_app("simrec-demo/index")  # doctest: +SKIP
    """
    return_freed_memory()
    service = Service(
        Path(index_dir),
        max_upload_bytes,
        weights_path,
        exact,
        timeout,
        poll_seconds,
        decode_gate or DecodeGate(),
        runtime=runtime,
    )
    if warm_up:
        service.warm_up()
    app = FastAPI(
        title="simrec",
        description="Products that look alike, from their photos: the catalog, similar products for a product "
        "or an uploaded photo, and a web page at /.",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        on_shutdown=[service.close],
    )
    app.state.service = service
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    _add_docs(app)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes, paths=("/api/similar",))
    app.add_middleware(Deadline, timeout=timeout)
    _add_error_answers(app)
    if log_warning and service.current.warning():
        logger.warning(service.current.warning())
    return app


def app_from_environment():
    """The app of ``simrec serve --workers N``: each worker process calls this (uvicorn ``factory=True``).

    Its arguments come as JSON in the ``SIMREC_SERVE`` environment variable, set by the
    command line before the workers start.
    """
    import json

    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    threads = settings.pop("threads_per_worker", None)
    if threads:  # the workers share the cores: each one's matrix products use its share, not all of them
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    if settings.pop("quiet_backend", False):
        from simrec.pipeline.backend import import_backend_quietly

        import_backend_quietly(0)
    return create_app(settings.pop("index_dir"), **settings)


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from assets served by the app itself, as FastAPI documents."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="simrec - Swagger UI",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title="simrec - ReDoc",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


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
            f"{self.max_bytes} bytes for a photo; send a smaller photo"
        )


QUERY_PARAMETERS = {"n_neighbors": "k"}
"""The service's query parameter for each Python parameter it names differently (``colour_weight`` is the same)."""


def _add_error_answers(app: FastAPI) -> None:
    """simrec's own exceptions become JSON ``{"detail": "..."}`` with the status that fits, in the service's words."""

    def answer(status: int):
        async def handler(request: Request, error: SimrecError) -> JSONResponse:
            return JSONResponse({"detail": in_terms_of(error, QUERY_PARAMETERS)}, status_code=status)

        return handler

    app.add_exception_handler(UnknownProductError, answer(404))
    app.add_exception_handler(InvalidArgumentError, answer(422))
    app.add_exception_handler(ImageDecodeError, answer(422))
    app.add_exception_handler(SimrecError, answer(409))

    async def busy(request: Request, error: ServiceBusy) -> JSONResponse:
        return busy_response(str(error))

    app.add_exception_handler(ServiceBusy, busy)

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
