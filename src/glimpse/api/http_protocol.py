"""The HTTP/1.1 connection handler: uvicorn's httptools protocol with limits that answer.

uvicorn parses requests with httptools and leaves several things unbounded: the size of a request's
line and headers (a client may send megabytes of them), the time a client takes to send them (a
slowloris holds a connection forever), the time a request body may stall, and the number of
connections (its ``limit_concurrency`` answers a bare 503 with no ``Retry-After``).
:class:`GuardedHttpProtocol` adds the :class:`~glimpse.config.HttpLimits` and answers each breach
with a Glance-shaped error and a message that says what to do, then closes the connection:

=====================================  ====  ==============================================
request line longer than max_header_line  414  before the application sees the request
a header line longer than max_header_line  431
line + headers over max_header_size        431  counted as bytes arrive: memory stays bounded
headers not complete within                408  from the connection or the request's first byte
client_header_timeout
more than max_client_connections open      503  ``Retry-After``; counted per process
a body stalled for client_socket_timeout   --   connection closed: the upload is reverted as
                                                for any client that goes away
=====================================  ====  ==============================================

A body does not count as stalled while the server itself has paused reading (flow control, when the
application is slower than the client).

The event loop reads into buffers of this module's own (:class:`BufferedHttpConnection`). A body
with more than :data:`RAW_MIN` bytes still to come after its headers is then read straight into
blocks of :data:`RAW_BLOCK`, past the parser, and handed to the application one block at a time:
one copy of each byte between the socket and the application, where uvicorn's path makes three (the
loop's, the parser's and its body buffer's) and cuts the body into the loop's 256 KiB reads. The
parser is given a fresh state once the body is complete. Smaller and chunked bodies go through the
parser, with at most one copy where uvicorn makes two (:class:`_BodyChunks`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from http import HTTPStatus
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from glimpse.api.errors import error_body
from glimpse.config import HttpLimits

log = logging.getLogger(__name__)

#: Seconds a client refused for too many connections is asked to wait.
RETRY_AFTER = 5
#: A body with more than this still to arrive once its headers are parsed is read past the parser.
RAW_MIN = 256 * 1024
#: The blocks such a body is read into and handed over in.
RAW_BLOCK = 1024 * 1024
#: Bytes read at once when no large body is under way (as uvloop's own reads).
READ_SIZE = 256 * 1024


class _ReadBuffer(threading.local):
    """One read buffer per thread: a read is copied out of it before the loop reads again, and an
    event loop reads from one thread, so its connections can share it."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


_read_buffer = _ReadBuffer()


