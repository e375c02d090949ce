"""What keeps the service's waiting and memory bounded: deadlines, the decode gate, and freed memory.

* Every request has a deadline (``simrec serve --timeout``, 5 s by default). The
  :class:`Deadline` middleware answers 503 with ``Retry-After`` to a request that has not
  begun its answer by then, whatever it was waiting for (a worker thread, a queue, the
  body of a slow upload); the batch queues and the decode gate give up at the same
  deadline, so nothing waits on behind a request that has been answered.
* :class:`DecodeGate` bounds how many uploads decode at once and how much memory their
  pixels may take together, from the size each photo declares in its header.
* :func:`return_freed_memory` makes large buffers go back to the operating system when
  they are freed (glibc keeps them in its heap otherwise: a burst of large uploads would
  leave the process gigabytes bigger).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_TIMEOUT = 5.0
RETRY_AFTER_SECONDS = 1
DECODE_BYTES_PER_PIXEL = 8
"""Decoding holds the decoded image (4 bytes a pixel, as Pillow stores RGB) and one converted copy."""
DEFAULT_DECODE_BUDGET = 1024**3
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 * 1024**2


class ServiceBusy(Exception):
    """A request that cannot be answered in time: the service answers 503 with Retry-After."""


def busy_response(detail: str) -> JSONResponse:
    """503 with ``Retry-After``, and a detail saying why."""
    return JSONResponse(
        {"detail": f"{detail}; retry in {RETRY_AFTER_SECONDS} s"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class Deadline:
    """Answer 503 with Retry-After to any request that has not started its answer within ``timeout`` seconds.

    The request's deadline (``time.monotonic()``) is put in ``request.state.deadline`` for
    the routes, which pass it on to what they wait for. An answer that has started
    (a photo being sent) is never cut off.

    The request runs in the task that received it, with one timer beside it: at the
    deadline, if no answer has started, the timer sends the 503 from a task of its own
    and whatever the request sends later is dropped (a task and a ``wait_for`` around
    every request cost a third of a product page's time).
    """

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["deadline"] = time.monotonic() + self.timeout
        started = False
        busy: asyncio.Future | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if busy is not None:  # this request was answered 503 already
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        def overdue() -> None:
            nonlocal busy
            if not started:
                detail = f"the server could not answer within its time limit of {self.timeout:g} s"
                busy = asyncio.ensure_future(busy_response(detail)(scope, receive, send))

        timer = asyncio.get_running_loop().call_later(self.timeout, overdue)
        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if busy is None:
                raise
            # answered 503 already: an error of the abandoned request is not the client's concern
        finally:
            timer.cancel()
        if busy is not None:
            await busy


class DecodeGate:
    """At most ``max_concurrent`` uploads decode at once, and their pixels take at most ``max_bytes``.

    A photo's cost is what its header declares (width x height x
    :data:`DECODE_BYTES_PER_PIXEL`), known before any pixel is decoded. A photo waits
    while the others' costs leave no room for it, and is refused with
    :class:`ServiceBusy` at its deadline; one photo alone is always admitted (the pixel
    limit of :func:`simrec.load_image` bounds it).

    Args:
        max_concurrent: Decodes at once (default: the number of cores).
        max_bytes: Memory all decodes at once may take.
    """

    def __init__(self, max_concurrent: int | None = None, max_bytes: int = DEFAULT_DECODE_BUDGET) -> None:
        import os

        self.max_concurrent = max_concurrent or os.cpu_count() or 1
        self.max_bytes = max_bytes
        self.running = 0
        self.in_use = 0
        self.peak_in_use = 0  # for tests and diagnostics
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def admit(self, path: str | Path, deadline: float) -> Iterator[int]:
        """Hold a place to decode the photo at ``path``; yields its cost in bytes.

        Raises:
            ServiceBusy: No place came free by ``deadline`` (``time.monotonic()``).
        """
        cost = photo_cost(path)
        with self._changed:
            while not self._fits(cost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServiceBusy(
                        f"{self.running} uploads are decoding ({self.in_use / 1024**2:.0f} MB); this server "
                        f"decodes at most {self.max_concurrent} at once in {self.max_bytes / 1024**2:.0f} MB"
                    )
                self._changed.wait(remaining)
            self.running += 1
            self.in_use += cost
            self.peak_in_use = max(self.peak_in_use, self.in_use)
        try:
            yield cost
        finally:
            with self._changed:
                self.running -= 1
                self.in_use -= cost
                self._changed.notify_all()

    def _fits(self, cost: int) -> bool:
        if self.running >= self.max_concurrent:
            return False
        return self.running == 0 or self.in_use + cost <= self.max_bytes


def photo_cost(path: str | Path) -> int:
    """Bytes a decode of the photo may take, from its header; a small cost when it has none that Pillow reads."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # load_image judges the size
            with Image.open(path) as image:
                width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 1024**2  # not an image, or a damaged one: load_image says which, at almost no cost
    return max(1, width) * max(1, height) * DECODE_BYTES_PER_PIXEL


def return_freed_memory() -> bool:
    """Make glibc give buffers of 4 MB and more back to the system when they are freed; False where it cannot.

    glibc raises its threshold for serving large buffers from its heap each time one is
    freed, and what the heap holds is kept by the process: after eight large uploads
    decoded at once, 1.3 GB stayed. A fixed threshold makes each large buffer a mapping
    of its own, unmapped when freed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False
