"""Imports count against the owner's quotas when ``POST /import`` creates their task, as uploads
do when they begin: what is known then is reserved for the task (glance-direct: the staged data once
per target store; copy-image: the image's size once per new store), a request that does not fit is
refused with 413 and starts nothing, and the task's end (here: a cancel) gives the reservation back.

No task runner runs here: tasks stay pending, so what the reservation holds is what ``/v2/info/usage``
shows between the request and the end of the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apitools import ADMIN, OCTET, OWNER, new_image, upload
from starlette.testclient import TestClient

MIB = 1024 * 1024
#: Room for three copies of a 1 MiB image, and half of a fourth.
QUOTA = 3 * MIB + MIB // 2
NO_RUNNER = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false"}


def size_usage(client: TestClient) -> int:
    usage: int = client.get("/v2/info/usage").json()["usage"]["image_size_total"]["usage"]
    return usage


def start(client: TestClient, image_id: str, body: object, headers: dict[str, str] = OWNER) -> Any:
    return client.post(f"/v2/images/{image_id}/import", json=body, headers=headers)


def tasks_of(client: TestClient, image_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v2/images/{image_id}/tasks")
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def test_copy_image_reserves_its_size_once_per_new_store(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(QUOTA), **NO_RUNNER)
    image = new_image(client)
    upload(client, image["id"], b"c" * MIB)
    assert size_usage(client) == MIB

    # Copies to cheap and reliable: 2 MiB more, with the 1 MiB there within the 3.5 MiB limit.
    copying = start(client, image["id"], {"method": {"name": "copy-image"}, "all_stores": True}, ADMIN)
    assert copying.status_code == 202, copying.text
    assert size_usage(client) == 3 * MIB  # 1 MiB stored + 2 MiB held by the pending copy
    [task] = tasks_of(client, image["id"])
    assert task["status"] == "pending"

    # A second image's upload finds only what the copy left: half a MiB.
    other = new_image(client)
    too_big = client.put(f"/v2/images/{other['id']}/file", content=b"o" * MIB, headers=OCTET)
    assert too_big.status_code == 413, too_big.text
    assert "image_size_total is over limit" in too_big.json()["message"]

    # Cancelling the copy gives its reservation back, at once.
    cancelled = client.delete(f"/v2/images/{image['id']}/tasks/{task['id']}", headers=ADMIN)
    assert cancelled.status_code == 202, cancelled.text
    assert size_usage(client) == MIB
    upload(client, other["id"], b"o" * MIB)
    assert size_usage(client) == 2 * MIB

    # Now the same copy to both stores needs 2 MiB where 1.5 MiB is left: refused, nothing started.
    over = start(client, image["id"], {"method": {"name": "copy-image"}, "all_stores": True}, ADMIN)
    assert over.status_code == 413, over.text
    message = over.json()["message"]
    assert "image_size_total is over limit" in message
    assert "No import was started" in message
    assert [t["id"] for t in tasks_of(client, image["id"])] == [task["id"]]
    shown = client.get(f"/v2/images/{image['id']}").json()
    assert shown["stores"] == "fast"
    assert "os_glance_import_task" not in shown or not shown["os_glance_import_task"]
    assert size_usage(client) == 2 * MIB
    # One store fits.
    one = start(client, image["id"], {"method": {"name": "copy-image"}, "stores": ["cheap"]}, ADMIN)
    assert one.status_code == 202, one.text
    assert size_usage(client) == 3 * MIB


def test_glance_direct_reserves_the_staged_data_per_target_store(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(QUOTA), **NO_RUNNER)
    image = new_image(client)
    staged = client.put(f"/v2/images/{image['id']}/stage", content=b"s" * (2 * MIB), headers=OCTET)
    assert staged.status_code == 204, staged.text

    # Two stores would hold 4 MiB of it: over the 3.5 MiB limit, refused before any task exists.
    refused = start(client, image["id"], {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]})
    assert refused.status_code == 413, refused.text
    assert "image_size_total is over limit" in refused.json()["message"]
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "uploading"
    assert tasks_of(client, image["id"]) == []
    assert size_usage(client) == 0

    accepted = start(client, image["id"], {"method": {"name": "glance-direct"}, "stores": ["fast"]})
    assert accepted.status_code == 202, accepted.text
    assert size_usage(client) == 2 * MIB
    [task] = tasks_of(client, image["id"])
    cancelled = client.delete(f"/v2/images/{image['id']}/tasks/{task['id']}")
    assert cancelled.status_code == 202, cancelled.text
    assert size_usage(client) == 0
    # The cancel put the image back to 'uploading' with its staged data: it can be imported again.
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "uploading"


def test_web_download_needs_room_left_when_it_starts(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(MIB), **NO_RUNNER)
    full = new_image(client)
    upload(client, full["id"], b"f" * MIB)
    image = new_image(client)
    body = {"method": {"name": "web-download", "uri": "https://images.example.com/cirros.raw"}}
    refused = start(client, image["id"], body)
    assert refused.status_code == 413, refused.text
    assert "image_size_total is over limit" in refused.json()["message"]
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert tasks_of(client, image["id"]) == []


PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def give(client: TestClient, image_id: str, owner: str) -> Any:
    ops = [{"op": "replace", "path": "/owner", "value": owner}]
    return client.patch(f"/v2/images/{image_id}", json=ops, headers={**ADMIN, **PATCH})


def test_an_image_given_to_another_project_counts_against_its_storage_quota(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    client = make_client(migrated_database_url, GLIMPSE_USER_STORAGE_QUOTA=str(MIB + MIB // 2), **NO_RUNNER)
    other = {"X-Project-Id": "project-b", "X-User-Id": "user-b", "X-Roles": "member,reader"}
    theirs = new_image(client, headers=other)
    upload(client, theirs["id"], b"b" * MIB, headers=other)
    mine = new_image(client)
    upload(client, mine["id"], b"a" * MIB)

    refused = give(client, mine["id"], "project-b")
    assert refused.status_code == 413, refused.text
    assert "image_size_total is over limit for project project-b" in refused.json()["message"]
    assert client.get(f"/v2/images/{mine['id']}").json()["owner"] == "project-a"

    small = new_image(client)
    upload(client, small["id"], b"s" * (MIB // 2))
    moved = give(client, small["id"], "project-b")
    assert moved.status_code == 200, moved.text
    assert moved.json()["owner"] == "project-b"
    usage = client.get("/v2/info/usage", headers=other).json()["usage"]["image_size_total"]
    assert usage["usage"] == MIB + MIB // 2
    # Moving an image without data, or within its own project, needs no room.
    empty = new_image(client)
    assert give(client, empty["id"], "project-b").status_code == 200
