"""Request bodies through the HTTP protocol, over a real loopback socket: every byte arrives, in
order, as ``bytes``; a slow application still pauses the reading (bounded memory); and the pieces
are handed over without uvicorn's two copies (``_BodyChunks``)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from glimpse.api.http_protocol import GuardedHttpProtocol, _BodyChunks
from glimpse.config import HttpLimits

MiB = 1024 * 1024


class BodyRecorder:
    """An ASGI app that reads the whole body, a pause after each message, and answers 204."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.sizes: list[int] = []
        self.types: set[type] = set()
        self.digest = hashlib.sha256()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            body = message["body"]
            self.types.add(type(body))
            if body:
                self.sizes.append(len(body))
                self.digest.update(body)
            more = message["more_body"]
            await asyncio.sleep(self.pause)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _upload(app: BodyRecorder, body: bytes, piece: int) -> bytes:
    loop = asyncio.get_running_loop()
    config = Config(app, log_config=None, lifespan="off")
    state = ServerState()
    server = await loop.create_server(
        lambda: GuardedHttpProtocol(config, state, {}, limits=HttpLimits()), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), piece):
            writer.write(body[start : start + piece])
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 60)
        writer.close()
        await writer.wait_closed()
        return status
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("piece", [1000, 65536, 3 * MiB])
def test_every_byte_arrives_in_order_as_bytes(piece: int) -> None:
    body = random.Random(piece).randbytes(6 * MiB + 17)
    app = BodyRecorder(pause=0)
    status = asyncio.run(_upload(app, body, piece))
    assert status.startswith(b"HTTP/1.1 204")
    assert app.digest.hexdigest() == hashlib.sha256(body).hexdigest()
    assert sum(app.sizes) == len(body)
    assert app.types == {bytes}


def test_a_slow_application_pauses_the_reading() -> None:
    """The body held between two receive() calls stays near uvicorn's high-water mark (64 KiB) plus
    one read, however far the client is ahead: the flow control still sees the body's length."""
    body = random.Random(7).randbytes(16 * MiB)
    app = BodyRecorder(pause=0.005)
    status = asyncio.run(_upload(app, body, MiB))
    assert status.startswith(b"HTTP/1.1 204")
    assert sum(app.sizes) == len(body)
    assert max(app.sizes) <= MiB


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
