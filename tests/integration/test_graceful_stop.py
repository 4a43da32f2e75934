"""SIGTERM to a live ``glimpse-server serve``: the listener closes at once, an upload in flight still
finishes (within ``shutdown_grace_period``) and is kept, and the process exits 0."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from livesupport import Server, free_port

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader"}


def test_sigterm_lets_an_upload_in_flight_finish(tmp_path: Path, migrated_sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
            "GLIMPSE_SHUTDOWN_GRACE_PERIOD": "30",
        }
    )
    server = Server(name="drained", port=free_port(), log_path=tmp_path / "server.log")
    server.start(env)
    server.wait_ready()
    assert server.process is not None
    data = os.urandom(3 * 1024 * 1024)
    created = httpx.post(
        f"{server.url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}, headers=HEADERS
    )
    image_id = created.json()["id"]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as upload:
            head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
            upload.sendall(
                (
                    f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n{head}"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
                ).encode()
                + data[: 1024 * 1024]
            )
            time.sleep(0.5)  # the server has the request and is reading its body
            server.process.send_signal(signal.SIGTERM)

            # No new connection is taken from now on (a balancer sends the next requests elsewhere).
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(f"{server.url}/versions", timeout=1)
                except httpx.TransportError:
                    break
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            assert server.process.poll() is None  # still draining: the upload is not done

            upload.sendall(data[1024 * 1024 :])
            answer = upload.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 204"), answer
        assert server.process.wait(timeout=30) == 0, server.log()
    finally:
        server.stop()

    server.start(env)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            assert http.get(f"/v2/images/{image_id}").json()["status"] == "active"
            assert http.get(f"/v2/images/{image_id}/file").content == data
    finally:
        server.stop()
