"""An image's history: ``GET /v2/images/{id}/history``, on SQLite and PostgreSQL.

No embedded runner: a task is run by a runner pass the test makes, and time is moved by replacing
the runtime's clock (the history, the tasks and their expiry all read it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OCTET, OTHER, OWNER, new_image, upload
from starlette.testclient import TestClient
from test_import_api import (
    NO_RUNNER,
    T0,
    accepted,
    api,  # noqa: F401 - the fixture
    copy,
    runtime_of,
    set_clock,
    stage,
    start,
)

from glimpse.jobs.housekeeping import purge_history, purge_tasks
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime

DATA = b"x" * 1000


def history(
    client: TestClient, image_id: str, headers: dict[str, str] | None = None, **params: str
) -> dict[str, Any]:
    response = client.get(f"/v2/images/{image_id}/history", params=params, headers=headers or OWNER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def actions(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["action"], entry["outcome"]) for entry in body["history"]]


def run_tasks(runtime: Runtime) -> None:
    """One runner pass that claims every pending task, and waits for them to end."""

    async def run() -> None:
        runner = TaskRunner(runtime, "history-runner")
        await runner.run_once()
        await runner.wait_idle()

    asyncio.run(run())


def active_image(client: TestClient, headers: dict[str, str] | None = None, **attrs: object) -> str:
    image_id: str = new_image(client, headers=headers, **attrs)["id"]
    upload(client, image_id, DATA, headers=OWNER)
    return image_id


def test_history_outlives_the_task_that_made_it(api: TestClient) -> None:  # noqa: F811
    image_id = active_image(api)
    task_id = accepted(start(api, image_id, copy(stores=["cheap"]), ADMIN))
    run_tasks(runtime_of(api))

    body = history(api, image_id)
    assert actions(body) == [
        ("copy", "success"),
        ("copy", "accepted"),
        ("upload", "success"),
        ("create", "success"),
    ]
    done, asked, uploaded, created = body["history"]
    assert done["task_id"] == asked["task_id"] == task_id
    assert done["stores"] == asked["stores"] == ["cheap"]
    assert done["bytes_moved"] == len(DATA)
    assert done["status"] == "active"
    assert done["message"] == "Copied 0 MiB to cheap."
    assert done["project_id"] == "project-admin"  # the caller who started it: the owner sees the project
    assert done["user_id"] is None  # ... but not who, nor the request
    assert done["request_id"] is None
    assert uploaded["bytes_moved"] == len(DATA)
    assert uploaded["stores"] == ["fast"]
    assert uploaded["user_id"] == "user-a"
    assert uploaded["request_id"]
    assert created["status"] == "queued"
    assert done["created_at"] == "2026-11-25T12:00:00.000000Z"
    assert [e["id"] for e in body["history"]] == sorted((e["id"] for e in body["history"]), reverse=True)

    # The task expires and is purged; the history stays.
    set_clock(api, T0 + timedelta(hours=runtime_of(api).settings.task_time_to_live, minutes=1))
    assert asyncio.run(purge_tasks(runtime_of(api))) == 1
    assert api.get(f"/v2/images/{image_id}/tasks").json() == {"tasks": []}
    after = history(api, image_id)
    assert after["history"] == body["history"]
    admin_view = history(api, image_id, ADMIN)["history"][0]
    assert admin_view["user_id"] == "admin"
    assert admin_view["task_id"] == task_id


def test_history_pages_newest_first(api: TestClient) -> None:  # noqa: F811
    image_id = active_image(api)
    for _ in range(3):
        assert api.post(f"/v2/images/{image_id}/actions/deactivate").status_code == 204
        assert api.post(f"/v2/images/{image_id}/actions/reactivate").status_code == 204
    everything = history(api, image_id, limit="100")["history"]
    assert len(everything) == 8
    assert [e["action"] for e in everything[:2]] == ["reactivate", "deactivate"]
    assert everything[0]["status"] == "active"
    assert everything[1]["status"] == "deactivated"

    seen: list[dict[str, Any]] = []
    page = history(api, image_id, limit="3")
    assert page["first"] == f"/v2/images/{image_id}/history?limit=3"
    while True:
        seen.extend(page["history"])
        assert len(page["history"]) <= 3
        if "next" not in page:
            break
        assert page["next"].startswith(f"/v2/images/{image_id}/history?limit=3&marker=")
        response = api.get(page["next"])
        assert response.status_code == 200, response.text
        page = response.json()
    assert seen == everything


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=x", "limit must be a non-negative integer"),
        ("marker=abc", "Invalid marker 'abc'"),
        ("marker=999999", "has no history entry with that id"),
        ("sort_dir=asc", "Unknown history parameter(s): sort_dir"),
    ],
)
def test_bad_paging_is_400(api: TestClient, query: str, words: str) -> None:  # noqa: F811
    image_id = active_image(api)
    response = api.get(f"/v2/images/{image_id}/history?{query}")
    assert response.status_code == 400, response.text
    assert words in response.text


def test_a_marker_of_another_image_is_400(api: TestClient) -> None:  # noqa: F811
    first, second = active_image(api), active_image(api)
    marker = history(api, first)["history"][0]["id"]
    response = api.get(f"/v2/images/{second}/history?marker={marker}")
    assert response.status_code == 400
    assert f"image {second} has no history entry" in response.text


def test_another_projects_viewer_of_a_public_image_sees_what_happened_but_not_who(
    api: TestClient,  # noqa: F811
) -> None:
    image_id = active_image(api, ADMIN, owner="project-a", visibility="public")
    assert api.post(f"/v2/images/{image_id}/actions/deactivate", headers=ADMIN).status_code == 204
    assert api.post(f"/v2/images/{image_id}/actions/reactivate", headers=OWNER).status_code == 204

    full = history(api, image_id, ADMIN)["history"]
    assert [(e["action"], e["project_id"], e["user_id"]) for e in full] == [
        ("reactivate", "project-a", "user-a"),
        ("deactivate", "project-admin", "admin"),
        ("upload", "project-a", "user-a"),
        ("create", "project-admin", "admin"),
    ]
    assert all(e["request_id"] for e in full)

    owner = history(api, image_id, OWNER)["history"]
    assert [(e["project_id"], e["user_id"], bool(e["request_id"])) for e in owner] == [
        ("project-a", "user-a", True),
        ("project-admin", None, False),
        ("project-a", "user-a", True),
        ("project-admin", None, False),
    ]

    other = history(api, image_id, OTHER)["history"]
    assert [(e["action"], e["outcome"], e["status"]) for e in other] == [
        (e["action"], e["outcome"], e["status"]) for e in full
    ]
    assert all(e["project_id"] is None and e["user_id"] is None and e["request_id"] is None for e in other)
    assert other[1]["bytes_moved"] is None
    assert other[2]["bytes_moved"] == len(DATA)


def test_a_deleted_images_history_is_for_admins_until_purged(api: TestClient) -> None:  # noqa: F811
    image_id = active_image(api)
    assert api.delete(f"/v2/images/{image_id}").status_code == 204
    refused = api.get(f"/v2/images/{image_id}/history")
    assert refused.status_code == 404
    body = history(api, image_id, ADMIN)
    assert actions(body)[0] == ("delete", "success")
    assert body["history"][0]["status"] == "deleted"
    assert (
        api.get(f"/v2/images/{'0' * 8}-0000-4000-8000-{'0' * 12}/history", headers=ADMIN).status_code == 404
    )

    set_clock(api, T0 + timedelta(days=366))
    assert asyncio.run(purge_history(runtime_of(api))) == 3  # create, upload, delete
    assert history(api, image_id, ADMIN)["history"] == []


def test_purge_by_age_and_by_the_runners_sweep(api: TestClient) -> None:  # noqa: F811
    runtime = runtime_of(api)
    old = active_image(api)
    set_clock(api, T0 + timedelta(days=200))
    recent = active_image(api)
    assert runtime.settings.image_history_days == 365

    set_clock(api, T0 + timedelta(days=364))
    assert asyncio.run(purge_history(runtime)) == 0
    set_clock(api, T0 + timedelta(days=366))
    assert asyncio.run(purge_history(runtime, batch=1)) == 2
    assert history(api, old)["history"] == []
    assert len(history(api, recent)["history"]) == 2

    set_clock(api, T0 + timedelta(days=566))
    asyncio.run(TaskRunner(runtime, "sweeper").run_once())  # its first pass sweeps
    assert history(api, recent)["history"] == []


def test_history_days_is_configurable(
    make_client: Callable[..., TestClient], migrated_sqlite_url: str
) -> None:
    client = make_client(migrated_sqlite_url, GLIMPSE_IMAGE_HISTORY_DAYS="2", **NO_RUNNER)
    set_clock(client, T0)
    image_id = active_image(client)
    set_clock(client, T0 + timedelta(days=2, minutes=1))
    assert asyncio.run(purge_history(runtime_of(client))) == 2
    assert history(client, image_id)["history"] == []


def test_staging_and_cancelling_are_recorded(api: TestClient) -> None:  # noqa: F811
    image_id = new_image(api)["id"]
    assert stage(api, image_id, b"abc" * 100).status_code == 204
    task_id = accepted(start(api, image_id, {"method": {"name": "glance-direct"}}))
    assert api.delete(f"/v2/images/{image_id}/tasks/{task_id}").status_code == 202
    assert api.delete(f"/v2/images/{image_id}/tasks/{task_id}").status_code == 202  # changes nothing
    body = history(api, image_id)
    assert actions(body) == [
        ("import", "cancelled"),
        ("cancel", "success"),
        ("import", "accepted"),
        ("stage", "success"),
        ("create", "success"),
    ]
    assert body["history"][0]["task_id"] == body["history"][1]["task_id"] == task_id
    assert body["history"][3]["bytes_moved"] == 300
    assert body["history"][3]["status"] == "uploading"


@pytest.fixture
def admins_read_history(
    make_client: Callable[..., TestClient], migrated_database_url: str, tmp_path: Path
) -> TestClient:
    """An app whose rule get_image_history lets administrators only read a history."""
    policy = tmp_path / "policy.yaml"
    policy.write_text('get_image_history: "rule:context_is_admin"\n', encoding="utf-8")
    return make_client(migrated_database_url, GLIMPSE_OSLO_POLICY__POLICY_FILE=str(policy), **NO_RUNNER)


def test_history_follows_get_image_history(admins_read_history: TestClient) -> None:
    client = admins_read_history
    image_id = active_image(client)
    refused = client.get(f"/v2/images/{image_id}/history")
    assert refused.status_code == 403
    assert "get_image_history" in refused.json()["message"]
    assert len(history(client, image_id, ADMIN)["history"]) == 2
    # An image the caller cannot see at all is 404, whatever the rule says.
    assert client.get(f"/v2/images/{image_id}/history", headers=OTHER).status_code == 404


def test_the_task_page_shows_the_history_when_the_rule_lets_the_caller_read_it(
    admins_read_history: TestClient,
) -> None:
    client = admins_read_history
    image_id = active_image(client)
    page = {"Accept": "text/html"}
    as_admin = client.get(f"/v2/images/{image_id}/tasks", headers={**ADMIN, **page})
    assert as_admin.status_code == 200
    rows = as_admin.text.split('<section id="history"')[1]
    assert rows.count("<tr data-history-id=") == 2
    assert rows.index("upload") < rows.index("create")  # newest first
    as_owner = client.get(f"/v2/images/{image_id}/tasks", headers={**OWNER, **page})
    assert as_owner.status_code == 200
    assert "get_image_history does not let you read" in as_owner.text
    assert "<tr data-history-id=" not in as_owner.text


def test_by_default_whoever_sees_the_image_reads_its_history(api: TestClient) -> None:  # noqa: F811
    image_id = active_image(api)
    assert api.get(f"/v2/images/{image_id}/history", headers=OTHER).status_code == 404
    reader = {**OWNER, "X-User-Id": "user-r", "X-Roles": "reader"}
    assert len(history(api, image_id, reader)["history"]) == 2
    nobody = {**OWNER, "X-Roles": ""}
    assert api.get(f"/v2/images/{image_id}/history", headers=nobody).status_code == 404


def test_a_store_deletion_and_a_refused_upload_are_recorded(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_IMAGE_SIZE_CAP="2000", **NO_RUNNER)
    set_clock(client, T0)
    image_id = active_image(client)
    accepted(start(client, image_id, copy(stores=["cheap"]), ADMIN))
    run_tasks(runtime_of(client))
    assert client.delete(f"/v2/stores/fast/{image_id}", headers=ADMIN).status_code == 204
    removed = history(client, image_id)["history"][0]
    assert (removed["action"], removed["outcome"], removed["stores"]) == ("store_delete", "success", ["fast"])
    assert removed["status"] == "active"

    refused = new_image(client)["id"]
    # A declared size over the cap is refused before anything changes (nothing to record); a body
    # that turns out too large is refused while it is written, and the image goes back to queued.
    declared = client.put(f"/v2/images/{refused}/file", content=b"y" * 2001, headers={**OWNER, **OCTET})
    assert declared.status_code == 413
    assert [e["action"] for e in history(client, refused)["history"]] == ["create"]
    streamed = client.put(
        f"/v2/images/{refused}/file", content=iter([b"y" * 1000] * 3), headers={**OWNER, **OCTET}
    )
    assert streamed.status_code == 413
    failed = history(client, refused)["history"][0]
    assert (failed["action"], failed["outcome"], failed["status"]) == ("upload", "failure", "queued")
    assert "larger than the limit of 2000 bytes" in failed["message"]
    assert failed["message"].endswith("Nothing was kept; the image is queued again.")


def test_a_task_whose_stale_lock_is_broken_gets_its_failure(api: TestClient) -> None:  # noqa: F811
    image_id = active_image(api)
    old = accepted(start(api, image_id, copy(stores=["cheap"]), ADMIN))
    set_clock(api, T0 + timedelta(minutes=121))  # a pending task's lock is breakable after two hours
    new = accepted(start(api, image_id, copy(stores=["cheap"]), ADMIN))
    found = history(api, image_id, ADMIN)["history"]
    assert [(e["action"], e["outcome"], e["task_id"]) for e in found[:3]] == [
        ("copy", "accepted", new),
        ("copy", "failure", old),
        ("copy", "accepted", old),
    ]
    assert found[1]["user_id"] == "admin"  # in the name of the task's own caller
    assert "lock" in found[1]["message"]
