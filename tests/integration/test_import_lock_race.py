"""Fifty concurrent imports of one image from several processes: exactly one takes the lock.

Each worker process builds its own Runtime on the same database (an SQLite file or a PostgreSQL
database) and the same data directory, waits until every worker is ready, and then starts its share
of the imports at once through ``ImportService``. The winner's task is the only task row and holds
the lock; every loser gets the 409 that names it. Run as a script, this file is the worker.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.config import Settings, load_settings
from glimpse.context import RequestContext
from glimpse.db.repositories import SqlRepositories
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.errors import GlimpseError, ImageLocked
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService
from glimpse.services.imports import ImportService

PROCESSES = 5
PER_PROCESS = 10
WORKER_TIMEOUT = 120.0
OWNER = RequestContext(user_id="owner", project_id="project-a", roles=("member", "reader"))

BODIES: dict[str, dict[str, Any]] = {
    "copy-image": {"method": {"name": "copy-image"}, "stores": ["cheap", "reliable"]},
    "web-download": {"method": {"name": "web-download", "uri": "https://images.example.com/a.raw"}},
}


def settings_for(data_dir: Path, database_url: str) -> Settings:
    return load_settings(
        environ={
            "GLIMPSE_DATA_DIR": str(data_dir),
            "GLIMPSE_DATABASE__CONNECTION": database_url,
            "GLIMPSE_DATABASE__THREADS": str(PER_PROCESS),
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
        }
    )


def caller(method: str, worker: int, index: int) -> RequestContext:
    """Each request comes from its own user and request; copies need an administrator."""
    user = f"user-{worker}-{index}"
    request_id = f"req-{worker}-{index}"
    if method == "copy-image":
        return RequestContext(
            user_id=user, project_id="project-admin", roles=("admin",), is_admin=True, request_id=request_id
        )
    return RequestContext(
        user_id=user, project_id="project-a", roles=("member", "reader"), request_id=request_id
    )


# -- the worker process ----------------------------------------------------------------------------


async def _import_all(runtime: Runtime, worker: int, image_id: str, method: str) -> list[dict[str, Any]]:
    service = ImportService(runtime)

    async def one(index: int) -> dict[str, Any]:
        try:
            started = await service.start_import(caller(method, worker, index), image_id, BODIES[method])
        except ImageLocked as exc:
            return {"outcome": "locked", "message": exc.message, "lock": exc.lock}
        except GlimpseError as exc:
            return {"outcome": type(exc).__name__, "message": exc.message}
        return {"outcome": "started", "task_id": started.task_id}

    return list(await asyncio.gather(*(one(i) for i in range(PER_PROCESS))))


def worker_main(argv: list[str]) -> None:
    data_dir, database_url, image_id, method, worker = argv
    runtime = Runtime.build(settings_for(Path(data_dir), database_url))
    try:
        print("ready", flush=True)
        sys.stdin.readline()  # the go signal: every worker starts at once
        results = asyncio.run(_import_all(runtime, int(worker), image_id, method))
    finally:
        runtime.close()
    print(json.dumps(results), flush=True)


# -- the test --------------------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path, migrated_database_url: str) -> Iterator[Runtime]:
    rt = Runtime.build(settings_for(tmp_path / "data", migrated_database_url))
    yield rt
    rt.close()


async def _data() -> AsyncIterator[bytes]:
    yield b"image bytes" * 1000


def _image_for(runtime: Runtime, method: str) -> str:
    with runtime.uow() as session:
        image = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).create(
            OWNER, {"name": "raced", "disk_format": "raw", "container_format": "bare"}
        )
    if method == "copy-image":
        asyncio.run(
            ImageDataService(runtime).upload(OWNER, image.id, _data(), content_length=None, store_id="fast")
        )
    return image.id


def _run_workers(runtime: Runtime, database_url: str, image_id: str, method: str) -> list[dict[str, Any]]:
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                str(runtime.settings.data_dir),
                database_url,
                image_id,
                method,
                str(number),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(PROCESSES)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                worker.kill()
                pytest.fail(f"a worker failed to start:\n{worker.communicate()[1]}")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results: list[dict[str, Any]] = []
        for worker in workers:
            out, err = worker.communicate(timeout=WORKER_TIMEOUT)
            assert worker.returncode == 0, err
            results.extend(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.parametrize("method", ["copy-image", "web-download"])
def test_fifty_concurrent_imports_one_winner(
    runtime: Runtime, migrated_database_url: str, method: str
) -> None:
    image_id = _image_for(runtime, method)
    results = _run_workers(runtime, migrated_database_url, image_id, method)

    assert len(results) == PROCESSES * PER_PROCESS
    winners = [r["task_id"] for r in results if r["outcome"] == "started"]
    assert len(winners) == 1, [r for r in results if r["outcome"] != "locked"]
    winner = winners[0]
    losers = [r for r in results if r["outcome"] != "started"]
    assert all(r["outcome"] == "locked" for r in losers), losers
    for loser in losers:
        assert loser["message"].startswith(
            (
                "Image has active task",
                f"New operation on image '{image_id}' is not permitted",
                # web-download: once the winner committed, the image is no longer queued.
                "Image needs to be in 'queued' state to use 'web-download' method",
            )
        ), loser["message"]
        assert winner in loser["message"]
        assert loser["lock"]["task_id"] == winner
        assert loser["lock"]["tasks_url"] == f"/v2/images/{image_id}/tasks"

    with runtime.uow() as session:
        tasks = SqlTaskRepository(session).for_image(image_id, runtime.clock())
        image = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).images.get(image_id)
    assert [t.id for t in tasks] == [winner]
    assert tasks[0].status == "pending"
    assert image.import_task_id == winner
    expected_status = "active" if method == "copy-image" else "importing"
    assert image.status == expected_status
    stores = BODIES[method].get("stores", ["fast"])
    assert image.properties["os_glance_importing_to_stores"] == ",".join(sorted(stores))


if __name__ == "__main__":
    worker_main(sys.argv[1:])
