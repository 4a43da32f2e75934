"""Quotas are exact under concurrency: 20 uploads at once, through two live ``glimpse-server serve``
nodes sharing one database (SQLite, PostgreSQL, MariaDB), never store more than the project's
``user_storage_quota``; the refused ones answer 413 and leave their images queued with no data."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from livesupport import Server
from nodesupport import live_nodes

pytestmark = pytest.mark.live


def headers(project: str) -> dict[str, str]:
    return {
        "X-Project-Id": project,
        "X-User-Id": "u",
        "X-Roles": "member,reader",
        "Accept": "application/json",
    }


MIB = 1024 * 1024
#: 7.5 MiB: room for exactly seven uploads of 1 MiB.
QUOTA = 7 * MIB + MIB // 2
UPLOADS = 20


@pytest.fixture
def nodes(tmp_path: Path, migrated_database_url: str) -> Iterator[tuple[Server, Server]]:
    extra = {
        "GLIMPSE_USER_STORAGE_QUOTA": str(QUOTA),
        "GLIMPSE_QUOTA__RESERVATION_STEP": "1MB",
        "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
        "GLIMPSE_LOG_LEVEL": "WARNING",
    }
    with live_nodes(tmp_path, migrated_database_url, "quota", extra) as (first, second):
        yield first, second


def new_image(url: str, project: str) -> str:
    body = {"name": "race", "disk_format": "raw", "container_format": "bare"}
    response = httpx.post(f"{url}/v2/images", json=body, headers=headers(project), timeout=30.0)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored_bytes(root: Path, image_ids: list[str]) -> int:
    """Bytes in the nodes' shared stores of files named after ``image_ids`` (temporary ones too)."""
    return sum(
        path.stat().st_size
        for path in (root / "common").rglob("*")
        if path.is_file() and any(image_id in path.name for image_id in image_ids)
    )


def race(urls: list[str], root: Path, framing: str) -> None:
    """Twenty 1 MiB uploads at once, alternating between the nodes, for a project of their own."""
    project = f"race-{framing}"
    sent = {**headers(project), "Content-Type": "application/octet-stream"}
    images = [new_image(urls[i % 2], project) for i in range(UPLOADS)]
    data = b"q" * MIB

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 128 * 1024):
            yield data[start : start + 128 * 1024]

    def put(index: int) -> httpx.Response:
        body = data if framing == "content-length" else chunks()
        url = f"{urls[index % 2]}/v2/images/{images[index]}/file"
        return httpx.put(url, content=body, headers=sent, timeout=120.0)

    with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
        answers = list(pool.map(put, range(UPLOADS)))

    codes = sorted(answer.status_code for answer in answers)
    unexpected = [answer.text for answer in answers if answer.status_code not in (204, 413)]
    assert not unexpected, unexpected
    accepted = [images[i] for i, answer in enumerate(answers) if answer.status_code == 204]
    refused = [i for i, answer in enumerate(answers) if answer.status_code == 413]
    if framing == "content-length":
        # Each upload reserved exactly its Content-Length, so exactly seven fit.
        assert len(accepted) == 7, codes
    else:
        assert 1 <= len(accepted) <= 7, codes
    for index in refused:
        assert "image_size_total is over limit" in answers[index].json()["message"]
        image = httpx.get(f"{urls[0]}/v2/images/{images[index]}", headers=headers(project)).json()
        assert (image["status"], image["size"]) == ("queued", None)
    assert stored_bytes(root, images) == len(accepted) * MIB <= QUOTA
    usage = httpx.get(f"{urls[1]}/v2/info/usage", headers=headers(project)).json()["usage"]
    assert usage["image_size_total"] == {"limit": QUOTA, "usage": len(accepted) * MIB}
    # The refused uploads hold nothing back: what is left can still be used, to the byte.
    room = QUOTA - len(accepted) * MIB
    last = images[refused[0]]
    response = httpx.put(f"{urls[0]}/v2/images/{last}/file", content=b"r" * room, headers=sent, timeout=60.0)
    assert response.status_code == 204, response.text
    after = httpx.get(f"{urls[1]}/v2/info/usage", headers=headers(project)).json()["usage"]
    assert after["image_size_total"] == {"limit": QUOTA, "usage": QUOTA}


def test_parallel_uploads_never_exceed_the_quota(nodes: tuple[Server, Server], tmp_path: Path) -> None:
    urls = [node.url for node in nodes]
    # Announced sizes are reserved whole; streamed ones 1 MiB ([quota] reservation_step) at a time.
    race(urls, tmp_path, "content-length")
    race(urls, tmp_path, "chunked")
