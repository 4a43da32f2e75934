"""Retrying the stores a partly failed import or copy did not write (``"stores": "failed"``), after
a store was made to fail for real: exactly those stores are targeted, the data the import left in
the staging area is read when it is still there, and the image ends up in every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from test_runner_support import (
    ADMIN,
    MIB,
    FailingStore,
    WrappedStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    stage,
    staged_files,
    start_import,
    stored_bytes,
    task_of,
    upload,
)

from glimpse.domain.tasks import TaskStatus
from glimpse.errors import StorageError
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore

DATA = payload(3 * MIB)
NEVER = 1 << 62


class UnreadableStore(WrappedStore):
    """A store whose objects cannot be read while ``broken`` is set (its disk went away)."""

    broken = False

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if self.broken:
            raise StorageError(f"store '{self.id}' cannot be read: device gone")
        return await self.inner.open(location, offset, length)


async def run_pass(runner: TaskRunner) -> None:
    """One pass of a long-lived runner (its first pass also sweeps the staging area)."""
    await runner.run_once()
    await asyncio.wait_for(runner.wait_idle(), 20)


def test_retry_of_an_import_reads_the_kept_staged_data(tmp_path: Path, migrated_database_url: str) -> None:
    wrapped: dict[str, FailingStore | UnreadableStore] = {}

    def failing(store: ImageStore) -> ImageStore:
        wrapped["cheap"] = FailingStore(store, after=MIB)
        return wrapped["cheap"]  # type: ignore[return-value]

    def unreadable(store: ImageStore) -> ImageStore:
        wrapped["fast"] = UnreadableStore(store)
        return wrapped["fast"]  # type: ignore[return-value]

    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"cheap": failing, "fast": unreadable})
    runner = TaskRunner(runtime, "runner-1")

    async def scenario() -> tuple[str, str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        body = {
            "method": {"name": "glance-direct"},
            "stores": ["fast", "cheap"],
            "all_stores_must_succeed": False,
        }
        first = await start_import(runtime, image_id, body)
        await run_pass(runner)
        assert task_of(runtime, first).status == TaskStatus.SUCCESS
        image = image_of(runtime, image_id)
        assert image.stores == ["fast"]
        assert image.properties["os_glance_failed_import"] == "cheap"
        assert staged_files(runtime) == [image_id]  # kept for the retry

        # The store is repaired; "fast" cannot be read now, so only the staged data can serve.
        wrapped["cheap"].after = NEVER  # type: ignore[union-attr]
        wrapped["fast"].broken = True  # type: ignore[union-attr]
        retry = {"method": {"name": "glance-direct"}, "stores": "failed"}
        second = await start_import(runtime, image_id, retry)
        await run_pass(runner)
        return image_id, first, second

    image_id, _, second = asyncio.run(scenario())
    task = task_of(runtime, second)
    assert task.status == TaskStatus.SUCCESS, task.message
    assert task.stores == ["cheap"]
    image = image_of(runtime, image_id)
    assert sorted(image.stores) == ["cheap", "fast"]
    assert image.properties["os_glance_failed_import"] == ""
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    assert staged_files(runtime) == []  # used, then removed
    runtime.close()


def test_retry_of_a_copy_reads_a_store(tmp_path: Path, migrated_database_url: str) -> None:
    broken: dict[str, FailingStore] = {}

    def failing(store: ImageStore) -> ImageStore:
        broken["reliable"] = FailingStore(store, after=0)
        return broken["reliable"]  # type: ignore[return-value]

    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"reliable": failing})
    runner = TaskRunner(runtime, "runner-1")

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        body = {
            "method": {"name": "copy-image"},
            "stores": ["cheap", "reliable"],
            "all_stores_must_succeed": False,
        }
        first = await start_import(runtime, image_id, body, ADMIN)
        await run_pass(runner)
        assert task_of(runtime, first).status == TaskStatus.SUCCESS
        image = image_of(runtime, image_id)
        assert sorted(image.stores) == ["cheap", "fast"]
        assert image.properties["os_glance_failed_import"] == "reliable"

        broken["reliable"].after = NEVER
        retry = {"method": {"name": "copy-image"}, "stores": "failed"}
        second = await start_import(runtime, image_id, retry, ADMIN)
        await run_pass(runner)
        return image_id, second

    image_id, second = asyncio.run(scenario())
    task = task_of(runtime, second)
    assert task.status == TaskStatus.SUCCESS, task.message
    assert task.stores == ["reliable"]
    image = image_of(runtime, image_id)
    assert sorted(image.stores) == ["cheap", "fast", "reliable"]
    assert image.properties["os_glance_failed_import"] == ""
    assert stored_bytes(runtime, "reliable", image_id) == DATA
    runtime.close()
