"""Task figures: copy-image of one image into the other stores, and GET /v2/images/{id}/tasks under load."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import rawhttp
from service import HOST, Server

MiB = 1024 * 1024
ADMIN = {"X-Project-Id": "bench-admin", "X-User-Id": "bench-admin", "X-Roles": "admin,member,reader"}
COPY_TIMEOUT = 900.0


#: Bounds of the copy's polling interval, s; in between it is ``POLL_SHARE`` of the time elapsed.
POLL_MIN, POLL_MAX, POLL_SHARE = 0.05, 0.5, 0.02


class CopyFailed(Exception):
    """The copy-image task did not end in success."""


def poll_interval(elapsed: float) -> float:
    """Seconds to wait before the next look at a task that has run ``elapsed`` s."""
    return min(POLL_MAX, max(POLL_MIN, elapsed * POLL_SHARE))


def _post_copy(server: Server, image_id: str, stores: list[str]) -> rawhttp.Response:
    """POST a copy-image import as an admin; CopyFailed unless it is accepted (202)."""
    response = rawhttp.request(
        HOST,
        server.port,
        "POST",
        f"/v2/images/{image_id}/import",
        json_body={"method": {"name": "copy-image"}, "stores": stores},
        headers=ADMIN,
    )
    if response.status != 202:
        raise CopyFailed(f"POST /import answered {response.status}: {response.body[:300]!r}")
    return response


def start_copy(server: Server, image_id: str, stores: list[str]) -> str:
    """POST the copy-image import as an admin; returns the task id from the response header."""
    response = _post_copy(server, image_id, stores)
    task_id = response.headers.get("openstack-image-import-task-id")
    if not task_id:
        raise CopyFailed("POST /import gave no OpenStack-image-import-task-id header")
    return task_id


def wait_for_task(server: Server, image_id: str, task_id: str, log: Callable[[str], None]) -> dict[str, Any]:
    deadline = time.monotonic() + COPY_TIMEOUT
    last_message = None
    while time.monotonic() < deadline:
        task = rawhttp.request(
            HOST, server.port, "GET", f"/v2/images/{image_id}/tasks/{task_id}", headers=ADMIN
        ).json()
        if not isinstance(task, dict):
            raise CopyFailed(f"GET task {task_id} is not an object")
        if task.get("message") != last_message:
            last_message = task.get("message")
            log(f"copy: task {task['status']}, {last_message!r}")
        if task.get("status") == "success":
            return task
        if task.get("status") == "failure":
            raise CopyFailed(f"copy-image task failed: {task.get('message')}")
        time.sleep(0.05)
    raise CopyFailed(f"copy-image task {task_id} did not finish within {COPY_TIMEOUT:.0f} s")


def copy_image(
    server: Server, image_id: str, stores: list[str], size: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Copy an active image into ``stores``; wall time from the POST to the task's success."""
    started = time.perf_counter()
    task_id = start_copy(server, image_id, stores)
    task = wait_for_task(server, image_id, task_id, log)
    seconds = time.perf_counter() - started
    image = rawhttp.request(HOST, server.port, "GET", f"/v2/images/{image_id}", headers=ADMIN).json()
    held = set(str(image.get("stores", "")).split(","))
    if not set(stores) <= held:
        raise CopyFailed(f"after the copy the image is in {sorted(held)}, expected {stores} too")
    return {
        "stores": stores,
        "seconds": seconds,
        "written_mib_s": size * len(stores) / MiB / seconds,
        "per_store_mib_s": size / MiB / seconds,
        "message": task.get("message"),
        "progress": task.get("progress"),
    }


def image_tasks(server: Server, image_id: str) -> list[dict[str, Any]]:
    """``GET /v2/images/{id}/tasks``, oldest first (by ``created_at``; both servers have that route)."""
    response = rawhttp.request(HOST, server.port, "GET", f"/v2/images/{image_id}/tasks", headers=ADMIN)
    if response.status != 200:
        raise CopyFailed(
            f"GET /v2/images/{image_id}/tasks answered {response.status}: {response.body[:300]!r}"
        )
    reply = response.json()
    tasks = reply.get("tasks") if isinstance(reply, dict) else None
    if not isinstance(tasks, list):
        raise CopyFailed(f"GET /v2/images/{image_id}/tasks has no task list")
    return sorted((t for t in tasks if isinstance(t, dict)), key=lambda t: str(t.get("created_at", "")))


def copy_image_polled(server: Server, image_id: str, stores: list[str], size: int) -> dict[str, Any]:
    """copy-image as any client of either server does it: POST the import, then poll the image's tasks.

    Glance gives no task id in the 202, so the new task is the one beyond those the image had
    before. It is polled every 2 % of the time elapsed so far, between 0.05 and 0.5 s: a copy of
    6 s is seen within 0.12 s of its end, one of 35 s within 0.5 s as with a fixed 0.5 s (polled
    more often only in its first 25 s). Wall time from the POST to the poll that sees the task end.
    """
    before = len(image_tasks(server, image_id))
    started = time.perf_counter()
    _post_copy(server, image_id, stores)
    deadline = time.monotonic() + COPY_TIMEOUT
    task: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        time.sleep(poll_interval(time.perf_counter() - started))
        tasks = image_tasks(server, image_id)
        if len(tasks) > before and tasks[-1].get("status") in ("success", "failure"):
            task = tasks[-1]
            break
    seconds = time.perf_counter() - started
    if task is None:
        raise CopyFailed(f"the copy-image task of {image_id} did not end within {COPY_TIMEOUT:.0f} s")
    if task.get("status") != "success":
        raise CopyFailed(f"copy-image task failed: {task.get('message')}")
    image = rawhttp.request(HOST, server.port, "GET", f"/v2/images/{image_id}", headers=ADMIN).json()
    held = set(str(image.get("stores", "")).split(",")) if isinstance(image, dict) else set()
    if not set(stores) <= held:
        raise CopyFailed(f"after the copy the image is in {sorted(held)}, expected {stores} too")
    return {"stores": stores, "seconds": seconds, "written_mib_s": size * len(stores) / MiB / seconds}
