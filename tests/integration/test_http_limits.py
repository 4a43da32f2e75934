"""Limits with answers, over real sockets to a live ``glimpse-server serve`` (docs/operations.md).

Oversized request lines and headers, headers that never finish, bodies that stall and more
connections than a process takes each get an answer with a message (or, for a stalled body, a closed
connection and a reverted upload), and a slowloris does not hold up anybody else.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from livesupport import Server, free_port

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader"}
LINE, SIZE, CONNECTIONS = 2048, 8192, 20


def start(root: Path, name: str, **limits: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({"GLIMPSE_DATA_DIR": str(root / "data"), "GLIMPSE_LOG_LEVEL": "WARNING", **limits})
    live = Server(name=name, port=free_port(), log_path=root / "server.log")
    live.start(env)
    live.wait_ready()
    return live


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live = start(
        tmp_path_factory.mktemp("limits"),
        "limits",
        GLIMPSE_MAX_HEADER_LINE=str(LINE),
        GLIMPSE_MAX_HEADER_SIZE=str(SIZE),
        GLIMPSE_CLIENT_HEADER_TIMEOUT="1",
        GLIMPSE_CLIENT_SOCKET_TIMEOUT="1",
        GLIMPSE_MAX_CLIENT_CONNECTIONS=str(CONNECTIONS),
    )
    yield live
    live.stop()


def exchange(server: Server, raw: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection; read the answer until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        # The server may answer and close before reading everything: its answer is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(path: str = "/versions", *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]).encode()


def message(body: bytes) -> str:
    text: str = json.loads(body)["message"]
    return text


def test_a_header_line_over_max_header_line_is_431_naming_the_option(server: Server) -> None:
    status, headers, body = exchange(server, request("/versions", "X-Big: " + "a" * LINE))
    assert status == 431
    assert headers["connection"] == "close"
    assert "X-Big" in message(body)
    assert "max_header_line" in message(body)


def test_headers_over_max_header_size_are_431(server: Server) -> None:
    many = [f"X-Header-{n}: {'v' * 100}" for n in range(SIZE // 100)]
    status, _, body = exchange(server, request("/versions", *many))
    assert status == 431
    assert "max_header_size" in message(body)


def test_headers_that_never_end_are_cut_at_the_limit_not_buffered(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /versions HTTP/1.1\r\nHost: x\r\n")
        sent, answer = 0, b""
        try:
            while sent < 16 * 1024 * 1024 and not answer:
                sock.sendall(b"X-Filler: " + b"f" * 1000 + b"\r\n")
                sent += 1012
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    answer = sock.recv(65536)
                sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            answer = answer or sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # What was sent includes what the two sockets' kernel buffers held (a few MiB on loopback at most);
    # without the limit the server would have taken all 16 MiB without answering.
    assert sent < 8 * 1024 * 1024, f"{sent} bytes of headers were taken before the answer"


def test_a_request_line_over_max_header_line_is_414(server: Server) -> None:
    status, _, body = exchange(server, request("/v2/images?name=" + "n" * LINE))
    assert status == 414
    assert "request line" in message(body)


def test_headers_sent_too_slowly_get_408(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /versions HTTP/1.1\r\n")
        time.sleep(0.3)
        sock.sendall(b"Host: x\r\n")
        started = time.monotonic()
        answer = sock.recv(65536)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"client_header_timeout" in answer
    assert waited < 5


def test_a_connection_that_sends_nothing_is_closed_with_408(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert sock.recv(65536) == b""  # closed


def test_connections_beyond_the_cap_get_503_with_retry_after(server: Server) -> None:
    holders = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CONNECTIONS)]
    try:
        status, headers, body = exchange(server, request())
    finally:
        for sock in holders:
            sock.close()
    assert status == 503
    assert int(headers["retry-after"]) > 0
    assert "max_client_connections" in message(body)
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.url}/versions").status_code != 200:
        assert time.monotonic() < deadline, "the server did not take requests again after the burst"
        time.sleep(0.05)


def test_a_stalled_body_closes_the_connection_and_the_upload_is_reverted(server: Server) -> None:
    image = httpx.post(
        f"{server.url}/v2/images",
        headers=HEADERS,
        json={"name": "stalled", "disk_format": "raw", "container_format": "bare"},
    ).json()
    head = [
        f"PUT /v2/images/{image['id']}/file HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/octet-stream",
        "Content-Length: 10485760",
        *(f"{k}: {v}" for k, v in HEADERS.items()),
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + os.urandom(256 * 1024))
        started = time.monotonic()
        try:
            leftover = sock.recv(65536)
        except ConnectionResetError:
            leftover = b""
        closed_after = time.monotonic() - started
    assert not leftover.startswith(b"HTTP/1.1 2"), leftover[:200]
    assert closed_after < 10, f"the stalled upload was kept for {closed_after:.1f} s"
    deadline = time.monotonic() + 10
    while (shown := httpx.get(f"{server.url}/v2/images/{image['id']}", headers=HEADERS).json())[
        "status"
    ] != "queued":
        assert time.monotonic() < deadline, f"image stayed {shown['status']!r}"
        time.sleep(0.05)
    assert shown["size"] is None


def _latencies(url: str, count: int) -> list[float]:
    seen = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.get(f"{url}/versions").status_code == 200
            seen.append(time.perf_counter() - started)
    return seen


def test_a_slowloris_does_not_hold_up_other_requests(tmp_path: Path) -> None:
    """500 connections each sending a header byte every half second, against the defaults."""
    live = start(tmp_path, "slowloris")
    try:
        baseline = statistics.median(_latencies(live.url, 30))
        selector = selectors.DefaultSelector()
        attackers = []
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", live.port))
            sock.setblocking(False)
            sock.send(b"GET /versions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            attackers.append(sock)
            selector.register(sock, selectors.EVENT_READ)
        try:
            under_attack: list[float] = []
            until = time.monotonic() + 4
            while time.monotonic() < until:
                for sock in attackers:
                    sock.send(b"a")
                under_attack += _latencies(live.url, 10)
                time.sleep(0.5)
            answered = [key.fileobj for key, _ in selector.select(timeout=0)]
        finally:
            for sock in attackers:
                selector.unregister(sock)
                sock.close()
        assert answered == [], "a slow connection was answered although it never finished its headers"
        assert max(under_attack) < max(1.0, 20 * baseline), (
            f"slowest request under attack {max(under_attack) * 1000:.0f} ms, "
            f"median without {baseline * 1000:.1f} ms"
        )
        assert httpx.get(f"{live.url}/versions").status_code == 200
    finally:
        live.stop()
