"""Interoperable import driven by the real clients (``glance`` CLI and openstacksdk) against a live Glimpse.

Each test starts glance-direct, web-download or copy-image the way a user does, then watches the
server over HTTP until the task runner inside ``glimpse-server serve`` has finished (every wait is bounded
and fails with the image and its task list), and compares the image, its data in each store and
the task records of ``GET /v2/images/{id}/tasks`` with what the clients print.

web-download fetches from a small HTTP server the test runs on loopback; the compat deployment
allows private addresses and every port but 22 for it (see ``conftest.py``). That server can also
hold a download back, which is how a test keeps tasks busy for as long as it needs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx
import openstack
import pytest
from openstack import exceptions as sdk_exceptions
from openstack.connection import Connection
from test_glance_cli import Glance, properties, table, wrapped_json
from test_openstacksdk import connect_as

from glimpse.config import Settings

if TYPE_CHECKING:
    from conftest import Deployment
    from livesupport import Server

pytestmark = [
    pytest.mark.live,
    # The SDK announces its own future API changes; they say nothing about the server.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

MIB = 1024 * 1024
#: Seconds any one import may take before a test gives up on it.
SETTLE_TIMEOUT = 30.0
#: Seconds a held-back download trickles at most before it sends the rest anyway.
HOLD_AT_MOST = 30.0
TERMINAL = frozenset({"success", "failure"})
BRIEF_COLUMNS = ["Message", "Status", "Updated at"]
VERBOSE_COLUMNS = [
    "Image Id",
    "Task Id",
    "Message",
    "Status",
    "Updated at",
    "User Id",
    "Request Id",
    "Result",
    "Owner",
    "Input",
    "Expires at",
]


# -- the web-download source ---------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _FileHTTPServer

    def do_GET(self) -> None:
        files = self.server.files
        entry = files.entries.get(self.path)
        if entry is None:
            self.send_error(404)
            return
        data, hold = entry
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            sent = 0 if hold is None else files.trickle(self.wfile, data, hold)
            self.wfile.write(data[sent:])
        except OSError:
            pass  # the importer hung up; its task says why

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FileHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: FileServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files


class FileServer:
    """Serves bytes over HTTP on loopback for web-download.

    :meth:`add` publishes data at a fresh path. With ``hold`` the response starts at once but the
    body trickles (a KiB every tenth of a second, so the importer never sees a silent server) until
    the event is set or :data:`HOLD_AT_MOST` seconds passed; then the rest goes at full speed.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, threading.Event | None]] = {}
        self._lock = threading.Lock()
        self._trickling = 0
        self._httpd = _FileHTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web-download-source")

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def add(self, data: bytes, hold: threading.Event | None = None) -> str:
        path = f"/images/{uuid.uuid4().hex}.raw"
        self.entries[path] = (data, hold)
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def trickling(self) -> int:
        """Held-back downloads in progress right now."""
        with self._lock:
            return self._trickling

    def trickle(self, out: BinaryIO, data: bytes, hold: threading.Event) -> int:
        step = 1024
        with self._lock:
            self._trickling += 1
        try:
            sent = 0
            deadline = time.monotonic() + HOLD_AT_MOST
            while sent + step < len(data) and time.monotonic() < deadline and not hold.wait(0.1):
                out.write(data[sent : sent + step])
                sent += step
            return sent
        finally:
            with self._lock:
                self._trickling -= 1


# -- server-side checks --------------------------------------------------------------------------


