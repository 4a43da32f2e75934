"""Imports are exact under concurrency too: parallel copy-image and web-download imports, sent to
two live ``glimpse-server serve`` nodes with their task runners, sharing one database (SQLite,
PostgreSQL, MariaDB), never store more than the project's ``user_storage_quota``.

A copy's size is known when ``POST /import`` creates its task, so the copies that do not fit are
refused there (413). A web-download's size is known only once it is downloaded: the task reserves
it before the first byte reaches a store, and the ones that do not fit fail with the quota's words.
Either way, once every task ended, no reservation is left: the usage is what the stores hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_quota_race import new_image, stored_bytes
from test_runner_support import WebServer, serve

from livesupport import Server, wait_until
from nodesupport import live_nodes

pytestmark = pytest.mark.live

MIB = 1024 * 1024
#: Room for exactly two more 1 MiB copies after the four images below, not three.
IMAGES = 4
QUOTA = (IMAGES + 2) * MIB + MIB // 2
#: Parallel web-downloads of 1 MiB for a project whose limit holds two and a half.
DOWNLOADS = 6
DOWNLOAD_QUOTA = 2 * MIB + MIB // 2
ENDED = ("success", "failure")


def headers(project: str, roles: str = "member,reader") -> dict[str, str]:
    return {"X-Project-Id": project, "X-User-Id": "u", "X-Roles": roles, "Accept": "application/json"}


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    yield from serve({"/one.raw": b"w" * MIB}, delay=0.01)


@pytest.fixture
def nodes(tmp_path: Path, migrated_database_url: str, web: WebServer) -> Iterator[list[Server]]:
    extra = {"GLIMPSE_USER_STORAGE_QUOTA": str(QUOTA), "GLIMPSE_LOG_LEVEL": "WARNING", **web.filter_environ}
    with live_nodes(tmp_path, migrated_database_url, "quota-import", extra) as started:
        yield started


def tasks_of(url: str, project: str, image_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/v2/images/{image_id}/tasks", headers=headers(project), timeout=30.0)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def size_usage(url: str, project: str) -> int:
    usage = httpx.get(f"{url}/v2/info/usage", headers=headers(project), timeout=30.0).json()["usage"]
    used: int = usage["image_size_total"]["usage"]
    return used


def wait_for_tasks(nodes: list[Server], project: str, image_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every image's one task, once all of them ended."""
    url = nodes[0].url
    ended: dict[str, dict[str, Any]] = {}

    def all_ended() -> bool:
        for image_id in image_ids:
            if image_id not in ended:
                tasks = tasks_of(url, project, image_id)
                if tasks and tasks[0]["status"] in ENDED:
                    ended[image_id] = tasks[0]
        return len(ended) == len(image_ids)

    wait_until(all_ended, lambda: f"tasks still running: {ended}\n{nodes[0].log()}\n{nodes[1].log()}", 120.0)
    return ended


def test_parallel_imports_never_exceed_the_quota(nodes: list[Server], tmp_path: Path, web: WebServer) -> None:
    # One pair of nodes (their start is most of the time) for both races, each its own project.
    copy_race(nodes, tmp_path)
    web_download_race(nodes, tmp_path, web)


def copy_race(nodes: list[Server], tmp_path: Path) -> None:
    urls = [node.url for node in nodes]
    project = "race-copy"
    images = [new_image(urls[i % 2], project) for i in range(IMAGES)]
    for index, image_id in enumerate(images):
        response = httpx.put(
            f"{urls[index % 2]}/v2/images/{image_id}/file",
            content=b"c" * MIB,
            headers={**headers(project), "Content-Type": "application/octet-stream"},
            timeout=60.0,
        )
        assert response.status_code == 204, response.text
    admin = headers(project, "admin,member,reader")
    body = {"method": {"name": "copy-image"}, "stores": ["cheap"]}

    def copy(index: int) -> httpx.Response:
        url = f"{urls[index % 2]}/v2/images/{images[index]}/import"
        return httpx.post(url, json=body, headers=admin, timeout=60.0)

    with ThreadPoolExecutor(max_workers=IMAGES) as pool:
        answers = list(pool.map(copy, range(IMAGES)))

    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202, 202, 413, 413], [answer.text for answer in answers]
    copied = [images[i] for i, answer in enumerate(answers) if answer.status_code == 202]
    for answer in answers:
        if answer.status_code == 413:
            assert "image_size_total is over limit" in answer.json()["message"]
    ended = wait_for_tasks(nodes, project, copied)
    assert {task["status"] for task in ended.values()} == {"success"}, ended
    assert stored_bytes(tmp_path, images) == (IMAGES + 2) * MIB <= QUOTA
    # The copies' reservations went with their tasks: the usage is the six stored copies.
    assert size_usage(urls[1], project) == (IMAGES + 2) * MIB


def web_download_race(nodes: list[Server], tmp_path: Path, web: WebServer) -> None:
    urls = [node.url for node in nodes]
    project = "race-web"
    # A project whose other images hold all but 2.5 MiB of the limit.
    filler = new_image(urls[0], project)
    response = httpx.put(
        f"{urls[0]}/v2/images/{filler}/file",
        content=b"f" * (QUOTA - DOWNLOAD_QUOTA),
        headers={**headers(project), "Content-Type": "application/octet-stream"},
        timeout=60.0,
    )
    assert response.status_code == 204, response.text
    images = [new_image(urls[i % 2], project) for i in range(DOWNLOADS)]
    body = {"method": {"name": "web-download", "uri": web.url("/one.raw")}}

    def download(index: int) -> httpx.Response:
        url = f"{urls[index % 2]}/v2/images/{images[index]}/import"
        return httpx.post(url, json=body, headers=headers(project), timeout=60.0)

    with ThreadPoolExecutor(max_workers=DOWNLOADS) as pool:
        answers = list(pool.map(download, range(DOWNLOADS)))
    started = [images[i] for i, answer in enumerate(answers) if answer.status_code == 202]
    unexpected = [answer.text for answer in answers if answer.status_code not in (202, 413)]
    assert not unexpected, unexpected

    ended = wait_for_tasks(nodes, project, started)
    succeeded = [image_id for image_id, task in ended.items() if task["status"] == "success"]
    assert len(succeeded) == 2, ended
    for image_id, task in ended.items():
        if task["status"] == "failure":
            # Refused at the store step (over the limit once the size was known) or while
            # downloading (the limit left no room when the download started).
            message = task["message"]
            assert "image_size_total is over limit" in message or "the owner's quota leaves" in message
            assert "back to 'queued'" in message
            image = httpx.get(f"{urls[0]}/v2/images/{image_id}", headers=headers(project)).json()
            assert image["status"] == "queued", image
    assert stored_bytes(tmp_path, images) == 2 * MIB
    assert size_usage(urls[1], project) == QUOTA - DOWNLOAD_QUOTA + 2 * MIB <= QUOTA
