"""Staging across nodes with real processes.

* Two live ``glimpse-server serve`` nodes on one database, each with its own staging directory and
  ``worker_self_reference_url``: data staged through node A, imported through node B, while A is
  down and after it is back.
* Staging on S3: staged through node A, imported through node B, run by a ``glimpse-server worker``
  process of a third node.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner_support import MIB, create_image, image_of, payload, stage, start_import, task_of
from test_runner_worker import start_worker

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus
from livesupport import Server, free_port, wait_until
from nodesupport import make_node, node_environ, node_url, object_staging_environ
from objectsupport import ObjectServer

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "nodes", "X-User-Id": "n", "X-Roles": "member,reader"}
DATA = payload(2 * MIB + 5, seed=21)


class Nodes:
    """Node servers by name; a stopped node can start again on the same port and settings."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.servers: dict[str, Server] = {}
        self.starts = 0

    def start(self, *names: str) -> list[Server]:
        """Start the named nodes side by side (a process start is mostly Python imports), then wait
        until every one answers."""
        started = []
        for name in names:
            previous = self.servers.get(name)
            port = previous.port if previous is not None else free_port()
            self.starts += 1
            server = Server(name=f"node-{name}", port=port, log_path=self.root / f"{name}-{self.starts}.log")
            server.start(node_environ(self.root, name, self.database_url, url=f"http://127.0.0.1:{port}"))
            self.servers[name] = server
            started.append(server)
        for server in started:
            server.wait_ready()
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{server.log()}" for name, server in self.servers.items())

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def nodes(tmp_path: Path, migrated_sqlite_url: str) -> Iterator[Nodes]:
    # SQLite shared by the processes of one machine: the in-process tests of test_staging_nodes.py
    # cover PostgreSQL.
    group = Nodes(tmp_path, migrated_sqlite_url)
    try:
        yield group
    finally:
        group.stop_all()


def _task(http: httpx.Client, image_id: str, task_id: str) -> dict[str, Any]:
    listing = http.get(f"/v2/images/{image_id}/tasks")
    assert listing.status_code == 200, listing.text
    return next(task for task in listing.json()["tasks"] if task["id"] == task_id)


def test_an_import_through_b_waits_for_node_a_and_runs_there(tmp_path: Path, nodes: Nodes) -> None:
    a, b = nodes.start("a", "b")
    with httpx.Client(base_url=b.url, headers=HEADERS, timeout=30) as on_b:
        image_id = on_b.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"}).json()[
            "id"
        ]
        # A one-off connection to A, so that stopping A waits for no idle keep-alive connection.
        staged = httpx.put(
            f"{a.url}/v2/images/{image_id}/stage",
            content=DATA,
            headers={**HEADERS, "Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert staged.status_code == 204, staged.text
        assert "os_glance_stage_host" not in on_b.get(f"/v2/images/{image_id}").json()
        a.stop()

        started = on_b.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
        assert started.status_code == 202, started.text
        task_id = started.headers["openstack-image-import-task-id"]
        # B's runner polls every 0.1 s; for a second it must leave the task alone, and the task says why.
        time.sleep(1.0)
        waiting = _task(on_b, image_id, task_id)
        assert waiting["status"] == "pending", nodes.logs()
        assert f"Waiting for a task runner on node {a.url}" in waiting["message"]

        (a,) = nodes.start("a")
        deadline = time.monotonic() + 30
        while on_b.get(f"/v2/images/{image_id}").json()["status"] != "active":
            assert time.monotonic() < deadline, nodes.logs()
            time.sleep(0.1)

        assert _task(on_b, image_id, task_id)["status"] == "success"
        assert on_b.get(f"/v2/images/{image_id}/file").content == DATA
    # The runner's log lines ("task <id>: glance-direct of image ...", "task <id>: success") are A's;
    # the last one is written just after the task's success is recorded.
    wait_until(lambda: f"task {task_id}: success" in a.log(), nodes.logs)
    assert f"task {task_id}:" not in nodes.servers["b"].log()
    assert list((tmp_path / "a" / "data" / "staging").iterdir()) == []


@pytest.mark.objects
def test_with_staging_on_s3_a_worker_process_of_a_third_node_runs_the_import(
    tmp_path: Path, migrated_sqlite_url: str, s3_server: ObjectServer
) -> None:
    staging = object_staging_environ(s3_server, "s3")
    a = make_node(tmp_path, "a", migrated_sqlite_url, url=node_url("a"), staging=staging)
    b = make_node(tmp_path, "b", migrated_sqlite_url, url=node_url("b"), staging=staging)
    worker = None
    try:
        image_id = create_image(a.runtime)
        asyncio.run(stage(a.runtime, image_id, DATA))
        task_id = asyncio.run(start_import(b.runtime, image_id, {"method": {"name": "glance-direct"}}))
        assert task_of(b.runtime, task_id).stage_host is None

        environ = node_environ(tmp_path, "c", migrated_sqlite_url, url=node_url("c"), staging=staging)
        worker = start_worker(environ, tmp_path / "c-worker.log")
        deadline = time.monotonic() + 60
        while task_of(b.runtime, task_id).status in (TaskStatus.PENDING, TaskStatus.PROCESSING):
            assert worker.poll() is None, (tmp_path / "c-worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "c-worker.log").read_text()
            time.sleep(0.1)

        done = task_of(b.runtime, task_id)
        assert done.status == TaskStatus.SUCCESS, done.message
        assert done.claimed_by is not None
        assert done.claimed_by.split(":")[1] == str(worker.pid)  # host:pid:random of the worker
        assert image_of(a.runtime, image_id).status == ImageStatus.ACTIVE
        assert (tmp_path / "common" / "fast" / image_id).read_bytes() == DATA
        # The runner deletes the staged object just after it has recorded the task's success.
        wait_until(
            lambda: asyncio.run(a.runtime.stores.staging.objects()) == [],
            lambda: (tmp_path / "c-worker.log").read_text(),
        )
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        a.close()
        b.close()
