"""The ``glimpse`` console script against a live ``glimpse-server serve`` on loopback.

Every command runs as its own process: through pipes (no terminal: plain lines, no escape codes) or
through a pseudo-terminal with pexpect (bars and live tables, rendered with pyte to check the final
screen). One server per module, with four file stores; ``broken``'s directory lies under a regular
file, so every write to it fails whoever runs the tests. Slow imports come from a local HTTP server
that trickles a web-download's bytes until the test lets it finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pyte
import pytest

from livesupport import GLIMPSE_CLI, PortTaken, Server, free_port, run_cli

pytestmark = pytest.mark.live

ROWS, COLS = 40, 160
RUN_TIMEOUT = 60
ANSI = re.compile(r"\x1b\[")
TASK_LINE = re.compile(r"^task [0-9a-f-]{36} (pending|processing|success|failure)\b", re.MULTILINE)
PROJECT = "proj-cli"
SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# --- a web server whose downloads trickle until released -------------------------------------


@dataclass
class Blob:
    data: bytes
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0


class _Trickle(BaseHTTPRequestHandler):
    server: _TrickleServer

    def do_GET(self) -> None:
        blob = self.server.blobs.get(self.path.lstrip("/"))
        if blob is None:
            self.send_error(404)
            return
        blob.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(blob.data)))
        self.end_headers()
        sent = 0
        try:
            # 1 KiB every 50 ms until released, then the rest at once. The last KiB waits for the
            # release: a download never ends on its own, however slowly the test runs.
            while sent < len(blob.data) - 1024 and not blob.release.wait(0.05):
                self.wfile.write(blob.data[sent : sent + 1024])
                self.wfile.flush()
                sent += 1024
            blob.release.wait()
            self.wfile.write(blob.data[sent:])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return


class _TrickleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Trickle)
        self.blobs: dict[str, Blob] = {}

    def add(self, name: str, data: bytes) -> tuple[str, Blob]:
        blob = Blob(data)
        self.blobs[name] = blob
        return f"http://127.0.0.1:{self.server_address[1]}/{name}", blob


@pytest.fixture(scope="module")
def web() -> Iterator[_TrickleServer]:
    httpd = _TrickleServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    for blob in httpd.blobs.values():
        blob.release.set()
    httpd.shutdown()
    httpd.server_close()


# --- the image service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    (root / "not-a-directory").write_text("the broken store's directory would be under this file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(root / "data"),
            "GLIMPSE_LOG_LEVEL": "WARNING",
            "GLIMPSE_ENABLED_BACKENDS": "fast:file,cheap:file,reliable:file,broken:file",
            "GLIMPSE_BROKEN__FILESYSTEM_STORE_DATADIR": str(root / "not-a-directory" / "store"),
            "GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC": "false",
            "GLIMPSE_CHEAP__FILESYSTEM_STORE_FSYNC": "false",
            "GLIMPSE_RELIABLE__FILESYSTEM_STORE_FSYNC": "false",
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
            "GLIMPSE_TASK__TASK_WATCH_INTERVAL": "0.1",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
            "GLIMPSE_TASK__MAX_CONCURRENT_TASKS": "4",
            # pages of two images, so that listing three needs the CLI to follow `next`
            "GLIMPSE_LIMIT_PARAM_DEFAULT": "2",
            "GLIMPSE_API_LIMIT_MAX": "2",
            "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOW_PRIVATE_NETWORKS": "true",
            "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": "",
            "GLIMPSE_IMPORT_FILTERING_OPTS__DISALLOWED_PORTS": "22",
        }
    )
    for attempt in range(3):
        live = Server(name="cli", port=free_port(), log_path=root / f"server-{attempt}.log")
        live.start(env)
        try:
            live.wait_ready()
            break
        except PortTaken:
            continue
    else:
        pytest.fail("glimpse-server serve found its port taken three times", pytrace=False)
    yield live
    live.stop()


def cli_env(
    server: Server, user: str = "alice", project: str = PROJECT, roles: str = "admin,member"
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLIMPSE_", "OS_", "FORCE_COLOR", "NO_COLOR"))
    }
    env.update(
        {
            "GLIMPSE_URL": server.url,
            "GLIMPSE_PROJECT_ID": project,
            "GLIMPSE_USER_ID": user,
            "GLIMPSE_ROLES": roles,
            "HOME": env.get("HOME", "/tmp"),
            "COLUMNS": str(COLS),
        }
    )
    return env


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def explain(self) -> str:
        head = f"glimpse {' '.join(self.args)} -> {self.code}"
        return f"{head}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


def glimpse(
    server: Server, *args: str, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT
) -> Result:
    """Run the console script through pipes (stdout and stderr are not terminals)."""
    proc = run_cli(*args, env=env if env is not None else cli_env(server), timeout=timeout)
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def ok(server: Server, *args: str, **kwargs: Any) -> Result:
    result = glimpse(server, *args, **kwargs)
    assert result.code == 0, result.explain()
    return result


def spawn(server: Server, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    """Run the console script in a pseudo-terminal of ROWS x COLS."""
    environ = env if env is not None else cli_env(server)
    environ["TERM"] = "xterm-256color"
    environ.pop("COLUMNS", None)
    # A command that hangs is made to print every thread's stack (SIGABRT, see finish()).
    environ["PYTHONFAULTHANDLER"] = "1"
    return pexpect.spawn(
        str(GLIMPSE_CLI),
        list(args),
        env=environ,
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        timeout=RUN_TIMEOUT,
        # As at a terminal: Ctrl-C interrupts. A suite started as a background job inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt for it.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(child: pexpect.spawn, captured: str = "") -> tuple[int | None, str]:
    """Read the child's output to its end; its exit status and everything it wrote. A child that
    does not end in time is aborted, and the test fails with where each of its threads was."""
    try:
        child.expect(pexpect.EOF)
    except pexpect.TIMEOUT:
        child.kill(signal.SIGABRT)  # faulthandler writes every thread's stack, then the child dies
        child.expect(pexpect.EOF, timeout=10)
        stacks = child.before or ""
        pytest.fail(f"the command did not end; where its threads were:\n{stacks[-6000:]}")
    output = captured + (child.before or "")
    child.close()
    return child.exitstatus, output


def screen_of(output: str) -> list[str]:
    screen = pyte.Screen(COLS, ROWS * 4)
    pyte.Stream(screen).feed(output)
    return [line.rstrip() for line in screen.display if line.strip()]


def sdk_headers(user: str = "alice") -> dict[str, str]:
    return {"X-Project-Id": PROJECT, "X-User-Id": user, "X-Roles": "admin,member"}


def tasks_of(server: Server, image_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v2/images/{image_id}/tasks", headers=sdk_headers(), timeout=10)
    response.raise_for_status()
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def image_of(server: Server, image_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v2/images/{image_id}", headers=sdk_headers(), timeout=10)
    response.raise_for_status()
    image: dict[str, Any] = response.json()
    return image


def image_of_project(server: Server, image_id: str, project: str) -> dict[str, Any]:
    headers = {"X-Project-Id": project, "X-User-Id": "u", "X-Roles": "member,reader"}
    response = httpx.get(f"{server.url}/v2/images/{image_id}", headers=headers, timeout=10)
    response.raise_for_status()
    image: dict[str, Any] = response.json()
    return image


def settle(server: Server, image_id: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Wait until no task of the image is pending or processing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = tasks_of(server, image_id)
        if tasks and all(t["status"] in ("success", "failure") for t in tasks):
            return tasks
        time.sleep(0.1)
    pytest.fail(f"the tasks of {image_id} did not end within {timeout}s: {tasks_of(server, image_id)}")


def running(server: Server, image_id: str, after: str = "", timeout: float = 20) -> dict[str, Any]:
    """Wait until the image's one task is processing with a heartbeat (``updated_at``) later than
    ``after``, and return it: the server is working on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = tasks_of(server, image_id)
        if len(tasks) == 1 and tasks[0]["status"] == "processing" and tasks[0]["updated_at"] > after:
            return tasks[0]
        time.sleep(0.05)
    tasks = tasks_of(server, image_id)
    pytest.fail(f"no task of {image_id} processing after {after!r} within {timeout}s: {tasks}")


