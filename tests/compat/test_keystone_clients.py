"""The real clients against a Keystone-protected Glimpse, found through Keystone's catalog.

``openstack image …``, ``glance``, openstacksdk and ``glimpse`` are given only ``OS_*`` variables (auth URL,
user, project): they get a token from the real Keystone on loopback, find the ``image`` endpoint in its
catalog, and Glimpse validates the token itself (``auth_strategy = keystone``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest

from keystonesupport import ADMIN_PASSWORD, REGION, Account, KeystoneServer, protected_server
from livesupport import Server, venv_script

pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]

PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    with KeystoneServer(tmp_path_factory.getbasetemp().parent, tmp_path_factory.mktemp("keystone")) as ks:
        yield ks


@pytest.fixture(scope="module")
def glimpse(keystone: KeystoneServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = protected_server(tmp_path_factory.mktemp("glimpse"), keystone)
    keystone.image_service({("public", REGION): server.url, ("internal", REGION): server.url})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def member(keystone: KeystoneServer) -> Account:
    return keystone.account("demo", PASSWORD, ("member", "reader"))


def os_env(keystone: KeystoneServer, user: str, password: str, project: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "GLIMPSE_"))}
    env.update(
        {
            "HOME": str(home),
            "OS_AUTH_URL": f"{keystone.url}/v3",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user,
            "OS_PASSWORD": password,
            "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_ID": "default",
            "OS_PROJECT_DOMAIN_ID": "default",
            "OS_REGION_NAME": REGION,
            "OS_INTERFACE": "public",
        }
    )
    return env


def run(tool: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_script(tool)), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_clients_list_create_and_upload_through_the_catalog(
    glimpse: Server, keystone: KeystoneServer, member: Account, tmp_path: Path
) -> None:
    env = os_env(keystone, member.user_name, PASSWORD, member.project_name, tmp_path)
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\x00" * 4096)
    made = run(
        "openstack",
        *("image", "create", "--disk-format", "raw", "--container-format", "bare"),
        *("--file", str(data), "-f", "json", "osc-image"),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    image = json.loads(made.stdout)
    assert image["owner"] == member.project_id
    assert image["status"] == "active"

    listed = run("glance", "image-list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert image["id"] in listed.stdout

    conn = openstack.connect(
        auth_url=f"{keystone.url}/v3",
        username=member.user_name,
        password=PASSWORD,
        project_name=member.project_name,
        user_domain_id="default",
        project_domain_id="default",
        region_name=REGION,
    )
    try:
        assert image["id"] in {i.id for i in conn.image.images()}
        assert conn.image.get_image(image["id"]).owner == member.project_id
    finally:
        conn.close()

    own = run("glimpse", "image", "list", "-f", "json", env=env)
    assert own.returncode == 0, own.stderr
    assert image["id"] in own.stdout


def test_copy_is_for_admins_and_a_member_gets_403(
    glimpse: Server, keystone: KeystoneServer, member: Account, tmp_path: Path
) -> None:
    env = os_env(keystone, member.user_name, PASSWORD, member.project_name, tmp_path)
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\x01" * 4096)
    made = run(
        "openstack",
        *("image", "create", "--disk-format", "raw", "--container-format", "bare"),
        *("--file", str(data), "-f", "json", "to-copy"),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    image_id = json.loads(made.stdout)["id"]

    refused = run(
        "glance", "image-import", image_id, "--import-method", "copy-image", "--stores", "cheap", env=env
    )
    assert refused.returncode != 0
    assert "403" in refused.stderr + refused.stdout

    admin = os_env(keystone, "admin", ADMIN_PASSWORD, "admin", tmp_path)
    copied = run(
        "glance", "image-import", image_id, "--import-method", "copy-image", "--stores", "cheap", env=admin
    )
    assert copied.returncode == 0, copied.stderr
    deadline = time.monotonic() + 60
    while True:
        shown = run("openstack", "image", "show", "-f", "json", image_id, env=env)
        assert shown.returncode == 0, shown.stderr
        stores = json.loads(shown.stdout).get("properties", {}).get("stores", "")
        if "cheap" in stores.split(","):
            break
        assert time.monotonic() < deadline, f"not copied: {shown.stdout}"
        time.sleep(0.5)
    # The copy's task records the admin who asked for it (the member sees the task, without its user).
    tasks = run("glance", "--verbose", "image-tasks", image_id, env=admin)
    assert tasks.returncode == 0, tasks.stderr
    admin_id = keystone.admin.get("/users", params={"name": "admin"}).json()["users"][0]["id"]
    assert admin_id in tasks.stdout
    assert "success" in tasks.stdout
