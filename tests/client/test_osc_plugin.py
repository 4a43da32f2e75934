"""The python-openstackclient plugin: the real ``openstack`` command against a live ``glimpse-server``.

Every test runs ``.venv/bin/openstack --os-auth-type none --os-endpoint URL ...`` as a subprocess,
with no clouds.yaml and no ``OS_*`` variable from the machine. The server's no-auth identity is an
admin (copy-image needs one), and it has a store that cannot be written (``broken``: its directory
is a regular file), for failing and partly failing copies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from glancereplay import GlanceReplay

from glimpse_client import Client, ClientConfig
from livesupport import Server, free_port, venv_script

pytestmark = pytest.mark.live

OPENSTACK = venv_script("openstack")
PAYLOAD = os.urandom(200 * 1024)


def start(root: Path, name: str, **extra: str) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    (root / "not-a-directory").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(root / "data"),
            "GLIMPSE_LOG_LEVEL": "WARNING",
            "GLIMPSE_ENABLED_BACKENDS": "fast:file,cheap:file,reliable:file,broken:file",
            "GLIMPSE_BROKEN__FILESYSTEM_STORE_DATADIR": str(root / "not-a-directory"),
            "GLIMPSE_AUTH__NOAUTH_DEFAULT_ROLES": "admin,member,reader",
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
            **extra,
        }
    )
    live = Server(name=name, port=free_port(), log_path=root / "server.log")
    live.start(env)
    live.wait_ready()
    return live


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live = start(tmp_path_factory.mktemp("osc"), "osc")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sdk(server: Server) -> Iterator[Client]:
    with Client(ClientConfig(server.url)) as client:
        yield client


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"HOME": str(home), "OS_CLIENT_CONFIG_FILE": str(home / "none.yaml"), "COLUMNS": "200"})
    return env


def openstack(url: str, home: Path, *args: str, command: list[str] | None = None) -> Run:
    argv = [*(command or [str(OPENSTACK)]), "--os-auth-type", "none", "--os-endpoint", url, *args]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=environment(home), cwd=home, timeout=120, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr)


def active_image(sdk: Client, name: str) -> str:
    image = sdk.create_image(name=name, disk_format="raw", container_format="bare")
    sdk.upload(image.id, PAYLOAD)
    return image.id


def test_task_list_of_an_image(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-tasks")
    handle = sdk.copy_image(image_id, stores=["cheap"])
    assert handle is not None
    handle.wait(timeout=30)

    listed = openstack(server.url, home, "image", "task", "list", "--image", "osc-tasks", "-f", "json")
    assert listed.code == 0, listed.stderr
    (row,) = listed.json()
    assert row["ID"] == handle.task_id
    assert row["Method"] == "copy-image"
    assert row["Status"] == "success"
    assert row["Stores"] == "cheap done"
    assert row["User"] == "glimpse-user"
    assert set(row) == {"ID", "Method", "Status", "Stores", "Message", "User", "Updated"}

    long = openstack(server.url, home, "image", "task", "list", "--image", image_id, "--long", "-f", "json")
    assert long.code == 0, long.stderr
    (detail,) = long.json()
    assert detail["Type"] == "api_image_import"
    assert detail["Project"] == "glimpse-project"
    assert detail["Request ID"].startswith("req-")

    # --watch with nothing pending returns at once with the same rows.
    watched = openstack(
        server.url, home, "image", "task", "list", "--image", image_id, "--watch", "-f", "json"
    )
    assert watched.code == 0, watched.stderr
    assert [r["ID"] for r in watched.json()] == [handle.task_id]


def test_task_list_without_image_is_oscs_admin_list(server: Server, home: Path) -> None:
    listed = openstack(server.url, home, "image", "task", "list", "-f", "json")
    assert listed.code == 0, listed.stderr
    assert all(set(row) == {"ID", "Type", "Status", "Owner"} for row in listed.json())
    refused = openstack(server.url, home, "image", "task", "list", "--watch")
    assert refused.code == 1
    assert "--watch and --long need --image" in refused.stderr


def test_import_wait_copies_and_exits_zero(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-copy")
    run = openstack(
        server.url, home, "image", "import", image_id, "--method", "copy-image", "--store", "cheap", "--wait",
        "-f", "json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    shown = run.json()
    assert shown["id"] == image_id
    assert shown["properties"]["stores"] == "fast,cheap"  # the image as it is after the copy
    assert "success" in run.stderr
    assert sorted(sdk.get_image(image_id).stores) == ["cheap", "fast"]


def test_import_without_wait_names_the_task(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-nowait")
    run = openstack(
        server.url, home, "image", "import", image_id, "--method", "copy-image", "--store", "reliable"
    )
    assert run.code == 0, run.stderr
    (task,) = sdk.image_tasks(image_id)
    assert f"Import task {task.id} started" in run.stderr
    assert f"openstack image task list --image {image_id} --watch" in run.stderr


def test_import_wait_partial_failure_exits_four(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-partial")
    # OSC allows store failures by default (--allow-failure): reliable is written, broken fails.
    stores = ["--store", "reliable", "broken"]
    run = openstack(
        server.url,
        home,
        "image",
        "import",
        image_id,
        "--method",
        "copy-image",
        *stores,
        "--wait",
        "-f",
        "json",
    )
    assert run.code == 4, run.stderr
    assert "not every requested store holds the image" in run.stderr
    assert run.json()["properties"]["os_glance_failed_import"] == "broken"
    assert sorted(sdk.get_image(image_id).stores) == ["fast", "reliable"]
    # Watching again after the end reports how the latest task ended.
    watched = openstack(server.url, home, "image", "task", "list", "--image", image_id, "--watch")
    assert watched.code == 4, watched.stderr


def test_import_wait_failure_exits_three(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-failure")
    run = openstack(
        server.url, home, "image", "import", image_id, "--method", "copy-image", "--store", "broken",
        "--disallow-failure", "--wait",
    )  # fmt: skip
    assert run.code == 3, run.stderr
    assert "could not write the image data" in run.stderr
    assert sdk.get_image(image_id).stores == ["fast"]
    watched = openstack(server.url, home, "image", "task", "list", "--image", image_id, "--watch")
    assert watched.code == 3, watched.stderr
    listed = openstack(server.url, home, "image", "task", "list", "--image", image_id)
    assert listed.code == 0, listed.stderr


def test_oscs_own_checks_still_apply(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-checks")
    run = openstack(server.url, home, "image", "import", image_id, "--method", "copy-image", "--wait")
    assert run.code == 1
    assert "'--stores' or '--all-stores' options are required" in run.stderr
    assert sdk.image_tasks(image_id) == []
    alone = openstack(
        server.url, home, "image", "import", image_id, "--method", "copy-image", "--store", "cheap",
        "--timeout", "5",
    )  # fmt: skip
    assert alone.code == 1
    assert "--timeout needs --wait" in alone.stderr
    assert sdk.image_tasks(image_id) == []


def test_image_list_still_works_and_shows_no_duplicate_warning(
    server: Server, sdk: Client, home: Path
) -> None:
    image_id = active_image(sdk, "osc-list")
    for verbosity in ([], ["-v"], ["--debug"]):
        listed = openstack(server.url, home, *verbosity, "image", "list", "-f", "json")
        assert listed.code == 0, listed.stderr
        assert "duplicate implementations" not in listed.stderr
        assert "Failed to import plugin" not in listed.stderr
        if not verbosity:
            assert image_id in {row["ID"] for row in listed.json()}


def test_without_renderers_import_waits_with_plain_lines(server: Server, sdk: Client, home: Path) -> None:
    image_id = active_image(sdk, "osc-plain")
    # As if glimpse_client.cli (the renderers of the `glimpse` command line) could not be imported.
    block = "import sys; sys.modules['glimpse_client.cli'] = None"
    command = [sys.executable, "-c", f"{block}; from openstackclient.shell import main; sys.exit(main())"]
    listed = openstack(server.url, home, "image", "list", "-f", "value", "-c", "ID", command=command)
    assert listed.code == 0, listed.stderr
    assert image_id in listed.stdout.split()
    run = openstack(
        server.url, home, "image", "import", image_id, "--method", "copy-image", "--store", "cheap", "--wait",
        "-f", "value", "-c", "id", command=command,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "success" in run.stderr
    assert sorted(sdk.get_image(image_id).stores) == ["cheap", "fast"]
    tasks = openstack(server.url, home, "image", "task", "list", "--image", image_id, command=command)
    assert tasks.code == 1
    assert "glimpse-client[osc]" in tasks.stderr


@pytest.fixture(scope="module")
def stuck(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[tuple[Server, Run]]:
    """A server without a task runner, so imports stay pending, and ``--wait --timeout 1`` on one."""
    live = start(tmp_path_factory.mktemp("osc-stuck"), "osc-no-runner", GLIMPSE_TASK__EMBEDDED_RUNNER="false")
    try:
        with Client(ClientConfig(live.url)) as sdk:
            active_image(sdk, "osc-stuck")
        waited = openstack(live.url, home, *STUCK_IMPORT, "--wait", "--timeout", "1")
        yield live, waited
    finally:
        live.stop()


STUCK_IMPORT = ["image", "import", "osc-stuck", "--method", "copy-image", "--store", "cheap"]


def test_wait_timeout_exits_five(stuck: tuple[Server, Run]) -> None:
    _, waited = stuck
    assert waited.code == 5, waited.stderr
    assert "openstack image task list --image osc-stuck --watch" in waited.stderr


def test_conflict_is_explained(stuck: tuple[Server, Run], home: Path) -> None:
    live, _ = stuck
    again = openstack(live.url, home, *STUCK_IMPORT)
    assert again.code == 1
    assert "Image osc-stuck is busy" in again.stderr
    assert "(pending) holds its import lock" in again.stderr


def test_conflict_hint_is_the_openstack_command(stuck: tuple[Server, Run], home: Path) -> None:
    live, _ = stuck
    again = openstack(live.url, home, *STUCK_IMPORT)
    assert "openstack image task list --image osc-stuck --watch" in again.stderr


COPIED = "f0c01d79-dd47-4241-983d-c0dd50b65dee"
COPY_STORES = ["--store", "cheap", "slow", "reliable", "common"]


def glance_routes(**override: list[str]) -> dict[str, list[str]]:
    routes = {
        "GET /": ["versions"],
        "GET /v2/info/import": ["info_import"],
        f"GET /v2/images/{COPIED}": ["image_after_upload", "image_after_copy"],
        f"POST /v2/images/{COPIED}/import": ["import_copy"],
        f"GET /v2/images/{COPIED}/tasks": [
            "tasks_during_copy_01",
            "tasks_during_copy_20",
            "tasks_after_copy",
        ],
    }
    routes.update(override)
    return routes


def test_import_wait_against_plain_glance(home: Path) -> None:
    # The 202 names no task: the plugin finds it by request id among the image's tasks.
    with GlanceReplay(glance_routes()) as glance:
        run = openstack(
            glance.url, home, "image", "import", COPIED, "--method", "copy-image", *COPY_STORES, "--wait",
            "-f", "json",
        )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "15e49e30-d237-425d-b64a-61feba77bfa9 success" in run.stderr
    assert run.json()["properties"]["stores"] == "fast,cheap,slow,reliable,common"


def test_import_wait_on_glance_without_image_tasks(home: Path) -> None:
    # An older Glance: no /v2/images/{id}/tasks at all. The plugin waits on the image's properties.
    images = ["image_after_upload", "image_during_copy", "image_during_copy", "image_after_copy"]
    routes = glance_routes(**{f"GET /v2/images/{COPIED}": images, f"GET /v2/images/{COPIED}/tasks": []})
    with GlanceReplay(routes) as glance:
        run = openstack(
            glance.url, home, "image", "import", COPIED, "--method", "copy-image", *COPY_STORES, "--wait",
        )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "named no import task" in run.stderr
