"""Tasks of type ``import`` (POST /v2/tasks) run by a task runner, on SQLite and PostgreSQL: the
image they created gets the data of ``import_from`` through the web-download flow, or goes back to
``queued`` with a message when the download fails."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_runner_support import (
    ADMIN,
    MIB,
    WebServer,
    image_of,
    make_runtime,
    payload,
    run_all,
    serve,
    task_of,
)

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus, TaskType
from glimpse.services.imports import ImportService

DATA = payload(2 * MIB + 777)


@pytest.fixture
def web() -> Iterator[WebServer]:
    yield from serve({"/cirros.raw": DATA})


def body(uri: str, **input_changes: object) -> dict[str, Any]:
    return {
        "type": "import",
        "input": {
            "import_from": uri,
            "import_from_format": "raw",
            "image_properties": {
                "name": "from-task",
                "disk_format": "raw",
                "container_format": "bare",
                "os_distro": "cirros",
            },
            **input_changes,
        },
    }


def test_an_import_task_fills_the_image_it_created(
    tmp_path: Path, migrated_database_url: str, web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)

    async def scenario() -> str:
        task = await ImportService(runtime).create_import_task(
            ADMIN, body(web.url("/cirros.raw"), backend="cheap")
        )
        runner = await run_all(runtime)
        assert runner.finished == {task.id: "success"}
        return task.id

    task = task_of(runtime, asyncio.run(scenario()))
    assert task.type == TaskType.IMPORT
    assert task.status == TaskStatus.SUCCESS, task.message
    assert task.image_id is not None
    assert task.result == {"image_id": task.image_id}
    assert task.message == "Copied 2 MiB"
    assert task.expires_at is not None
    assert task.input["import_from"] == web.url("/cirros.raw")
    image = image_of(runtime, task.image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.name == "from-task"
    assert image.properties["os_distro"] == "cirros"
    assert image.owner == ADMIN.project_id
    assert image.stores == ["cheap"]
    assert image.size == len(DATA)
    assert image.checksum == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert image.import_task_id is None
    runtime.close()


def test_a_failed_download_fails_the_task_and_leaves_the_image_queued(
    tmp_path: Path, migrated_database_url: str, web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)

    async def scenario() -> str:
        task = await ImportService(runtime).create_import_task(ADMIN, body(web.url("/missing.raw")))
        await run_all(runtime)
        return task.id

    task = task_of(runtime, asyncio.run(scenario()))
    assert task.status == TaskStatus.FAILURE
    assert "404" in task.message
    assert task.image_id is not None
    assert f"Image {task.image_id} is back to 'queued'" in task.message
    image = image_of(runtime, task.image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image.properties["os_glance_failed_import"] == "fast"
    assert image.locations == []
    runtime.close()
