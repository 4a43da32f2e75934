"""``use_json = true``: every line a live server writes is one JSON object, with the request's and
the task's context on the lines about them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from livesupport import Server, free_port

pytestmark = pytest.mark.live

HEADERS = {"X-Project-Id": "proj-json", "X-User-Id": "user-json", "X-Roles": "member,reader"}


def test_every_line_is_json_with_request_and_task_context(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({"GLIMPSE_DATA_DIR": str(tmp_path / "data"), "GLIMPSE_USE_JSON": "true"})
    live = Server(name="json-logs", port=free_port(), log_path=tmp_path / "server.log")
    live.start(env)
    try:
        live.wait_ready()
        image = httpx.post(
            f"{live.url}/v2/images",
            headers=HEADERS,
            json={"name": "logged", "disk_format": "raw", "container_format": "bare"},
        ).json()["id"]
        staged = httpx.put(
            f"{live.url}/v2/images/{image}/stage",
            headers={**HEADERS, "Content-Type": "application/octet-stream"},
            content=os.urandom(64 * 1024),
        )
        assert staged.status_code == 204, staged.text
        started = httpx.post(
            f"{live.url}/v2/images/{image}/import",
            headers={**HEADERS, "X-Openstack-Request-Id": "req-json-import"},
            json={"method": {"name": "glance-direct"}},
        )
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while httpx.get(f"{live.url}/v2/images/{image}", headers=HEADERS).json()["status"] != "active":
            assert time.monotonic() < deadline, "the import did not finish"
            time.sleep(0.1)
    finally:
        live.stop()

    lines = [line for line in live.log().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    assert any(entry["logger"].startswith("uvicorn") for entry in entries), "uvicorn's own lines are missing"

    access = [
        e for e in entries if e["logger"] == "glimpse.access" and e.get("request_id") == "req-json-import"
    ]
    assert access, "no access line carries the import request's id"
    assert (access[0]["user_id"], access[0]["project_id"]) == ("user-json", "proj-json")

    task_lines = [e for e in entries if e.get("task_id") and e.get("image_id") == image]
    assert task_lines, "no line of the runner names the task and the image"
    assert {e["request_id"] for e in task_lines} == {"req-json-import"}
    assert {e["user_id"] for e in task_lines} == {"user-json"}
