"""One Idempotency-Key sent at once to two API nodes sharing a database: one request runs.

Two ``glimpse-server serve`` processes on the same database (SQLite file or PostgreSQL), without
task runners (the import's task stays pending and keeps the lock). Several threads, released
together, send the same request with the same key to both nodes: exactly one image or task is made;
every other request gets either the first answer or a 409 saying to retry later.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesupport import Server
from nodesupport import live_nodes

pytestmark = pytest.mark.live

IDENTITY = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader", "Accept": "application/json"}
SENDERS = 8


@pytest.fixture
def nodes(tmp_path: Path, migrated_database_url: str) -> Iterator[tuple[Server, Server]]:
    extra = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false", "GLIMPSE_LOG_LEVEL": "WARNING"}
    with live_nodes(tmp_path, migrated_database_url, "idem", extra) as (first, second):
        yield first, second


def at_once(
    nodes: tuple[Server, Server], method: str, path: str, body: dict[str, Any], key: str
) -> list[httpx.Response]:
    """Send the request from SENDERS threads released together, alternately to each node."""
    barrier = threading.Barrier(SENDERS)
    responses: list[httpx.Response | BaseException] = [RuntimeError("not sent")] * SENDERS

    def send(index: int) -> None:
        url = nodes[index % 2].url + path
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            try:
                responses[index] = http.request(
                    method, url, json=body, headers={**IDENTITY, "Idempotency-Key": key}
                )
            except httpx.HTTPError as exc:
                responses[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failed = [r for r in responses if isinstance(r, BaseException)]
    assert not failed, failed
    return [r for r in responses if isinstance(r, httpx.Response)]


def check_losers(responses: list[httpx.Response], success: int) -> list[httpx.Response]:
    """Every response is the success or the 409 of a request in flight; returns the successes."""
    for response in responses:
        assert response.status_code in (success, 409), response.text
        if response.status_code == 409:
            assert "still being processed" in response.json()["message"]
            assert int(response.headers["Retry-After"]) >= 1
    winners = [r for r in responses if r.status_code == success]
    assert len([r for r in winners if "idempotent-replayed" not in r.headers]) == 1
    return winners


def test_one_create_and_one_import_across_two_nodes(nodes: tuple[Server, Server]) -> None:
    name = f"raced-{uuid.uuid4()}"
    image_body = {"name": name, "disk_format": "raw", "container_format": "bare"}
    created = check_losers(at_once(nodes, "POST", "/v2/images", image_body, str(uuid.uuid4())), 201)
    image_ids = {r.json()["id"] for r in created}
    assert len(image_ids) == 1
    listed = httpx.get(f"{nodes[1].url}/v2/images", params={"name": name}, headers=IDENTITY).json()
    assert [i["id"] for i in listed["images"]] == list(image_ids)

    image_id = image_ids.pop()
    web = {"method": {"name": "web-download", "uri": "https://images.example.com/raced.raw"}}
    key = str(uuid.uuid4())
    started = check_losers(at_once(nodes, "POST", f"/v2/images/{image_id}/import", web, key), 202)
    task_ids = {r.headers["OpenStack-image-import-task-id"] for r in started}
    assert len(task_ids) == 1
    tasks = httpx.get(f"{nodes[0].url}/v2/images/{image_id}/tasks", headers=IDENTITY).json()["tasks"]
    assert [t["id"] for t in tasks] == list(task_ids)

    # Once the first has answered, every retry on either node gets its task back.
    for live in nodes:
        again = httpx.post(
            f"{live.url}/v2/images/{image_id}/import", json=web, headers={**IDENTITY, "Idempotency-Key": key}
        )
        assert again.status_code == 202, again.text
        assert again.headers["OpenStack-image-import-task-id"] in task_ids
        assert again.headers["Idempotent-Replayed"] == "true"
