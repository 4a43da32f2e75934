"""Interoperable import through the API: staging, starting an import, and the import lock.

No task runner runs here (``[task] embedded_runner = false``): tasks stay pending, which is all these
tests need. Time is moved by replacing the runtime's clock, never by sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OCTET, OTHER, OWNER, new_image, upload
from starlette.testclient import TestClient

from glimpse.db.image_repository import SqlImageRepository
from glimpse.db.repositories import SqlRepositories
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.tasks import Task
from glimpse.runtime import Runtime
from glimpse.services.images import ImageService

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
NO_RUNNER = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false"}
URL = "https://images.example.com/cirros.raw"


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def api(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    """A fresh app without task runner, on SQLite and on PostgreSQL, its clock frozen at T0."""
    client = make_client(migrated_database_url, **NO_RUNNER)
    set_clock(client, T0)
    return client


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def set_clock(client: TestClient, now: datetime) -> None:
    runtime_of(client).clock = lambda: now


def staged_files(client: TestClient) -> list[str]:
    staging = runtime_of(client).settings.staging.datadir
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def stage(
    client: TestClient, image_id: str, data: bytes | Iterator[bytes], headers: dict[str, str] | None = None
) -> Any:
    return client.put(f"/v2/images/{image_id}/stage", content=data, headers={**OCTET, **(headers or {})})


def start(client: TestClient, image_id: str, body: object, headers: dict[str, str] | None = None) -> Any:
    return client.post(f"/v2/images/{image_id}/import", json=body, headers=headers or OWNER)


def web(**extra: object) -> dict[str, Any]:
    return {"method": {"name": "web-download", "uri": URL}, **extra}


def copy(**extra: object) -> dict[str, Any]:
    return {"method": {"name": "copy-image"}, **extra}


def show(client: TestClient, image_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get(f"/v2/images/{image_id}", headers=headers or OWNER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def task(client: TestClient, task_id: str) -> Task:
    with runtime_of(client).uow() as session:
        found = SqlTaskRepository(session).find(task_id)
    assert found is not None
    return found


def image_tasks(client: TestClient, image_id: str) -> list[Task]:
    with runtime_of(client).uow() as session:
        return SqlTaskRepository(session).for_image(image_id, T0 - timedelta(days=1))


def set_properties(client: TestClient, image_id: str, **values: str) -> None:
    """Write os_glance_* properties as the service (or a runner) would, bypassing the API's rules."""
    runtime = runtime_of(client)
    with runtime.uow() as session:
        repo = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).images
        image = repo.get(image_id)
        image.properties.update(values)
        repo.save(image)


def accepted(response: Any) -> str:
    assert response.status_code == 202, response.text
    assert response.content == b""
    task_id: str = response.headers["OpenStack-image-import-task-id"]
    assert response.headers["Location"].endswith(f"/tasks/{task_id}")
    return task_id


def active_image(client: TestClient, headers: dict[str, str] | None = None, **attrs: object) -> str:
    image = new_image(client, headers=headers, **attrs)
    upload(client, image["id"], b"x" * 1000, headers=headers)
    image_id: str = image["id"]
    return image_id


# -- stage -----------------------------------------------------------------------------------------


def test_stage_then_import_glance_direct(api: TestClient) -> None:
    image = new_image(api)
    response = stage(api, image["id"], b"abc" * 1000)
    assert response.status_code == 204, response.text
    body = show(api, image["id"])
    assert body["status"] == "uploading"
    assert body["size"] == 3000
    assert staged_files(api) == [image["id"]]
    assert (runtime_of(api).settings.staging.datadir / image["id"]).read_bytes() == b"abc" * 1000

    woken: list[int] = []
    runtime_of(api).wake_runner = lambda: woken.append(1)
    response = start(api, image["id"], {"method": {"name": "glance-direct"}})
    task_id = accepted(response)
    assert response.headers["Location"] == f"/v2/images/{image['id']}/tasks/{task_id}"
    assert woken == [1]
    body = show(api, image["id"])
    assert body["status"] == "importing"
    assert body["os_glance_import_task"] == task_id
    assert body["os_glance_importing_to_stores"] == "fast"
    assert body["os_glance_failed_import"] == ""
    row = task(api, task_id)
    assert row.status == "pending"
    assert row.type == "api_image_import"
    assert row.owner == "project-a"
    assert row.user_id == "user-a"
    assert row.request_id == response.headers["x-openstack-request-id"]
    assert row.image_id == image["id"]
    assert row.created_at == T0
    assert row.input == {
        "image_id": image["id"],
        "import_req": {"method": {"name": "glance-direct"}},
        "backend": ["fast"],
    }


