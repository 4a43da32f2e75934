"""The SDK against plain Glance on the wire: responses captured from a real Glance 33.0.0.

A loopback server (``glancereplay.GlanceReplay``) answers with the captured status lines, headers and
bodies in ``tests/data/glance_samples``, so these tests check how the SDK reads what Glance really
sends: no task id in the 202 of an import, no ``/v2/images/{id}/tasks/{task_id}``, watch parameters
ignored, HTML error pages. The SDK tests run with ``Client`` and with ``AsyncClient`` (the ``connect``
fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from bothclients import Connect
from glancereplay import GlanceReplay

from glimpse_client import BadRequest, ClientConfig, NotFound, Task, TaskTimeout
from livesupport import run_cli

COPIED = "f0c01d79-dd47-4241-983d-c0dd50b65dee"  # the 1 GiB image copied to four stores
DIRECT = "93f8ea46-7757-4c35-8614-e39fb9fc1ef9"  # imported with glance-direct
WEB = "6ae20818-9512-4d06-8eef-6a2ad3f484b3"  # imported with web-download
COPY_TASK = "15e49e30-d237-425d-b64a-61feba77bfa9"
DIRECT_TASK = "40ed4a06-da22-4b11-b2a7-c500a6fe1b5d"
DURING_COPY = [f"tasks_during_copy_{n}" for n in ("01", "02", "10", "20", "30", "41")]


def config(glance: GlanceReplay) -> ClientConfig:
    return ClientConfig(glance.url, poll_interval=0.01)


@pytest.fixture
def glance() -> Iterator[GlanceReplay]:
    routes = {
        "GET /v2/images": ["images_list_20"],
        "POST /v2/images": ["image_create"],
        f"GET /v2/images/{COPIED}": ["image_after_upload"],
        f"GET /v2/images/{DIRECT}": ["gd_image_after"],
        "GET /v2/info/stores": ["info_stores"],
        "GET /v2/info/import": ["info_import"],
        f"PUT /v2/images/{DIRECT}/stage": ["gd_stage"],
        f"POST /v2/images/{DIRECT}/import": ["gd_import"],
        f"GET /v2/images/{DIRECT}/tasks": ["gd_tasks"],
        f"POST /v2/images/{WEB}/import": ["wd_import_rejected"],
        f"POST /v2/images/{COPIED}/import": ["import_copy"],
        f"GET /v2/images/{COPIED}/tasks": [*DURING_COPY, "tasks_after_copy"],
    }
    with GlanceReplay(routes) as replay:
        yield replay


def paths(glance: GlanceReplay) -> list[str]:
    return [f"{seen.method} {seen.path}" for seen in glance.seen]


def test_images_and_discovery(glance: GlanceReplay, connect: Connect) -> None:
    sdk = connect(config(glance))
    created = sdk.create_image(name="sample-1g", disk_format="raw", container_format="bare")
    assert created.status == "queued"
    image = sdk.get_image(COPIED)
    listed = list(sdk.list_images(limit=20))
    stores = sdk.stores()
    methods = sdk.import_info()["import-methods"]["value"]
    assert image.status == "active"
    assert image.size == 1073741824
    assert image.stores == ["fast"]
    assert image.os_hash_algo == "sha512"
    assert [i.id for i in listed] == [WEB, DIRECT, COPIED]
    assert [s["id"] for s in stores] == ["fast", "cheap", "slow", "reliable", "common"]
    assert methods == ["glance-direct", "web-download", "copy-image"]


def test_html_errors_become_messages(glance: GlanceReplay, connect: Connect) -> None:
    sdk = connect(config(glance))
    with pytest.raises(NotFound) as missing:
        sdk.get_image("00000000-0000-0000-0000-000000000000")
    with pytest.raises(BadRequest) as refused:
        sdk.import_image(WEB, "web-download", uri="http://127.0.0.1:22/x")
    # The replay answers unknown paths with Glance's generic 404 page.
    assert missing.value.message == "The resource could not be found."
    assert missing.value.request_id == "req-1306df22-cc74-4891-811e-764a149b0b05"
    assert refused.value.message == "URI for web-download does not pass filtering: http://127.0.0.1:22/x"
    assert refused.value.request_id == "req-1ad49dd8-7e6c-4671-bef5-30d8bad4b7e4"


def test_glance_direct_task_is_found_by_request_id(glance: GlanceReplay, connect: Connect) -> None:
    sdk = connect(config(glance))
    sdk.stage(DIRECT, b"\0" * 1024)
    handle = sdk.import_image(DIRECT, "glance-direct", stores=["fast", "common"])
    assert handle is not None
    assert handle.task_id == DIRECT_TASK
    assert handle.location is None
    task = handle.wait(timeout=5)
    again = sdk.get_task(DIRECT, DIRECT_TASK)
    assert task.status == "success"
    assert task.message == "Copied 16 MiB"
    assert task.progress is None
    assert again == task
    # The single-task route is tried once; after its 404 the image's task list is read instead.
    assert paths(glance)[-4:] == [
        f"GET /v2/images/{DIRECT}/tasks",
        f"GET /v2/images/{DIRECT}/tasks/{DIRECT_TASK}",
        f"GET /v2/images/{DIRECT}/tasks",
        f"GET /v2/images/{DIRECT}/tasks",
    ]


def test_copy_is_followed_by_polling(glance: GlanceReplay, connect: Connect) -> None:
    seen: list[Task] = []
    sdk = connect(config(glance))
    handle = sdk.copy_image(COPIED, stores=["cheap", "slow", "reliable", "common"])
    assert handle is not None
    assert handle.task_id == COPY_TASK
    task = handle.wait(timeout=5, on_progress=seen.append)
    assert task.status == "success"
    assert task.message == "Copied 1024 MiB"
    assert [(t.status, t.updated_at) for t in seen] == [
        ("processing", "2026-11-25T14:12:36.217770"),
        ("processing", "2026-11-25T14:12:49.765460"),
        ("processing", "2026-11-25T14:12:58.874314"),
        ("success", "2026-11-25T14:13:18.265151"),
    ]
    # One watching request showed that Glance ignores changes-since/wait; plain reads followed.
    queries = [urlsplit(s.path).query for s in glance.seen if s.path.startswith(f"/v2/images/{COPIED}/tasks")]
    assert sum("changes-since" in q for q in queries) == 1
    assert len(queries) <= len(DURING_COPY) + 3


def test_watch_polls_and_yields_changes_only(glance: GlanceReplay, connect: Connect) -> None:
    listings = list(connect(config(glance)).watch_image_tasks(COPIED, wait=5))
    # during_01, _02 and _10 are identical: Glance's message stays empty while the copy runs.
    assert [[(t.status, t.message) for t in tasks] for tasks in listings] == [
        [("processing", "")],
        [("processing", "Copied 1024 MiB")],
        [("processing", "Copied 1024 MiB")],
        [("success", "Copied 1024 MiB")],
    ]


# --- the `glimpse` command line against the same replayed Glance -------------------------------


def glimpse(glance: GlanceReplay, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env["GLIMPSE_URL"] = glance.url
    return run_cli(*args, env=env)


COPY = ["image", "copy", COPIED, "--stores", "cheap,slow,reliable,common", "--wait", "-f", "json"]


def test_cli_copy_wait_on_glance_shows_its_message_not_made_up_store_states() -> None:
    routes = {
        f"GET /v2/images/{COPIED}": ["image_after_upload", "image_after_copy"],
        f"POST /v2/images/{COPIED}/import": ["import_copy"],
        f"GET /v2/images/{COPIED}/tasks": [
            "tasks_during_copy_01",
            "tasks_during_copy_20",
            "tasks_after_copy",
        ],
    }
    with GlanceReplay(routes) as replay:
        run = glimpse(replay, *COPY)
    assert run.returncode == 0, run.stderr
    # Glance's tasks carry no progress: the lines say what Glance says, and no store is called pending.
    assert f"task {COPY_TASK} success: Copied 1024 MiB" in run.stderr
    assert "pending" not in run.stderr
    assert (
        f"Task {COPY_TASK} succeeded. Image {COPIED} is in: fast, cheap, slow, reliable, common."
        in run.stderr
    )
    assert json.loads(run.stdout)["stores"] == ["fast", "cheap", "slow", "reliable", "common"]


def test_cli_copy_wait_on_glance_without_image_tasks_waits_on_the_image() -> None:
    # A Glance before API 2.12: no /v2/images/{id}/tasks, so no task to follow.
    images = ["image_after_upload", "image_during_copy", "image_during_copy", "image_after_copy"]
    routes = {
        f"GET /v2/images/{COPIED}": images,
        f"POST /v2/images/{COPIED}/import": ["import_copy"],
    }
    with GlanceReplay(routes) as replay:
        run = glimpse(replay, *COPY)
        reads = [s.path for s in replay.seen if s.method == "GET" and s.path == f"/v2/images/{COPIED}"]
    assert run.returncode == 0, run.stderr
    assert "the server names no task for it, so waiting on image" in run.stderr
    assert f"The import ended. Image {COPIED} is in: fast, cheap, slow, reliable, common." in run.stderr
    # The lookup, the check that an import is under way, two reads while waiting; the last is shown.
    assert len(reads) == len(images)


def test_wait_for_import_follows_the_image(connect: Connect) -> None:
    during = ["image_during_copy", "image_during_copy", "image_after_copy"]
    with GlanceReplay({f"GET /v2/images/{COPIED}": during}) as replay:
        sdk = connect(config(replay))
        assert sdk.get_image(COPIED).importing_to == ["cheap", "common", "reliable", "slow"]
        image = sdk.wait_for_import(COPIED, timeout=5)
        reads = len(replay.seen)
    assert (image.is_importing, image.failed_import) == (False, [])
    assert image.stores == ["fast", "cheap", "slow", "reliable", "common"]
    assert reads == len(during)


def test_wait_for_import_runs_out_while_the_image_stays_importing(connect: Connect) -> None:
    with GlanceReplay({f"GET /v2/images/{COPIED}": ["image_during_copy"]}) as replay:
        sdk = connect(config(replay))
        began = time.monotonic()
        with pytest.raises(TaskTimeout):
            sdk.wait_for_import(COPIED, timeout=0.2)
        assert time.monotonic() - began < 5
        assert {s.method for s in replay.seen} == {"GET"}  # it only read
