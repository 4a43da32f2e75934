"""An image's tasks as server-sent events: GET /v2/images/{id}/tasks with Accept: text/event-stream."""

from __future__ import annotations

import json
from typing import Any

from apitools import OTHER, new_image
from starlette.testclient import TestClient
from test_task_watch_api import touch, when_watched
from test_tasks_api import add_task

from glimpse.domain.tasks import TaskStatus

EVENTS = {"Accept": "text/event-stream"}


def finish(client: TestClient, task_id: str, seconds: float) -> None:
    """The runner's last write: success, ``updated_at`` at T0 plus ``seconds``."""
    touch(client, task_id, seconds, status=TaskStatus.SUCCESS)


def events(body: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """(event, data, id) of each event; comments and the retry line left out."""
    found = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"]), fields.get("id")))
    return found


def statuses(body: str) -> list[tuple[str, list[str]]]:
    return [(kind, [t["status"] for t in data.get("tasks", [])]) for kind, data, _ in events(body)]


def test_finished_tasks_are_one_event_then_end(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image, status=TaskStatus.SUCCESS)
    response = watched.get(f"/v2/images/{image}/tasks", headers=EVENTS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("retry: 2000\n\n")
    (kind, data, event_id), end = events(response.text)
    assert kind == "tasks"
    assert [t["id"] for t in data["tasks"]] == [task]
    assert data["tasks"][0]["updated_at"] == "2026-11-25T12:00:00.123456"
    assert event_id == "2026-11-25T12:00:00.123456+00:00"
    assert end == ("end", {}, None)


def test_a_running_task_is_followed_until_it_ends(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image, status=TaskStatus.PROCESSING)
    changer = when_watched(watched, lambda: finish(watched, task, 2.0))
    try:
        response = watched.get(f"/v2/images/{image}/tasks", headers=EVENTS)
    finally:
        changer.join()
    assert statuses(response.text) == [
        ("tasks", ["processing"]),
        ("tasks", ["success"]),
        ("end", []),
    ]
    assert events(response.text)[1][2] == "2026-11-25T12:00:02.123456+00:00"


def test_last_event_id_waits_for_the_next_change(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image, status=TaskStatus.PROCESSING)
    changer = when_watched(watched, lambda: finish(watched, task, 3.0))
    try:
        headers = {**EVENTS, "Last-Event-ID": "2026-11-25T12:00:00.123456+00:00"}
        response = watched.get(f"/v2/images/{image}/tasks", headers=headers)
    finally:
        changer.join()
    # The listing the client had seen is not sent again: only the change, then the end.
    assert [
        (kind, [t["status"] for t in data.get("tasks", [])]) for kind, data, _ in events(response.text)
    ] == [
        ("tasks", ["success"]),
        ("end", []),
    ]


def test_an_image_the_caller_cannot_see_is_a_404_before_any_stream(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    response = watched.get(f"/v2/images/{image}/tasks", headers={**EVENTS, **OTHER})
    assert response.status_code == 404
    assert "text/event-stream" not in response.headers["content-type"]


def test_a_bad_last_event_id_is_a_400(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    response = watched.get(f"/v2/images/{image}/tasks", headers={**EVENTS, "Last-Event-ID": "yesterday"})
    assert response.status_code == 400