def test_stage_disabled_is_404_before_media_type(make_client: Callable[..., TestClient]) -> None:
    client = make_client(GLIMPSE_ENABLED_IMPORT_METHODS="web-download,copy-image", **NO_RUNNER)
    image = new_image(client)
    for headers in (OCTET, {"Content-Type": "text/plain"}):
        response = client.put(f"/v2/images/{image['id']}/stage", content=b"x", headers=headers)
        assert response.status_code == 404
        assert response.json()["message"] == "'glance-direct' method is not available at this site."
    response = start(client, image["id"], {"method": {"name": "glance-direct"}})
    assert response.status_code == 400
    assert response.json()["message"] == "Unknown import method name 'glance-direct'."


def test_stage_needs_octet_stream(api: TestClient) -> None:
    image = new_image(api)
    for headers in ({"Content-Type": "application/json"}, {}):
        response = api.put(f"/v2/images/{image['id']}/stage", content=b"{}", headers=headers)
        assert response.status_code == 415, response.text
    assert show(api, image["id"])["status"] == "queued"
    assert staged_files(api) == []


def test_stage_needs_the_owner_and_a_queued_image(api: TestClient) -> None:
    image = new_image(api)
    assert stage(api, "not-an-image", b"x").status_code == 404
    assert stage(api, image["id"], b"x", OTHER).status_code == 404
    response = api.post(f"/v2/images/{image['id']}/members", json={"member": "project-b"})
    assert response.status_code == 200, response.text
    denied = stage(api, image["id"], b"x", OTHER)
    assert denied.status_code == 403, denied.text
    assert stage(api, image["id"], b"first").status_code == 204
    again = stage(api, image["id"], b"second")
    assert again.status_code == 409
    assert "queued" in again.json()["message"]
    assert (runtime_of(api).settings.staging.datadir / image["id"]).read_bytes() == b"first"
    active = active_image(api)
    assert stage(api, active, b"x").status_code == 409
    assert stage(api, active, b"x", ADMIN).status_code == 409


def test_data_already_staged_is_409(api: TestClient) -> None:
    image = new_image(api)
    staging = runtime_of(api).settings.staging.datadir
    staging.mkdir(parents=True, exist_ok=True)
    (staging / image["id"]).write_bytes(b"left over")
    response = stage(api, image["id"], b"new data")
    assert response.status_code == 409
    assert response.json()["message"] == f"The image {image['id']} has data on staging"
    assert show(api, image["id"])["status"] == "queued"
    assert (staging / image["id"]).read_bytes() == b"left over"


def test_stage_over_the_size_cap_is_413_and_stages_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client(GLIMPSE_IMAGE_SIZE_CAP="1000", **NO_RUNNER)
    image = new_image(client)
    declared = stage(client, image["id"], b"x" * 1001)
    assert declared.status_code == 413
    assert "1000" in declared.json()["message"]
    announced = stage(client, image["id"], iter([b"x" * 10]), {"x-openstack-image-size": "5000"})
    assert announced.status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"x" * 600

    streamed = stage(client, image["id"], chunks())
    assert streamed.status_code == 413
    body = show(client, image["id"])
    assert body["status"] == "queued"
    assert body["size"] is None
    assert staged_files(client) == []
    assert stage(client, image["id"], b"x" * 1000).status_code == 204
    assert show(client, image["id"])["size"] == 1000


def test_image_size_header_must_match(api: TestClient) -> None:
    image = new_image(api)
    response = stage(api, image["id"], b"x" * 10, {"x-openstack-image-size": "11"})
    assert response.status_code == 400
    assert "x-openstack-image-size" in response.json()["message"]
    assert show(api, image["id"])["status"] == "queued"
    assert staged_files(api) == []
    bad = stage(api, image["id"], b"x", {"x-openstack-image-size": "ten"})
    assert bad.status_code == 400
    assert "x-openstack-image-size" in bad.json()["message"]
    assert stage(api, image["id"], b"x" * 10, {"x-openstack-image-size": "10"}).status_code == 204
    assert show(api, image["id"])["size"] == 10