def data_file(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def created_id(result: Result) -> str:
    image: dict[str, Any] = json.loads(result.out)
    return str(image["id"])


# --- the command line itself -------------------------------------------------------------------


def test_help_usage_and_missing_connection(server: Server) -> None:
    helped = ok(server, "--help")
    for command in ("image create", "image tasks", "task show", "stores list", "member set"):
        assert command in helped.out

    missing = glimpse(server, "image", "create")
    assert missing.code == 2, missing.explain()
    assert "NAME" in missing.err

    unknown = glimpse(server, "imagez", "frobnicate")
    assert unknown.code == 2, unknown.explain()

    none = cli_env(server)
    del none["GLIMPSE_URL"]
    nowhere = glimpse(server, "image", "list", env=none)
    assert nowhere.code == 2, nowhere.explain()
    assert nowhere.err.startswith("glimpse: no image service given")
    assert "Traceback" not in nowhere.err

    clashing = glimpse(server, "image", "create", "x", "--file", "/etc/hostname", "--wait")
    assert clashing.code == 2, clashing.explain()
    assert "--wait only apply to an import" in clashing.err

    negative = glimpse(server, "image", "list", "--limit", "-1")
    assert negative.code == 2, negative.explain()
    both = glimpse(server, "image", "set", "x", "--property", "k=v", "--remove-property", "k")
    assert both.code == 2, both.explain()
    assert "'k' is both set and removed" in both.err


def test_openstack_names_for_the_connection(server: Server) -> None:
    def owner(*args: str, env: dict[str, str]) -> str:
        created = ok(server, *args, "image", "create", "named", "-f", "json", env=env)
        return str(json.loads(created.out)["owner"])

    openstack = {k: v for k, v in cli_env(server).items() if not k.startswith("GLIMPSE_")}
    openstack.update({"OS_IMAGE_URL": server.url, "OS_PROJECT_ID": "proj-os", "OS_USER_ID": "os-user"})
    assert owner(env=openstack) == "proj-os"
    # GLIMPSE_* before OS_*, and an option before both.
    both = dict(openstack, GLIMPSE_URL=server.url, GLIMPSE_PROJECT_ID="proj-glimpse")
    assert owner(env=both) == "proj-glimpse"
    given = ["--os-endpoint", server.url, "--os-project-id", "proj-option", "--os-user-id", "u"]
    assert owner(*given, env=dict(both, GLIMPSE_URL="http://127.0.0.1:9")) == "proj-option"


def test_without_the_cli_extra_one_line_and_exit_1() -> None:
    code = (
        "import sys; sys.modules['cliff'] = None; "
        "from glimpse_client.cli.main import main; sys.exit(main(['image', 'list']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "glimpse: the command line needs extra packages: pip install 'glimpse-client[cli]'"
    ]


def test_global_timeout_is_not_the_wait_timeout(server: Server) -> None:
    # `--timeout` before the command is the HTTP timeout; after it, the command's own option.
    result = ok(server, "--timeout", "7", "stores", "list", "-f", "value", "-c", "ID")
    assert result.out.split() == ["fast", "cheap", "reliable", "broken"]
    bad = glimpse(server, "image", "import", "x", "--method", "copy-image", "--timeout", "3")
    assert bad.code == 2, bad.explain()
    assert "--timeout needs --wait" in bad.err


# --- images, output formats, errors -----------------------------------------------------------


def test_image_lifecycle_with_formats(server: Server, tmp_path: Path) -> None:
    source, data = data_file(tmp_path, "disk.raw", 300 * 1024)
    created = ok(
        server,
        "image",
        "create",
        "life",
        "--file",
        str(source),
        "--property",
        "flavour=x",
        "--tag",
        "t1",
        "--min-disk",
        "2",
        "-f",
        "json",
    )
    image = json.loads(created.out)
    assert image["status"] == "active"
    assert image["size"] == len(data)
    assert image["properties"]["flavour"] == "x"
    assert image["tags"] == ["t1"]
    assert image["stores"] == ["fast"]
    assert image["min_disk"] == 2
    assert not ANSI.search(created.err)
    assert "uploading disk.raw: 300.0 KiB in" in created.err

    shown = ok(server, "image", "show", "life", "-f", "value", "-c", "id", "-c", "status")
    assert shown.out.split() == [image["id"], "active"]

    ok(
        server,
        "image",
        "set",
        "life",
        "--name",
        "life2",
        "--property",
        "colour=blue",
        "--remove-property",
        "flavour",
        "--tag",
        "t2",
        "--remove-tag",
        "t1",
        "--protected",
    )
    after = json.loads(ok(server, "image", "show", image["id"], "-f", "json").out)
    assert after["name"] == "life2"
    assert after["properties"]["colour"] == "blue"
    assert "flavour" not in after["properties"]
    assert after["tags"] == ["t2"]
    assert after["protected"] is True

    refused = glimpse(server, "image", "delete", "life2")
    assert refused.code == 1, refused.explain()
    assert re.search(r"^glimpse: .*\(HTTP 403, request req-[0-9a-f-]+\)$", refused.err, re.MULTILINE)
    assert "Traceback" not in refused.err

    target = tmp_path / "out.raw"
    downloaded = ok(server, "image", "download", "life2", "--file", str(target))
    assert target.read_bytes() == data
    assert "sha512 matches the image" in downloaded.err
    target.write_bytes(data[:1000])
    resumed = ok(server, "image", "download", "life2", "--file", str(target))
    assert "resuming" in resumed.err
    assert target.read_bytes() == data
    target.write_bytes(b"x" * 1000)
    damaged = glimpse(server, "image", "download", "life2", "--file", str(target))
    assert damaged.code == 1, damaged.explain()
    assert "does not match the image's sha512" in damaged.err

    ok(server, "image", "deactivate", "life2")
    assert image_of(server, image["id"])["status"] == "deactivated"
    ok(server, "image", "reactivate", "life2")
    assert image_of(server, image["id"])["status"] == "active"

    ok(server, "image", "set", "life2", "--unprotected")
    ok(server, "image", "delete", "life2")
    gone = glimpse(server, "image", "show", image["id"])
    assert gone.code == 1, gone.explain()
    assert gone.err.strip() == f"glimpse: no image with the name or ID '{image['id']}' exists"


def test_upload_into_a_named_store(server: Server, tmp_path: Path) -> None:
    source, data = data_file(tmp_path, "small.raw", 64 * 1024)
    created = json.loads(
        ok(server, "image", "create", "to-cheap", "--file", str(source), "--store", "cheap", "-f", "json").out
    )
    assert (created["status"], created["stores"], created["size"]) == ("active", ["cheap"], len(data))

    queued = created_id(ok(server, "image", "create", "to-reliable", "-f", "json"))
    ok(server, "image", "upload", queued, "--file", str(source), "--store", "reliable")
    assert image_of(server, queued)["stores"] == "reliable"

    unknown = created_id(ok(server, "image", "create", "to-nowhere", "-f", "json"))
    refused = glimpse(server, "image", "upload", unknown, "--file", str(source), "--store", "nowhere")
    assert refused.code == 1, refused.explain()
    assert "nowhere" in refused.err
    assert image_of(server, unknown)["status"] == "queued"

    without_file = glimpse(server, "image", "create", "x", "--store", "cheap")
    assert without_file.code == 2, without_file.explain()
    assert "--store only apply to an import" in without_file.err


def test_identity_options_default_to_member_roles(server: Server) -> None:
    env = cli_env(server, project="proj-roles", roles="")
    del env["GLIMPSE_ROLES"]
    image_id = created_id(ok(server, "image", "create", "roles-default", "-f", "json", env=env))
    assert image_of_project(server, image_id, "proj-roles")["owner"] == "proj-roles"
    # GLIMPSE_ROLES set but empty sends no roles: the server then shows the caller nothing.
    roleless = glimpse(server, "image", "show", image_id, env=cli_env(server, project="proj-roles", roles=""))
    assert roleless.code == 1, roleless.explain()


def test_names_lists_filters_and_paging(server: Server) -> None:
    tag = f"tag-{os.getpid()}"
    ids = [
        created_id(
            ok(
                server,
                "image",
                "create",
                f"paged-{i}",
                "--tag",
                tag,
                "--property",
                f"rank={i % 2}",
                "-f",
                "json",
            )
        )
        for i in range(3)
    ]
    listed = json.loads(ok(server, "image", "list", "--tag", tag, "-f", "json").out)
    assert sorted(row["ID"] for row in listed) == sorted(ids)  # three images, pages of two
    assert set(listed[0]) == {"ID", "Name", "Status"}

    limited = ok(server, "image", "list", "--tag", tag, "--limit", "2", "-f", "value", "-c", "ID")
    assert len(limited.out.split()) == 2

    ranked = ok(server, "image", "list", "--tag", tag, "--property", "rank=1", "-f", "value", "-c", "Name")
    assert ranked.out.split() == ["paged-1"]

    ordered = ok(server, "image", "list", "--tag", tag, "--sort", "name:desc", "-f", "value", "-c", "Name")
    assert ordered.out.split() == ["paged-2", "paged-1", "paged-0"]

    long = json.loads(ok(server, "image", "list", "--tag", tag, "--long", "--limit", "1", "-f", "json").out)
    assert {"Disk Format", "Container Format", "Size", "Project", "Tags", "Stores"} <= set(long[0])
    assert long[0]["Tags"] == [tag]

    ok(server, "image", "create", "twin", "--tag", tag)
    ok(server, "image", "create", "twin", "--tag", tag)
    ambiguous = glimpse(server, "image", "show", "twin")
    assert ambiguous.code == 1, ambiguous.explain()
    assert "more than one image is named 'twin'" in ambiguous.err
    nothing = glimpse(server, "image", "show", "no-such-image")
    assert nothing.code == 1, nothing.explain()
    assert "no image with the name or ID 'no-such-image' exists" in nothing.err


def test_members_and_discovery(server: Server) -> None:
    image_id = created_id(ok(server, "image", "create", "shared-one", "--visibility", "shared", "-f", "json"))
    member = json.loads(ok(server, "member", "create", image_id, "proj-other", "-f", "json").out)
    assert member == {**member, "image_id": image_id, "member_id": "proj-other", "status": "pending"}

    other = cli_env(server, user="olga", project="proj-other", roles="member,reader")
    accepted = ok(server, "member", "set", image_id, "--accept", "-f", "json", env=other)
    assert json.loads(accepted.out)["status"] == "accepted"
    listed = json.loads(ok(server, "member", "list", image_id, "-f", "json").out)
    assert [(m["Member ID"], m["Status"]) for m in listed] == [("proj-other", "accepted")]
    ok(server, "member", "delete", image_id, "proj-other")
    assert json.loads(ok(server, "member", "list", image_id, "-f", "json").out) == []

    stores = json.loads(ok(server, "stores", "list", "-f", "json").out)
    assert [(s["ID"], s["Default"]) for s in stores][:2] == [("fast", True), ("cheap", False)]
    info = json.loads(ok(server, "import", "info", "-f", "json").out)
    assert info == {"import-methods": ["glance-direct", "web-download", "copy-image"]}
    table = ok(server, "import", "info").out
    assert re.search(r"^\| import-methods \| glance-direct, web-download, copy-image \|$", table, re.M), table

    not_a_member = glimpse(server, "member", "delete", image_id, "proj-nobody")
    assert not_a_member.code == 1, not_a_member.explain()
    assert re.fullmatch(r"glimpse: .+ \(HTTP 404, request req-[0-9a-f-]+\)\n", not_a_member.err)


# --- imports: bars, plain lines, exit codes ---------------------------------------------------


def test_bars_on_a_terminal(server: Server, tmp_path: Path) -> None:
    source, _ = data_file(tmp_path, "bars.raw", 6 * 1024 * 1024)
    child = spawn(
        server,
        "image",
        "create",
        "bars",
        "--import",
        "glance-direct",
        "--file",
        str(source),
        "--stores",
        "fast,cheap,reliable",
        "--wait",
        "-c",
        "id",
        "-c",
        "stores",
    )
    code, output = finish(child)
    assert code == 0, output
    assert ANSI.search(output), "no escape codes: the bars were not drawn"
    screen = screen_of(output)
    text = "\n".join(screen)
    staging = next((line for line in screen if line.startswith("staging bars.raw")), None)
    assert staging is not None, text
    assert re.search(r"100% 6\.0/6\.0 MiB [0-9.]+ [KMG]iB/s", staging), staging
    for store in ("fast", "cheap", "reliable"):
        row = next((line for line in screen if line.startswith(f"{store} ")), None)
        assert row is not None, text
        assert re.search(r" 100% 6\.0/6\.0 MiB .* done$", row), row
    assert re.search(r"task [0-9a-f-]{36} \(glance-direct\) success", text), text
    assert re.search(r"^Task [0-9a-f-]{36} succeeded\. Image [0-9a-f-]{36} is in: ", text, re.M), text
    stores = re.search(r"^\| stores +\| (.+?) +\|$", text, re.M)
    assert stores is not None, text
    assert sorted(stores.group(1).split(", ")) == ["cheap", "fast", "reliable"]


def test_plain_lines_and_partial_failure(server: Server, tmp_path: Path) -> None:
    source, _ = data_file(tmp_path, "partial.raw", 2 * 1024 * 1024)
    result = glimpse(
        server,
        "image",
        "create",
        "partial",
        "--import",
        "glance-direct",
        "--file",
        str(source),
        "--stores",
        "fast,broken",
        "--allow-failure",
        "--wait",
        "-f",
        "json",
    )
    assert result.code == 4, result.explain()
    assert not ANSI.search(result.err + result.out)
    assert TASK_LINE.search(result.err), result.err
    assert re.search(
        r"^task [0-9a-f-]{36} success: fast done \(2\.0 MiB\), broken failed: ", result.err, re.M
    )
    assert "succeeded, but some stores failed (broken: " in result.err
    image = json.loads(result.out)
    assert image["stores"] == ["fast"]
    assert image["properties"]["os_glance_failed_import"] == "broken"

    again = glimpse(server, "image", "tasks", image["id"], "-f", "json", "--long")
    tasks = json.loads(again.out)
    assert [(t["Method"], t["Status"], t["User"]) for t in tasks] == [("glance-direct", "success", "alice")]
    assert tasks[0]["Request ID"].startswith("req-")
    assert tasks[0]["Stores"] == "fast done, broken failed"
    # Times as the image shows its own: UTC to the second.
    assert SECOND.fullmatch(image_of(server, image["id"])["created_at"])
    assert SECOND.fullmatch(tasks[0]["Created"]), tasks[0]
    assert SECOND.fullmatch(tasks[0]["Updated"]), tasks[0]
    short = json.loads(ok(server, "image", "tasks", image["id"], "-f", "json").out)
    assert (short[0]["User"], short[0]["Updated"]) == ("alice", tasks[0]["Updated"])
    shown = json.loads(ok(server, "task", "show", image["id"], tasks[0]["ID"], "-f", "json").out)
    assert (shown["user_id"], shown["updated_at"]) == ("alice", tasks[0]["Updated"])


def test_failed_task_exit_3_and_copy_exit_0(server: Server, tmp_path: Path) -> None:
    source, _ = data_file(tmp_path, "fail.raw", 512 * 1024)
    failed = glimpse(
        server, "image", "create", "fails", "--import", "glance-direct", "--file", str(source),
        "--stores", "fast,broken", "--wait", "-f", "value", "-c", "id", "-c", "status",
    )  # fmt: skip
    assert failed.code == 3, failed.explain()
    image_id, status = failed.out.split()
    assert status == "queued"
    assert re.search(r"^Task [0-9a-f-]{36} failed: The import to store 'broken' failed", failed.err, re.M)

    active = created_id(ok(server, "image", "create", "copied", "--file", str(source), "-f", "json"))
    copied = glimpse(server, "image", "copy", "copied", "--stores", "cheap,reliable", "--wait", "-f", "json")
    assert copied.code == 0, copied.explain()
    assert sorted(json.loads(copied.out)["stores"]) == ["cheap", "fast", "reliable"]
    assert "Started copy-image task" in copied.err
    assert tasks_of(server, active)[-1]["status"] == "success"
    assert image_of(server, image_id)["status"] == "queued"


def test_checksum_is_checked_by_the_import(server: Server, tmp_path: Path) -> None:
    source, data = data_file(tmp_path, "digest.raw", 300 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    good = glimpse(
        server, "image", "create", "digest-ok", "--import", "glance-direct", "--file", str(source),
        "--checksum", f"sha256:{digest}", "--wait", "-f", "json",
    )  # fmt: skip
    assert good.code == 0, good.explain()
    image = json.loads(good.out)
    assert image["status"] == "active"
    assert tasks_of(server, image["id"])[-1]["input"]["import_req"]["validation_data"] == {
        "os_hash_algo": "sha256",
        "os_hash_value": digest,
    }
    wrong = "0" * 64
    bad = glimpse(
        server, "image", "create", "digest-bad", "--import", "glance-direct", "--file", str(source),
        "--checksum", f"SHA256:{wrong}", "--wait", "-f", "value", "-c", "status",
    )  # fmt: skip
    assert bad.code == 3, bad.explain()
    assert bad.out.split() == ["queued"]
    assert f"has sha256 {digest}, but validation_data expects {wrong}" in bad.err
    usage = glimpse(server, "image", "create", "digest-usage", "--checksum", "abc")
    assert usage.code == 2, usage.explain()
    assert "--checksum only apply to an import" in usage.err


def test_stage_and_upload_send_the_checksum_as_content_digest(server: Server, tmp_path: Path) -> None:
    source, data = data_file(tmp_path, "digest.raw", 100 * 1024)
    right, wrong = f"sha256:{hashlib.sha256(data).hexdigest()}", f"sha256:{'0' * 64}"
    for command, kept in (("stage", "uploading"), ("upload", "active")):
        image_id = created_id(ok(server, "image", "create", f"{command}-digest", "-f", "json"))
        bad = glimpse(server, "image", command, image_id, "--file", str(source), "--checksum", wrong)
        assert bad.code == 1, bad.explain()
        assert f"has sha256 {hashlib.sha256(data).hexdigest()}, but the request's digest header" in bad.err
        assert image_of(server, image_id)["status"] == "queued"
        ok(server, "image", command, image_id, "--file", str(source), "--checksum", right)
        assert image_of(server, image_id)["status"] == kept
    usage = glimpse(server, "image", "stage", image_id, "--file", str(source), "--checksum", "md5:abc")
    assert usage.code == 2, usage.explain()
    assert "must be sha256:HEX or sha512:HEX" in usage.err


def test_conflict_paragraph_names_the_holder(server: Server, web: _TrickleServer) -> None:
    url, blob = web.add("conflict.raw", os.urandom(256 * 1024))
    started = ok(
        server, "image", "create", "locked", "--uri", url, "--store", "fast", "-f", "value", "-c", "id"
    )
    image_id = started.out.strip()
    assert f"Watch it with: glimpse image tasks {image_id} --watch" in started.err
    try:
        holder = tasks_of(server, image_id)[0]
        assert holder["status"] in ("pending", "processing")

        second = glimpse(
            server,
            "image",
            "import",
            image_id,
            "--method",
            "web-download",
            "--uri",
            url,
            env=cli_env(server, user="bob"),
        )
        assert second.code == 1, second.explain()
        paragraph = second.err.strip()
        assert "\n" not in paragraph, "the 409 must be one paragraph"
        assert paragraph.startswith(f"glimpse: Image {image_id} is busy: task {holder['id']} (")
        assert f"started by user alice in request {holder['request_id']}." in paragraph
        assert re.search(r"(Its last heartbeat was|It was queued) \d+ s ago", paragraph), paragraph
        assert "the lock can be broken from " in paragraph
        assert paragraph.endswith(f"Watch it with: glimpse image tasks {image_id} --watch")
    finally:
        blob.release.set()
    settle(server, image_id)
    assert image_of(server, image_id)["status"] == "active"


def test_timeout_exit_5_leaves_the_task_running_then_watch(server: Server, web: _TrickleServer) -> None:
    url, blob = web.add("timeout.raw", os.urandom(256 * 1024))
    try:
        began = time.monotonic()
        result = glimpse(
            server, "image", "create", "slow", "--uri", url, "--stores", "fast,cheap", "--wait",
            "--timeout", "1.5", "-f", "value", "-c", "id",
        )  # fmt: skip
        took = time.monotonic() - began
        assert result.code == 5, result.explain()
        assert took < 15
        image_id = result.out.strip()
        assert "Stopped waiting after 1.5 s." in result.err
        assert f"Resume watching it with: glimpse image tasks {image_id} --watch" in result.err
        # The task goes on once the command stopped waiting: the server keeps beating for it.
        tasks = [running(server, image_id, after=running(server, image_id)["updated_at"])]
        assert image_of(server, image_id)["status"] == "importing"

        # Resume watching through a pipe: plain lines, then the end once the download is let go.
        watcher = subprocess.Popen(
            [str(GLIMPSE_CLI), "image", "tasks", image_id, "--watch"],
            env=cli_env(server),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        first = watcher.stdout.readline()
        assert first.startswith(f"task {tasks[0]['id']} processing: "), first
    finally:
        blob.release.set()
    rest, errors = watcher.communicate(timeout=RUN_TIMEOUT)
    assert watcher.returncode == 0, first + rest + errors
    assert not ANSI.search(first + rest)
    assert re.search(rf"^task {tasks[0]['id']} success: fast done \(256\.0 KiB\), cheap done", rest, re.M)
    assert image_of(server, image_id)["status"] == "active"

    # Watching once it is over reports the latest task's outcome.
    over = ok(server, "image", "tasks", image_id, "--watch")
    assert over.out.startswith(f"task {tasks[0]['id']} success: ")


def test_ctrl_c_exit_130_then_live_watch(server: Server, web: _TrickleServer) -> None:
    url, blob = web.add("interrupt.raw", os.urandom(256 * 1024))
    try:
        child = spawn(server, "image", "create", "interrupted", "--uri", url, "--store", "reliable", "--wait")
        child.expect(r"Started web-download task ([0-9a-f-]{36}) on image ([0-9a-f-]{36})")
        task_id, image_id = child.match.group(1), child.match.group(2)
        # The download bar's note: shown once the task is processing and fetching (the status line
        # above the bars names the method, "web-download", while the task is still pending).
        child.expect("downloading")
        child.sendintr()
        code, output = finish(child)
        assert code == 130, output
        assert "Traceback" not in output
        flat = " ".join(" ".join(screen_of(output)).split())
        assert f"Task {task_id} goes on on the server" in flat
        assert f"Resume watching it with: glimpse image tasks {image_id} --watch" in flat
        # The task goes on after the command ended: the server keeps beating for it.
        running(server, image_id, after=running(server, image_id)["updated_at"])

        watcher = spawn(server, "image", "tasks", image_id, "--watch")
        watcher.expect("processing")
        captured = watcher.before + watcher.after
    finally:
        blob.release.set()
    code, output = finish(watcher, captured)
    assert code == 0, output
    screen = "\n".join(screen_of(output))
    assert f"Tasks of image {image_id}" in screen
    assert re.search(r"│ success +│ reliable done", screen), screen
    assert "all tasks done" in screen


def test_cancel_import_and_task_cancel(server: Server, web: _TrickleServer) -> None:
    url, blob = web.add("cancel.raw", os.urandom(256 * 1024))
    try:
        started = ok(
            server,
            "image",
            "create",
            "cancelled",
            "--uri",
            url,
            "--stores",
            "fast,cheap",
            "-f",
            "value",
            "-c",
            "id",
        )
        image_id = started.out.strip()
        task = running(server, image_id)
        result = ok(server, "image", "cancel-import", image_id, "--wait", "--timeout", "20", "-f", "json")
        shown = json.loads(result.out)
        assert shown["id"] == task["id"]
        assert shown["status"] == "failure"
        assert shown["message"].startswith(f"Cancelled by user alice of project {PROJECT} at ")
        assert shown["cancel_request"]["user_id"] == "alice"
        image = image_of(server, image_id)
        assert image["status"] == "queued"
        assert image["os_glance_importing_to_stores"] == ""

        # Again, by task id: the same answer. With nothing under way, cancel-import says so.
        again = ok(server, "task", "cancel", image_id, task["id"], "-f", "json")
        assert json.loads(again.out)["message"] == shown["message"]
        nothing = glimpse(server, "image", "cancel-import", image_id)
        assert nothing.code == 1, nothing.explain()
        assert "has no import or copy under way; there is nothing to cancel" in nothing.err
        usage = glimpse(server, "task", "cancel", image_id, task["id"], "--timeout", "3")
        assert usage.code == 2, usage.explain()
    finally:
        blob.release.set()


def test_retry_failed_targets_exactly_the_failed_stores(server: Server, tmp_path: Path) -> None:
    source, _ = data_file(tmp_path, "retry.raw", 512 * 1024)
    partial = glimpse(
        server, "image", "create", "retry", "--import", "glance-direct", "--file", str(source),
        "--stores", "fast,cheap,broken", "--allow-failure", "--wait", "-f", "value", "-c", "id",
    )  # fmt: skip
    assert partial.code == 4, partial.explain()
    image_id = partial.out.strip()
    assert image_of(server, image_id)["os_glance_failed_import"] == "broken"

    # The owner retries its import: a copy to exactly the failed store, which still fails (exit 3).
    retried = glimpse(
        server, "image", "import", image_id, "--method", "glance-direct", "--retry-failed", "--wait",
        env=cli_env(server, roles="member,reader"),
    )  # fmt: skip
    assert retried.code == 3, retried.explain()
    last = tasks_of(server, image_id)[-1]
    assert last["input"]["backend"] == ["broken"]
    assert last["input"]["import_req"]["method"]["name"] == "copy-image"
    image = image_of(server, image_id)
    assert (image["status"], sorted(image["stores"].split(","))) == ("active", ["cheap", "fast"])
    assert image["os_glance_failed_import"] == "broken"

    copied = glimpse(server, "image", "copy", image_id, "--retry-failed", "--allow-failure", "--wait")
    assert copied.code == 3, copied.explain()
    assert tasks_of(server, image_id)[-1]["input"]["backend"] == ["broken"]

    # Nothing failed: the server's 409 says so (exit 1); --retry-failed goes with no other target.
    clean = created_id(ok(server, "image", "create", "clean", "--file", str(source), "-f", "json"))
    nothing = glimpse(server, "image", "copy", clean, "--retry-failed")
    assert nothing.code == 1, nothing.explain()
    assert "has no failed stores to retry" in nothing.err
    both = glimpse(server, "image", "copy", clean, "--retry-failed", "--stores", "cheap")
    assert both.code == 2, both.explain()


def test_image_history_table_json_and_limit(server: Server, tmp_path: Path) -> None:
    source, data = data_file(tmp_path, "hist.raw", 20 * 1024)
    image_id = created_id(ok(server, "image", "create", "hist", "--file", str(source), "-f", "json"))
    ok(server, "image", "deactivate", image_id)
    ok(server, "image", "reactivate", image_id)

    table = ok(server, "image", "history", image_id)
    lines = [line for line in table.out.splitlines() if line.startswith("|")]
    assert "| Action" in lines[0] or " Action " in lines[0]
    actions = [line.split("|")[3].strip() for line in lines[1:]]
    assert actions == ["reactivate", "deactivate", "upload", "create"]
    assert "20.0 KiB" in lines[3]
    assert SECOND.search(lines[1])

    entries = json.loads(ok(server, "image", "history", image_id, "--json").out)
    assert [e["Action"] for e in entries] == actions
    upload = entries[2]
    assert upload["Moved"] == len(data)
    assert upload["Stores"] == ["fast"]
    assert upload["Outcome"] == "success"
    assert upload["User"]

    newest = json.loads(ok(server, "image", "history", image_id, "--limit", "1", "--long", "-f", "json").out)
    assert len(newest) == 1
    assert newest[0]["Status"] == "active"
    assert newest[0]["Request ID"]
    refused = glimpse(server, "image", "history", image_id, "--limit", "0")
    assert refused.code != 0
    assert "--limit must be 1 or more" in refused.err


def test_a_deadline_goes_with_the_import(server: Server, tmp_path: Path) -> None:
    source, _ = data_file(tmp_path, "deadline.raw", 256 * 1024)
    done = glimpse(
        server, "image", "create", "deadline", "--import", "glance-direct", "--file", str(source),
        "--deadline", "600", "--wait", "-f", "value", "-c", "id",
    )  # fmt: skip
    assert done.code == 0, done.explain()
    image_id = done.out.strip()
    assert tasks_of(server, image_id)[-1]["input"]["import_req"]["deadline"] == 600
    copied = glimpse(server, "image", "copy", image_id, "--stores", "cheap", "--deadline", "300", "--wait")
    assert copied.code == 0, copied.explain()
    assert tasks_of(server, image_id)[-1]["input"]["import_req"]["deadline"] == 300
    for wrong in ("0", "1.5", "soon"):
        refused = glimpse(server, "image", "copy", image_id, "--stores", "cheap", "--deadline", wrong)
        assert refused.code == 2, refused.explain()
        assert "is not a whole number of seconds above 0" in refused.err
