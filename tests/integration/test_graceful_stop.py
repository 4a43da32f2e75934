"""SIGTERM to a live ``glimpse-server serve``: the listener closes at once, an upload in flight still
finishes (within ``shutdown_grace_period``) and is kept, and the process exits 0. A second SIGTERM
during the grace period stops it at once, and what it cut off is taken back by the housekeeping."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner_support import MIB, STORES, WebServer, make_runtime, payload, serve

from glimpse.jobs.housekeeping import revert_silent_uploads
from livesupport import Server, free_port, wait_until

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader"}
#: Seconds a starting server may take to answer: a restart on a loaded 2-core machine takes tens.
START_ON_A_BUSY_MACHINE = 90.0
DATA = payload(8 * MIB, seed=5)


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
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
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
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            assert http.get(f"/v2/images/{image_id}").json()["status"] == "active"
            assert http.get(f"/v2/images/{image_id}/file").content == data
    finally:
        server.stop()


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 128 chunks of 64 KiB, 0.1 s apart: about 13 seconds for the whole image.
    yield from serve({"/big.raw": DATA}, delay=0.1)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_second_sigterm_stops_at_once_and_leaves_everything_recoverable(
    tmp_path: Path, migrated_sqlite_url: str, slow_web: WebServer, workers: int
) -> None:
    """With ``--workers 2`` the signals go to uvicorn's supervisor, which must pass the second one on
    to the worker processes (the upload and the task are in them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
            "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{s}:file" for s in STORES),
            "GLIMPSE_SHUTDOWN_GRACE_PERIOD": "120",
            "GLIMPSE_TASK__TASK_LEASE_TIME": "2",
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.2",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
            "GLIMPSE_WORKERS": str(workers),
            **slow_web.filter_environ,
        }
    )
    server = Server(name=f"impatient-{workers}", port=free_port(), log_path=tmp_path / "server.log")
    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    assert server.process is not None
    http = httpx.Client(base_url=server.url, headers=HEADERS, timeout=30)

    def create() -> str:
        created = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
        assert created.status_code == 201, created.text
        image_id: str = created.json()["id"]
        return image_id

    def task_of(image_id: str) -> dict[str, Any]:
        tasks: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        assert tasks, image_id
        return tasks[0]

    try:
        imported = create()
        started = http.post(
            f"/v2/images/{imported}/import",
            json={"method": {"name": "web-download", "uri": slow_web.url("/big.raw")}, "stores": ["fast"]},
        )
        assert started.status_code == 202, started.text
        uploaded = create()
        upload = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        upload.sendall(
            (
                f"PUT /v2/images/{uploaded}/file HTTP/1.1\r\nHost: x\r\n{head}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(DATA)}\r\n\r\n"
            ).encode()
            + DATA[:MIB]
        )
        wait_until(lambda: http.get(f"/v2/images/{uploaded}").json()["status"] == "saving", server.log, 60)
        wait_until(
            lambda: (
                task_of(imported)["status"] == "processing"
                and bool((task_of(imported).get("progress") or {}).get("staged_bytes"))
            ),
            server.log,
            60,
        )
        http.close()

        server.process.send_signal(signal.SIGTERM)
        # Draining: the listener is closed, the upload holds the process (grace period: 120 s).
        wait_until(lambda: not answers(server.url), server.log, 30)
        assert server.process.poll() is None, server.log()

        server.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert server.process.wait(timeout=30) == 0, server.log()
        assert time.monotonic() - stopped_at < 30
        assert "signal 15 again: stopping now" in server.log(), server.log()
        # No process of the server is left behind (the worker processes are in its group).
        wait_until(lambda: not group_alive(server.process.pid), server.log, 30)
        upload.close()
    finally:
        server.stop()

    # What the hard stop left is what the housekeeping takes back: the upload's image 'queued' (by
    # the cut-off upload itself, or after upload_stale_after), the task failed by the reaper once its
    # lease lapsed, its image 'queued'; nothing partial in the stores.
    runtime = make_runtime(tmp_path, migrated_sqlite_url)
    try:
        runtime.clock = lambda: datetime.now(UTC) + timedelta(minutes=16)
        asyncio.run(revert_silent_uploads(runtime))
    finally:
        runtime.close()
    server = Server(name="after", port=free_port(), log_path=tmp_path / "after.log")
    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            wait_until(lambda: task_of_in(http, imported)["status"] == "failure", server.log, 60)
            assert "The worker running this task stopped" in task_of_in(http, imported)["message"]
            assert http.get(f"/v2/images/{imported}").json()["status"] == "queued"
            assert http.get(f"/v2/images/{uploaded}").json()["status"] == "queued"
            fast = tmp_path / "data" / "stores" / "fast"
            staging = tmp_path / "data" / "staging"
            wait_until(lambda: not listing(staging), lambda: f"{listing(staging)}\n{server.log()}")
            assert listing(fast) == [], server.log()
            # Both can be done again.
            assert http.put(f"/v2/images/{uploaded}/file", content=DATA).status_code == 204
            assert http.get(f"/v2/images/{uploaded}/file").content == DATA
    finally:
        server.stop()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/versions", timeout=1)
    except httpx.TransportError:
        return False
    return True


def task_of_in(http: httpx.Client, image_id: str) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    assert tasks, image_id
    return tasks[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