def test_content_length_mismatch_stages_nothing(api: TestClient) -> None:
    image = new_image(api)
    response = stage(api, image["id"], iter([b"x" * 10]), {"Content-Length": "20"})
    assert response.status_code in (400, 413)
    assert show(api, image["id"])["status"] == "queued"
    assert staged_files(api) == []


def test_client_gone_mid_stage_reverts_to_queued(api: TestClient) -> None:
    image = new_image(api)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        stage(api, image["id"], chunks())
    body = show(api, image["id"])
    assert body["status"] == "queued"
    assert body["size"] is None
    assert staged_files(api) == []
    assert stage(api, image["id"], b"second try").status_code == 204
    assert show(api, image["id"])["status"] == "uploading"


def test_deleting_a_staged_image_removes_the_staged_data(api: TestClient) -> None:
    image = new_image(api)
    assert stage(api, image["id"], b"abc").status_code == 204
    assert api.delete(f"/v2/images/{image['id']}").status_code == 204
    assert staged_files(api) == []


# -- import: validation, in Glance's order -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Body expected in request."),
        ({}, "Import request requires a 'method' field."),
        ({"method": {}}, "Import request requires a 'name' field."),
        ({"method": "web-download"}, "Import request requires a 'name' field."),
        ({"method": {"name": "nope"}}, "Unknown import method name 'nope'."),
        ({"method": {"name": 5}}, "Unknown import method name '5'."),
        (web(all_stores_must_succeed="yes"), "'all_stores_must_succeed' must be boolean value only"),
        (web(all_stores=1), "'all_stores' must be boolean value only"),
        (["method"], "The import request body must be a JSON object with a 'method' field."),
    ],
)
def test_body_checks_come_first(api: TestClient, body: object, message: str) -> None:
    # Even for an image that does not exist: the body is checked before the image is looked up.
    for image_id in (new_image(api)["id"], "3fa85f64-5717-4562-b3fc-2c963f66afa6"):
        if body is None:
            response = api.post(f"/v2/images/{image_id}/import", headers=OWNER)
        else:
            response = start(api, image_id, body)
        assert response.status_code == 400, response.text
        assert response.json()["message"] == message


def test_unknown_or_invisible_image_is_404(api: TestClient) -> None:
    assert start(api, "3fa85f64-5717-4562-b3fc-2c963f66afa6", web()).status_code == 404
    assert start(api, "not-a-uuid", web()).status_code == 404
    image = new_image(api)
    assert start(api, image["id"], web(), OTHER).status_code == 404


def test_status_preconditions_are_409(api: TestClient) -> None:
    queued = new_image(api)["id"]
    active = active_image(api)
    staged = new_image(api)["id"]
    assert stage(api, staged, b"abc").status_code == 204
    no_container = new_image(api, container_format=None)["id"]
    no_disk = new_image(api, disk_format=None)["id"]
    cases = [
        (active, web(), "Image with status active cannot be target for import"),
        (
            active,
            {"method": {"name": "glance-direct"}},
            "Image with status active cannot be target for import",
        ),
        (queued, copy(), "Only images with status active can be targeted for copying"),
        (staged, web(), "Image needs to be in 'queued' state to use 'web-download' method"),
        (
            queued,
            {"method": {"name": "glance-direct"}},
            "Image needs to be staged before 'glance-direct' method can be used",
        ),
        (no_container, web(), "'container_format' needs to be set before import"),
        (no_disk, web(), "'disk_format' needs to be set before import"),
    ]
    for image_id, body, message in cases:
        response = start(api, image_id, body, ADMIN if body == copy() else OWNER)
        assert response.status_code == 409, (message, response.text)
        assert response.json()["message"] == message
    assert image_tasks(api, queued) == []


def test_policy_copy_needs_admin_and_import_needs_owner(api: TestClient) -> None:
    active = active_image(api)
    denied = start(api, active, copy(stores=["cheap"]))
    assert denied.status_code == 403
    assert "copy_image" in denied.json()["message"]
    queued = new_image(api)["id"]
    response = api.post(f"/v2/images/{queued}/members", json={"member": "project-b"})
    assert response.status_code == 200, response.text
    assert start(api, queued, web(), OTHER).status_code == 403
    # The status check comes before the policy: a member learns the image is active, nothing more.
    assert start(api, active, copy(), OTHER).status_code == 404
    accepted(start(api, active, copy(stores=["cheap"]), ADMIN))


