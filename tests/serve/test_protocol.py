"""The HTTP protocol simrec serve runs: httptools, with a deadline and a size limit for each request's head."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from simrec.serve.running import MAX_HEAD_BYTES, GuardedHttpToolsProtocol, bind, uvicorn_config


async def _echo_length(scope, receive, send):
    """A tiny ASGI app: answers with the number of body bytes it received."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(str(size)))]})
    await send({"type": "http.response.body", "body": str(size).encode()})


class _QuickHead(GuardedHttpToolsProtocol):
    header_timeout = 1.0


@pytest.fixture
def server():
    """A uvicorn server of :func:`_echo_length` with simrec's settings, and its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    sock = bind("127.0.0.1", free)
    config = uvicorn_config(_echo_length, workers=1, verbose=0)
    config.http = _QuickHead
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield server, free
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def port(server):
    return server[1]


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; the answer, head and body, or what came before the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
        return received


def test_a_head_over_the_limit_is_refused_with_400(port):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1024) + b"\r\n\r\n"
    answer = _exchange(port, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


def test_a_large_body_in_the_same_read_as_its_head_is_not_a_large_head(port):
    body = b"x" * (4 * MAX_HEAD_BYTES)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    answer = _exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(body)).encode()), answer[:100]


def test_keep_alive_requests_each_get_their_answer(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for size in (3, 70_000, 0):
            conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size)
            answer = b""
            while not answer.endswith(str(size).encode()):
                answer += conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")


def test_a_slow_head_is_cut_off_at_its_deadline(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall(b"GET / HTTP/1.1\r\n")  # and nothing more
        assert conn.recv(1024) == b""  # closed by the server, without an answer
        assert 0.9 <= time.monotonic() - started < 5


def test_a_head_that_does_not_end_is_refused_once_past_the_limit(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with pytest.raises(OSError):  # the server closes the connection: a reset while sending, or
            while sent < 100 * MAX_HEAD_BYTES:
                conn.sendall(b"a" * 8192)
                sent += 8192
                time.sleep(0.001)
            raise OSError("the server read 100 times the limit without refusing it")
        assert sent < 10 * MAX_HEAD_BYTES


def test_connections_send_without_delay_and_answers_whole(server):
    """TCP_NODELAY: without it, Nagle's algorithm held each answer's body until the client's delayed ACK (40 ms)."""
    uvicorn_server, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head is not complete: the connection stays open
        time.sleep(0.2)
        (protocol,) = uvicorn_server.server_state.connections
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_writes_in_one_step_of_the_loop_leave_as_one():
    import asyncio

    from simrec.serve.running import JoinedWrites

    class Recorder:
        def __init__(self):
            self.writes, self.closed, self.aborted = [], False, False

        def write(self, data):
            self.writes.append(data)

        def is_closing(self):
            return self.closed

        def close(self):
            self.closed = True

        def abort(self):
            self.aborted = True

        def get_write_buffer_size(self):
            return 0

    async def scenario():
        recorder = Recorder()
        joined = JoinedWrites(recorder, asyncio.get_running_loop())
        joined.write(b"head ")
        joined.write(b"body")
        assert recorder.writes == [] and joined.get_write_buffer_size() == 9
        await asyncio.sleep(0)
        assert recorder.writes == [b"head body"]
        joined.write(b"chunk 2")
        await asyncio.sleep(0)
        joined.write(b"last")
        joined.close()  # what was held leaves before the connection closes
        assert recorder.writes == [b"head body", b"chunk 2", b"last"] and recorder.closed
        joined.write(b"never sent")
        joined.abort()
        await asyncio.sleep(0)
        assert recorder.writes[-1] == b"last" and recorder.aborted

    asyncio.run(scenario())


def test_a_late_answer_is_503_at_its_deadline_and_the_connection_serves_the_next():
    import asyncio

    from simrec.serve.limits import Deadline

    async def slow_then_fast(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.sleep(3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(Deadline(slow_then_fast, timeout=0.3), workers=1, verbose=0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [bind("127.0.0.1", free)]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with socket.create_connection(("127.0.0.1", free), timeout=5) as conn:
            started = time.monotonic()
            conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"retry in" not in answer:
                answer += conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer.lower()
            assert time.monotonic() - started < 2  # at the deadline, not when the slow request ends
            conn.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok"):
                answer += conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 200" not in answer[12:]
    finally:
        server.should_exit = True
        thread.join(10)
