"""Watching an image's tasks: GET /v2/images/{id}/tasks?changes-since=...&wait=..."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from apitools import OTHER, THIRD, new_image
from sqlalchemy import update
from starlette.testclient import TestClient
from test_tasks_api import T0, add_task

from glimpse.context import RequestContext
from glimpse.db.models import TaskRow
from glimpse.domain.tasks import Task
from glimpse.services.tasks import TaskService

SINCE = "2026-11-25T12:00:00.123456"  # T0, as the image-tasks view prints it


def touch(client: TestClient, task_id: str, seconds: float, **values: object) -> None:
    """Move the task's ``updated_at`` to T0 plus ``seconds``, with other ``values`` (a ``status``) if
    given, as a runner's heartbeat or last write would."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.uow() as session:
        session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id)
            .values(updated_at=T0 + timedelta(seconds=seconds), **values)
        )


def when_watched(client: TestClient, action: Callable[[], None], within: float = 30.0) -> threading.Thread:
    """Run ``action`` (a task change) in a thread as soon as a request of ``client`` waits for task
    changes, so that the change comes while it watches however slow the machine is. A request that
    never watches leaves ``action`` undone, and its own assertions say so."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    def run() -> None:
        deadline = time.monotonic() + within
        while not runtime.watching():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def watch(
    client: TestClient, image_id: str, headers: dict[str, str] | None = None, **params: str
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.get(f"/v2/images/{image_id}/tasks", params=params, headers=headers)
    return response, time.monotonic() - started


def test_a_change_already_made_answers_at_once(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image)
    response, took = watch(watched, image, **{"changes-since": "2026-11-25T11:59:59Z", "wait": "30"})
    assert response.status_code == 200
    assert response.headers["Glimpse-Tasks-Changed"] == "true"
    assert [t["id"] for t in response.json()["tasks"]] == [task]
    assert took < 5


def test_a_change_during_the_wait_ends_it(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image)
    changer = when_watched(watched, lambda: touch(watched, task, 1.5))
    try:
        response, took = watch(watched, image, **{"changes-since": SINCE, "wait": "20"})
    finally:
        changer.join()
    assert response.status_code == 200, response.text
    assert response.headers["Glimpse-Tasks-Changed"] == "true"
    assert response.json()["tasks"][0]["updated_at"] == "2026-11-25T12:00:01.623456"
    assert took < 10  # woken by the change, long before the 20 s wait


def test_no_change_answers_the_current_tasks_after_wait(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    task = add_task(watched, image)
    response, took = watch(
        watched, image, **{"changes-since": "2026-11-25T12:00:00.123456+00:00", "wait": "1"}
    )
    assert response.status_code == 200
    assert response.headers["Glimpse-Tasks-Changed"] == "false"
    assert [t["id"] for t in response.json()["tasks"]] == [task]
    assert 0.9 < took < 5


def test_changes_since_alone_does_not_wait(watched: TestClient) -> None:
    image = new_image(watched)["id"]
    add_task(watched, image)
    response, took = watch(watched, image, **{"changes-since": SINCE})
    assert response.headers["Glimpse-Tasks-Changed"] == "false"
    assert took < 5
    plain = watched.get(f"/v2/images/{image}/tasks")
    assert "Glimpse-Tasks-Changed" not in plain.headers


def test_a_change_to_a_task_the_caller_cannot_see_does_not_count(watched: TestClient) -> None:
    image = new_image(watched, visibility="community")["id"]
    add_task(watched, image, owner="project-b", created=T0 + timedelta(seconds=5))
    response, _ = watch(watched, image, THIRD, **{"changes-since": SINCE, "wait": "0.5"})
    assert response.status_code == 200
    assert response.headers["Glimpse-Tasks-Changed"] == "false"
    assert response.json() == {"tasks": []}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"wait": "5"}, "wait needs changes-since"),
        ({"changes-since": "yesterday", "wait": "5"}, "changes-since must be an ISO 8601"),
        ({"changes-since": SINCE, "wait": "0"}, "wait must be"),
        ({"changes-since": SINCE, "wait": "61"}, "wait must be"),
        ({"changes-since": SINCE, "wait": "soon"}, "wait must be"),
        ({"changes-since": SINCE, "wait": "nan"}, "wait must be"),
    ],
)
def test_bad_watch_parameters_are_400(watched: TestClient, params: dict[str, str], message: str) -> None:
    image = new_image(watched)["id"]
    response, _ = watch(watched, image, **params)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_invisible_image_is_404_before_waiting(watched: TestClient) -> None:
    private = new_image(watched, visibility="private")["id"]
    add_task(watched, private)
    params = {"changes-since": SINCE, "wait": "30"}
    response, took = watch(watched, private, OTHER, **params)
    assert response.status_code == 404
    response2, took2 = watch(watched, str(uuid.uuid4()), **params)
    assert response2.status_code == 404
    assert took < 5
    assert took2 < 5


def test_requests_woken_by_one_change_share_their_read(
    make_client: Callable[..., TestClient], migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No runner: only the test changes the task.
    watched = make_client(
        migrated_database_url, GLIMPSE_TASK__TASK_WATCH_INTERVAL="0.05", GLIMPSE_TASK__EMBEDDED_RUNNER="false"
    )
    image = new_image(watched)["id"]
    task = add_task(watched, image)
    reads: list[str] = []
    original = TaskService.image_tasks

    def counted(self: TaskService, ctx: RequestContext, image_id: str) -> list[Task]:
        reads.append(ctx.request_id)
        return original(self, ctx, image_id)

    monkeypatch.setattr(TaskService, "image_tasks", counted)
    watchers = 20
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(watch(watched, image, **{"changes-since": SINCE, "wait": "20"})[0])
        )
        for _ in range(watchers)
    ]
    # As a context manager the client serves every request on one event loop, as a server process
    # does (otherwise each request gets a loop, and a watcher, of its own).
    with watched:
        for thread in threads:
            thread.start()
        runtime = watched.app.state.runtime  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while runtime.watching() < watchers and time.monotonic() < deadline:  # all read once, now wait
            time.sleep(0.01)
        assert (runtime.watching(), len(reads)) == (watchers, watchers)
        touch(watched, task, 2.0)
        for thread in threads:
            thread.join(timeout=20)
    assert [a.headers["Glimpse-Tasks-Changed"] for a in answers] == ["true"] * watchers
    # One read each before waiting; after the change, the same caller's reads were shared.
    assert watchers + 1 <= len(reads) <= watchers + 3, len(reads)