def test_stores_rules(api: TestClient) -> None:
    image = new_image(api)["id"]
    cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
        (web(stores=["nowhere"]), {}, 409, "Unknown store 'nowhere'"),
        (web(), {"X-Image-Meta-Store": "nowhere"}, 409, "Unknown store 'nowhere'"),
        (
            web(all_stores=True, stores=["fast"]),
            {},
            400,
            "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
        ),
        (
            web(all_stores=True),
            {"X-Image-Meta-Store": "fast"},
            400,
            "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
        ),
        (
            web(stores=["fast"]),
            {"X-Image-Meta-Store": "cheap"},
            400,
            "Stores parameter and x-image-meta-store header can't be both specified",
        ),
        (web(stores="fast"), {}, 400, "'stores' must be a non-empty list"),
        (web(stores=[]), {}, 400, "'stores' must be a non-empty list"),
        (web(stores=["fast", 3]), {}, 400, "'stores' must be a non-empty list"),
    ]
    for body, headers, status, message in cases:
        response = start(api, image, body, {**OWNER, **headers})
        assert response.status_code == status, (body, response.text)
        assert response.json()["message"].startswith(message), response.json()["message"]
    assert show(api, image)["status"] == "queued"
    assert image_tasks(api, image) == []


def test_store_header_names_the_target(api: TestClient) -> None:
    image = new_image(api)["id"]
    task_id = accepted(start(api, image, web(), {**OWNER, "X-Image-Meta-Store": "cheap"}))
    assert task(api, task_id).input["backend"] == ["cheap"]
    assert show(api, image)["os_glance_importing_to_stores"] == "cheap"


def test_web_download_to_all_stores(api: TestClient) -> None:
    image = new_image(api)["id"]
    set_properties(api, image, os_glance_failed_import="cheap,other")
    body = web(all_stores=True, all_stores_must_succeed=False)
    task_id = accepted(start(api, image, body))
    row = task(api, task_id)
    assert row.input == {"image_id": image, "import_req": body, "backend": ["fast", "cheap", "reliable"]}
    shown = show(api, image)
    assert shown["status"] == "importing"
    assert shown["os_glance_importing_to_stores"] == "cheap,fast,reliable"
    assert shown["os_glance_failed_import"] == "other"


def test_web_download_url_filtering(api: TestClient) -> None:
    image = new_image(api)["id"]
    for uri in ("http://127.0.0.1/x.img", "ftp://images.example.com/x.img", "http://example.com:8080/x"):
        response = start(api, image, {"method": {"name": "web-download", "uri": uri}})
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(f"URI for web-download does not pass filtering: {uri}")
    missing = start(api, image, {"method": {"name": "web-download"}})
    assert missing.status_code == 400
    assert missing.json()["message"].startswith("URI for web-download does not pass filtering: None")
    assert show(api, image)["status"] == "queued"
    assert image_tasks(api, image) == []


def test_web_download_filter_follows_the_configuration(make_client: Callable[..., TestClient]) -> None:
    client = make_client(GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS="8080", **NO_RUNNER)
    image = new_image(client)["id"]
    assert start(client, image, web()).status_code == 400
    accepted(start(client, image, {"method": {"name": "web-download", "uri": "http://example.com:8080/x"}}))


def test_copy_image(api: TestClient) -> None:
    image = active_image(api)
    present = start(api, image, copy(stores=["cheap", "fast"]), ADMIN)
    assert present.status_code == 400
    assert present.json()["message"] == "Image is already present at store 'fast'"
    body = copy(stores=["reliable", "cheap", "reliable"])
    task_id = accepted(start(api, image, body, ADMIN))
    row = task(api, task_id)
    assert row.input == {"image_id": image, "import_req": body, "backend": ["reliable", "cheap"]}
    assert row.owner == "project-admin"
    assert row.user_id == "admin"
    shown = show(api, image)
    assert shown["status"] == "active"
    assert shown["os_glance_import_task"] == task_id
    assert shown["os_glance_importing_to_stores"] == "cheap,reliable"


