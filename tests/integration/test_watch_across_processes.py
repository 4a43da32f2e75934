"""A watcher waiting on one API process is woken by a runner in another process.

``glimpse-server serve`` runs without its embedded runner, so the only runner is a separate
``glimpse-server worker`` on the same database. Every change the client sees (the claim, the download's
progress heartbeats, the end) was therefore written by the other process and found by the API
process's watcher hub, which polls the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner_support import MIB, WebServer, payload, serve
from test_runner_worker import start_worker, worker_environ

from livesupport import Server, free_port

pytestmark = pytest.mark.live

DATA = payload(8 * MIB)
WATCH_INTERVAL = 0.2
HEADERS = {"X-Project-Id": "watchers", "X-User-Id": "w", "X-Roles": "member,reader"}


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 128 chunks of 64 KiB, 25 ms apart: about three seconds of download with heartbeats.
    yield from serve({"/big.raw": DATA}, delay=0.025)


@dataclass(frozen=True)
class Wake:
    after: float  # seconds the watching request took
    changed: str
    status: str
    staged: int


def _task(body: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(t for t in body["tasks"] if t["id"] == task_id)


def _staged(task: dict[str, Any]) -> int:
    progress = task.get("progress") or {}
    return int(progress.get("staged_bytes") or 0)


def test_a_runner_in_another_process_wakes_the_watcher(
    tmp_path: Path, database_url: str, slow_web: WebServer
) -> None:
    env = worker_environ(tmp_path, database_url, slow_web)
    api = Server(name="watch-api", port=free_port(), log_path=tmp_path / "api.log")
    api.start(
        {
            **env,
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
            "GLIMPSE_TASK__TASK_WATCH_INTERVAL": str(WATCH_INTERVAL),
        }
    )
    worker = None
    try:
        api.wait_ready()
        with httpx.Client(base_url=api.url, headers=HEADERS, timeout=60) as http:
            image = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
            image_id = image.json()["id"]
            started = http.post(
                f"/v2/images/{image_id}/import",
                json={"method": {"name": "web-download", "uri": slow_web.url("/big.raw")}},
            )
            assert started.status_code == 202, started.text
            task_id = started.headers["openstack-image-import-task-id"]
            listing = http.get(f"/v2/images/{image_id}/tasks").json()
            assert _task(listing, task_id)["status"] == "pending"  # nothing in this process runs it
            since = _task(listing, task_id)["updated_at"]

            worker = start_worker(env, tmp_path / "worker.log")
            wakes: list[Wake] = []
            deadline = time.monotonic() + 60
            status = "pending"
            while status not in ("success", "failure") and time.monotonic() < deadline:
                began = time.monotonic()
                answer = http.get(
                    f"/v2/images/{image_id}/tasks", params={"changes-since": since, "wait": "30"}
                )
                assert answer.status_code == 200, answer.text
                task = _task(answer.json(), task_id)
                status = task["status"]
                since = max(since, task["updated_at"])
                wakes.append(
                    Wake(
                        time.monotonic() - began,
                        answer.headers["glimpse-tasks-changed"],
                        status,
                        _staged(task),
                    )
                )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=15)
        api.stop()

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert status == "success", f"{wakes}\n--- worker ---\n{log}\n--- api ---\n{api.log()}"
    # Every answer was a wake-up by a change, none a wait that ran out.
    assert {w.changed for w in wakes} == {"true"}, wakes
    # The worker's progress heartbeats during the download woke the watcher more than once...
    downloading = [w for w in wakes if w.status == "processing" and w.staged > 0]
    assert len(downloading) >= 2, wakes
    assert len({w.staged for w in downloading}) >= 2, wakes
    # ...each within the hub's polling interval of the heartbeat before it (the worker writes one
    # every 0.1 s), with a second of slack for a loaded machine. The first wake also waits for the
    # worker process to start.
    assert max(w.after for w in wakes[1:]) < WATCH_INTERVAL + 1.0, wakes
