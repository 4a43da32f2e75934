"""The three import flows end to end through the real services and a task runner, on SQLite and
PostgreSQL: what the image, its stores, its properties, the lock and the task look like afterwards,
for full success, partial failure (both all_stores_must_succeed modes) and failure."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_runner_support import (
    ADMIN,
    MIB,
    STORES,
    FailingStore,
    WebServer,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    serve,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    upload,
)

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus
from glimpse.jobs.housekeeping import sweep_staging
from glimpse.runtime import Runtime

IMPORTING = "os_glance_importing_to_stores"
FAILED = "os_glance_failed_import"
DATA = payload(3 * MIB + 12345)


@pytest.fixture
def web() -> Iterator[WebServer]:
    yield from serve({"/image.raw": DATA})


def runtime_for(tmp_path: Path, database_url: str, web: WebServer | None = None, **kwargs: object) -> Runtime:
    environ = web.filter_environ if web is not None else {}
    return make_runtime(tmp_path, database_url, environ=environ, **kwargs)  # type: ignore[arg-type]


def assert_clean_success(runtime: Runtime, image_id: str, task_id: str, stores: tuple[str, ...]) -> None:
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    assert task.result == {"image_id": image_id}
    assert task.expires_at is not None
    assert abs(task.expires_at - (task.updated_at + timedelta(hours=48))) < timedelta(seconds=5)
    assert task.message == f"Copied {task.progress.bytes_copied() // MIB} MiB"
    assert task.progress.phase == "done"
    assert set(task.progress.stores) == set(stores)
    for progress in task.progress.stores.values():
        assert progress.state == "done"
        assert progress.bytes_done == progress.bytes_total == len(DATA)
        assert progress.percent == 100.0
        assert progress.started_at is not None
        assert progress.updated_at is not None
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.import_task_id is None
    assert image.properties[IMPORTING] == ""
    assert image.properties[FAILED] == ""
    assert image.size == len(DATA)
    assert image.checksum == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert image.os_hash_algo == "sha512"
    assert image.os_hash_value == hashlib.sha512(DATA).hexdigest()
    for store in stores:
        assert store in image.stores
        assert stored_bytes(runtime, store, image_id) == DATA
    assert staged_files(runtime) == []


def test_glance_direct_to_every_store(tmp_path: Path, migrated_database_url: str) -> None:
    runtime = runtime_for(tmp_path, migrated_database_url)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "all_stores": True}
        )
        runner = await run_all(runtime)
        assert runner.finished == {task_id: "success"}
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_clean_success(runtime, image_id, task_id, STORES)
    assert task_of(runtime, task_id).message == "Copied 3 MiB"  # a 3 MiB image, counted once as in Glance
    assert image_of(runtime, image_id).virtual_size == len(DATA)
    runtime.close()


def test_web_download_to_two_stores(tmp_path: Path, migrated_database_url: str, web: WebServer) -> None:
    runtime = runtime_for(tmp_path, migrated_database_url, web)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        task_id = await start_import(
            runtime,
            image_id,
            {
                "method": {"name": "web-download", "uri": web.url("/image.raw")},
                "stores": ["cheap", "reliable"],
            },
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_clean_success(runtime, image_id, task_id, ("cheap", "reliable"))
    task = task_of(runtime, task_id)
    assert task.progress.staged_bytes == len(DATA)
    assert task.message == "Copied 3 MiB"  # staged once, written twice: still the image's 3 MiB
    assert store_files(runtime, "fast") == []
    runtime.close()


def test_copy_image_reads_once_and_fans_out(tmp_path: Path, migrated_database_url: str) -> None:
    runtime = runtime_for(tmp_path, migrated_database_url)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap", "reliable"]}, ADMIN
        )
        assert image_of(runtime, image_id).status == ImageStatus.ACTIVE
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert_clean_success(runtime, image_id, task_id, ("cheap", "reliable"))
    image = image_of(runtime, image_id)
    assert image.stores[0] == "fast"
    assert sorted(image.stores) == ["cheap", "fast", "reliable"]
    assert task_of(runtime, task_id).owner == ADMIN.project_id
    runtime.close()


def test_partial_failure_allowed_keeps_the_stores_that_worked(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = runtime_for(
        tmp_path, migrated_database_url, wrap={"cheap": lambda s: FailingStore(s, after=MIB)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime,
            image_id,
            {"method": {"name": "glance-direct"}, "all_stores": True, "all_stores_must_succeed": False},
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    assert task.progress.stores["cheap"].state == "failed"
    assert "I/O error" in (task.progress.stores["cheap"].error or "")
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert sorted(image.stores) == ["fast", "reliable"]
    assert image.properties[FAILED] == "cheap"
    assert image.properties[IMPORTING] == ""
    assert image.import_task_id is None
    assert store_files(runtime, "cheap") == []
    assert stored_bytes(runtime, "reliable", image_id) == DATA
    # The staged data stays for a retry of the failed store ("stores": "failed") until the next
    # staging sweep, which removes it: the image is active and holds no lock.
    assert staged_files(runtime) == [image_id]
    assert asyncio.run(sweep_staging(runtime)) == [image_id]
    assert staged_files(runtime) == []
    runtime.close()


def test_partial_failure_not_allowed_reverts_to_a_retryable_image(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = runtime_for(
        tmp_path, migrated_database_url, wrap={"reliable": lambda s: FailingStore(s, after=2 * MIB)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "all_stores": True}
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "store 'reliable' failed" in task.message
    assert "all_stores_must_succeed=false" in task.message
    assert "back to 'queued'" in task.message
    assert "stage the data again" in task.message
    assert task.expires_at is not None
    assert task.progress.phase == "failed"
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED  # Glance would leave it 'importing' for good
    assert image.size is None
    assert image.locations == []
    assert image.import_task_id is None
    assert image.properties[IMPORTING] == ""
    assert image.properties[FAILED] == "cheap,fast,reliable"
    for store in STORES:
        assert store_files(runtime, store) == []
    assert staged_files(runtime) == []

    async def retry() -> str:
        await stage(runtime, image_id, DATA)
        return await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["fast"]}
        )

    asyncio.run(retry())
    runtime.close()


def test_copy_failure_not_allowed_leaves_the_image_unchanged(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = runtime_for(
        tmp_path, migrated_database_url, wrap={"cheap": lambda s: FailingStore(s, after=MIB)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap", "reliable"]}, ADMIN
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "'cheap'" in task.message
    assert "unchanged" in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.stores == ["fast"]
    assert image.properties[FAILED] == "cheap,reliable"
    assert image.properties[IMPORTING] == ""
    assert image.import_task_id is None
    assert store_files(runtime, "cheap") == []
    assert store_files(runtime, "reliable") == []
    assert stored_bytes(runtime, "fast", image_id) == DATA
    runtime.close()


def test_copy_failure_allowed_records_the_failed_store(tmp_path: Path, migrated_sqlite_url: str) -> None:
    runtime = runtime_for(tmp_path, migrated_sqlite_url, wrap={"cheap": lambda s: FailingStore(s, after=0)})

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        body = {"method": {"name": "copy-image"}, "all_stores": True, "all_stores_must_succeed": False}
        task_id = await start_import(runtime, image_id, body, ADMIN)
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    image = image_of(runtime, image_id)
    assert image.stores == ["fast", "reliable"]
    assert image.properties[FAILED] == "cheap"
    assert image.properties[IMPORTING] == ""
    assert store_files(runtime, "cheap") == []
    runtime.close()


def test_web_download_failure_returns_the_image_to_queued(
    tmp_path: Path, migrated_database_url: str, web: WebServer
) -> None:
    runtime = runtime_for(tmp_path, migrated_database_url, web)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        body = {
            "method": {"name": "web-download", "uri": web.url("/missing.raw")},
            "stores": ["fast", "cheap"],
        }
        task_id = await start_import(runtime, image_id, body)
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "404" in task.message
    assert "import it again" in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image.properties[IMPORTING] == ""
    assert image.properties[FAILED] == "cheap,fast"
    assert staged_files(runtime) == []
    runtime.close()


def test_glance_direct_without_staged_data_fails_clearly(tmp_path: Path, migrated_sqlite_url: str) -> None:
    runtime = runtime_for(tmp_path, migrated_sqlite_url)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        for name in staged_files(runtime):
            (Path(runtime.stores.staging.datadir) / name).unlink()  # type: ignore[attr-defined]
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "staging area holds no data" in task.message
    assert image_of(runtime, image_id).status == ImageStatus.QUEUED
    runtime.close()


def test_copy_refuses_a_source_that_does_not_match_the_checksum(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    runtime = runtime_for(tmp_path, migrated_sqlite_url)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        damaged = bytearray(DATA)
        damaged[MIB] ^= 0xFF
        (Path(runtime.stores.get("fast").datadir) / image_id).write_bytes(damaged)  # type: ignore[attr-defined]
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap"]}, ADMIN
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "does not match the image's checksum" in task.message
    assert image_of(runtime, image_id).stores == ["fast"]
    assert store_files(runtime, "cheap") == []
    runtime.close()