def get_image(api: httpx.Client, image_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = api.get(f"/v2/images/{image_id}", headers=headers)
    assert response.status_code == 200, response.text
    image: dict[str, Any] = response.json()
    return image


def tasks_of(api: httpx.Client, image_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = api.get(f"/v2/images/{image_id}/tasks", headers=headers)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def describe(image: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    shown = {key: image.get(key) for key in ("status", "stores", "size", "os_glance_import_task")}
    shown.update({key: value for key, value in image.items() if key.startswith("os_glance_")})
    return f"image {image.get('id')}: {json.dumps(shown)}\ntasks:\n{json.dumps(tasks, indent=1)}"


def settle(
    api: httpx.Client, image_id: str, headers: dict[str, str], timeout: float = SETTLE_TIMEOUT
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait until every task of the image has finished and its import lock is free."""
    deadline = time.monotonic() + timeout
    while True:
        image = get_image(api, image_id, headers)
        tasks = tasks_of(api, image_id, headers)
        idle = all(task["status"] in TERMINAL for task in tasks)
        if tasks and idle and "os_glance_import_task" not in image:
            return image, tasks
        if time.monotonic() > deadline:
            pytest.fail(
                f"the import of image {image_id} did not finish within {timeout:.0f}s\n"
                f"{describe(image, tasks)}",
                pytrace=False,
            )
        time.sleep(0.1)


def expect_imported(image: dict[str, Any], tasks: list[dict[str, Any]], data: bytes) -> None:
    """The image is active with exactly ``data``, and every one of its tasks succeeded."""
    assert image["status"] == "active", describe(image, tasks)
    assert [task["status"] for task in tasks] == ["success"] * len(tasks), describe(image, tasks)
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum is MD5
    assert (image["os_hash_algo"], image["os_hash_value"]) == ("sha512", hashlib.sha512(data).hexdigest())
    assert image["os_glance_importing_to_stores"] == ""
    assert image["os_glance_failed_import"] == ""


def expect_message(task: dict[str, Any], at_least: int) -> None:
    """Glance's ``Copied N MiB`` with N of at least ``at_least`` MiB.

    For an import to one store from data already there (glance-direct, copy-image) N is the image
    size in Glance and Glimpse alike, and the tests say so exactly. With a download or several
    stores they differ: Glance reports the bytes of the last store written (the image size), Glimpse
    every byte moved (downloaded plus written to each store, ``docs/tasks.md``).
    """
    match = re.fullmatch(r"Copied (\d+) MiB", task["message"])
    assert match is not None, task
    assert int(match.group(1)) >= at_least, task


def stored_bytes(deployment: Deployment, store: str, image_id: str) -> bytes:
    """The image's object in a file store: ``<data dir>/stores/<store>/<image id>`` by default."""
    return (deployment.data_dir / "stores" / store / image_id).read_bytes()


def create_queued(api: httpx.Client, headers: dict[str, str], **attrs: Any) -> str:
    body = {"disk_format": "raw", "container_format": "bare", "name": f"imp-{uuid.uuid4().hex[:8]}"}
    response = api.post("/v2/images", json={**body, **attrs}, headers=headers)
    assert response.status_code == 201, response.text
    image_id: str = response.json()["id"]
    return image_id


def start_import(
    api: httpx.Client, image_id: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    response = api.post(f"/v2/images/{image_id}/import", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response


def direct_import(api: httpx.Client, data: bytes, headers: dict[str, str], watch: dict[str, str]) -> str:
    """A glance-direct import over HTTP (stage, import, wait); the image id."""
    image_id = create_queued(api, headers)
    staged = api.put(
        f"/v2/images/{image_id}/stage",
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert staged.status_code == 204, staged.text
    start_import(api, image_id, {"method": {"name": "glance-direct"}}, headers)
    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    return image_id


def response_headers(stderr: str, method: str, path: str) -> dict[str, str]:
    """The headers of the response to ``method path``, from what ``glance --debug`` logged."""
    lines = stderr.splitlines()
    sent = next(
        (
            index
            for index, line in enumerate(lines)
            if line.startswith("curl") and f"-X {method} " in line and line.rstrip("'\"").endswith(path)
        ),
        None,
    )
    assert sent is not None, f"no {method} {path} in the debug log:\n{stderr}"
    status = next(index for index in range(sent + 1, len(lines)) if lines[index].startswith("HTTP/"))
    headers: dict[str, str] = {}
    for line in lines[status + 1 :]:
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name:
            break
        headers[name.lower()] = value.strip()
    return headers


def max_concurrent_tasks(deployment: Deployment) -> int:
    """Tasks one ``glimpse-server serve`` runs at once, as the deployment configures it."""
    configured = deployment.environ("owner").get("GLIMPSE_TASK__MAX_CONCURRENT_TASKS")
    if configured is not None:
        return int(configured)
    default: int = next(f.default for f in dataclasses.fields(Settings) if f.name == "max_concurrent_tasks")
    return default


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Glance:
    return Glance(tmp_path_factory.mktemp("glance-home"))


@pytest.fixture(scope="module")
def web() -> Iterator[FileServer]:
    server = FileServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def watch(identity: dict[str, dict[str, str]]) -> dict[str, str]:
    """Headers that see every task of every image unredacted (the admin's), for waiting and checks."""
    return identity["admin"]


@pytest.fixture(scope="module")
def sdk(owner: Server) -> Iterator[Connection]:
    connection = openstack.connect(
        auth_type="none",
        image_endpoint_override=owner.url,
        load_yaml_config=False,
        load_envvars=False,
        app_name="glimpse-compat",
    )
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def sdk_admin(owner: Server, identity: dict[str, dict[str, str]]) -> Iterator[Connection]:
    connection = connect_as(owner, identity["admin"])
    yield connection
    connection.close()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- glance CLI ----------------------------------------------------------------------------------


def test_create_via_import_glance_direct_and_image_tasks(
    glance: Glance,
    owner: Server,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
    tmp_path: Path,
) -> None:
    data = os.urandom(3 * MIB + 4321)
    source = _write(tmp_path, "direct.raw", data)
    name = f"imp-cli-direct-{uuid.uuid4().hex[:8]}"
    created = glance.run(
        owner,
        "image-create-via-import",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--name",
        name,
        "--file",
        str(source),
        debug=True,
    )
    shown = properties(created.stdout)
    image_id = shown["id"]
    assert shown["name"] == name
    assert shown["size"] == str(len(data))
    assert shown["status"] in {"importing", "active"}, created.explain()
    accepted = response_headers(created.stderr, "POST", f"/v2/images/{image_id}/import")
    request_id = accepted["x-openstack-request-id"]
    task_id = accepted["openstack-image-import-task-id"]
    assert accepted["location"] == f"/v2/images/{image_id}/tasks/{task_id}"

    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert image["stores"] == "fast"
    assert api.get(f"/v2/images/{image_id}/file").content == data
    [task] = tasks
    assert task["id"] == task_id
    assert task["type"] == "api_image_import"
    assert task["message"] == f"Copied {len(data) // MIB} MiB"
    assert task["request_id"] == request_id
    assert task["user_id"] == identity["owner"]["X-User-Id"]
    assert task["owner"] == identity["owner"]["X-Project-Id"]
    assert task["image_id"] == image_id
    assert task["input"] == {
        "image_id": image_id,
        "import_req": {"method": {"name": "glance-direct"}},
        "backend": ["fast"],
    }
    assert task["result"] == {"image_id": image_id}
    assert task["expires_at"] is not None
    assert tasks_of(api, image_id, identity["owner"]) == tasks

    brief = table(glance.run(owner, "image-tasks", image_id).stdout)
    assert list(brief[0]) == BRIEF_COLUMNS
    assert brief == [{"Message": task["message"], "Status": "success", "Updated at": task["updated_at"]}]

    verbose = table(glance.run(owner, "--verbose", "image-tasks", image_id).stdout)
    assert list(verbose[0]) == VERBOSE_COLUMNS
    assert verbose == [
        {
            "Image Id": image_id,
            "Task Id": task_id,
            "Message": task["message"],
            "Status": "success",
            "Updated at": task["updated_at"],
            "User Id": identity["owner"]["X-User-Id"],
            "Request Id": request_id,
            "Result": str(task["result"]),
            "Owner": identity["owner"]["X-Project-Id"],
            "Input": str(task["input"]),
            "Expires at": task["expires_at"],
        }
    ]


def test_stage_then_import_to_two_stores(
    glance: Glance,
    owner: Server,
    deployment: Deployment,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
    tmp_path: Path,
) -> None:
    data = os.urandom(2 * MIB + 999)
    source = _write(tmp_path, "staged.raw", data)
    image_id = create_queued(api, identity["owner"])

    glance.run(owner, "image-stage", image_id, "--file", str(source))
    staged = get_image(api, image_id, watch)
    assert (staged["status"], staged["size"]) == ("uploading", len(data))

    imported = properties(
        glance.run(
            owner, "image-import", image_id, "--import-method", "glance-direct", "--stores", "fast,cheap"
        ).stdout
    )
    assert imported["id"] == image_id
    assert imported["status"] in {"importing", "active"}

    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert sorted(image["stores"].split(",")) == ["cheap", "fast"]
    shown = properties(glance.run(owner, "image-show", image_id).stdout)
    assert (shown["status"], shown["stores"]) == ("active", image["stores"])
    assert stored_bytes(deployment, "fast", image_id) == data
    assert stored_bytes(deployment, "cheap", image_id) == data
    assert api.get(f"/v2/images/{image_id}/file").content == data

    [task] = tasks
    # glanceclient asks for all_stores_must_succeed=false whenever it names stores (--allow-failure).
    assert task["input"] == {
        "image_id": image_id,
        "import_req": {
            "method": {"name": "glance-direct"},
            "stores": ["fast", "cheap"],
            "all_stores_must_succeed": False,
        },
        "backend": ["fast", "cheap"],
    }
    expect_message(task, len(data) // MIB)


def test_web_download_and_filtering(
    glance: Glance,
    owner: Server,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
    web: FileServer,
) -> None:
    data = os.urandom(2 * MIB + 321)
    uri = web.add(data)
    create = ("image-create-via-import", "--disk-format", "raw", "--container-format", "bare")
    shown = properties(
        glance.run(
            owner, *create, "--name", "imp-cli-web", "--import-method", "web-download", "--uri", uri
        ).stdout
    )
    image_id = shown["id"]
    assert shown["status"] in {"importing", "active"}

    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert image["stores"] == "fast"
    assert api.get(f"/v2/images/{image_id}/file").content == data
    [task] = tasks
    assert task["input"] == {
        "image_id": image_id,
        "import_req": {"method": {"name": "web-download", "uri": uri}},
        "backend": ["fast"],
    }
    assert task["user_id"] == identity["owner"]["X-User-Id"]
    expect_message(task, len(data) // MIB)

    refused_uris = (
        f"http://127.0.0.1:22/{image_id}",  # a port outside the filter
        "http://169.254.169.254/latest/meta-data/",  # the metadata service: never, whatever the options
    )
    for refused_uri in refused_uris:
        refused = glance.run(
            owner,
            *create,
            "--name",
            "imp-cli-refused",
            "--import-method",
            "web-download",
            "--uri",
            refused_uri,
            expect_ok=False,
        )
        message = f"URI for web-download does not pass filtering: {refused_uri}"
        assert "400 Bad Request" in refused.stderr, refused.explain()
        assert message in refused.stderr, refused.explain()
        # The CLI prints the image it created before the import was refused: it stays queued, taskless.
        left = properties(refused.stdout)["id"]
        assert get_image(api, left, watch)["status"] == "queued"
        assert tasks_of(api, left, watch) == []


def test_glance_task_create_imports_from_a_url(
    glance: Glance, owner: Server, admin: Server, api: httpx.Client, watch: dict[str, str], web: FileServer
) -> None:
    """``glance task-create --type import`` (the old task API, admin only): the task is created,
    validated by the client against /v2/schemas/task, runs as a web-download of a new image, and
    ``task-show`` and ``task-list`` follow it to success."""
    data = os.urandom(MIB + 99)
    uri = web.add(data)
    task_input = {
        "import_from": uri,
        "import_from_format": "raw",
        "image_properties": {"name": "from-cli-task", "disk_format": "raw", "container_format": "bare"},
    }
    refused = glance.run(
        owner, "task-create", "--type", "import", "--input", json.dumps(task_input), expect_ok=False
    )
    assert "403" in refused.stderr, refused.explain()

    created = properties(
        glance.run(admin, "task-create", "--type", "import", "--input", json.dumps(task_input)).stdout
    )
    assert created["type"] == "import"
    assert created["status"] in {"pending", "processing", "success"}
    image_id = created["image_id"]
    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert image["name"] == "from-cli-task"
    assert api.get(f"/v2/images/{image_id}/file", headers=watch).content == data

    shown = properties(glance.run(admin, "task-show", created["id"]).stdout)
    assert shown["status"] == "success"
    assert wrapped_json(shown["result"]) == {"image_id": image_id}
    listed = table(glance.run(admin, "task-list", "--type", "import").stdout)
    assert created["id"] in [row["ID"] for row in listed]


def test_copy_image_as_admin_and_who_sees_which_task(
    glance: Glance,
    owner: Server,
    peer: Server,
    admin: Server,
    deployment: Deployment,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
) -> None:
    data = os.urandom(2 * MIB + 11)
    image_id = direct_import(api, data, identity["owner"], watch)

    copy_to_cheap = ("image-import", image_id, "--import-method", "copy-image", "--stores", "cheap")
    copied = properties(glance.run(admin, *copy_to_cheap).stdout)
    assert copied["status"] == "active"
    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert image["stores"] == "fast,cheap"
    assert stored_bytes(deployment, "cheap", image_id) == data

    # Creation order: the owner's import, then the admin's copy.
    methods = [task["input"]["import_req"]["method"]["name"] for task in tasks]
    assert methods == ["glance-direct", "copy-image"]
    assert tasks[0]["created_at"] <= tasks[1]["created_at"]
    first, copy = tasks
    assert (first["owner"], first["user_id"]) == ("compat-owner", identity["owner"]["X-User-Id"])
    assert (copy["owner"], copy["user_id"]) == ("compat-admin", identity["admin"]["X-User-Id"])
    assert copy["request_id"].startswith("req-")
    assert copy["request_id"] != first["request_id"]
    assert copy["input"] == {
        "image_id": image_id,
        "import_req": {
            "method": {"name": "copy-image"},
            "stores": ["cheap"],
            "all_stores_must_succeed": False,
        },
        "backend": ["cheap"],
    }
    assert copy["message"] == f"Copied {len(data) // MIB} MiB"

    as_admin = table(glance.run(admin, "image-tasks", image_id).stdout)
    assert as_admin == [
        {"Message": task["message"], "Status": "success", "Updated at": task["updated_at"]} for task in tasks
    ]

    # The owner sees the admin's copy too, without the admin's user and request ids.
    owner_view = tasks_of(api, image_id, identity["owner"])
    assert owner_view == [first, {**copy, "user_id": None, "request_id": None}]
    verbose = table(glance.run(owner, "--verbose", "image-tasks", image_id).stdout)
    assert [row["Task Id"] for row in verbose] == [first["id"], copy["id"]]
    assert (verbose[0]["User Id"], verbose[0]["Request Id"]) == (first["user_id"], first["request_id"])
    assert (verbose[1]["User Id"], verbose[1]["Request Id"]) == ("None", "None")
    assert [row["Owner"] for row in verbose] == ["compat-owner", "compat-admin"]

    # A member project sees the image but none of the tasks other projects ran on it ...
    member = identity["peer"]["X-Project-Id"]
    shared = api.post(f"/v2/images/{image_id}/members", json={"member": member})
    assert shared.status_code == 200, shared.text
    accepted = api.put(
        f"/v2/images/{image_id}/members/{member}", json={"status": "accepted"}, headers=identity["peer"]
    )
    assert accepted.status_code == 200, accepted.text
    assert tasks_of(api, image_id, identity["peer"]) == []
    assert table(glance.run(peer, "image-tasks", image_id).stdout) == []

    # ... and its own on its own image, which the owner project in turn cannot see at all.
    own_id = direct_import(api, os.urandom(100_000), identity["peer"], watch)
    own_rows = table(glance.run(peer, "--verbose", "image-tasks", own_id).stdout)
    assert [(row["Owner"], row["User Id"], row["Status"]) for row in own_rows] == [
        ("compat-peer", identity["peer"]["X-User-Id"], "success")
    ]
    assert api.get(f"/v2/images/{own_id}/tasks").status_code == 404


def test_second_import_while_one_holds_the_lock(
    glance: Glance,
    owner: Server,
    peer: Server,
    admin: Server,
    deployment: Deployment,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
    web: FileServer,
) -> None:
    """glanceclient checks the image status before it asks for an import, so the only second
    import it sends to an image with a task under way is a copy to an active image. To have a
    copy task hold the lock long enough, every runner of the deployment is first kept busy with
    web-downloads the test holds back: the copy accepted then stays pending (and, as in Glance, a
    pending task holds the lock as firmly as a running one) until the downloads are let go."""
    data = os.urandom(MIB + 3)
    image_id = direct_import(api, data, identity["owner"], watch)
    slots = len(deployment.servers) * max_concurrent_tasks(deployment)
    hold = threading.Event()
    blockers: dict[str, bytes] = {}
    try:
        for _ in range(slots):
            blocker_data = os.urandom(512 * 1024)
            blocker = create_queued(api, identity["owner"])
            body = {"method": {"name": "web-download", "uri": web.add(blocker_data, hold)}}
            start_import(api, blocker, body, identity["owner"])
            blockers[blocker] = blocker_data
        deadline = time.monotonic() + 15
        while web.trickling < slots:
            if time.monotonic() > deadline:
                states = {b: [t["status"] for t in tasks_of(api, b, watch)] for b in blockers}
                pytest.fail(
                    f"only {web.trickling} of {slots} held-back downloads started: {states}", pytrace=False
                )
            time.sleep(0.05)

        holding = start_import(
            api, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap"]}, identity["admin"]
        )
        holder = holding.headers["OpenStack-image-import-task-id"]
        copy_to_cheap = ("image-import", image_id, "--import-method", "copy-image", "--stores", "cheap")
        refused = glance.run(admin, *copy_to_cheap, expect_ok=False)
        during = tasks_of(api, image_id, watch)
        state = describe(get_image(api, image_id, watch), during)
        assert during[-1]["id"] == holder, state
        assert during[-1]["status"] == "pending", state
    finally:
        hold.set()
    assert "409 Conflict" in refused.stderr, refused.explain()
    assert "Image has active task" in refused.stderr, refused.explain()
    assert holder in refused.stderr, refused.explain()
    assert len(during) == 2, during  # the refused request left no task behind

    for blocker, blocker_data in blockers.items():
        blocked, blocker_tasks = settle(api, blocker, watch)
        expect_imported(blocked, blocker_tasks, blocker_data)
    image, tasks = settle(api, image_id, watch)
    expect_imported(image, tasks, data)
    assert [task["id"] for task in tasks][-1] == holder
    assert image["stores"] == "fast,cheap"


# -- openstacksdk --------------------------------------------------------------------------------


def test_openstacksdk_import_methods_and_image_tasks(
    sdk: Connection,
    sdk_admin: Connection,
    deployment: Deployment,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    watch: dict[str, str],
    web: FileServer,
) -> None:
    def create() -> Any:
        image = sdk.image.create_image(
            name=f"imp-sdk-{uuid.uuid4().hex[:8]}",
            disk_format="raw",
            container_format="bare",
            allow_duplicates=True,
        )
        assert image.status == "queued"
        return image

    # glance-direct to the default store, then the task as ImageTasks sees it.
    data = os.urandom(2 * MIB + 5)
    image = create()
    sdk.image.stage_image(image, data=data)
    staged = get_image(api, image.id, watch)
    assert (staged["status"], staged["size"]) == ("uploading", len(data))
    response = sdk.image.import_image(image, method="glance-direct")
    assert response.status_code == 202
    task_id = response.headers["OpenStack-image-import-task-id"]
    assert response.headers["Location"] == f"/v2/images/{image.id}/tasks/{task_id}"
    request_id = response.headers["x-openstack-request-id"]
    settle(api, image.id, watch)
    [task] = list(sdk.image.image_tasks(image))
    assert (task.id, task.type, task.status) == (task_id, "api_image_import", "success")
    assert (task.request_id, task.user_id) == (request_id, identity["owner"]["X-User-Id"])
    assert (task.image_id, task.owner) == (image.id, identity["owner"]["X-Project-Id"])
    assert task.message == f"Copied {len(data) // MIB} MiB"
    assert task.result == {"image_id": image.id}
    assert task.input["import_req"] == {"method": {"name": "glance-direct"}}
    fetched = sdk.image.get_image(image.id)
    assert (fetched.status, fetched.size) == ("active", len(data))
    assert get_image(api, image.id, watch)["stores"] == "fast"
    assert fetched.checksum == hashlib.md5(data).hexdigest()  # noqa: S324
    assert sdk.image.download_image(fetched).content == data

    # glance-direct to two named stores.
    both = create()
    sdk.image.stage_image(both, data=data)
    sdk.image.import_image(both, method="glance-direct", stores=["fast", "cheap"])
    image_both, tasks_both = settle(api, both.id, watch)
    expect_imported(image_both, tasks_both, data)
    assert sorted(image_both["stores"].split(",")) == ["cheap", "fast"]
    assert stored_bytes(deployment, "fast", both.id) == stored_bytes(deployment, "cheap", both.id) == data
    assert tasks_both[0]["input"]["import_req"] == {
        "method": {"name": "glance-direct"},
        "stores": ["fast", "cheap"],
    }

    # web-download into a chosen store; a refused URL gets a 400 with the filtering message.
    web_data = os.urandom(MIB + 17)
    uri = web.add(web_data)
    fetched_image = create()
    sdk.image.import_image(fetched_image, method="web-download", uri=uri, stores=["cheap"])
    image_web, tasks_web = settle(api, fetched_image.id, watch)
    expect_imported(image_web, tasks_web, web_data)
    assert image_web["stores"] == "cheap"
    assert sdk.image.get_image(fetched_image.id).checksum == hashlib.md5(web_data).hexdigest()  # noqa: S324
    refused_image = create()
    metadata = "http://169.254.169.254/latest/meta-data/"
    # import_image hands back the raw response, errors included; the SDK's own check turns it into
    # the usual exception.
    refused = sdk.image.import_image(refused_image, method="web-download", uri=metadata)
    assert refused.status_code == 400
    with pytest.raises(sdk_exceptions.BadRequestException) as raised:
        sdk_exceptions.raise_from_response(refused)
    assert f"URI for web-download does not pass filtering: {metadata}" in str(raised.value)
    assert tasks_of(api, refused_image.id, watch) == []

    # copy-image by an admin: the image gains a store and a second task, the admin's.
    copying = sdk_admin.image.import_image(
        sdk_admin.image.get_image(image.id), method="copy-image", stores=["cheap"]
    )
    assert copying.status_code == 202
    copied, tasks = settle(api, image.id, watch)
    expect_imported(copied, tasks, data)
    assert copied["stores"] == "fast,cheap"
    assert stored_bytes(deployment, "cheap", image.id) == data
    admin_tasks = list(sdk_admin.image.image_tasks(image.id))
    assert [t.id for t in admin_tasks] == [task_id, copying.headers["OpenStack-image-import-task-id"]]
    copy_task = admin_tasks[1]
    assert copy_task.input["import_req"] == {"method": {"name": "copy-image"}, "stores": ["cheap"]}
    assert (copy_task.user_id, copy_task.owner) == (identity["admin"]["X-User-Id"], "compat-admin")
    assert copy_task.request_id == copying.headers["x-openstack-request-id"]
    owner_tasks = list(sdk.image.image_tasks(image))
    assert [(t.id, t.user_id, t.request_id) for t in owner_tasks] == [
        (task_id, identity["owner"]["X-User-Id"], request_id),
        (copy_task.id, None, None),
    ]
