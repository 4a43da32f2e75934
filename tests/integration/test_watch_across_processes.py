"""A watcher on one API process is woken by a runner in another process: long polls and the event stream.

``glimpse-server serve`` runs without its embedded runner, so the only runner is a separate
``glimpse-server worker`` on the same database. Every change the client sees (the claim, the download's
progress heartbeats, the end) was therefore written by the other process and found by the API
process's watcher hub, which polls the database.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
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


@dataclass
class Setup:
    """An API process without a runner, an image with a pending web-download, and a way to start
    the only runner: a ``glimpse-server worker`` process on the same database."""

    api: Server
    http: httpx.Client
    image_id: str
    task_id: str
    start_worker: Callable[[], None]


@pytest.fixture
def pending(tmp_path: Path, migrated_database_url: str, slow_web: WebServer) -> Iterator[Setup]:
    env = worker_environ(tmp_path, migrated_database_url, slow_web)
    api = Server(name="watch-api", port=free_port(), log_path=tmp_path / "api.log")
    api.start(
        {
            **env,
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
            "GLIMPSE_TASK__TASK_WATCH_INTERVAL": str(WATCH_INTERVAL),
        }
    )
    workers: list[subprocess.Popen[bytes]] = []
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
            yield Setup(
                api,
                http,
                image_id,
                task_id,
                lambda: workers.append(start_worker(env, tmp_path / "worker.log")),
            )
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=15)
        api.stop()


def test_a_runner_in_another_process_wakes_the_watcher(pending: Setup) -> None:
    http, image_id, task_id = pending.http, pending.image_id, pending.task_id
    since = _task(http.get(f"/v2/images/{image_id}/tasks").json(), task_id)["updated_at"]
    pending.start_worker()
    wakes: list[Wake] = []
    deadline = time.monotonic() + 60
    status = "pending"
    while status not in ("success", "failure") and time.monotonic() < deadline:
        began = time.monotonic()
        answer = http.get(f"/v2/images/{image_id}/tasks", params={"changes-since": since, "wait": "30"})
        assert answer.status_code == 200, answer.text
        task = _task(answer.json(), task_id)
        status = task["status"]
        since = max(since, task["updated_at"])
        changed = answer.headers["glimpse-tasks-changed"]
        wakes.append(Wake(time.monotonic() - began, changed, status, _staged(task)))

    assert status == "success", f"{wakes}\n--- api ---\n{pending.api.log()}"
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


def test_the_event_stream_follows_a_runner_in_another_process(pending: Setup) -> None:
    url = f"/v2/images/{pending.image_id}/tasks"
    arrivals: list[tuple[float, str, dict[str, Any]]] = []
    with pending.http.stream("GET", url, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        began = time.monotonic()
        pending.start_worker()
        event: dict[str, str] = {}
        for line in stream.iter_lines():
            if line:
                name, _, value = line.partition(": ")
                event[name] = value
                continue
            if "event" in event:
                arrivals.append((time.monotonic() - began, event["event"], json.loads(event["data"])))
            event = {}

    kinds = [kind for _, kind, _ in arrivals]
    assert kinds[-1] == "end", kinds
    assert set(kinds[:-1]) == {"tasks"}
    statuses = [_task(data, pending.task_id)["status"] for _, kind, data in arrivals if kind == "tasks"]
    assert statuses[0] == "pending"
    assert statuses[-1] == "success"
    staged = [_staged(_task(data, pending.task_id)) for _, kind, data in arrivals if kind == "tasks"]
    assert len(set(staged)) >= 3, staged  # progress heartbeats arrived one by one, while it ran
    # Events came as the worker wrote them, not all at the end of the stream.
    times = [at for at, kind, _ in arrivals if kind == "tasks"]
    assert times[-1] - times[1] > 1.0, arrivals
