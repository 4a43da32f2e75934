"""Cancelling running tasks: the runner stops at its next heartbeat, undoes only its own work,
undoes the import request (status, importing list, lock) and ends the task ``failure`` with a
message naming who cancelled it and when. The cancel is a row in the database, so a runner in
another process (``glimpse-server worker``) sees it as well as one in the same process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_runner_support import (
    ADMIN,
    MIB,
    OWNER,
    SlowStore,
    WebServer,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    serve,
    sibling,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    upload,
    wait_for,
)
from test_runner_worker import start_worker, wait_until_downloading, worker_environ

from glimpse.api.app import create_app
from glimpse.context import RequestContext
from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import Task, TaskStatus
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore
from glimpse.runtime import Runtime
from glimpse.services.images import ImageService
from glimpse.services.tasks import TaskService

DATA = payload(6 * MIB)
CANCELLED_BY_OWNER = "Cancelled by user user-a of project project-a at "


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 96 chunks of 64 KiB, 20 ms apart: about two seconds for the whole image.
    yield from serve({"/big.raw": DATA}, delay=0.02)


async def cancel(runtime: Runtime, image_id: str, task_id: str, ctx: RequestContext = OWNER) -> Task:
    ttl = timedelta(hours=runtime.settings.task_time_to_live)

    def unit(repos):  # type: ignore[no-untyped-def]
        images = ImageService(repos, runtime.settings, runtime.policy)
        return TaskService(repos, images, runtime.clock).cancel_image_task(ctx, image_id, task_id, ttl)

    task: Task = await runtime.run(unit)
    return task


def throttled(
    *stores: str, delay: float = 0.05
) -> tuple[dict[str, SlowStore], dict[str, Callable[[ImageStore], ImageStore]]]:
    """Slow versions of ``stores`` (by id, once the runtime is built) and the ``wrap`` that makes them."""
    slow: dict[str, SlowStore] = {}

    def wrap(store: ImageStore) -> ImageStore:
        slow[store.id] = SlowStore(store, delay=delay)
        return slow[store.id]

    return slow, dict.fromkeys(stores, wrap)


def test_cancel_during_web_download(tmp_path: Path, migrated_database_url: str, slow_web: WebServer) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=slow_web.filter_environ)
    api = sibling(runtime)  # the API process that receives the cancel

    async def scenario() -> tuple[str, str, TaskRunner, float]:
        image_id = create_image(runtime)
        body = {
            "method": {"name": "web-download", "uri": slow_web.url("/big.raw")},
            "stores": ["fast", "cheap"],
        }
        task_id = await start_import(runtime, image_id, body)
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await wait_for(lambda: task_of(runtime, task_id).progress.staged_bytes > 0, what="the download")
        started = time.monotonic()
        answered = await cancel(api, image_id, task_id)
        assert answered.status == TaskStatus.PROCESSING
        assert answered.cancel is not None
        assert answered.cancel.user_id == "user-a"
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner, time.monotonic() - started

    image_id, task_id, runner, took = asyncio.run(scenario())
    assert runner.finished == {task_id: "cancelled"}
    assert took < 2.0, f"the runner took {took:.2f}s to stop"
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.message.startswith(CANCELLED_BY_OWNER), task.message
    assert f"Image {image_id} is back to 'queued' and the data downloaded for it was removed" in task.message
    assert task.progress.staged_bytes < len(DATA)  # it really stopped half-way
    assert task.progress.phase == "failed"
    assert task.expires_at is not None
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image.size is None
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == ""
    assert image_id not in staged_files(runtime)
    for store in ("fast", "cheap"):
        assert store_files(runtime, store) == [], store
    api.close()
    runtime.close()


def test_cancel_during_copy_to_several_stores(tmp_path: Path, migrated_database_url: str) -> None:
    slow, wrap = throttled("cheap", "reliable")
    runtime = make_runtime(tmp_path, migrated_database_url, wrap=wrap)

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        body = {"method": {"name": "copy-image"}, "stores": ["cheap", "reliable"]}
        task_id = await start_import(runtime, image_id, body, ADMIN)
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await asyncio.wait_for(slow["reliable"].started.wait(), 10)
        await cancel(runtime, image_id, task_id, ADMIN)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished == {task_id: "cancelled"}
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.message.startswith("Cancelled by user admin of project project-admin at ")
    assert "is unchanged and the partial copies were removed" in task.message
    for store in ("cheap", "reliable"):
        assert task.progress.stores[store].state == "failed"
        assert (task.progress.stores[store].error or "").startswith("cancelled: Cancelled by user admin")
        assert store_files(runtime, store) == [], store
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.stores == ["fast"]
    assert image.import_task_id is None
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == ""

    # The lock is free: the same copy runs again, to its end.
    for throttle in slow.values():
        throttle.delay = 0
    again = asyncio.run(
        start_import(
            runtime, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap", "reliable"]}, ADMIN
        )
    )
    assert asyncio.run(run_all(runtime)).finished == {again: "success"}
    assert sorted(image_of(runtime, image_id).stores) == ["cheap", "fast", "reliable"]
    runtime.close()


def test_cancelled_glance_direct_keeps_the_staged_data_for_the_next_import(
    tmp_path: Path, migrated_database_url: str
) -> None:
    slow, wrap = throttled("cheap")
    runtime = make_runtime(tmp_path, migrated_database_url, wrap=wrap)

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        body = {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]}
        task_id = await start_import(runtime, image_id, body)
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await cancel(runtime, image_id, task_id)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished == {task_id: "cancelled"}
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "is back to 'uploading' with its staged data kept" in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.UPLOADING
    assert image.size == len(DATA)
    assert image.locations == []
    assert image.import_task_id is None
    assert staged_files(runtime) == [image_id]
    for store in ("fast", "cheap"):
        assert store_files(runtime, store) == [], store

    # Importing again needs no new stage.
    slow["cheap"].delay = 0
    again = asyncio.run(
        start_import(runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]})
    )
    assert asyncio.run(run_all(runtime)).finished == {again: "success"}
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    runtime.close()


def test_cancel_while_the_runner_stops_ends_the_task_instead_of_requeuing_it(
    tmp_path: Path, migrated_database_url: str
) -> None:
    slow, wrap = throttled("cheap")
    runtime = make_runtime(tmp_path, migrated_database_url, wrap=wrap)

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["cheap"]}
        )
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await cancel(runtime, image_id, task_id)
        runner.request_stop()  # whichever the task notices first, the cancel wins
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished == {task_id: "cancelled"}
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.claimed_by == "runner-1"
    assert task.message.startswith(CANCELLED_BY_OWNER)
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.UPLOADING
    assert image.import_task_id is None
    assert staged_files(runtime) == [image_id]
    runtime.close()


@pytest.mark.live
def test_cancel_through_the_api_of_a_task_running_on_a_worker_process(
    tmp_path: Path, migrated_database_url: str, slow_web: WebServer
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_database_url, environ=slow_web.filter_environ, embedded_runner=False
    )
    image_id = create_image(runtime)
    body = {"method": {"name": "web-download", "uri": slow_web.url("/big.raw")}, "stores": ["fast", "cheap"]}
    task_id = asyncio.run(start_import(runtime, image_id, body))
    log = tmp_path / "worker.log"
    worker = start_worker(worker_environ(tmp_path, migrated_database_url, slow_web), log)
    owner = {"X-Project-Id": "project-a", "X-User-Id": "user-a", "X-Roles": "member,reader"}
    try:
        wait_until_downloading(runtime, task_id, worker, log)
        with TestClient(create_app(runtime)) as client:
            response = client.delete(f"/v2/images/{image_id}/tasks/{task_id}", headers=owner)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "processing"
            asyncio.run(
                wait_for(
                    lambda: task_of(runtime, task_id).status == TaskStatus.FAILURE,
                    within=10,
                    what="the worker to end the cancelled task",
                )
            )
            shown = client.get(f"/v2/images/{image_id}/tasks/{task_id}", headers=owner).json()
            assert shown["message"].startswith(CANCELLED_BY_OWNER), shown["message"]
            assert client.delete(f"/v2/images/{image_id}/tasks/{task_id}", headers=owner).status_code == 202
        assert worker.poll() is None, "the worker goes on after a cancel"
        image = image_of(runtime, image_id)
        assert image.status == ImageStatus.QUEUED
        assert image.import_task_id is None
        assert image_id not in staged_files(runtime)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text(errors="replace")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    assert f"task {task_id}: cancelled: Cancelled by user user-a" in log.read_text(errors="replace")
    runtime.close()
