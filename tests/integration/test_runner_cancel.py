"""A running task that must stop: its lock busted by a newer import, its image deleted, its runner
stopping. Each time only the task's own work is undone, and nobody else's state is touched."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from test_runner_support import (
    ADMIN,
    MIB,
    OWNER,
    SlowStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
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

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import EXPIRED_LOCK_MESSAGE, TaskStatus
from glimpse.errors import Conflict, NotFound
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService

DATA = payload(6 * MIB)


async def bust_when_silent(later: Runtime, image_id: str) -> str:
    """Start a copy that takes the stale lock over. The bust is refused (409) when the holder wrote
    a sign of life between the buster's read and its update, as a holder that is alive must keep its
    lock; the copy writes progress every block, so try again as a client would."""
    for _ in range(50):
        try:
            return await start_import(
                later, image_id, {"method": {"name": "copy-image"}, "stores": ["cheap"]}, ADMIN
            )
        except Conflict:
            await asyncio.sleep(0.01)
    raise AssertionError("the stale lock was never taken over")


def test_busted_copy_stops_and_leaves_the_new_holder_alone(
    tmp_path: Path, migrated_database_url: str
) -> None:
    slow: dict[str, SlowStore] = {}

    def throttle(store):  # type: ignore[no-untyped-def]
        slow["reliable"] = SlowStore(store, delay=0.1)
        return slow["reliable"]

    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"reliable": throttle})
    # The API process that busts the lock sees a clock two hours ahead: the old holder looks stale.
    later = sibling(runtime, clock=lambda: runtime.clock() + timedelta(hours=2))

    async def scenario() -> tuple[str, str, str, TaskRunner]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        old = await start_import(
            runtime, image_id, {"method": {"name": "copy-image"}, "stores": ["reliable"]}, ADMIN
        )
        runner = TaskRunner(runtime, "old-runner")
        await runner.run_once()
        await asyncio.wait_for(slow["reliable"].started.wait(), 10)
        new = await bust_when_silent(later, image_id)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, old, new, runner

    image_id, old, new, runner = asyncio.run(scenario())
    assert runner.finished[old] == "lost"
    old_task = task_of(runtime, old)
    assert old_task.status == TaskStatus.FAILURE
    assert old_task.message == EXPIRED_LOCK_MESSAGE  # the buster's message stays
    new_task = task_of(runtime, new)
    assert new_task.status == TaskStatus.PENDING
    assert new_task.claimed_by is None
    image = image_of(runtime, image_id)
    assert image.import_task_id == new
    assert image.properties["os_glance_importing_to_stores"] == "cheap"
    assert image.stores == ["fast"]
    assert image.status == ImageStatus.ACTIVE
    assert store_files(runtime, "reliable") == []  # no object, no temporary file
    later.close()
    runtime.close()


def test_image_deleted_mid_import(tmp_path: Path, migrated_database_url: str) -> None:
    slow: dict[str, SlowStore] = {}

    def throttle(store):  # type: ignore[no-untyped-def]
        slow["cheap"] = SlowStore(store, delay=0.1)
        return slow["cheap"]

    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"cheap": throttle})

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "all_stores": True}
        )
        runner = TaskRunner(runtime, "runner")
        await runner.run_once()
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await ImageDataService(runtime).delete_image(OWNER, image_id)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished[task_id] == "failure"
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "was deleted" in task.message
    assert task.expires_at is not None
    try:
        image_of(runtime, image_id)
        raise AssertionError("the image should be gone")
    except NotFound:
        pass
    for store in ("fast", "cheap", "reliable"):
        assert store_files(runtime, store) == [], store
    assert staged_files(runtime) == []
    runtime.close()


def test_a_stopping_runner_hands_the_task_back_and_another_finishes_it(
    tmp_path: Path, migrated_database_url: str
) -> None:
    slow: dict[str, SlowStore] = {}

    def throttle(store):  # type: ignore[no-untyped-def]
        # 'cheap' holds its last block: 'fast' is recorded while 'cheap' is still being written.
        slow["cheap"] = SlowStore(store, delay=0.05, hold_last=True)
        return slow["cheap"]

    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"cheap": throttle})

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]}
        )
        runner = TaskRunner(runtime, "stopping-runner")
        job = asyncio.create_task(runner.run())
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await wait_for(lambda: "fast" in image_of(runtime, image_id).stores, what="fast recorded")
        runner.request_stop()
        await asyncio.wait_for(job, 10)
        assert runner.finished[task_id] == "requeued"
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.PENDING
    assert task.progress.phase == "pending"
    assert task.message == ""
    assert task.claimed_by is None
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.IMPORTING
    assert image.import_task_id == task_id
    assert image.locations == []
    assert image.properties["os_glance_importing_to_stores"] == "cheap,fast"
    assert image.properties["os_glance_failed_import"] == ""
    assert store_files(runtime, "fast") == []
    assert store_files(runtime, "cheap") == []
    assert staged_files(runtime) == [image_id]  # the user's staged data is kept for the retry

    slow["cheap"].delay = 0
    slow["cheap"].hold_last = False
    runner = asyncio.run(run_all(runtime, "next-runner"))
    assert runner.finished == {task_id: "success"}
    finished = task_of(runtime, task_id)
    assert finished.attempt == 2
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    assert image_of(runtime, image_id).status == ImageStatus.ACTIVE
    runtime.close()
