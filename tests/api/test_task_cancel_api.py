"""Cancelling an image's task through the API: ``DELETE /v2/images/{id}/tasks/{task_id}``.

No task runner runs here: a pending task is cancelled by the request itself, and a running one (a
claim made by hand) gets the cancel recorded for its runner to act on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from apitools import ADMIN, OTHER, OWNER, new_image
from starlette.testclient import TestClient
from test_import_api import (
    T0,
    accepted,
    active_image,
    api,  # noqa: F401 - the fixture
    copy,
    runtime_of,
    show,
    stage,
    staged_files,
    start,
    task,
    web,
)
from test_tasks_api import add_task

from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.tasks import TaskCancelled, TaskLost, TaskProgress, TaskStatus

READER = {**OWNER, "X-User-Id": "user-r", "X-Roles": "reader"}
COLLEAGUE = {**OWNER, "X-User-Id": "user-a2"}
WHEN = "2026-11-25T12:00:00Z"


def cancel(client: TestClient, image_id: str, task_id: str, headers: dict[str, str] | None = None) -> Any:
    return client.delete(f"/v2/images/{image_id}/tasks/{task_id}", headers=headers or OWNER)


def staged_image(client: TestClient) -> str:
    image_id: str = new_image(client)["id"]
    assert stage(client, image_id, b"abc" * 1000).status_code == 204
    return image_id


def claim(client: TestClient, task_id: str, worker: str = "runner-1") -> None:
    with runtime_of(client).uow() as session:
        assert SqlTaskRepository(session).claim(task_id, worker, T0, timedelta(seconds=30))


def test_cancel_pending_glance_direct_keeps_the_staged_data(api: TestClient) -> None:  # noqa: F811
    image_id = staged_image(api)
    task_id = accepted(start(api, image_id, {"method": {"name": "glance-direct"}}))

    response = cancel(api, image_id, task_id)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["id"] == task_id
    assert body["status"] == "failure"
    assert body["message"] == (
        f"Cancelled by user user-a of project project-a at {WHEN} (request "
        f"{response.headers['X-Openstack-Request-Id']}). It had not started. Image {image_id} is back "
        "to 'uploading' with its staged data kept; import it again (glance-direct) to start over."
    )
    assert body["cancel_request"]["user_id"] == "user-a"
    assert body["cancel_request"]["project_id"] == "project-a"
    assert body["result"] is None
    image = show(api, image_id)
    assert image["status"] == "uploading"
    assert image.get("os_glance_import_task") in (None, "")
    assert image["os_glance_importing_to_stores"] == ""
    assert staged_files(api) == [image_id]
    stored = task(api, task_id)
    assert stored.expires_at is not None

    # Cancelling again changes nothing and answers the same.
    again = cancel(api, image_id, task_id)
    assert again.status_code == 202, again.text
    assert again.json()["message"] == body["message"]
    assert again.json()["cancel_request"] == body["cancel_request"]

    # The staged data is still there, so the import can simply start again.
    retry = accepted(start(api, image_id, {"method": {"name": "glance-direct"}}))
    assert show(api, image_id)["status"] == "importing"
    assert task(api, retry).status == TaskStatus.PENDING


def test_cancel_pending_web_download_puts_the_image_back_to_queued(api: TestClient) -> None:  # noqa: F811
    image_id = new_image(api)["id"]
    task_id = accepted(start(api, image_id, web(stores=["fast"])))
    response = cancel(api, image_id, task_id)
    assert response.status_code == 202, response.text
    assert "is back to 'queued'" in response.json()["message"]
    image = show(api, image_id)
    assert image["status"] == "queued"
    assert image["os_glance_importing_to_stores"] == ""
    accepted(start(api, image_id, web(stores=["fast"])))


def test_cancel_pending_copy_leaves_the_image_active(make_client: Any, migrated_database_url: str) -> None:
    client = make_client(
        migrated_database_url,
        GLIMPSE_TASK__EMBEDDED_RUNNER="false",
        GLIMPSE_ENABLED_BACKENDS="fast:file,cheap:file",
    )
    image_id = active_image(client)
    task_id = accepted(start(client, image_id, copy(stores=["cheap"]), ADMIN))
    assert show(client, image_id)["os_glance_importing_to_stores"] == "cheap"
    response = cancel(client, image_id, task_id, ADMIN)
    assert response.status_code == 202, response.text
    assert "is unchanged and the partial copies were removed" in response.json()["message"]
    image = show(client, image_id)
    assert image["status"] == "active"
    assert image["stores"] == "fast"
    assert image["os_glance_importing_to_stores"] == ""
    accepted(start(client, image_id, copy(stores=["cheap"]), ADMIN))


def test_cancel_running_task_is_recorded_for_its_runner(api: TestClient) -> None:  # noqa: F811
    image_id = staged_image(api)
    task_id = accepted(start(api, image_id, {"method": {"name": "glance-direct"}}))
    claim(api, task_id)

    response = cancel(api, image_id, task_id, COLLEAGUE)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "processing"  # the runner ends it at its next heartbeat
    assert body["cancel_request"]["user_id"] == "user-a2"
    assert body["cancel_request"]["at"] == "2026-11-25T12:00:00.000000Z"
    # The image stays the runner's until it has undone its work.
    assert show(api, image_id)["status"] == "importing"

    # A second cancel (by someone else) keeps the first request.
    again = cancel(api, image_id, task_id, ADMIN)
    assert again.status_code == 202, again.text
    assert again.json()["cancel_request"] == body["cancel_request"]

    # The runner learns it at its next heartbeat, and cannot record a success any more.
    with runtime_of(api).uow() as session:
        tasks = SqlTaskRepository(session)
        with pytest.raises(TaskCancelled) as raised:
            tasks.heartbeat(task_id, "runner-1", T0, timedelta(seconds=30), TaskProgress(), "Copied 0 MiB")
        assert raised.value.request.user_id == "user-a2"
        assert not tasks.succeed(task_id, "runner-1", T0, timedelta(hours=1), {}, TaskProgress(), "")
    # Another runner's heartbeat is simply lost (the task is not its own).
    with runtime_of(api).uow() as session, pytest.raises(TaskLost):
        SqlTaskRepository(session).heartbeat(
            task_id, "runner-2", T0, timedelta(seconds=30), TaskProgress(), "Copied 0 MiB"
        )


def test_cancel_of_a_finished_task_is_409(api: TestClient) -> None:  # noqa: F811
    image_id = new_image(api)["id"]
    done = add_task(api, image_id, status=TaskStatus.SUCCESS, expires=T0 + timedelta(hours=1))
    failed = add_task(
        api, image_id, status=TaskStatus.FAILURE, expires=T0 + timedelta(hours=1), message="it broke"
    )
    for task_id, status in ((done, "success"), (failed, "failure")):
        response = cancel(api, image_id, task_id)
        assert response.status_code == 409, response.text
        message = response.json()["message"]
        assert f"Task {task_id} already ended with status '{status}'" in message
        assert "nothing to cancel" in message


def test_who_may_cancel(api: TestClient) -> None:  # noqa: F811
    image_id = staged_image(api)
    task_id = accepted(start(api, image_id, {"method": {"name": "glance-direct"}}))
    # Another project cannot see the private image, nor (once it is public) the task: 404.
    assert cancel(api, image_id, task_id, OTHER).status_code == 404
    response = api.patch(
        f"/v2/images/{image_id}",
        json=[{"op": "replace", "path": "/visibility", "value": "public"}],
        headers={**ADMIN, "Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert response.status_code == 200, response.text
    hidden = cancel(api, image_id, task_id, OTHER)
    assert hidden.status_code == 404
    assert f"has no task {task_id} that you can see" in hidden.json()["message"]
    # A reader of the owner project sees the task but may not cancel it: 403, saying who may.
    refused = cancel(api, image_id, task_id, READER)
    assert refused.status_code == 403, refused.text
    assert "cancel_image_task" in refused.json()["message"]
    assert "Only the user who started the task" in refused.json()["message"]
    assert task(api, task_id).status == TaskStatus.PENDING
    # A task of an unknown id, or of another image: 404.
    assert cancel(api, image_id, "0" * 8 + "-0000-0000-0000-" + "0" * 12).status_code == 404
    assert cancel(api, new_image(api)["id"], task_id).status_code == 404
    # An administrator of any project may.
    response = cancel(api, image_id, task_id, ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["message"].startswith("Cancelled by user admin of project project-admin")


def test_the_task_api_still_refuses_delete_and_says_where_to_cancel(api: TestClient) -> None:  # noqa: F811
    image_id = new_image(api)["id"]
    task_id = accepted(start(api, image_id, web(stores=["fast"])))
    response = api.delete(f"/v2/tasks/{task_id}", headers=ADMIN)
    assert response.status_code == 405
    assert "DELETE /v2/images/{image_id}/tasks/{task_id}" in response.json()["message"]
    assert task(api, task_id).status == TaskStatus.PENDING