def test_copy_to_all_stores_skips_stores_holding_the_image(api: TestClient) -> None:
    image = active_image(api)
    task_id = accepted(start(api, image, copy(all_stores=True), ADMIN))
    assert task(api, task_id).input["backend"] == ["cheap", "reliable"]


def test_copy_to_all_stores_with_nothing_left_creates_no_task(api: TestClient) -> None:
    image = active_image(api)
    with runtime_of(api).uow() as session:
        repo = SqlImageRepository(session)
        location = repo.get(image).locations[0]
        for store in ("cheap", "reliable"):
            repo.add_location(image, type(location)(store_id=store, url=f"file:///nowhere/{store}/{image}"))
    woken: list[int] = []
    runtime_of(api).wake_runner = lambda: woken.append(1)
    response = start(api, image, copy(all_stores=True), ADMIN)
    assert response.status_code == 202, response.text
    assert response.content == b""
    assert "OpenStack-image-import-task-id" not in response.headers
    assert "Location" not in response.headers
    assert image_tasks(api, image) == []
    assert "os_glance_import_task" not in show(api, image)
    assert woken == []


def test_client_request_id_is_stored_on_the_task(api: TestClient) -> None:
    image = new_image(api)["id"]
    response = start(api, image, web(), {**OWNER, "X-OpenStack-Request-ID": "req-from-the-client"})
    task_id = accepted(response)
    assert response.headers["x-openstack-request-id"] == "req-from-the-client"
    assert task(api, task_id).request_id == "req-from-the-client"


# -- the lock --------------------------------------------------------------------------------------


def test_second_import_is_409_with_the_holder(api: TestClient) -> None:
    image = active_image(api)
    first = start(api, image, copy(stores=["cheap"]), ADMIN)
    task_id = accepted(first)
    assert show(api, image)["os_glance_import_task"] == task_id
    set_clock(api, T0 + timedelta(minutes=7))
    response = start(api, image, copy(stores=["reliable"]), ADMIN)
    assert response.status_code == 409
    body = response.json()
    message = body["message"]
    assert message.startswith("Image has active task")
    request_id = first.headers["x-openstack-request-id"]
    for fact in (task_id, "pending", "user admin", request_id, "420 seconds", f"/v2/images/{image}/tasks"):
        assert fact in message, (fact, message)
    assert "2026-11-25T14:00:00Z" in message
    assert body["lock"] == {
        "task_id": task_id,
        "status": "pending",
        "user_id": "admin",
        "request_id": request_id,
        "seconds_since_heartbeat": 420,
        "breakable_at": "2026-11-25T14:00:00Z",
        "tasks_url": f"/v2/images/{image}/tasks",
    }
    assert [t.id for t in image_tasks(api, image)] == [task_id]
    # Other body types carry the same sentences, without the structured part.
    html = api.post(f"/v2/images/{image}/import", json=copy(), headers={**ADMIN, "Accept": "*/*"})
    assert html.status_code == 409
    assert "Image has active task" in html.text
    assert task_id in html.text


def test_lock_is_checked_before_the_stores(api: TestClient) -> None:
    active = active_image(api)
    accepted(start(api, active, copy(stores=["cheap"]), ADMIN))
    response = start(api, active, copy(stores=["nowhere"]), ADMIN)
    assert response.status_code == 409
    assert response.json()["message"].startswith("Image has active task")


def test_the_lock_details_are_redacted_for_another_project(
    make_client: Callable[..., TestClient], migrated_database_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"copy_image": "role:member"}))
    client = make_client(migrated_database_url, GLIMPSE_OSLO_POLICY__POLICY_FILE=str(policy), **NO_RUNNER)
    set_clock(client, T0)
    image = active_image(client, headers=ADMIN, visibility="public")
    first = start(client, image, copy(stores=["cheap"]), OWNER)
    task_id = accepted(first)
    request_id = first.headers["x-openstack-request-id"]

    other = start(client, image, copy(stores=["reliable"]), OTHER)
    assert other.status_code == 409
    body = other.json()
    assert body["message"].startswith("Image has active task")
    assert "another project's request" in body["message"]
    assert task_id in body["message"]
    assert "user-a" not in body["message"]
    assert request_id not in body["message"]
    assert body["lock"]["task_id"] == task_id
    assert body["lock"]["user_id"] is None
    assert body["lock"]["request_id"] is None
    assert body["lock"]["status"] == "pending"

    for caller in (OWNER, ADMIN):
        response = start(client, image, copy(stores=["reliable"]), caller)
        assert response.status_code == 409
        assert response.json()["lock"]["user_id"] == "user-a"
        assert response.json()["lock"]["request_id"] == request_id


