"""Run the service under uvicorn: one process or several behind one port, with deliberate limits.

The port is checked and bound before anything says "serving", so a port out of range or
already in use is a one-line error (exit status 2). With ``workers > 1`` uvicorn starts
that many processes that share the bound socket; each opens the index itself (the vectors
memory-mapped, so the page cache holds them once for all) and follows its commits.

uvicorn's limits, set here on purpose:

* a request's head (request line and headers) must arrive within
  :data:`HEADER_TIMEOUT` seconds of the connection opening or of the previous answer,
  else the connection is closed (uvicorn itself has no such limit: a client sending one
  byte a second would hold a connection for ever); a head is at most 64 KB;
* an idle keep-alive connection is closed after :data:`KEEP_ALIVE_TIMEOUT` seconds;
* the body and the answer together must begin within ``--timeout`` (else 503, see
  :mod:`simrec.serve.limits`);
* at most :data:`MAX_CONNECTIONS` connections and requests at once per worker; beyond
  that uvicorn answers 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from simrec.core.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_CONNECTIONS = 1024
MAX_HEAD_BYTES = 64 * 1024
BACKLOG = 2048


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol on httptools (llhttp, in C), with a deadline and a size limit for a head.

    httptools parses a request in a few microseconds where h11, in Python, took about half
    of a product page's time. It has no limit of its own on a head's size, so a head's
    parts (request line, header names and values) are counted as they are parsed, and so
    are the bytes of a head still incomplete after a read: past :data:`MAX_HEAD_BYTES` the
    request is answered 400 and the connection closed, as uvicorn does for a head it
    cannot parse.
    """

    header_timeout = HEADER_TIMEOUT
    max_head_bytes = MAX_HEAD_BYTES
    join_writes = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_complete = False
        self._head_bytes = self._head_received = 0
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # may begin and complete heads (the parser's callbacks below)
        if self._head_complete or self.transport.is_closing():
            return
        self._head_received += len(data)
        if self._head_received > self.max_head_bytes:  # a head that does not end: refused before it grows more
            self.send_400_response("Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_complete = False
        self._head_bytes = self._head_received = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:  # raised through the parser: uvicorn answers 400
            raise ValueError(f"request head over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._head_complete = True
        super().on_headers_complete()
        if self.join_writes and self.cycle is not None:
            self.cycle.transport = JoinedWrites(self.transport, self.loop)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_timer = None
        waiting = (self.cycle is None or self.cycle.response_complete) and not self.pipeline
        if waiting and not self.transport.is_closing():
            self.transport.close()  # no complete request head in time


class JoinedWrites:
    """A transport whose writes in one step of the event loop go to the socket as one.

    uvicorn writes an answer's head and its body separately, and asyncio sends each at
    once (``TCP_NODELAY``): two system calls and two TCP segments for every small JSON
    answer, the largest single cost of a product page. Held until the end of the loop's
    current step, they leave in one ``send``; their order, and what a streamed answer
    writes in later steps, are unchanged. Everything else is the transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)


def check_port(port: int) -> int:
    """The port, if it is one a server can listen on.

    Raises:
        InvalidArgumentError: Outside 1 to 65535.
    """
    if not 1 <= port <= 65535:
        raise InvalidArgumentError(f"Expected port between 1 and 65535, got {port}", parameters=("port",))
    return port


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, as uvicorn binds one.

    Raises:
        InvalidArgumentError: The address cannot be listened on (in use, not this machine's, ...).
    """
    check_port(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP. Without it Nagle's algorithm
    # held an answer's body until the client's delayed ACK, up to 40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another port or host",
            parameters=("port", "host"),
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, *, workers: int, verbose: int, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        workers=workers,
        http=GuardedHttpToolsProtocol,
        loop="asyncio",
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        limit_concurrency=MAX_CONNECTIONS,
        backlog=BACKLOG,
        log_level="warning" if verbose == 0 else "info",
        access_log=verbose > 0,  # logged at info, which verbose 0 does not show: not even formatted then
        proxy_headers=False,  # nothing simrec answers depends on the client's address or scheme
        **kwargs,
    )


def run(settings: dict[str, Any], *, host: str, port: int, workers: int = 1, verbose: int = 0) -> None:
    """Serve the index of ``settings`` (the arguments of :func:`simrec.serve.create_app`) until stopped.

    Raises:
        InvalidArgumentError: A bad port or one that cannot be listened on, or workers < 1.
        MissingFileError: The folder does not exist, or holds no ``meta.json``.
        IndexIntegrityError: The folder holds no complete index.
    """
    from simrec.serve.app import SETTINGS_VARIABLE, app_from_environment, create_app

    if workers < 1:
        raise InvalidArgumentError(f"Expected workers >= 1, got {workers}", parameters=("workers",))
    sock = bind(host, port)  # before the index is opened: a port in use is said at once
    try:
        if workers == 1:
            app = create_app(**settings, warm_up=True, log_warning=False)
            warning = app.state.service.current.warning()
            config = uvicorn_config(app, workers=1, verbose=verbose)
        else:
            from simrec.storage.index_folder import load_index

            # A bad folder is one line here, not one per worker; so is the index's warning.
            warning = load_index(settings["index_dir"], mmap=True).warning
            threads = max(1, (os.cpu_count() or 1) // workers)
            extra = {"warm_up": True, "log_warning": False, "quiet_backend": verbose < 2, "threads_per_worker": threads}
            os.environ[SETTINGS_VARIABLE] = json.dumps({**settings, **extra})
            target = f"{app_from_environment.__module__}:{app_from_environment.__name__}"
            config = uvicorn_config(target, factory=True, workers=workers, verbose=verbose)
    except BaseException:
        sock.close()
        raise
    where = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    print(
        f"serving {settings['index_dir']} on {where} with {workers} worker{'s' * (workers > 1)} (Ctrl-C stops)",
        file=sys.stderr,
    )
    if warning:
        logger.warning(warning)
    server = uvicorn.Server(config)
    if workers == 1:
        server.run(sockets=[sock])
    else:
        from uvicorn.supervisors import Multiprocess

        try:
            supervisor = Multiprocess(config, sockets=[sock])
        except TypeError:  # uvicorn before 0.30 takes the target too
            supervisor = Multiprocess(config, target=server.run, sockets=[sock])  # type: ignore[call-arg]
        supervisor.run()
