"""An import's notifications, received from a real RabbitMQ: the API side announces the task and the
prepared image, and a ``glimpse-server worker`` process announces the task's progress, each store's
upload, the activation and the success itself (with its own ``default_publisher_id``, so the test
knows which process sent what)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runner_support import (
    MIB,
    STORES,
    WebServer,
    create_image,
    make_runtime,
    payload,
    run_all,
    serve,
    stage,
    start_import,
)

from glimpse.context import RequestContext
from livesupport import REPO_ROOT, venv_script
from rabbitsupport import Listener, listening
from secretcheck import watch_log

pytestmark = [pytest.mark.live, pytest.mark.rabbitmq]

CALLER = RequestContext(
    user_id="user-a",
    project_id="project-a",
    roles=("member", "reader"),
    request_id="req-4f1c2d3e-aaaa-bbbb-cccc-0123456789ab",
)


@pytest.fixture
def listener(rabbitmq_url: str) -> Iterator[Listener]:
    yield from listening(rabbitmq_url)


def notification_environ(url: str, topic: str, publisher: str) -> dict[str, str]:
    return {
        "GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER": "messagingv2",
        "GLIMPSE_TRANSPORT_URL": url,
        "GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__TOPICS": topic,
        "GLIMPSE_DEFAULT_PUBLISHER_ID": publisher,
    }


def test_an_import_run_by_a_worker_process_is_announced_with_its_caller(
    tmp_path: Path, migrated_sqlite_url: str, rabbitmq_url: str, listener: Listener
) -> None:
    api_env = notification_environ(rabbitmq_url, listener.topic, "image.api-node")
    runtime = make_runtime(tmp_path, migrated_sqlite_url, environ=api_env)
    data = payload(2 * MIB)
    image_id = create_image(runtime, CALLER)
    body = {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]}

    async def begin() -> str:
        await stage(runtime, image_id, data, CALLER)
        return await start_import(runtime, image_id, body, CALLER)

    task_id = asyncio.run(begin())

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")},
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
        "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{s}:file" for s in STORES),
        "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.1",
        **notification_environ(rabbitmq_url, listener.topic, "image.worker-node"),
    }
    log = tmp_path / "worker.log"
    watch_log(log)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(venv_script("glimpse-server")), "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            (success,) = listener.wait_for("task.success", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{log.read_text(errors='replace')}") from None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
        runtime.close()

    def caller_of(event_context: dict[str, object]) -> None:
        assert event_context["request_id"] == CALLER.request_id
        assert event_context["user_id"] == CALLER.user_id
        assert event_context["project_id"] == CALLER.project_id

    (created,) = listener.wait_for("task.create")
    assert created.publisher_id == "image.api-node"
    assert created.payload["id"] == task_id
    assert created.payload["type"] == "api_image_import"
    assert created.payload["status"] == "pending"
    assert "input" not in created.payload
    caller_of(created.context)
    for name in ("image_id", "request_id", "user_id"):
        assert created.payload[name] == {"image_id": image_id, **CALLER.to_dict()}[name]

    (prepared,) = listener.wait_for("image.prepare")
    assert prepared.publisher_id == "image.api-node"
    assert prepared.payload["id"] == image_id
    assert prepared.payload["status"] == "importing"
    assert prepared.payload["os_glance_importing_to_stores"] == ["cheap", "fast"]
    assert prepared.payload["os_glance_failed_import"] == []

    (processing,) = listener.wait_for("task.processing")
    uploads = listener.wait_for("image.upload", count=2)
    (activated,) = listener.wait_for("image.activate")
    for event in (processing, *uploads, activated, success):
        assert event.publisher_id == "image.worker-node", event
        caller_of(event.context)
    assert processing.payload["status"] == "processing"
    # One upload per store as each finishes; the second has nothing left to import.
    assert sorted(len(u.payload["os_glance_importing_to_stores"]) for u in uploads) == [0, 1]
    assert activated.payload["status"] == "active"
    assert activated.payload["size"] == len(data)
    assert activated.payload["os_glance_importing_to_stores"] == []

    assert success.payload["id"] == task_id
    assert success.payload["status"] == "success"
    assert success.payload["image_id"] == image_id
    assert success.payload["request_id"] == CALLER.request_id
    assert success.payload["user_id"] == CALLER.user_id
    assert success.payload["result"] == {"image_id": image_id}
    stores = success.payload["stores"]
    assert set(stores) == {"fast", "cheap"}
    for outcome in stores.values():
        assert outcome["state"] == "done"
        assert outcome["bytes_done"] == len(data)
        assert outcome["error"] is None
    order = [r.event_type for r in listener.received]
    assert order.index("task.processing") < order.index("image.activate") < order.index("task.success")


@pytest.fixture
def web_404() -> Iterator[WebServer]:
    yield from serve({})  # answers 404 to everything


def test_a_failed_import_is_announced_with_its_reason_and_caller(
    tmp_path: Path, migrated_sqlite_url: str, rabbitmq_url: str, listener: Listener, web_404: WebServer
) -> None:
    env = {**notification_environ(rabbitmq_url, listener.topic, "image.api-node"), **web_404.filter_environ}
    runtime = make_runtime(tmp_path, migrated_sqlite_url, environ=env)
    image_id = create_image(runtime, CALLER)
    body = {"method": {"name": "web-download", "uri": web_404.url("/missing.raw")}, "stores": ["fast"]}

    async def scenario() -> str:
        task_id = await start_import(runtime, image_id, body, CALLER)
        await run_all(runtime)
        return task_id

    try:
        task_id = asyncio.run(scenario())
        (failure,) = listener.wait_for("task.failure")
    finally:
        runtime.close()
    assert failure.payload["id"] == task_id
    assert failure.payload["status"] == "failure"
    assert "404" in failure.payload["message"]
    assert failure.payload["image_id"] == image_id
    assert failure.payload["request_id"] == CALLER.request_id
    assert failure.payload["user_id"] == CALLER.user_id
    assert failure.context["request_id"] == CALLER.request_id
    assert listener.of_type("task.success") == []
    assert listener.of_type("image.activate") == []
