"""``use_keystone_limits``: the four quotas read from a real Keystone's unified limits.

Keystone (``keystonesupport``) gets an ``image`` service with a public endpoint in RegionOne,
registered limits for the four resources (every project's defaults) and a project limit over one of
them; the app reads them as the ``[oslo_limit]`` user (admin, system scope) would in a deployment.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apitools import OCTET, new_image
from starlette.testclient import TestClient

from glimpse.jobs.runner import TaskRunner
from keystonesupport import ADMIN_PASSWORD, REGION, KeystoneServer
from websupport import WebServer, serve

pytestmark = pytest.mark.live

MIB = 1024 * 1024
#: Registered limits: sizes in MiB, as Keystone keeps them.
DEFAULTS = {"image_size_total": 1, "image_stage_total": 1, "image_count_total": 3, "image_count_uploading": 1}
#: The project limit of the project ``BIG``: 2 MiB of image data instead of 1.
BIG_SIZE_TOTAL = 2
_projects = itertools.count(1)


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    with KeystoneServer(tmp_path_factory.getbasetemp().parent, tmp_path_factory.mktemp("keystone")) as ks:
        ks.image_service({("public", REGION): "http://127.0.0.1:9292"})
        ks.register_limits("image", REGION, DEFAULTS)
        yield ks


@pytest.fixture(scope="module")
def big_project(keystone: KeystoneServer) -> str:
    account = keystone.account("quota-big", "quota-big-password", ["member", "reader"])
    keystone.project_limit("image", REGION, account.project_id, "image_size_total", BIG_SIZE_TOTAL)
    return account.project_id


def limits_environ(keystone: KeystoneServer, **extra: str) -> dict[str, str]:
    section = "GLIMPSE_OSLO_LIMIT__"
    return {
        "GLIMPSE_USE_KEYSTONE_LIMITS": "true",
        f"{section}AUTH_URL": keystone.url,
        f"{section}AUTH_TYPE": "password",
        f"{section}USERNAME": "admin",
        f"{section}PASSWORD": ADMIN_PASSWORD,
        f"{section}USER_DOMAIN_NAME": "Default",
        f"{section}SYSTEM_SCOPE": "all",
        f"{section}ENDPOINT_SERVICE_TYPE": "image",
        f"{section}ENDPOINT_REGION_NAME": REGION,
        f"{section}ENDPOINT_INTERFACE": "public",
        **extra,
    }


def as_project(project: str) -> dict[str, str]:
    return {"X-Project-Id": project, "X-User-Id": "u", "X-Roles": "member,reader"}


def fresh_project() -> dict[str, str]:
    """A project Keystone has no limit of its own for: the registered limits apply."""
    return as_project(f"quota-project-{next(_projects)}")


def usage(client: TestClient, who: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v2/info/usage", headers=who)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["usage"]
    return body


def test_usage_reports_the_four_limits_and_the_project_limit(
    make_client: Callable[..., TestClient],
    migrated_database_url: str,
    keystone: KeystoneServer,
    big_project: str,
) -> None:
    client = make_client(migrated_database_url, **limits_environ(keystone))
    big = as_project(big_project)
    assert usage(client, big) == {
        "image_size_total": {"limit": BIG_SIZE_TOTAL, "usage": 0},
        "image_stage_total": {"limit": 1, "usage": 0},
        "image_count_total": {"limit": 3, "usage": 0},
        "image_count_uploading": {"limit": 1, "usage": 0},
    }
    image = new_image(client, headers=big)
    put = client.put(
        f"/v2/images/{image['id']}/file", content=b"x" * (MIB + MIB // 2), headers={**big, **OCTET}
    )
    assert put.status_code == 204, put.text
    after = usage(client, big)
    assert after["image_size_total"] == {"limit": BIG_SIZE_TOTAL, "usage": 1}  # 1.5 MiB, whole MiB shown
    assert after["image_count_total"] == {"limit": 3, "usage": 1}
    # Another project only has the registered limits.
    assert usage(client, fresh_project())["image_size_total"] == {"limit": 1, "usage": 0}


def test_image_count_total_refuses_the_image_over_the_limit(
    make_client: Callable[..., TestClient], migrated_database_url: str, keystone: KeystoneServer
) -> None:
    client = make_client(migrated_database_url, **limits_environ(keystone))
    who = fresh_project()
    images = [new_image(client, headers=who) for _ in range(3)]
    body = {"name": "fourth", "disk_format": "raw", "container_format": "bare"}
    refused = client.post("/v2/images", json=body, headers=who)
    assert refused.status_code == 413
    assert "image_count_total is over limit" in refused.json()["message"]
    assert len(client.get("/v2/images", headers=who).json()["images"]) == 3
    assert client.delete(f"/v2/images/{images[0]['id']}", headers=who).status_code == 204
    assert client.post("/v2/images", json=body, headers=who).status_code == 201


def test_an_image_given_to_a_project_at_its_image_count_total_is_refused(
    make_client: Callable[..., TestClient], keystone: KeystoneServer
) -> None:
    client = make_client(**limits_environ(keystone))
    full, giver = fresh_project(), fresh_project()
    for _ in range(3):
        new_image(client, headers=full)
    image = new_image(client, headers=giver)
    admin = {"X-Project-Id": "admin-project", "X-User-Id": "admin", "X-Roles": "admin,member,reader"}
    ops = [{"op": "replace", "path": "/owner", "value": full["X-Project-Id"]}]
    patch = {**admin, "Content-Type": "application/openstack-images-v2.1-json-patch"}
    refused = client.patch(f"/v2/images/{image['id']}", json=ops, headers=patch)
    assert refused.status_code == 413, refused.text
    assert "image_count_total is over limit" in refused.json()["message"]
    assert client.get(f"/v2/images/{image['id']}", headers=giver).json()["owner"] == giver["X-Project-Id"]
    assert usage(client, full)["image_count_total"] == {"limit": 3, "usage": 3}


def test_image_size_total_is_reserved_before_the_data_is_written(
    make_client: Callable[..., TestClient], keystone: KeystoneServer, big_project: str
) -> None:
    client = make_client(**limits_environ(keystone, GLIMPSE_QUOTA__RESERVATION_STEP="1MB"))
    owner = as_project(big_project)
    big = {**owner, **OCTET}
    first, second = new_image(client, headers=owner), new_image(client, headers=owner)
    assert client.put(f"/v2/images/{first['id']}/file", content=b"a" * MIB, headers=big).status_code == 204

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"b" * (MIB // 4)

    streamed = client.put(f"/v2/images/{second['id']}/file", content=chunks(), headers=big)
    assert streamed.status_code == 413
    assert "image_size_total is over limit" in streamed.json()["message"]
    image = client.get(f"/v2/images/{second['id']}", headers=big).json()
    assert (image["status"], image["size"]) == ("queued", None)
    # The refused upload left nothing reserved: the remaining MiB fits exactly.
    assert client.put(f"/v2/images/{second['id']}/file", content=b"c" * MIB, headers=big).status_code == 204
    assert usage(client, big)["image_size_total"] == {"limit": BIG_SIZE_TOTAL, "usage": BIG_SIZE_TOTAL}


def test_staging_counts_against_image_stage_total_and_image_count_uploading(
    make_client: Callable[..., TestClient], keystone: KeystoneServer
) -> None:
    client = make_client(**limits_environ(keystone))
    owner = fresh_project()
    who = {**owner, **OCTET}
    first, second = new_image(client, headers=owner), new_image(client, headers=owner)
    too_big = client.put(f"/v2/images/{first['id']}/stage", content=b"s" * (MIB + 1), headers=who)
    assert too_big.status_code == 413
    assert "image_stage_total is over limit" in too_big.json()["message"]
    image = client.get(f"/v2/images/{first['id']}", headers=who).json()
    assert (image["status"], image["size"]) == ("queued", None)
    staged = client.put(f"/v2/images/{first['id']}/stage", content=b"s" * MIB, headers=who)
    assert staged.status_code == 204, staged.text
    assert usage(client, who)["image_stage_total"] == {"limit": 1, "usage": 1}
    assert usage(client, who)["image_count_uploading"] == {"limit": 1, "usage": 1}
    # One image in 'uploading' is all the registered image_count_uploading allows.
    for path in ("stage", "file"):
        refused = client.put(f"/v2/images/{second['id']}/{path}", content=b"t", headers=who)
        assert refused.status_code == 413, refused.text
        assert "image_count_uploading is over limit" in refused.json()["message"]
    assert client.get(f"/v2/images/{second['id']}", headers=who).json()["status"] == "queued"


def test_a_web_download_counts_against_image_count_uploading_from_its_request(
    make_client: Callable[..., TestClient], keystone: KeystoneServer
) -> None:
    client = make_client(**limits_environ(keystone, GLIMPSE_TASK__EMBEDDED_RUNNER="false"))
    owner = fresh_project()
    first, second = new_image(client, headers=owner), new_image(client, headers=owner)
    body = {"method": {"name": "web-download", "uri": "https://images.example.com/cirros.raw"}}
    accepted = client.post(f"/v2/images/{first['id']}/import", json=body, headers=owner)
    assert accepted.status_code == 202, accepted.text
    assert usage(client, owner)["image_count_uploading"] == {"limit": 1, "usage": 1}
    # The first download is 'importing' from its request on: the second is over the limit of one.
    refused = client.post(f"/v2/images/{second['id']}/import", json=body, headers=owner)
    assert refused.status_code == 413, refused.text
    message = refused.json()["message"]
    assert "image_count_uploading is over limit" in message
    assert "No import was started" in message
    assert client.get(f"/v2/images/{second['id']}", headers=owner).json()["status"] == "queued"
    # Cancelling the first gives the count back.
    [task] = client.get(f"/v2/images/{first['id']}/tasks", headers=owner).json()["tasks"]
    cancel = client.delete(f"/v2/images/{first['id']}/tasks/{task['id']}", headers=owner)
    assert cancel.status_code == 202, cancel.text
    assert usage(client, owner)["image_count_uploading"] == {"limit": 1, "usage": 0}
    again = client.post(f"/v2/images/{second['id']}/import", json=body, headers=owner)
    assert again.status_code == 202, again.text


def test_the_endpoint_may_be_named_by_its_id(
    make_client: Callable[..., TestClient], keystone: KeystoneServer, big_project: str
) -> None:
    section = "GLIMPSE_OSLO_LIMIT__"
    environ = limits_environ(keystone)
    for name in ("ENDPOINT_SERVICE_TYPE", "ENDPOINT_REGION_NAME", "ENDPOINT_INTERFACE"):
        del environ[section + name]
    environ[section + "ENDPOINT_ID"] = keystone.endpoint_id("image", "public")
    client = make_client(**environ)
    assert usage(client, as_project(big_project))["image_size_total"]["limit"] == BIG_SIZE_TOTAL


def test_auth_section_reads_the_credentials_from_keystone_authtoken(
    make_client: Callable[..., TestClient], keystone: KeystoneServer, big_project: str
) -> None:
    """As Glance deployments write it: ``[oslo_limit] auth_section = keystone_authtoken``, the user
    and password only in that section (beside keystonemiddleware's own options)."""
    environ = limits_environ(keystone)
    section, authtoken = "GLIMPSE_OSLO_LIMIT__", "GLIMPSE_KEYSTONE_AUTHTOKEN__"
    for name in ("AUTH_URL", "AUTH_TYPE", "USERNAME", "PASSWORD", "USER_DOMAIN_NAME", "SYSTEM_SCOPE"):
        environ[authtoken + name] = environ.pop(section + name)
    environ[authtoken + "WWW_AUTHENTICATE_URI"] = keystone.url
    environ[section + "AUTH_SECTION"] = "keystone_authtoken"
    client = make_client(**environ)
    assert usage(client, as_project(big_project))["image_size_total"]["limit"] == BIG_SIZE_TOTAL


def test_keystone_down_is_503_until_it_is_back(
    make_client: Callable[..., TestClient], keystone: KeystoneServer
) -> None:
    client = make_client(**limits_environ(keystone, GLIMPSE_QUOTA__LIMITS_CACHE_TIME="0"))
    who = fresh_project()
    body = {"name": "k", "disk_format": "raw", "container_format": "bare"}
    assert client.post("/v2/images", json=body, headers=who).status_code == 201
    keystone.stop()
    try:
        refused = client.post("/v2/images", json=body, headers=who)
        assert refused.status_code == 503
        assert "Keystone cannot be reached" in refused.json()["message"]
        assert client.get("/v2/info/usage", headers=who).status_code == 503
    finally:
        keystone.start()
    assert client.post("/v2/images", json=body, headers=who).status_code == 201
    assert usage(client, who)["image_count_total"] == {"limit": 3, "usage": 2}


@pytest.fixture(scope="module")
def slow_web() -> Iterator[WebServer]:
    # 1.5 MiB in 64 KiB chunks, 0.05 s apart (about 1.2 s): three downloads started together
    # overlap, and each reaches the staging area in more than one block.
    yield from serve({"/disk.raw": b"s" * (3 * MIB // 2)}, delay=0.05)


def test_parallel_web_downloads_never_stage_more_than_image_stage_total(
    make_client: Callable[..., TestClient], keystone: KeystoneServer, slow_web: WebServer
) -> None:
    account = keystone.account("quota-stage", "quota-stage-password", ["member", "reader"])
    limits = {
        "image_count_uploading": 5,
        "image_count_total": 10,
        "image_size_total": 10,
        "image_stage_total": 2,
    }
    for name, limit in limits.items():
        keystone.project_limit("image", REGION, account.project_id, name, limit)
    client = make_client(
        **limits_environ(
            keystone,
            GLIMPSE_TASK__EMBEDDED_RUNNER="false",
            GLIMPSE_TASK__MAX_CONCURRENT_TASKS="3",
            **slow_web.filter_environ,
        )
    )
    owner = as_project(account.project_id)
    images = [new_image(client, headers=owner)["id"] for _ in range(3)]
    body = {"method": {"name": "web-download", "uri": slow_web.url("/disk.raw")}}
    for image_id in images:
        # Nothing is staged yet, so each request finds room for its download.
        assert client.post(f"/v2/images/{image_id}/import", json=body, headers=owner).status_code == 202

    async def run_all() -> None:
        runner = TaskRunner(client.app.state.runtime, "stage-race")  # type: ignore[attr-defined]
        await runner.run_once()
        await runner.wait_idle()

    asyncio.run(run_all())
    ended = {
        image_id: client.get(f"/v2/images/{image_id}/tasks", headers=owner).json()["tasks"][0]
        for image_id in images
    }
    # image_stage_total is 2 MiB: one 1.5 MiB download fits, a second one would not.
    assert sorted(task["status"] for task in ended.values()) == ["failure", "failure", "success"]
    for image_id, task in ended.items():
        image = client.get(f"/v2/images/{image_id}", headers=owner).json()
        if task["status"] == "success":
            assert image["status"] == "active"
        else:
            assert "image_stage_total is over limit" in task["message"]
            assert "Nothing was kept in the staging area" in task["message"]
            assert image["status"] == "queued"
    assert usage(client, owner)["image_stage_total"]["usage"] == 0  # every task gave its share back
