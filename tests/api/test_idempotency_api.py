"""Safe retries of requests: the ``Idempotency-Key`` header on POST /v2/images, PUT /stage and
POST /import, on SQLite and PostgreSQL.

No task runner runs (tasks stay pending); time is moved by replacing the runtime's clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from apitools import ADMIN, OCTET, OTHER, OWNER, new_image, upload
from starlette.testclient import TestClient

from glimpse.context import RequestContext
from glimpse.db.idempotency_repository import SqlIdempotencyRepository
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.idempotency import Claim, key_scope
from glimpse.jobs.housekeeping import expire_idempotency_keys
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime
from glimpse.services.idempotency import IdempotencyService

T0 = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)
NO_RUNNER = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false"}
URL = "https://images.example.com/cirros.raw"


@pytest.fixture
def api(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    client = make_client(migrated_database_url, **NO_RUNNER)
    set_clock(client, T0)
    return client


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def set_clock(client: TestClient, now: datetime) -> None:
    runtime_of(client).clock = lambda: now


def keyed(key: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or OWNER), "Idempotency-Key": key}


def create(client: TestClient, key: str, name: str = "img", headers: dict[str, str] | None = None) -> Any:
    body = {"name": name, "disk_format": "raw", "container_format": "bare"}
    return client.post("/v2/images", json=body, headers=keyed(key, headers))


def start(client: TestClient, image_id: str, body: object, key: str, **extra: str) -> Any:
    return client.post(f"/v2/images/{image_id}/import", json=body, headers={**keyed(key), **extra})


def stage(client: TestClient, image_id: str, data: bytes, key: str) -> Any:
    return client.put(f"/v2/images/{image_id}/stage", content=data, headers={**keyed(key), **OCTET})


def web(uri: str = URL) -> dict[str, Any]:
    return {"method": {"name": "web-download", "uri": uri}}


def images_named(client: TestClient, name: str) -> list[str]:
    response = client.get("/v2/images", params={"name": name}, headers=OWNER)
    assert response.status_code == 200, response.text
    return [image["id"] for image in response.json()["images"]]


def task_ids(client: TestClient, image_id: str) -> list[str]:
    with runtime_of(client).uow() as session:
        return [t.id for t in SqlTaskRepository(session).for_image(image_id, T0 - timedelta(days=1))]


def stored(client: TestClient, key: str, project: str = "project-a") -> Any:
    with runtime_of(client).uow() as session:
        return SqlIdempotencyRepository(session).find(project, key)


# -- POST /v2/images --------------------------------------------------------------------------------


def test_a_retried_create_gets_the_first_answer_and_makes_one_image(api: TestClient) -> None:
    key = str(uuid.uuid4())
    first = create(api, key, name="once")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    set_clock(api, T0 + timedelta(hours=23))
    again = create(api, key, name="once")
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["OpenStack-image-store-ids"] == first.headers["OpenStack-image-store-ids"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["x-openstack-request-id"] != first.headers["x-openstack-request-id"]
    assert images_named(api, "once") == [first.json()["id"]]


def test_the_same_key_with_another_body_is_422_and_changes_nothing(api: TestClient) -> None:
    key = "order-7"
    assert create(api, key, name="first").status_code == 201
    other = create(api, key, name="second")
    assert other.status_code == 422, other.text
    message = other.json()["message"]
    assert "already used for another request" in message
    assert "Use a new key" in message
    assert images_named(api, "second") == []


def test_keys_belong_to_a_project(api: TestClient) -> None:
    mine = create(api, "shared-key", name="mine")
    theirs = create(api, "shared-key", name="theirs", headers=OTHER)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["owner"] == "project-b"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "it is empty"),
        ('""', "it is empty"),
        ("x" * 256, "more than 255"),
        ("two words", "printable ASCII"),
        ('"back\\slash"', "printable ASCII"),
    ],
)
def test_a_malformed_key_is_400_and_creates_nothing(api: TestClient, value: str, problem: str) -> None:
    response = create(api, value, name="malformed")
    assert response.status_code == 400, response.text
    assert problem in response.json()["message"]
    assert "Malformed Idempotency-Key" in response.json()["message"]
    assert images_named(api, "malformed") == []


def test_a_quoted_key_is_the_same_key_as_its_bare_token(api: TestClient) -> None:
    first = create(api, '"abc-123"', name="quoted")
    again = create(api, "abc-123", name="quoted")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]


def test_a_failed_request_keeps_nothing_and_the_key_may_be_used_again(api: TestClient) -> None:
    key = "fix-and-retry"
    bad = api.post("/v2/images", json={"name": "fixed", "disk_format": "floppy"}, headers=keyed(key))
    assert bad.status_code == 400, bad.text
    assert stored(api, key) is None
    good = create(api, key, name="fixed")
    assert good.status_code == 201, good.text
    assert images_named(api, "fixed") == [good.json()["id"]]


def test_without_the_header_nothing_is_kept(api: TestClient) -> None:
    body = {"name": "plain", "disk_format": "raw", "container_format": "bare"}
    for _ in range(2):
        assert api.post("/v2/images", json=body, headers=OWNER).status_code == 201
    assert len(images_named(api, "plain")) == 2
    with runtime_of(api).uow() as session:
        assert SqlIdempotencyRepository(session).purge_expired(T0 + timedelta(days=400)) == 0


# -- POST /v2/images/{id}/import ------------------------------------------------------------------


def test_a_retried_import_gets_the_same_task_instead_of_409(api: TestClient) -> None:
    image = new_image(api)["id"]
    first = start(api, image, web(), "import-1")
    assert first.status_code == 202, first.text
    task_id = first.headers["OpenStack-image-import-task-id"]
    again = start(api, image, web(), "import-1")
    assert again.status_code == 202, again.text
    assert again.headers["OpenStack-image-import-task-id"] == task_id
    assert again.headers["Location"] == first.headers["Location"]
    assert again.content == b""
    assert task_ids(api, image) == [task_id]
    without_key = api.post(f"/v2/images/{image}/import", json=web(), headers=OWNER)
    assert without_key.status_code == 409  # the lock, as in Glance


def test_an_import_key_reused_with_another_body_or_store_header_is_422(api: TestClient) -> None:
    image = new_image(api)["id"]
    assert start(api, image, web(), "import-2").status_code == 202
    other_url = start(api, image, web("https://images.example.com/other.raw"), "import-2")
    assert other_url.status_code == 422, other_url.text
    other_store = start(api, image, web(), "import-2", **{"X-Image-Meta-Store": "cheap"})
    assert other_store.status_code == 422, other_store.text
    on_other_image = start(api, new_image(api)["id"], web(), "import-2")
    assert on_other_image.status_code == 422
    assert len(task_ids(api, image)) == 1


def test_a_key_of_a_create_is_not_an_import_key(api: TestClient) -> None:
    first = create(api, "same-everywhere")
    image = first.json()["id"]
    response = start(api, image, web(), "same-everywhere")
    assert response.status_code == 422
    assert task_ids(api, image) == []


def test_concurrent_requests_with_one_key_make_one_task(api: TestClient) -> None:
    image = new_image(api)["id"]
    runtime = runtime_of(api)
    JSON_KEYED = {**keyed("race"), "Accept": "application/json"}  # noqa: N806

    async def race() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://glimpse") as http:
            return await asyncio.gather(
                *(http.post(f"/v2/images/{image}/import", json=web(), headers=JSON_KEYED) for _ in range(6))
            )

    responses = asyncio.run(race())
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}, [r.text for r in responses]
    winners = [r for r in responses if r.status_code == 202]
    assert len({r.headers["OpenStack-image-import-task-id"] for r in winners}) == 1
    assert len([r for r in winners if "idempotent-replayed" not in r.headers]) == 1
    for loser in (r for r in responses if r.status_code == 409):
        assert "still being processed" in loser.json()["message"]
        assert 1 <= int(loser.headers["Retry-After"]) <= 10
        assert loser.json()["retry_after"] == int(loser.headers["Retry-After"])
    assert task_ids(api, image) == [winners[0].headers["OpenStack-image-import-task-id"]]
    assert runtime.settings.idempotency_key_ttl == 24


def test_a_retry_while_the_first_runs_is_409_until_the_claim_times_out(api: TestClient) -> None:
    image = new_image(api)["id"]
    runtime = runtime_of(api)
    ctx = RequestContext(user_id="user-a", project_id="project-a", roles=("member", "reader"))
    # The first request claimed the key, and its process died before it answered.
    claim = asyncio.run(IdempotencyService(runtime).begin(ctx, "crashed", None))
    assert isinstance(claim, Claim)
    retry = start(api, image, web(), "crashed")
    assert retry.status_code == 409, retry.text
    assert retry.headers["Retry-After"] == "10"
    assert "Retry the same request with the same key" in retry.json()["message"]
    assert task_ids(api, image) == []
    set_clock(api, T0 + timedelta(seconds=runtime.settings.idempotency_claim_timeout + 1))
    taken_over = start(api, image, web(), "crashed")
    assert taken_over.status_code == 202, taken_over.text
    assert len(task_ids(api, image)) == 1


# -- PUT /v2/images/{id}/stage --------------------------------------------------------------------


def test_a_retried_stage_is_answered_from_its_digest(api: TestClient) -> None:
    image = new_image(api)["id"]
    data = b"staged bytes " * 10_000
    first = stage(api, image, data, "stage-1")
    assert first.status_code == 204, first.text
    again = stage(api, image, data, "stage-1")
    assert again.status_code == 204, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    shown = api.get(f"/v2/images/{image}", headers=OWNER).json()
    assert shown["status"] == "uploading"
    assert shown["size"] == len(data)
    staged = runtime_of(api).settings.staging.datadir / image
    assert staged.read_bytes() == data

    other = stage(api, image, data + b"!", "stage-1")
    assert other.status_code == 422, other.text
    assert staged.read_bytes() == data
    record = stored(api, "stage-1")
    assert record is not None
    assert record.answer.status == 204
    assert len(record.fingerprint) == 64


def test_a_failed_stage_releases_its_key(api: TestClient) -> None:
    image = new_image(api)["id"]
    short = api.put(
        f"/v2/images/{image}/stage",
        content=b"abc",
        headers={**keyed("stage-2"), **OCTET, "x-openstack-image-size": "4"},
    )
    assert short.status_code == 400, short.text
    assert stored(api, "stage-2") is None
    good = stage(api, image, b"abcd", "stage-2")
    assert good.status_code == 204, good.text


def test_stage_then_import_with_keys_through_retries(api: TestClient) -> None:
    image = new_image(api)["id"]
    for _ in range(2):
        assert stage(api, image, b"x" * 4096, "s").status_code == 204
    started = {
        start(api, image, {"method": {"name": "glance-direct"}}, "i").headers[
            "OpenStack-image-import-task-id"
        ]
        for _ in range(3)
    }
    assert len(started) == 1
    assert task_ids(api, image) == list(started)


# -- expiry -----------------------------------------------------------------------------------------


def test_keys_expire_after_the_ttl_and_housekeeping_removes_them(api: TestClient) -> None:
    runtime = runtime_of(api)
    first = create(api, "daily", name="daily")
    image = first.json()["id"]
    upload(api, image, b"y" * 100)
    copy = {"method": {"name": "copy-image"}, "stores": ["cheap"]}
    admin_key = {**ADMIN, "Idempotency-Key": "copy-key"}
    copied = api.post(f"/v2/images/{image}/import", json=copy, headers=admin_key)
    assert copied.status_code == 202, copied.text

    set_clock(api, T0 + timedelta(hours=23, minutes=59))
    assert asyncio.run(expire_idempotency_keys(runtime)) == 0
    assert create(api, "daily", name="daily").headers.get("Idempotent-Replayed") == "true"

    set_clock(api, T0 + timedelta(hours=24, minutes=1))
    # An expired record is not answered even before housekeeping removes it.
    fresh = create(api, "daily", name="daily")
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != image

    set_clock(api, T0 + timedelta(hours=48, minutes=2))
    assert asyncio.run(expire_idempotency_keys(runtime, batch=1)) == 2
    assert stored(api, "daily") is None
    assert stored(api, "copy-key", project="project-admin") is None
    assert asyncio.run(expire_idempotency_keys(runtime)) == 0


def test_a_runner_pass_expires_the_keys(api: TestClient) -> None:
    runtime = runtime_of(api)
    assert create(api, "swept", name="swept").status_code == 201
    set_clock(api, T0 + timedelta(hours=25))
    # The runner's first pass sweeps (staging, orphans, then the expired keys).
    asyncio.run(TaskRunner(runtime, "sweeper").run_once())
    assert stored(api, "swept") is None


def test_the_ttl_is_configurable(make_client: Callable[..., TestClient], migrated_sqlite_url: str) -> None:
    client = make_client(migrated_sqlite_url, GLIMPSE_IDEMPOTENCY_KEY_TTL="2", **NO_RUNNER)
    set_clock(client, T0)
    create(client, "short")
    record = stored(client, "short")
    assert record.expires_at == T0 + timedelta(hours=2)
    assert key_scope(None, "admin") == "user:admin"
