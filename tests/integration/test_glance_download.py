"""glance-download between two regions: two live Glimpse servers, one real Keystone.

``RegionTwo`` is a Glimpse of its own (another process, its own database) registered as the ``image``
service of region RegionTwo in Keystone's catalog. The Glimpse under test imports from it with the
caller's token: the endpoint comes from that token's catalog, the record and data from the other
server, through the import filter. The successful import runs on SQLite and PostgreSQL; the error
cases share one SQLite server.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpse.errors import DownloadFailed, InvalidInput
from glimpse.jobs.glance_source import find_image_endpoint
from keystonesupport import Account, KeystoneServer, protected_server
from livesupport import Server, free_port, run_cli, wait_until
from tcprelay import TcpRelay

pytestmark = pytest.mark.live

PASSWORD = "s3cret"
REMOTE_REGION = "RegionTwo"
METHODS = "glance-direct,web-download,copy-image,glance-download"
DATA = bytes(range(256)) * 8192  # 2 MiB
_names = itertools.count(1)


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    with KeystoneServer(tmp_path_factory.getbasetemp().parent, tmp_path_factory.mktemp("keystone")) as ks:
        yield ks


@pytest.fixture(scope="module")
def slow_link() -> Iterator[TcpRelay]:
    relay = TcpRelay("127.0.0.1", 1)  # pointed at RegionTwo's server once it runs
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def remote(
    keystone: KeystoneServer, slow_link: TcpRelay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The Glimpse of RegionTwo, in the catalog with a public and an internal endpoint; a third
    region names it by a host name the import filter does not allow, and region Slow reaches it
    through a throttled relay."""
    server = protected_server(tmp_path_factory.mktemp("region-two"), keystone)
    try:
        slow_link.target = ("127.0.0.1", server.port)
        slow_link.start()
        keystone.image_service(
            {
                ("public", REMOTE_REGION): server.url,
                ("internal", REMOTE_REGION): f"{server.url}/v2",
                ("public", "RegionThree"): f"http://localhost:{server.port}",
                ("public", "Slow"): f"http://127.0.0.1:{slow_link.port}",
            }
        )
        yield server
    finally:
        server.stop()


def _local_settings(remote: Server, *ports: int) -> dict[str, str]:
    return {
        "GLIMPSE_ENABLED_IMPORT_METHODS": METHODS,
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS": "127.0.0.1",
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": ",".join(str(p) for p in (remote.port, *ports)),
        "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.2",
    }


