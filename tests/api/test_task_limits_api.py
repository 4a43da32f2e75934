"""The task time limits through the API: the import body's ``deadline`` (checked as Glance checks the
other import fields, kept in the task's input) and the ``eta_seconds`` and ``stalled_since`` of the
progress in the image's task listing. No task runner runs here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apitools import OWNER, new_image
from starlette.testclient import TestClient
from test_import_api import (
    T0,
    accepted,
    api,  # noqa: F401 - the fixture
    runtime_of,
    show,
    stage,
    start,
)

from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.tasks import TaskProgress


def claim(client: TestClient, task_id: str) -> None:
    with runtime_of(client).uow() as session:
        assert SqlTaskRepository(session).claim(task_id, "runner-1", T0, timedelta(seconds=30))


def staged_image(client: TestClient) -> str:
    image_id: str = new_image(client)["id"]
    assert stage(client, image_id, b"abc" * 1000).status_code == 204
    return image_id


@pytest.mark.parametrize("deadline", [0, -1, 2.5, "600", True, None])
def test_a_bad_deadline_is_a_400_that_says_what_to_send(api: TestClient, deadline: object) -> None:  # noqa: F811
    image_id = staged_image(api)
    response = start(api, image_id, {"method": {"name": "glance-direct"}, "deadline": deadline})
    assert response.status_code == 400, response.text
    assert "'deadline' must be a positive integer" in response.text
    assert show(api, image_id)["status"] == "uploading"  # nothing started


def test_the_deadline_is_kept_with_the_request_and_eta_and_stall_are_listed(api: TestClient) -> None:  # noqa: F811
    image_id = staged_image(api)
    body = {"method": {"name": "glance-direct"}, "deadline": 3600}
    task_id = accepted(start(api, image_id, body))
    listed = api.get(f"/v2/images/{image_id}/tasks", headers=OWNER).json()["tasks"]
    assert listed[0]["input"]["import_req"]["deadline"] == 3600
    assert listed[0]["progress"]["eta_seconds"] is None
    assert listed[0]["progress"]["stalled_since"] is None

    # What a runner writes at a heartbeat of a download that stopped moving.
    claim(api, task_id)
    progress = TaskProgress(
        phase="staging", staged_bytes=512, staged_total=2048, eta_seconds=None, stalled_since=T0
    )
    with runtime_of(api).uow() as session:
        SqlTaskRepository(session).heartbeat(
            task_id, "runner-1", T0 + timedelta(seconds=5), timedelta(seconds=30), progress, "Copied 0 MiB"
        )
    shown = api.get(f"/v2/images/{image_id}/tasks/{task_id}", headers=OWNER).json()["progress"]
    assert shown["stalled_since"] == "2026-11-25T12:00:00.000000Z"
    assert shown["staged_total"] == 2048
    assert shown["eta_seconds"] is None

    progress.stalled_since, progress.eta_seconds, progress.staged_bytes = None, 30, 1024
    with runtime_of(api).uow() as session:
        SqlTaskRepository(session).heartbeat(
            task_id, "runner-1", T0 + timedelta(seconds=7), timedelta(seconds=30), progress, "Copied 0 MiB"
        )
    shown = api.get(f"/v2/images/{image_id}/tasks/{task_id}", headers=OWNER).json()["progress"]
    assert shown["eta_seconds"] == 30
    assert shown["stalled_since"] is None
