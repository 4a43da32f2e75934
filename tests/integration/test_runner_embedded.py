"""The runner embedded in the API process: an accepted import wakes it, and the result shows through
the API (image status and stores, the task's message and ``progress``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient
from test_runner_support import MIB, make_runtime, payload

from glimpse.api.app import create_app

HEADERS = {
    "X-Project-Id": "project-a",
    "X-User-Id": "user-a",
    "X-Roles": "member,reader",
    "Accept": "application/json",
}
DATA = payload(2 * MIB + 1)


def wait_for_status(client: TestClient, image_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        image: dict[str, Any] = client.get(f"/v2/images/{image_id}").json()
        if image["status"] == status or time.monotonic() > deadline:
            return image
        time.sleep(0.02)


def test_import_through_the_api_runs_on_the_embedded_runner(
    tmp_path: Path, migrated_database_url: str
) -> None:
    # A long poll interval: only the wake-up from the import request can start the task quickly.
    runtime = make_runtime(tmp_path, migrated_database_url, runner_poll_interval=30.0)
    with TestClient(create_app(runtime), headers=HEADERS) as client:
        created = client.post(
            "/v2/images", json={"name": "x", "disk_format": "raw", "container_format": "bare"}
        )
        image_id = created.json()["id"]
        staged = client.put(
            f"/v2/images/{image_id}/stage", content=DATA, headers={"Content-Type": "application/octet-stream"}
        )
        assert staged.status_code == 204, staged.text
        accepted = client.post(
            f"/v2/images/{image_id}/import",
            json={"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]},
        )
        assert accepted.status_code == 202, accepted.text
        image = wait_for_status(client, image_id, "active")
        assert image["status"] == "active"
        assert sorted(image["stores"].split(",")) == ["cheap", "fast"]
        assert image["os_glance_importing_to_stores"] == ""
        assert image["os_glance_failed_import"] == ""
        assert "os_glance_import_task" not in image
        tasks = client.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
        assert len(tasks) == 1
        task = tasks[0]
        assert task["status"] == "success"
        assert task["message"] == "Copied 2 MiB"  # a 2 MiB image written to two stores, counted once
        assert task["result"] == {"image_id": image_id}
        progress = task["progress"]
        assert progress["phase"] == "done"
        assert set(progress) == {
            "phase",
            "staged_bytes",
            "bytes_per_second",
            "stores",
            "percent",
            "processed_bytes",
            "plugins",
            "staged_total",
            "eta_seconds",
            "stalled_since",
        }
        assert (progress["percent"], progress["processed_bytes"], progress["plugins"]) == (None, 0, {})
        assert (progress["eta_seconds"], progress["stalled_since"]) == (None, None)  # nothing to wait for
        for store in ("fast", "cheap"):
            assert progress["stores"][store]["state"] == "done"
            assert progress["stores"][store]["percent"] == 100.0
            assert progress["stores"][store]["bytes_done"] == len(DATA)
        downloaded = client.get(f"/v2/images/{image_id}/file")
        assert downloaded.content == DATA