def claim(client: TestClient, task_id: str, now: datetime) -> None:
    """What a runner does when it starts a task: pending → processing, with a heartbeat."""
    with runtime_of(client).uow() as session:
        assert SqlTaskRepository(session).claim(task_id, "runner-1", now, timedelta(seconds=30))


def test_a_silent_processing_task_loses_the_lock_after_an_hour(api: TestClient) -> None:
    image = active_image(api)
    old = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    claim(api, old, T0 + timedelta(minutes=1))
    set_properties(api, image, os_glance_failed_import="cheap")

    set_clock(api, T0 + timedelta(minutes=10))
    early = start(api, image, copy(stores=["reliable"]), ADMIN)
    assert early.status_code == 409
    assert early.json()["lock"]["status"] == "processing"
    assert early.json()["lock"]["seconds_since_heartbeat"] == 540
    assert early.json()["lock"]["breakable_at"] == "2026-11-25T13:01:00Z"

    later = T0 + timedelta(minutes=90)
    set_clock(api, later)
    new = accepted(start(api, image, copy(stores=["reliable"]), ADMIN))
    busted = task(api, old)
    assert busted.status == "failure"
    assert busted.message == "Expired lock preempted"
    assert busted.expires_at == later + timedelta(hours=48)
    assert task(api, new).status == "pending"
    shown = show(api, image)
    assert shown["os_glance_import_task"] == new
    assert shown["os_glance_importing_to_stores"] == "reliable"
    assert shown["os_glance_failed_import"] == ""
    assert shown["status"] == "active"


