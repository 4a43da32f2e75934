"""Reading tasks: /v2/images/{id}/tasks for whoever sees the image, /v2/tasks for admins."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from apitools import ADMIN, OTHER, OWNER, THIRD, new_image
from starlette.testclient import TestClient

from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.tasks import Task, TaskStatus, TaskType

GLANCE_KEYS = [
    "id",
    "type",
    "status",
    "owner",
    "expires_at",
    "created_at",
    "updated_at",
    "deleted_at",
    "deleted",
    "image_id",
    "request_id",
    "user_id",
    "input",
    "result",
    "message",
]
T0 = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)


def add_task(
    client: TestClient,
    image_id: str,
    *,
    owner: str = "project-a",
    status: TaskStatus = TaskStatus.PENDING,
    created: datetime = T0,
    expires: datetime | None = None,
    message: str = "",
) -> str:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    task = Task(
        id=str(uuid.uuid4()),
        type=TaskType.API_IMAGE_IMPORT,
        status=status,
        owner=owner,
        image_id=image_id,
        request_id=f"req-{uuid.uuid4()}",
        user_id=f"user-of-{owner}",
        input={"image_id": image_id, "import_req": {"method": {"name": "copy-image"}}, "backend": ["cheap"]},
        created_at=created,
        updated_at=created,
        expires_at=expires,
        message=message,
        result={"image_id": image_id} if status == TaskStatus.SUCCESS else None,
    )
    with runtime.uow() as session:
        SqlTaskRepository(session).add(task)
    return task.id


def at(client: TestClient, when: datetime) -> None:
    client.app.state.runtime.clock = lambda: when  # type: ignore[attr-defined]


def tasks_of(
    client: TestClient, image_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    response = client.get(f"/v2/images/{image_id}/tasks", headers=headers or OWNER)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def test_no_tasks(client: TestClient) -> None:
    image = new_image(client)
    assert client.get(f"/v2/images/{image['id']}/tasks").json() == {"tasks": []}


def test_every_unexpired_task_oldest_first_in_glance_shape(client: TestClient) -> None:
    image = new_image(client)["id"]
    at(client, T0 + timedelta(hours=1))
    done = add_task(
        client,
        image,
        status=TaskStatus.SUCCESS,
        created=T0,
        expires=T0 + timedelta(hours=48),
        message="Copied 15 MiB",
    )
    running = add_task(client, image, status=TaskStatus.PROCESSING, created=T0 + timedelta(minutes=1))
    waiting = add_task(client, image, created=T0 + timedelta(minutes=2))
    add_task(client, image, status=TaskStatus.FAILURE, created=T0 - timedelta(days=3), expires=T0)
    add_task(client, new_image(client)["id"])
    tasks = tasks_of(client, image)
    assert [t["id"] for t in tasks] == [done, running, waiting]
    first = tasks[0]
    assert list(first)[:15] == GLANCE_KEYS
    assert first["created_at"] == "2026-11-25T12:00:00.123456"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", first["expires_at"])
    assert first["deleted"] is False
    assert first["deleted_at"] is None
    assert first["result"] == {"image_id": image}
    assert first["message"] == "Copied 15 MiB"
    assert first["user_id"] == "user-of-project-a"
    assert first["request_id"].startswith("req-")
    assert tasks[1]["expires_at"] is None
    assert tasks[2]["status"] == "pending"
    assert set(first["progress"]) >= {"phase", "stores", "bytes_per_second"}


def test_tasks_expire_for_everyone_at_once(client: TestClient) -> None:
    image = new_image(client)["id"]
    add_task(client, image, status=TaskStatus.SUCCESS, expires=T0 + timedelta(hours=48))
    at(client, T0 + timedelta(hours=47))
    assert len(tasks_of(client, image)) == 1
    at(client, T0 + timedelta(hours=48, seconds=1))
    assert tasks_of(client, image) == []
    assert tasks_of(client, image, ADMIN) == []


def test_who_sees_which_task(client: TestClient) -> None:
    image = new_image(client, visibility="community")["id"]
    at(client, T0)
    mine = add_task(client, image, owner="project-a")
    operators = add_task(client, image, owner="project-admin")
    theirs = add_task(client, image, owner="project-b")

    owner_view = {t["id"]: t for t in tasks_of(client, image)}
    assert set(owner_view) == {mine, operators, theirs}
    assert owner_view[mine]["user_id"] == "user-of-project-a"
    assert owner_view[operators]["user_id"] is None
    assert owner_view[operators]["request_id"] is None
    assert owner_view[operators]["owner"] == "project-admin"

    assert [t["id"] for t in tasks_of(client, image, OTHER)] == [theirs]
    assert tasks_of(client, image, THIRD) == []
    admin_view = {t["id"]: t for t in tasks_of(client, image, ADMIN)}
    assert set(admin_view) == {mine, operators, theirs}
    assert admin_view[theirs]["user_id"] == "user-of-project-b"


def test_invisible_or_missing_image_is_404(client: TestClient) -> None:
    private = new_image(client, visibility="private")["id"]
    add_task(client, private)
    assert client.get(f"/v2/images/{private}/tasks", headers=OTHER).status_code == 404
    assert client.get(f"/v2/images/{uuid.uuid4()}/tasks").status_code == 404
    assert client.get("/v2/images/not-a-uuid/tasks").status_code == 404
    deleted = new_image(client)["id"]
    add_task(client, deleted)
    client.delete(f"/v2/images/{deleted}")
    assert client.get(f"/v2/images/{deleted}/tasks").status_code == 404


def test_body_on_get_is_400(client: TestClient) -> None:
    image = new_image(client)["id"]
    response = client.request("GET", f"/v2/images/{image}/tasks", content=b"{}")
    assert response.status_code == 400
    assert "takes no body" in response.json()["message"]


def test_one_task_of_an_image(client: TestClient) -> None:
    image = new_image(client)["id"]
    other_image = new_image(client)["id"]
    at(client, T0)
    task = add_task(client, image)
    response = client.get(f"/v2/images/{image}/tasks/{task}")
    assert response.status_code == 200
    assert response.json()["id"] == task
    assert client.get(f"/v2/images/{other_image}/tasks/{task}").status_code == 404
    assert client.get(f"/v2/images/{image}/tasks/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/v2/images/{image}/tasks/nope").status_code == 404


def test_tasks_api_is_admin_only(client: TestClient) -> None:
    image = new_image(client)["id"]
    at(client, T0 + timedelta(minutes=10))
    old = add_task(client, image, status=TaskStatus.SUCCESS, created=T0, expires=T0 + timedelta(hours=48))
    new = add_task(client, image, created=T0 + timedelta(minutes=1))
    assert client.get("/v2/tasks").status_code == 403
    assert client.get(f"/v2/tasks/{old}").status_code == 403
    listing = client.get("/v2/tasks", headers=ADMIN).json()
    assert [t["id"] for t in listing["tasks"]] == [new, old]
    assert listing["first"] == "/v2/tasks"
    assert listing["schema"] == "/v2/schemas/tasks"
    assert "input" not in listing["tasks"][0]
    assert listing["tasks"][1]["expires_at"] == "2026-11-27T12:00:00Z"
    assert [t["id"] for t in client.get("/v2/tasks?status=success", headers=ADMIN).json()["tasks"]] == [old]
    page = client.get("/v2/tasks?limit=1&sort_dir=asc", headers=ADMIN).json()
    assert [t["id"] for t in page["tasks"]] == [old]
    assert [t["id"] for t in client.get(page["next"], headers=ADMIN).json()["tasks"]] == [new]
    shown = client.get(f"/v2/tasks/{old}", headers=ADMIN).json()
    assert shown["self"] == f"/v2/tasks/{old}"
    assert shown["created_at"] == "2026-11-25T12:00:00Z"
    assert shown["image_id"] == image
    assert client.get("/v2/tasks?sort_key=colour", headers=ADMIN).status_code == 400
    assert client.get("/v2/tasks?owner=x", headers=ADMIN).status_code == 400
    assert client.delete(f"/v2/tasks/{old}", headers=ADMIN).status_code == 405
