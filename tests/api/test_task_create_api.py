"""POST /v2/tasks: Glance's old ``import`` task, run as a web-download of an image it creates.

No task runner runs here (``[task] embedded_runner = false``): the task stays pending, which is what
these tests look at. The runs themselves are in tests/integration/test_import_tasks.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OWNER
from starlette.testclient import TestClient

NO_RUNNER = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false"}
URL = "https://images.example.com/cirros.qcow2"


def import_input(**changes: object) -> dict[str, Any]:
    given: dict[str, Any] = {
        "import_from": URL,
        "import_from_format": "qcow2",
        "image_properties": {
            "name": "cirros",
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "public",
            "os_distro": "cirros",
        },
    }
    given.update(changes)
    return given


def create(client: TestClient, body: object, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v2/tasks", json=body, headers=headers or ADMIN)


def image_ids(client: TestClient) -> list[str]:
    response = client.get("/v2/images?visibility=all", headers=ADMIN)
    assert response.status_code == 200, response.text
    return [image["id"] for image in response.json()["images"]]


@pytest.fixture
def api(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    return make_client(migrated_database_url, **NO_RUNNER)


def test_an_import_task_creates_the_image_and_a_pending_web_download(api: TestClient) -> None:
    response = create(
        api, {"type": "import", "input": import_input()}, {**ADMIN, "X-Openstack-Request-Id": "req-t1"}
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert sorted(task) == sorted(
        [
            "id",
            "input",
            "type",
            "status",
            "owner",
            "message",
            "result",
            "created_at",
            "updated_at",
            "self",
            "schema",
            "image_id",
            "request_id",
            "user_id",
        ]
    )
    assert task["type"] == "import"
    assert task["status"] == "pending"
    assert task["owner"] == "project-admin"
    assert task["user_id"] == "admin"
    assert task["request_id"] == "req-t1"
    assert task["result"] is None
    assert task["message"] == ""
    assert task["self"] == f"/v2/tasks/{task['id']}"
    assert task["input"] == {**import_input(), "backend": ["fast"]}
    assert task["created_at"].endswith("Z")

    # the admin task API shows it, with Glance's fields
    assert api.get(f"/v2/tasks/{task['id']}", headers=ADMIN).json() == task
    listed = api.get("/v2/tasks", headers=ADMIN).json()["tasks"]
    assert [(t["id"], t["type"], t["status"]) for t in listed] == [(task["id"], "import", "pending")]

    # the image exists at once, is importing under the task's lock, and lists the task
    image = api.get(f"/v2/images/{task['image_id']}", headers=ADMIN).json()
    assert image["name"] == "cirros"
    assert image["disk_format"] == "qcow2"
    assert image["visibility"] == "public"
    assert image["os_distro"] == "cirros"
    assert image["owner"] == "project-admin"
    assert image["status"] == "importing"
    assert image["os_glance_import_task"] == task["id"]
    assert image["os_glance_importing_to_stores"] == "fast"
    image_tasks = api.get(f"/v2/images/{task['image_id']}/tasks", headers=ADMIN).json()["tasks"]
    assert [(t["id"], t["type"], t["image_id"]) for t in image_tasks] == [(task["id"], "import", image["id"])]
    # another project sees the public image, not the administrator's task on it
    assert api.get(f"/v2/images/{task['image_id']}/tasks", headers=OWNER).json()["tasks"] == []


def test_backend_names_the_store(api: TestClient) -> None:
    response = create(api, {"type": "import", "input": import_input(backend="cheap")})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["input"]["backend"] == ["cheap"]
    image = api.get(f"/v2/images/{task['image_id']}", headers=ADMIN).json()
    assert image["os_glance_importing_to_stores"] == "cheap"

    unknown = create(api, {"type": "import", "input": import_input(backend="nowhere")})
    assert unknown.status_code == 409, unknown.text  # an unknown store, as an import answers
    assert "nowhere" in unknown.json()["message"]
    assert image_ids(api) == [task["image_id"]]  # the refused request left no image


def test_the_tasks_api_is_for_administrators(
    make_client: Callable[..., TestClient], migrated_database_url: str, tmp_path: Path
) -> None:
    api = make_client(migrated_database_url, **NO_RUNNER)
    refused = create(api, {"type": "import", "input": import_input()}, OWNER)
    assert refused.status_code == 403, refused.text
    # refused before the body is read: no body gives 403 too
    assert api.post("/v2/tasks", headers=OWNER).status_code == 403
    assert image_ids(api) == []

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"add_task": "!"}))
    locked = make_client(migrated_database_url, GLIMPSE_OSLO_POLICY__POLICY_FILE=str(policy), **NO_RUNNER)
    assert create(locked, {"type": "import", "input": import_input()}).status_code == 403
    assert locked.get("/v2/tasks", headers=ADMIN).status_code == 200  # add_task guards creation only


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Body expected in request."),
        ([], "must be a JSON object"),
        ({"input": import_input()}, "Task 'type' is required"),
        ({"type": "import"}, "Task 'input' is required"),
        ({"type": "export", "input": {}}, "Task type 'export' cannot be created; only 'import' can."),
        ({"type": "api_image_import", "input": {}}, "POST /v2/images/{image_id}/import"),
        (
            {"type": "import", "input": import_input(), "status": "success"},
            "Unknown task attribute(s): status",
        ),
        ({"type": "import", "input": "x"}, "Task 'input' must be an object"),
        (
            {"type": "import", "input": {"import_from": URL}},
            "Input does not contain 'import_from_format' field",
        ),
        ({"type": "import", "input": {**import_input(), "extra": 1}}, "Unknown field(s) in the input"),
        ({"type": "import", "input": import_input(import_from=7)}, "'import_from' must be the http"),
        ({"type": "import", "input": import_input(import_from_format="")}, "'import_from_format' must be"),
        (
            {"type": "import", "input": import_input(image_properties=[])},
            "'image_properties' must be an object",
        ),
        (
            {
                "type": "import",
                "input": import_input(image_properties={"name": "x", "container_format": "bare"}),
            },
            "'image_properties' must set 'disk_format'",
        ),
        (
            {"type": "import", "input": import_input(backend=["fast"])},
            "'backend' must be the id of one store",
        ),
        (
            {"type": "import", "input": import_input(import_from="file:///etc/passwd")},
            "File based imports are not allowed.",
        ),
        (
            {"type": "import", "input": import_input(import_from="http://127.0.0.1/x.qcow2")},
            "URI for web-download does not pass filtering: http://127.0.0.1/x.qcow2",
        ),
        (
            {"type": "import", "input": import_input(import_from="http://dummy-img-file.qcow2:8080/")},
            "URI for web-download does not pass filtering",
        ),
        (
            {
                "type": "import",
                "input": import_input(
                    image_properties={**import_input()["image_properties"], "disk_format": "floppy"}
                ),
            },
            "disk_format",
        ),
        (
            {
                "type": "import",
                "input": import_input(
                    image_properties={**import_input()["image_properties"], "os_glance_x": "1"}
                ),
            },
            "reserved",
        ),
    ],
)
def test_a_refused_task_is_a_4xx_and_creates_nothing(api: TestClient, body: object, message: str) -> None:
    response = api.post("/v2/tasks", headers=ADMIN) if body is None else create(api, body)
    assert response.status_code in (400, 403), response.text
    assert message in response.json()["message"]
    assert image_ids(api) == []
    assert api.get("/v2/tasks", headers=ADMIN).json()["tasks"] == []


def test_import_tasks_need_web_download_enabled(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    api = make_client(migrated_database_url, GLIMPSE_ENABLED_IMPORT_METHODS="glance-direct", **NO_RUNNER)
    response = create(api, {"type": "import", "input": import_input()})
    assert response.status_code == 400, response.text
    assert "web-download is not enabled at this site" in response.json()["message"]
    assert image_ids(api) == []
