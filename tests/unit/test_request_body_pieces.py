"""Request bodies through the HTTP protocol, over a real loopback socket, on both event loops
(asyncio's and uvloop, which the server runs): every byte arrives, in order, as ``bytes``; a large
body is read past the parser in whole blocks and the connection goes on with the next request; a
slow client is not taken for a stalled one while a block fills, a stalled one still is; a slow
application still pauses the reading (bounded memory); the parser's pieces are handed over without
uvicorn's two copies (``_BodyChunks``)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from glimpse.api.http_protocol import RAW_BLOCK, RAW_MIN, BufferedHttpConnection, _BodyChunks
from glimpse.config import HttpLimits

MiB = 1024 * 1024
T = TypeVar("T")
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[T]], T]:
    def runner(coro: Awaitable[T]) -> T:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as loop_runner:
            return loop_runner.run(coro)  # type: ignore[arg-type]

    return runner


class BodyRecorder:
    """An ASGI app that reads each request's whole body (a pause after each message) and answers
    204, or answers ``early`` at once without reading the body."""

    def __init__(self, pause: float = 0, early: int | None = None) -> None:
        self.pause = pause
        self.early = early
        self.bodies: list[list[int]] = []
        self.types: set[type] = set()
        self.digests: list[str] = []
        self.ends: list[str] = []

    @property
    def sizes(self) -> list[int]:
        return [size for body in self.bodies for size in body]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if self.early is not None:
            headers = [(b"content-length", b"7")]
            await send({"type": "http.response.start", "status": self.early, "headers": headers})
            await send({"type": "http.response.body", "body": b"refused"})
            return
        sizes: list[int] = []
        digest = hashlib.sha256()
        self.bodies.append(sizes)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.ends.append("disconnect")
                return
            body = message["body"]
            self.types.add(type(body))
            if body:
                sizes.append(len(body))
                digest.update(body)
            if not message["more_body"]:
                break
            await asyncio.sleep(self.pause)
        self.digests.append(digest.hexdigest())
        self.ends.append("complete")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _request(body: bytes, *, chunked: bool = False) -> bytes:
    head = b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _cut(body, 300_000))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


@asynccontextmanager
async def _serving(app: BodyRecorder, limits: HttpLimits | None = None) -> AsyncIterator[int]:
    """The protocol serving ``app`` on a loopback port (yielded) of the running loop."""
    config = Config(app, log_config=None, lifespan="off")
    state = ServerState()
    server = await asyncio.get_running_loop().create_server(
        lambda: BufferedHttpConnection(config, state, {}, limits=limits or HttpLimits()), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(app: BodyRecorder, stream: bytes, piece: int, responses: int) -> list[bytes]:
    """Send ``stream`` in writes of ``piece`` bytes on one connection; the status lines of the
    first ``responses`` responses."""
    async with _serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def send() -> None:
            for part in _cut(stream, piece):
                writer.write(part)
                await writer.drain()

        sending = asyncio.create_task(send())
        statuses = []
        for _ in range(responses):
            statuses.append(await asyncio.wait_for(reader.readline(), 60))
            length = 0
            while (line := await asyncio.wait_for(reader.readline(), 60)) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        await sending
        writer.close()
        await writer.wait_closed()
        return statuses


@pytest.mark.parametrize("piece", [1000, 65536, 3 * MiB])
def test_every_byte_arrives_in_order_as_bytes(run: Any, piece: int) -> None:
    body = random.Random(piece).randbytes(6 * MiB + 17)
    app = BodyRecorder()
    statuses = run(_exchange(app, _request(body), piece, 1))
    assert statuses[0].startswith(b"HTTP/1.1 204")
    assert app.digests == [hashlib.sha256(body).hexdigest()]
    assert sum(app.sizes) == len(body)
    assert app.types == {bytes}


def test_a_large_body_is_handed_over_in_whole_blocks(run: Any) -> None:
    """Past the parser, the application receives the body in blocks of RAW_BLOCK (the last one
    shorter), not in the loop's reads: this fails if the large body took the parser's way."""
    body = random.Random(3).randbytes(8 * MiB + 5)
    app = BodyRecorder(pause=0.002)
    run(_exchange(app, _request(body), MiB, 1))
    assert app.digests == [hashlib.sha256(body).hexdigest()]
    assert app.sizes.count(RAW_BLOCK) >= 6
    assert all(size <= RAW_BLOCK + RAW_MIN for size in app.sizes)


@pytest.mark.parametrize("size", [RAW_MIN + 1, 3 * RAW_BLOCK, 3 * RAW_BLOCK + 1])
def test_the_connection_goes_on_after_a_large_body(run: Any, size: int) -> None:
    """The next requests, sent in the same writes as the body's last bytes, are parsed afresh:
    a small body, another large one, a chunked one."""
    rng = random.Random(size)
    bodies = [rng.randbytes(size), b"small", rng.randbytes(size + 7), rng.randbytes(RAW_BLOCK)]
    stream = b"".join(_request(body) for body in bodies[:3]) + _request(bodies[3], chunked=True)
    app = BodyRecorder()
    statuses = run(_exchange(app, stream, 200_000, len(bodies)))
    assert all(status.startswith(b"HTTP/1.1 204") for status in statuses)
    assert app.digests == [hashlib.sha256(body).hexdigest() for body in bodies]


def test_a_chunked_body_stays_with_the_parser(run: Any) -> None:
    body = random.Random(5).randbytes(4 * MiB + 3)
    app = BodyRecorder()
    statuses = run(_exchange(app, _request(body, chunked=True), MiB, 1))
    assert statuses[0].startswith(b"HTTP/1.1 204")
    assert app.digests == [hashlib.sha256(body).hexdigest()]


def test_a_body_answered_early_is_read_to_its_end(run: Any) -> None:
    """The application answers before reading: the body is still consumed as framing, and the
    request after it on the same connection gets its own answer."""
    body = random.Random(9).randbytes(5 * MiB)
    app = BodyRecorder(early=413)
    statuses = run(_exchange(app, _request(body) + _request(b"next"), MiB, 2))
    assert [status[:12] for status in statuses] == [b"HTTP/1.1 413", b"HTTP/1.1 413"]


def test_a_client_gone_mid_body_is_a_disconnect(run: Any) -> None:
    app = BodyRecorder()

    async def scenario() -> None:
        async with _serving(app) as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_request(bytes(4 * MiB))[: 2 * MiB])
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            for _ in range(100):
                if app.ends:
                    break
                await asyncio.sleep(0.05)

    run(scenario())
    assert app.ends == ["disconnect"]
    assert 0 < sum(app.sizes) < 4 * MiB


async def _trickle(app: BodyRecorder, body: bytes, head: int, pieces: int, gap: float) -> bytes:
    """Send the request with ``head`` bytes of body at once, then ``pieces`` bytes one at a time
    ``gap`` s apart, then (when ``pieces`` > 0) the rest; the server gives up on a body after 0.5 s
    without data. The status line, or b"" when the server closed the connection."""
    async with _serving(app, HttpLimits(client_socket_timeout=0.5)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = _request(body)
        sent = len(request) - len(body) + head
        writer.write(request[:sent])
        for _ in range(pieces):
            await asyncio.sleep(gap)
            writer.write(request[sent : sent + 1])
            sent += 1
        if pieces:
            writer.write(request[sent:])
        status = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        return status


def test_a_slow_client_is_not_stalled_while_a_block_fills(run: Any) -> None:
    """A byte every 0.2 s keeps a body alive (limit 0.5 s) although no block is full for 2 s."""
    body = random.Random(11).randbytes(2 * MiB)
    app = BodyRecorder()
    status = run(_trickle(app, body, RAW_MIN + 1000, 10, 0.2))
    assert status.startswith(b"HTTP/1.1 204")
    assert app.digests == [hashlib.sha256(body).hexdigest()]


def test_a_stalled_large_body_closes_the_connection(run: Any) -> None:
    app = BodyRecorder()
    status = run(_trickle(app, bytes(2 * MiB), RAW_MIN + 1000, 0, 0))
    assert status == b""
    assert app.ends == ["disconnect"]


def test_a_slow_application_pauses_the_reading(run: Any) -> None:
    """The body held between two receive() calls stays at one block plus one read, however far
    the client is ahead: the reading pauses while the application is behind."""
    body = random.Random(7).randbytes(16 * MiB)
    app = BodyRecorder(pause=0.005)
    statuses = run(_exchange(app, _request(body), MiB, 1))
    assert statuses[0].startswith(b"HTTP/1.1 204")
    assert sum(app.sizes) == len(body)
    assert max(app.sizes) <= RAW_BLOCK + RAW_MIN


def test_a_lone_piece_is_handed_over_as_it_is() -> None:
    piece = b"x" * 300_000
    held = _BodyChunks(bytearray())
    held += piece
    assert len(held) == len(piece)
    assert bytes(held) is piece


def test_pieces_are_joined_once_after_what_was_held() -> None:
    held = _BodyChunks(bytearray(b"ab"))
    held += b"cd"
    held += b"ef"
    assert len(held) == 6
    assert bytes(held) == b"abcdef"
    assert not _BodyChunks(bytearray())