class _BodyChunks:
    """The body a request cycle holds between two ``receive()`` calls, as the pieces received.

    uvicorn appends every piece to a ``bytearray`` and copies that into ``bytes`` when the
    application receives it: two copies of every byte of an upload, about a quarter of the event
    loop's work on a 1 GiB ``PUT /file``. This keeps the pieces instead (``+=``, ``len()`` as
    uvicorn uses them) and ``bytes()`` hands over a lone piece as it is, or joins several once.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self, start: bytearray) -> None:
        self._parts: list[bytes] = [bytes(start)] if start else []
        self._size = len(start)

    def __iadd__(self, data: bytes) -> _BodyChunks:
        self._parts.append(data)
        self._size += len(data)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)


class GuardedHttpProtocol(HttpToolsProtocol):
    """One client connection, with :class:`HttpLimits` enforced (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0
        self._refusal: tuple[int, str, dict[str, str]] | None = None
        #: Body bytes of the current request not received yet (0 unless it has a Content-Length).
        self._body_left = 0
        #: While a body is read past the parser: its block, and how much of it is filled.
        self._raw_block: bytearray | None = None
        self._raw_fill = 0

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refusal is None and self._in_head and self._head_bytes > self.limits.max_header_size:
            self._refuse_head_size()
        if self._refusal is not None and not self.transport.is_closing():
            self._send_refusal()

    # -- reading into our own buffers (BufferedHttpConnection) --------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        block = self._raw_block
        if block is None:
            return _read_buffer.view
        return memoryview(block)[self._raw_fill : min(len(block), self._raw_fill + self._body_left)]

    def buffer_updated(self, nbytes: int) -> None:
        block = self._raw_block
        if block is None:
            self.data_received(bytes(_read_buffer.view[:nbytes]))
            if (
                self._body_left > RAW_MIN
                and self._refusal is None
                and self.cycle is not None
                and not self.transport.is_closing()
            ):
                self._raw_block = bytearray(RAW_BLOCK)
                self._raw_fill = 0
            return
        self._unset_keepalive_if_required()
        self._body_seen = self.loop.time()  # a slow client is not stalled while a block fills
        self._raw_fill += nbytes
        self._body_left -= nbytes
        if self._raw_fill < len(block) and self._body_left:
            return
        piece = bytes(block) if self._raw_fill == len(block) else bytes(memoryview(block)[: self._raw_fill])
        self._raw_fill = 0
        self.on_body(piece)
        if not self._body_left:
            # The parser still waits for the body it did not see: the next request starts afresh.
            self._raw_block = None
            self.on_message_complete()
            self.parser = httptools.HttpRequestParser(self)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)

    # -- parser callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_left = 0
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if self._refusal is None and len(self.url) > self.limits.max_header_line:
            self._refuse(
                414,
                f"The request line is longer than {self.limits.max_header_line} bytes (max_header_line); "
                "use a shorter URL, for example fewer query parameters.",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if self._refusal is None and len(name) + len(value) + 2 > self.limits.max_header_line:
            shown = name[:64].decode("latin-1")
            self._refuse(
                431,
                f"The header {shown!r} is longer than {self.limits.max_header_line} bytes "
                "(max_header_line); send a shorter value.",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self._refusal is None:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limits.max_header_size:
                self._refuse_head_size()
        if self._refusal is not None:
            return
        if len(self.connections) > self.limits.max_client_connections:
            self._refuse(
                503,
                f"This server process has {self.limits.max_client_connections} connections open "
                f"(max_client_connections); retry in {RETRY_AFTER} seconds.",
                {"Retry-After": str(RETRY_AFTER)},
            )
            return
        super().on_headers_complete()
        expects_body, self._body_left = self._body_framing()
        if expects_body:
            self._body_seen = self.loop.time()
            self._body_timer = self.loop.call_later(self.limits.client_socket_timeout, self._check_body)

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        self._body_seen = self.loop.time()
        if self._raw_block is None:
            self._body_left -= len(body)
        cycle = self.cycle
        if type(cycle.body) is bytearray:  # new, or just emptied by receive()
            cycle.body = cast(bytearray, _BodyChunks(cycle.body))
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._refusal is not None or self.cycle is None:
            return
        super().on_message_complete()

    # -- limits -------------------------------------------------------------------------------------

    def _body_framing(self) -> tuple[bool, int]:
        """Whether the request has a body, and its Content-Length: 0 for a chunked body or an upgrade
        (those stay with the parser, which has already refused a malformed or repeated length)."""
        chunked = upgrade = False
        length = b""
        for name, value in self.headers:
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"upgrade":
                upgrade = True
            elif name == b"content-length":
                length = value.strip()
        expects_body = chunked or length not in (b"", b"0")
        return expects_body, 0 if chunked or upgrade or not length else int(length)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.client_header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refusal is not None or self.transport.is_closing():
            return
        self._refuse(
            408,
            f"The request line and headers did not arrive within {self.limits.client_header_timeout:g} "
            "seconds (client_header_timeout); send them at once.",
        )
        self._send_refusal()

    def _check_body(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.cycle is None or not self.cycle.more_body:
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The server holds the client back (the application is slower): not a stall.
            self._body_seen = now
        idle = now - self._body_seen
        if idle < self.limits.client_socket_timeout:
            self._body_timer = self.loop.call_later(
                self.limits.client_socket_timeout - idle, self._check_body
            )
            return
        log.warning(
            "closing a connection from %s: its request body stalled for %g seconds (client_socket_timeout)",
            self.client,
            self.limits.client_socket_timeout,
        )
        self.transport.close()

    def _refuse_head_size(self) -> None:
        self._refuse(
            431,
            f"The request line and headers are longer than {self.limits.max_header_size} bytes "
            "(max_header_size); send fewer or shorter headers.",
        )

    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._refusal = (status, message, headers or {})

    def _send_refusal(self) -> None:
        assert self._refusal is not None
        status, message, headers = self._refusal
        log.warning("refusing a request from %s with %d: %s", self.client, status, message)
        accept = next(
            (value.decode("latin-1") for name, value in self.headers or () if name == b"accept"), None
        )
        media_type, body = error_body(status, message, accept or "application/json")
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"content-type: {media_type}"]
        lines += [f"content-length: {len(body)}", "connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._cancel_timers()
        self.transport.close()


class BufferedHttpConnection(asyncio.BufferedProtocol):
    """What the event loop sees of a connection: it reads into the buffers :class:`GuardedHttpProtocol`
    gives (see the module docstring) and passes everything else on to it.

    A separate object because uvloop reads into a protocol's buffers only when the protocol is not an
    :class:`asyncio.Protocol`, which uvicorn's protocol is. uvicorn counts and shuts down the
    :class:`GuardedHttpProtocol` (``http``) as it does any of its connections.
    """

    __slots__ = ("http",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.http = GuardedHttpProtocol(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.http.connection_made(cast(asyncio.Transport, transport))

    def connection_lost(self, exc: Exception | None) -> None:
        self.http.connection_lost(exc)

    def eof_received(self) -> None:
        self.http.eof_received()

    def pause_writing(self) -> None:
        self.http.pause_writing()

    def resume_writing(self) -> None:
        self.http.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.http.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.http.buffer_updated(nbytes)