@pytest.fixture(scope="module")
def local(
    keystone: KeystoneServer, remote: Server, slow_link: TcpRelay, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    """The Glimpse that imports (SQLite), and its data directory."""
    root = tmp_path_factory.mktemp("region-one")
    server = protected_server(root, keystone, **_local_settings(remote, slow_link.port))
    try:
        yield server, root / "data"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def member(keystone: KeystoneServer, remote: Server) -> Account:
    return keystone.account(f"gd-{next(_names)}", PASSWORD, ["member", "reader"])


def _token(keystone: KeystoneServer, who: Account) -> dict[str, str]:
    return {"X-Auth-Token": keystone.token(who.user_name, who.password, who.project_name)}


def _create(server: Server, headers: dict[str, str], **fields: object) -> str:
    body = {"name": "gd", "disk_format": "raw", "container_format": "bare", **fields}
    response = httpx.post(f"{server.url}/v2/images", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _remote_image(remote: Server, headers: dict[str, str], data: bytes | None = DATA) -> str:
    """An image in RegionTwo with properties Glance copies (and one it does not), active if ``data``."""
    image_id = _create(remote, headers, disk_format="qcow2" if data is None else "raw")
    patch = [
        {"op": "add", "path": "/hw_cpu_cores", "value": "5"},
        {"op": "add", "path": "/trait:STORAGE_DISK_SSD", "value": "required"},
        {"op": "add", "path": "/os_distro", "value": "rhel"},
        {"op": "add", "path": "/speed", "value": "88mph"},
    ]
    response = httpx.patch(
        f"{remote.url}/v2/images/{image_id}",
        json=patch,
        headers={**headers, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    if data is not None:
        response = httpx.put(
            f"{remote.url}/v2/images/{image_id}/file",
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        assert response.status_code == 204, response.text
    return image_id


def _import(
    server: Server, headers: dict[str, str], image_id: str, remote_id: str, **method: str
) -> httpx.Response:
    body = {
        "method": {
            "name": "glance-download",
            "glance_image_id": remote_id,
            "glance_region": REMOTE_REGION,
            **method,
        }
    }
    return httpx.post(f"{server.url}/v2/images/{image_id}/import", json=body, headers=headers, timeout=30)


def _finished_task(server: Server, headers: dict[str, str], image_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ended() -> bool:
        tasks = httpx.get(f"{server.url}/v2/images/{image_id}/tasks", headers=headers, timeout=30).json()
        done = [t for t in tasks["tasks"] if t["status"] in ("success", "failure")]
        if done:
            found.update(done[0])
        return bool(done)

    wait_until(ended, lambda: f"the task did not end:\n{server.log()}", within=60)
    return found


def _show(server: Server, headers: dict[str, str], image_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v2/images/{image_id}", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stored_inputs(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "glimpse.sqlite") as db:
        return [row[0] for row in db.execute("SELECT input FROM tasks")]


def _check_success(server: Server, remote: Server, headers: dict[str, str]) -> str:
    remote_id = _remote_image(remote, headers)
    source = _show(remote, headers, remote_id)
    image_id = _create(server, headers, container_format="ovf", disk_format="iso")
    patch = [
        {"op": "add", "path": "/hw_cpu_cores", "value": "1"},
        {"op": "add", "path": "/os_distro", "value": "windows"},
        {"op": "add", "path": "/os_type", "value": "windows"},
    ]
    response = httpx.patch(
        f"{server.url}/v2/images/{image_id}",
        json=patch,
        headers={**headers, "Content-Type": "application/openstack-images-v2.1-json-patch"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    started = _import(server, headers, image_id, remote_id)
    assert started.status_code == 202, started.text
    task = _finished_task(server, headers, image_id)
    assert task["status"] == "success", task["message"]
    assert task["input"]["import_req"]["method"] == {
        "name": "glance-download",
        "glance_image_id": remote_id,
        "glance_region": REMOTE_REGION,
        "glance_service_interface": "public",
    }
    assert headers["X-Auth-Token"] not in json.dumps(task)
    assert task["progress"]["staged_bytes"] == len(DATA)
    image = _show(server, headers, image_id)
    assert image["status"] == "active"
    assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    assert (image["hw_cpu_cores"], image["trait:STORAGE_DISK_SSD"]) == ("5", "required")
    assert image["os_distro"] == "rhel"
    assert image["os_type"] == "windows"  # not on the remote image: the local value stays
    assert "speed" not in image
    assert image["size"] == len(DATA)
    assert image["checksum"] == source["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert image["os_hash_value"] == source["os_hash_value"]
    data = httpx.get(f"{server.url}/v2/images/{image_id}/file", headers=headers, timeout=60)
    assert data.content == DATA
    return image_id


def test_an_image_comes_from_the_other_region_with_its_formats_and_properties(
    local: tuple[Server, Path], remote: Server, keystone: KeystoneServer, member: Account
) -> None:
    server, data_dir = local
    headers = _token(keystone, member)
    _check_success(server, remote, headers)
    # The token was kept with the task only while it ran.
    assert not any(headers["X-Auth-Token"] in stored for stored in _stored_inputs(data_dir))


@pytest.mark.postgres
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_the_import_runs_on_postgresql(
    empty_database_url: str,
    remote: Server,
    keystone: KeystoneServer,
    member: Account,
    tmp_path: Path,
) -> None:
    server = protected_server(
        tmp_path / "pg",
        keystone,
        GLIMPSE_DATABASE__CONNECTION=empty_database_url,
        **_local_settings(remote),
    )
    try:
        _check_success(server, remote, _token(keystone, member))
    finally:
        server.stop()


def _failed(
    server: Server, headers: dict[str, str], image_id: str, remote_id: str, **method: str
) -> dict[str, Any]:
    started = _import(server, headers, image_id, remote_id, **method)
    assert started.status_code == 202, started.text
    task = _finished_task(server, headers, image_id)
    assert task["status"] == "failure"
    image = _show(server, headers, image_id)
    assert image["status"] == "queued"
    assert image["os_glance_failed_import"] == "fast"  # the default store
    return task


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("queued", "the remote image is 'queued', and only an active image can be downloaded"),
        ("missing", "was not found in region 'RegionTwo'"),
        ("region", "has no image endpoint in region 'Atlantis' with interface 'public'"),
        ("interface", "has no image endpoint in region 'RegionTwo' with interface 'admin'"),
        ("filtered", "does not pass"),
    ],
)
def test_a_failed_glance_download_says_why_and_leaves_the_image_queued(
    local: tuple[Server, Path],
    remote: Server,
    keystone: KeystoneServer,
    member: Account,
    case: str,
    message: str,
) -> None:
    server, _ = local
    headers = _token(keystone, member)
    methods = httpx.get(f"{server.url}/v2/info/import", headers=headers, timeout=30).json()
    assert "glance-download" in methods["import-methods"]["value"]
    remote_id = _remote_image(remote, headers, data=None if case == "queued" else DATA)
    if case == "missing":
        remote_id = "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c"
    image_id = _create(server, headers, os_distro="windows")
    method = {
        "region": {"glance_region": "Atlantis"},
        "interface": {"glance_service_interface": "admin"},
        "filtered": {"glance_region": "RegionThree"},
    }.get(case, {})
    task = _failed(server, headers, image_id, remote_id, **method)
    assert message in task["message"], task["message"]
    image = _show(server, headers, image_id)
    assert (image["disk_format"], image["container_format"], image["os_distro"]) == ("raw", "bare", "windows")
    assert "hw_cpu_cores" not in image


def test_bad_requests_are_refused_before_a_task_exists(
    local: tuple[Server, Path], keystone: KeystoneServer, member: Account
) -> None:
    server, _ = local
    headers = {**_token(keystone, member), "Accept": "application/json"}
    image_id = _create(server, headers)
    refused = _import(server, headers, image_id, "foo")
    assert refused.status_code == 400
    assert "image id does not look like a UUID" in refused.text
    body = {"method": {"name": "glance-download", "glance_image_id": "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c"}}
    refused = httpx.post(f"{server.url}/v2/images/{image_id}/import", json=body, headers=headers, timeout=30)
    assert refused.status_code == 400
    assert "requires a 'glance_region' field" in refused.json()["message"]
    tasks = httpx.get(f"{server.url}/v2/images/{image_id}/tasks", headers=headers, timeout=30).json()
    assert tasks["tasks"] == []


def test_a_revoked_token_cannot_read_the_catalog(
    keystone: KeystoneServer, remote: Server, member: Account
) -> None:
    token = keystone.token(member.user_name, member.password, member.project_name)
    found = asyncio.run(find_image_endpoint(keystone.url, token, REMOTE_REGION, "internal"))
    assert found == remote.url  # the "/v2" of the catalog entry is not part of the base URL
    keystone.revoke(token)
    with pytest.raises(DownloadFailed, match="no longer valid"):
        asyncio.run(find_image_endpoint(keystone.url, token, REMOTE_REGION, "public"))
    fresh = keystone.token(member.user_name, member.password, member.project_name)
    with pytest.raises(InvalidInput, match="RegionTwo/public"):
        asyncio.run(find_image_endpoint(keystone.url, fresh, "Atlantis", "public"))


def test_an_unreachable_identity_service_is_a_clear_failure() -> None:
    with pytest.raises(DownloadFailed, match="cannot be reached"):
        asyncio.run(find_image_endpoint(f"http://127.0.0.1:{free_port()}", "t", REMOTE_REGION, "public"))


def test_the_glimpse_cli_imports_from_another_region_and_waits(
    local: tuple[Server, Path], remote: Server, keystone: KeystoneServer, member: Account
) -> None:
    server, _ = local
    headers = _token(keystone, member)
    remote_id = _remote_image(remote, headers)
    image_id = _create(server, headers)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env.update(
        {"GLIMPSE_URL": server.url, "OS_TOKEN": headers["X-Auth-Token"], "HOME": env.get("HOME", "/tmp")}
    )
    refused = run_cli(
        "image", "import", image_id, "--method", "glance-download", "--remote-image", remote_id, env=env
    )
    assert refused.returncode == 2
    assert "--remote-region" in refused.stderr
    done = run_cli(
        "image",
        "import",
        image_id,
        "--method",
        "glance-download",
        "--remote-image",
        remote_id,
        "--remote-region",
        REMOTE_REGION,
        "--remote-interface",
        "internal",
        "--wait",
        env=env,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    image = _show(server, headers, image_id)
    assert image["status"] == "active"
    assert image["os_distro"] == "rhel"
    assert image["checksum"] == _show(remote, headers, remote_id)["checksum"]


def test_a_cancelled_glance_download_undoes_everything_and_forgets_the_token(
    local: tuple[Server, Path], remote: Server, slow_link: TcpRelay, keystone: KeystoneServer, member: Account
) -> None:
    server, data_dir = local
    headers = _token(keystone, member)
    remote_id = _remote_image(remote, headers)
    image_id = _create(server, headers, os_distro="windows")
    slow_link.rate = 128 * 1024  # 2 MiB take 16 s: time to see the download move, then cancel it
    try:
        started = _import(server, headers, image_id, remote_id, glance_region="Slow")
        assert started.status_code == 202, started.text
        task_id = started.headers["OpenStack-image-import-task-id"]
        tasks_url = f"{server.url}/v2/images/{image_id}/tasks"

        def downloading() -> bool:
            task = httpx.get(f"{tasks_url}/{task_id}", headers=headers, timeout=30).json()
            return bool(task["progress"]["staged_bytes"] > 0 and task["status"] == "processing")

        wait_until(downloading, lambda: f"the download did not start:\n{server.log()}", within=30)
        # Mid-download the image already carries the remote image's metadata.
        assert _show(server, headers, image_id)["os_distro"] == "rhel"
        cancelled = httpx.delete(f"{tasks_url}/{task_id}", headers=headers, timeout=30)
        assert cancelled.status_code == 202, cancelled.text
        task = _finished_task(server, headers, image_id)
    finally:
        slow_link.rate = None
    assert task["status"] == "failure"
    assert "back to 'queued'" in task["message"]
    image = _show(server, headers, image_id)
    assert image["status"] == "queued"
    assert (image["os_distro"], image["disk_format"]) == ("windows", "raw")
    assert "hw_cpu_cores" not in image
    assert "os_glance_import_task" not in image or not image["os_glance_import_task"]
    assert not any(headers["X-Auth-Token"] in stored for stored in _stored_inputs(data_dir))
    staging = data_dir / "staging"
    assert staging.is_dir()
    assert not any(image_id in path.name for path in staging.rglob("*"))


PROTECTIONS = """\
[^hw_.*]
create = admin
read = admin,member,reader
update = admin
delete = admin

[.*]
create = admin,member
read = admin,member,reader
update = admin,member
delete = admin,member
"""


def test_a_copied_property_the_user_may_not_create_fails_the_import(
    keystone: KeystoneServer, remote: Server, member: Account, tmp_path: Path
) -> None:
    """As with Glance, the copied properties are set with the importing user's rights: the
    property protections refuse ``hw_cpu_cores`` to a member, so the import fails, says which
    property and why, and leaves the image as it was."""
    rules = tmp_path / "property-protections.conf"
    rules.write_text(PROTECTIONS)
    server = protected_server(
        tmp_path / "protected",
        keystone,
        GLIMPSE_PROPERTY_PROTECTION_FILE=str(rules),
        **_local_settings(remote),
    )
    try:
        headers = _token(keystone, member)
        remote_id = _remote_image(remote, headers)
        image_id = _create(server, headers)
        task = _failed(server, headers, image_id, remote_id)
        message = task["message"]
        assert "'hw_cpu_cores'" in message, message
        assert "property_protection_file" in message
        assert "do not let the importing user create it" in message
        image = _show(server, headers, image_id)
        assert "hw_cpu_cores" not in image
        assert "os_distro" not in image  # nothing of the remote metadata was taken
        assert (image["disk_format"], image["container_format"]) == ("raw", "bare")
    finally:
        server.stop()
