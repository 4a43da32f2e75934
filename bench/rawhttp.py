"""A minimal blocking HTTP/1.1 client on plain sockets, for moving large bodies cheaply.

The benchmark client shares the machine with the server, so every CPU cycle it spends is one the
server does not get. Bodies are therefore sent straight from one pre-built block of bytes with
``sendall`` / ``sendmsg`` and received with ``readinto`` into one reused buffer: no per-chunk
objects, no framing library, and never the whole body in memory.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

MiB = 1024 * 1024


class HttpError(Exception):
    """A response that was not what the benchmark needs (wrong status, short body, broken framing)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    #: Bytes of body received (equals ``len(body)`` unless the body was discarded).
    length: int
    #: Seconds from the start of connect() to the last byte of the response.
    elapsed: float

    def json(self) -> object:
        return orjson.loads(self.body)


class PatternStream:
    """``size`` bytes of one pseudo-random block repeated: made on the fly, never allocated whole."""

    def __init__(self, block: bytes, size: int) -> None:
        if not block:
            raise ValueError("the block must not be empty")
        self.block = memoryview(block)
        self.size = size

    def iter_views(self) -> Iterator[memoryview]:
        """The stream as views into the one block: no copy, no allocation per chunk."""
        whole, rest = divmod(self.size, len(self.block))
        for _ in range(whole):
            yield self.block
        if rest:
            yield self.block[:rest]


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(method: str, path: str, host: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(reader: BinaryIO) -> tuple[int, dict[str, str]]:
    while True:
        status_line = reader.readline(65536)
        if not status_line:
            raise HttpError("the server closed the connection without a response")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HttpError(f"malformed status line {status_line[:100]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 100:
            return status, headers


def _read_body(
    reader: BinaryIO, headers: dict[str, str], keep: bool, scratch: bytearray, method: str, status: int
) -> tuple[bytes, int]:
    """Read the body; when not ``keep``, count it into ``scratch`` and throw it away."""
    if method == "HEAD" or status in (204, 304):
        return b"", 0
    kept: list[bytes] = []
    view = memoryview(scratch)
    received = 0

    def take(count: int | None) -> None:
        nonlocal received
        while count is None or count > 0:
            want = len(view) if count is None else min(count, len(view))
            got = reader.readinto(view[:want])  # type: ignore[attr-defined]
            if not got:
                if count is None:
                    return
                raise HttpError(f"the body ended {count} bytes early")
            received += got
            if keep:
                kept.append(bytes(view[:got]))
            if count is not None:
                count -= got

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = reader.readline(1024)
            if not size_line:
                raise HttpError("the chunked body ended early")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                break
            take(size)
            reader.readline(16)
    elif "content-length" in headers:
        take(int(headers["content-length"]))
    else:
        take(None)
    return b"".join(kept), received


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    *,
    json_body: object | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    keep_body: bool = True,
    buffer_size: int = MiB,
) -> Response:
    """One request on a fresh connection, with a small or no body."""
    all_headers = dict(headers or {})
    payload = b""
    if json_body is not None:
        payload = orjson.dumps(json_body)
        all_headers.setdefault("Content-Type", "application/json")
    if payload or method in ("POST", "PUT", "PATCH"):
        all_headers["Content-Length"] = str(len(payload))
    started = time.perf_counter()
    with _connect(host, port, timeout) as sock, sock.makefile("rb", buffering=buffer_size) as reader:
        sock.sendall(_head(method, path, host, port, all_headers) + payload)
        status, response_headers = _read_head(reader)
        body, length = _read_body(reader, response_headers, keep_body, bytearray(buffer_size), method, status)
    return Response(status, response_headers, body, length, time.perf_counter() - started)


def upload(
    host: str,
    port: int,
    path: str,
    stream: PatternStream,
    *,
    chunked: bool = False,
    timeout: float = 120.0,
    progress: Callable[[int], None] | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """PUT ``stream`` as application/octet-stream, with Content-Length or chunked framing.

    ``timeout`` bounds each socket operation, not the whole transfer. ``progress`` is called with
    the bytes sent so far after each block. ``extra_headers`` are sent too (e.g. the target store).
    """
    headers = {"Content-Type": "application/octet-stream", **(extra_headers or {})}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(stream.size)
    started = time.perf_counter()
    with _connect(host, port, timeout) as sock, sock.makefile("rb", buffering=65536) as reader:
        sent = 0
        try:
            sock.sendall(_head("PUT", path, host, port, headers))
            for view in stream.iter_views():
                if chunked:
                    _sendmsg_all(sock, [f"{len(view):x}\r\n".encode(), view, b"\r\n"])
                else:
                    sock.sendall(view)
                sent += len(view)
                if progress is not None:
                    progress(sent)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The server may answer (an error) before reading the whole body: report its answer.
            try:
                status, response_headers = _read_head(reader)
                body, _ = _read_body(reader, response_headers, True, bytearray(65536), "PUT", status)
            except (OSError, HttpError):
                raise HttpError(f"the connection broke after {sent} bytes of the upload: {exc}") from exc
            raise HttpError(
                f"the server answered {status} after {sent} bytes of the upload: {body[:300]!r}"
            ) from exc
        status, response_headers = _read_head(reader)
        body, length = _read_body(reader, response_headers, True, bytearray(65536), "PUT", status)
    return Response(status, response_headers, body, length, time.perf_counter() - started)


def _sendmsg_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    views = [memoryview(b) for b in buffers]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def download(host: str, port: int, path: str, *, timeout: float = 120.0, buffer_size: int = MiB) -> Response:
    """GET ``path`` and count the body into one reused buffer (nothing is kept)."""
    return request(host, port, "GET", path, timeout=timeout, keep_body=False, buffer_size=buffer_size)
