"""Uploads over a real socket to a live ``glimpse-server serve``: a client that vanishes mid-upload."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from livesupport import Server, free_port

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("live-upload")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({"GLIMPSE_DATA_DIR": str(root / "data"), "GLIMPSE_LOG_LEVEL": "WARNING"})
    live = Server(name="upload", port=free_port(), log_path=root / "server.log")
    live.start(env)
    live.wait_ready()
    yield live, root / "data"
    live.stop()


def leftovers(data_dir: Path, image_id: str) -> list[str]:
    """Every file of this image in the stores, temporary ones included."""
    return sorted(
        str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file() and image_id in p.name
    )


def wait_for_status(url: str, image_id: str, wanted: str, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/v2/images/{image_id}", headers=HEADERS).json()
        if body["status"] == wanted:
            return body
        time.sleep(0.05)
    raise AssertionError(f"image stayed {body.get('status')!r}, expected {wanted!r}")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_client_disconnect_leaves_image_queued_and_no_file(server: tuple[Server, Path], framing: str) -> None:
    live, data_dir = server
    image = httpx.post(
        f"{live.url}/v2/images",
        headers=HEADERS,
        json={"name": "cut", "disk_format": "raw", "container_format": "bare"},
    ).json()
    block = os.urandom(256 * 1024)
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        head = [
            f"PUT /v2/images/{image['id']}/file HTTP/1.1",
            f"Host: 127.0.0.1:{live.port}",
            "Content-Type: application/octet-stream",
            *(f"{k}: {v}" for k, v in HEADERS.items()),
        ]
        head.append(
            "Content-Length: 104857600" if framing == "content-length" else "Transfer-Encoding: chunked"
        )
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for _ in range(12):
            payload = block if framing == "content-length" else b"%x\r\n%s\r\n" % (len(block), block)
            sock.sendall(payload)
        # Give the server time to start writing into the store before the client vanishes.
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_RDWR)
    body = wait_for_status(live.url, image["id"], "queued")
    assert body["size"] is None
    assert leftovers(data_dir, image["id"]) == []
    retry = httpx.put(
        f"{live.url}/v2/images/{image['id']}/file",
        content=b"whole",
        headers={**HEADERS, "Content-Type": "application/octet-stream"},
    )
    assert retry.status_code == 204
    assert httpx.get(f"{live.url}/v2/images/{image['id']}/file", headers=HEADERS).content == b"whole"