def test_a_holder_that_beats_after_being_read_keeps_its_lock(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = active_image(api)
    old = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    claim(api, old, T0 + timedelta(minutes=1))
    later = T0 + timedelta(minutes=90)
    set_clock(api, later)

    # The holder's runner heart-beats between the moment the new import reads the holder (silent for
    # 89 minutes: stale) and the moment it fails it: an interleaving of two transactions that cannot
    # be timed for real, so the read itself triggers the beat.
    read = SqlTaskRepository.find

    def find_then_beat(self: SqlTaskRepository, task_id: str) -> Task | None:
        found = read(self, task_id)
        if task_id == old and found is not None and found.heartbeat_at == T0 + timedelta(minutes=1):
            self.heartbeat(old, "runner-1", later, timedelta(seconds=30), found.progress, "copying")
        return found

    monkeypatch.setattr(SqlTaskRepository, "find", find_then_beat)
    response = start(api, image, copy(stores=["reliable"]), ADMIN)
    monkeypatch.undo()
    assert response.status_code == 409, response.text
    assert response.json()["lock"]["task_id"] == old
    assert response.json()["lock"]["seconds_since_heartbeat"] == 0
    assert task(api, old).status == "processing"
    assert show(api, image)["os_glance_import_task"] == old
    assert [t.id for t in image_tasks(api, image)] == [old]


def test_a_pending_task_keeps_the_lock_for_two_hours(api: TestClient) -> None:
    image = active_image(api)
    old = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    set_clock(api, T0 + timedelta(minutes=90))
    response = start(api, image, copy(stores=["cheap"]), ADMIN)
    assert response.status_code == 409
    assert response.json()["lock"]["breakable_at"] == "2026-11-25T14:00:00Z"
    assert task(api, old).status == "pending"
    set_clock(api, T0 + timedelta(minutes=121))
    new = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    assert task(api, old).status == "failure"
    assert show(api, image)["os_glance_import_task"] == new


def test_a_configured_staleness_window(make_client: Callable[..., TestClient]) -> None:
    client = make_client(GLIMPSE_IMPORT_LOCK_STALE_AFTER="5", **NO_RUNNER)
    set_clock(client, T0)
    image = active_image(client)
    old = accepted(start(client, image, copy(stores=["cheap"]), ADMIN))
    claim(client, old, T0)
    set_clock(client, T0 + timedelta(minutes=4))
    response = start(client, image, copy(stores=["cheap"]), ADMIN)
    assert response.status_code == 409
    assert response.json()["lock"]["breakable_at"] == "2026-11-25T12:05:00Z"
    set_clock(client, T0 + timedelta(minutes=5))
    accepted(start(client, image, copy(stores=["cheap"]), ADMIN))
    assert task(client, old).status == "failure"


def test_a_lock_held_by_a_missing_task_is_broken_at_once(api: TestClient) -> None:
    image = active_image(api)
    ghost = "11111111-2222-4333-8444-555555555555"
    with runtime_of(api).uow() as session:
        assert SqlImageRepository(session).take_lock(image, ghost)
    assert show(api, image)["os_glance_import_task"] == ghost
    new = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    assert show(api, image)["os_glance_import_task"] == new


def test_a_refused_request_does_not_break_the_lock(api: TestClient) -> None:
    image = active_image(api)
    old = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    set_clock(api, T0 + timedelta(hours=3))
    response = start(api, image, copy(stores=["nowhere"]), ADMIN)
    assert response.status_code == 409
    assert response.json()["message"].startswith("Unknown store 'nowhere'")
    assert task(api, old).status == "pending"
    assert show(api, image)["os_glance_import_task"] == old


def test_losing_the_compare_and_set_names_the_winner(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = active_image(api)
    winner = accepted(start(api, image, copy(stores=["cheap"]), ADMIN))
    with runtime_of(api).uow() as session:
        assert SqlImageRepository(session).release_lock(image, winner)
    original = SqlImageRepository.take_lock

    def race(self: SqlImageRepository, image_id: str, task_id: str, *, replacing: str | None = None) -> bool:
        # Another request commits its lock just before ours: our compare-and-set finds it taken.
        assert original(self, image_id, winner, replacing=replacing)
        return False

    monkeypatch.setattr(SqlImageRepository, "take_lock", race)
    response = start(api, image, copy(stores=["reliable"]), ADMIN)
    assert response.status_code == 409
    body = response.json()
    assert body["message"].startswith(
        f"New operation on image '{image}' is not permitted as prior operation is still in progress"
    )
    assert winner in body["message"]
    assert body["lock"]["task_id"] == winner
    assert [t.id for t in image_tasks(api, image)] == [winner]


# -- staging across nodes ----------------------------------------------------------------------------


def test_the_stage_host_is_hidden_reserved_and_binds_the_import_to_its_node(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    node_a = make_client(migrated_database_url, GLIMPSE_WORKER_SELF_REFERENCE_URL="http://node-a:9292")
    node_b = make_client(migrated_database_url, GLIMPSE_WORKER_SELF_REFERENCE_URL="http://node-b:9292")
    image = new_image(node_a)
    assert stage(node_a, image["id"], b"abc" * 1000).status_code == 204
    assert staged_files(node_a) == [image["id"]]
    assert staged_files(node_b) == []

    assert "os_glance_stage_host" not in show(node_b, image["id"])
    listed = node_b.get("/v2/images").json()["images"]
    assert [i for i in listed if i["id"] == image["id"] and "os_glance_stage_host" in i] == []
    patched = node_b.patch(
        f"/v2/images/{image['id']}",
        content=json.dumps([{"op": "add", "path": "/os_glance_stage_host", "value": "http://node-b:9292"}]),
        headers={**OWNER, "Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert patched.status_code == 403, patched.text

    task_id = accepted(start(node_b, image["id"], {"method": {"name": "glance-direct"}}))
    tasks = node_b.get(f"/v2/images/{image['id']}/tasks").json()["tasks"]
    assert [(t["id"], t["status"]) for t in tasks] == [(task_id, "pending")]
    assert "Waiting for a task runner on node http://node-a:9292" in tasks[0]["message"]


def test_an_import_that_cannot_reach_the_staged_data_is_409_and_says_what_to_set(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    node_a, node_b = make_client(migrated_database_url), make_client(migrated_database_url)
    image = new_image(node_a)
    assert stage(node_a, image["id"], b"abc" * 1000).status_code == 204

    refused = start(node_b, image["id"], {"method": {"name": "glance-direct"}})

    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert "worker_self_reference_url" in message
    assert "[os_glance_staging_store]" in message
    assert show(node_b, image["id"])["status"] == "uploading"
    accepted(start(node_a, image["id"], {"method": {"name": "glance-direct"}}))
