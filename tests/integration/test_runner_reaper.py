"""Housekeeping: the reaper takes back tasks whose runner died, the staging sweep, and the purge."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from test_runner_support import (
    ADMIN,
    MIB,
    OWNER,
    ManualClock,
    SlowStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    upload,
    wait_for,
)

from glimpse.cli.main import main
from glimpse.db.image_repository import SqlImageRepository
from glimpse.db.models import TaskRow
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.images import ImageStatus, Location
from glimpse.domain.tasks import TaskStatus
from glimpse.jobs.housekeeping import MAX_ATTEMPTS, purge_tasks, reap_expired, reap_task, sweep_staging
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService

DATA = payload(3 * MIB)


def claim(runtime: Runtime, task_id: str, worker: str) -> None:
    """A runner claims the task and dies at once (it never heart-beats)."""
    with runtime.uow() as session:
        assert SqlTaskRepository(session).claim(task_id, worker, runtime.clock(), timedelta(seconds=1))


def test_an_untouched_task_goes_back_to_the_queue_a_few_times_then_fails(
    tmp_path: Path, migrated_database_url: str
) -> None:
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_database_url)
    runtime.clock = clock

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        for attempt in range(1, MAX_ATTEMPTS + 1):
            claim(runtime, task_id, f"dead-{attempt}")
            assert await reap_expired(runtime) == []  # the lease has not expired yet
            clock.advance(2)
            expected = "requeued" if attempt < MAX_ATTEMPTS else "failed"
            assert await reap_expired(runtime) == [(task_id, expected)]
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.message.startswith("The worker running this task stopped (lease expired at ")
    assert task.message.endswith("its partial data was removed; start the import again.")
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == "fast"
    assert staged_files(runtime) == []
    runtime.close()


@pytest.mark.parametrize("progressed", [False, True])
def test_a_lease_renewed_after_the_reaper_looked_is_kept(
    tmp_path: Path, migrated_database_url: str, progressed: bool
) -> None:
    """The reaper's requeue and fail carry "lease still expired" in their UPDATE (no row lock taken
    by a read): a runner that heart-beats between the reaper's read and its write keeps its task."""
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_database_url)
    runtime.clock = clock

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        claim(runtime, task_id, "slow")
        clock.advance(2)
        expired = await runtime.run(lambda repos: repos.tasks.expired_leases(clock(), 10), readonly=True)
        assert [t.id for t in expired] == [task_id]
        seen = expired[0]
        if progressed:  # past phase "pending": the reaper would fail it rather than requeue it
            seen = replace(seen, progress=replace(seen.progress, phase="stores"))
        with runtime.uow() as session:  # the runner wakes up and renews its lease
            SqlTaskRepository(session).heartbeat(
                task_id, "slow", clock(), timedelta(seconds=30), seen.progress, "still here"
            )
        return task_id, await reap_task(runtime, seen)

    task_id, outcome = asyncio.run(scenario())
    assert outcome == "skipped"
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.PROCESSING
    assert task.claimed_by == "slow"
    assert task.message == "still here"
    runtime.close()


def test_a_requeued_task_runs_to_success(tmp_path: Path, migrated_sqlite_url: str) -> None:
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_sqlite_url)
    runtime.clock = clock

    async def scenario() -> str:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        claim(runtime, task_id, "dead")
        clock.advance(2)
        runner = await run_all(runtime, "live")  # its pass reaps first, then claims the task again
        assert runner.finished == {task_id: "success"}
        return image_id

    image_id = asyncio.run(scenario())
    assert image_of(runtime, image_id).status == ImageStatus.ACTIVE
    runtime.close()


def test_reaper_reverts_a_glance_direct_whose_runner_died_mid_copy(
    tmp_path: Path, migrated_database_url: str
) -> None:
    slow: dict[str, SlowStore] = {}

    def throttle(store):  # type: ignore[no-untyped-def]
        slow["cheap"] = SlowStore(store, delay=0.2)
        return slow["cheap"]

    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_database_url, wrap={"cheap": throttle})
    runtime.clock = clock

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "all_stores": True}
        )
        dying = TaskRunner(runtime, "dying")
        await dying.run_once()
        await asyncio.wait_for(slow["cheap"].started.wait(), 10)
        await wait_for(lambda: len(image_of(runtime, image_id).locations) == 2, what="fast and reliable")
        for task in asyncio.all_tasks():  # the runner "dies": no revert, no last heartbeat
            if task.get_name() == f"task-{task_id}":
                task.cancel()
        await dying.wait_idle()
        # What a crash between writing an object and recording it leaves behind:
        await runtime.stores.get("cheap").write(image_id, _one(b"debris"))
        clock.advance(5)
        assert await reap_expired(runtime) == [(task_id, "failed")]
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "lease expired" in task.message
    assert task.progress.phase == "failed"
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.size is None
    assert image.locations == []
    assert image.import_task_id is None
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == "cheap,fast,reliable"
    for store in ("fast", "cheap", "reliable"):
        assert store_files(runtime, store) == [], store
    assert staged_files(runtime) == []
    runtime.close()


async def _one(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def test_reaper_keeps_finished_copies_when_failure_is_allowed(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_sqlite_url)
    runtime.clock = clock

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        body = {"method": {"name": "copy-image"}, "all_stores": True, "all_stores_must_succeed": False}
        task_id = await start_import(runtime, image_id, body, ADMIN)
        # A runner finished "cheap" (object and location row), then died while writing "reliable".
        claim(runtime, task_id, "dead")
        stored = await runtime.stores.get("cheap").write(image_id, _one(DATA))
        await runtime.stores.get("reliable").write(image_id, _one(b"half"))
        with runtime.uow() as session:
            SqlImageRepository(session).add_location(
                image_id, Location("cheap", stored.location, {"store": "cheap"})
            )
            session.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id)
                .values(progress='{"phase": "stores", "stores": {}}')
            )
        clock.advance(5)
        assert await reap_expired(runtime) == [(task_id, "failed")]
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert task_of(runtime, task_id).status == TaskStatus.FAILURE
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert sorted(image.stores) == ["cheap", "fast"]
    assert image.properties["os_glance_failed_import"] == "reliable"
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.import_task_id is None
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    assert store_files(runtime, "reliable") == []
    runtime.close()


def test_staging_sweep_removes_only_data_no_image_can_use(tmp_path: Path, migrated_sqlite_url: str) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url)

    async def scenario() -> dict[str, str]:
        queued = create_image(runtime)
        staged = create_image(runtime)
        await stage(runtime, staged, b"kept")
        active = create_image(runtime)
        await upload(runtime, active, b"active")
        deleted = create_image(runtime)
        staging = runtime.stores.staging
        for image_id in (queued, active, deleted, "0b7c3c1e-2f4e-4d55-9a3a-7d8f0e6c1a2b"):
            await staging.write(image_id, _one(b"left over"))
        await ImageDataService(runtime).delete_image(OWNER, deleted)
        await staging.write(deleted, _one(b"left over"))
        (Path(staging.datadir) / ".x.1234.partial").write_bytes(b"partial")  # type: ignore[attr-defined]
        (Path(staging.datadir) / "not-an-image").write_bytes(b"other")  # type: ignore[attr-defined]
        removed = await sweep_staging(runtime)
        return {
            "removed": ",".join(sorted(removed)),
            "queued": queued,
            "staged": staged,
            "active": active,
            "deleted": deleted,
        }

    ids = asyncio.run(scenario())
    # A queued image has no staged data (every way back to queued removes it, except on another
    # node than the one holding it): what a queued image left behind is removed too.
    assert ids["removed"] == ",".join(
        sorted([ids["queued"], ids["active"], ids["deleted"], "0b7c3c1e-2f4e-4d55-9a3a-7d8f0e6c1a2b"])
    )
    assert sorted(staged_files(runtime)) == sorted([".x.1234.partial", "not-an-image", ids["staged"]])
    runtime.close()


def test_purge_deletes_only_tasks_expired_long_enough_ago(
    tmp_path: Path, migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_database_url)
    runtime.clock = clock

    async def scenario() -> list[str]:
        ids = []
        for _ in range(3):
            image_id = create_image(runtime)
            await stage(runtime, image_id, b"data")
            ids.append(await start_import(runtime, image_id, {"method": {"name": "glance-direct"}}))
        await run_all(runtime)
        return ids

    old, recent, running = asyncio.run(scenario())
    ttl = timedelta(hours=runtime.settings.task_time_to_live)
    with runtime.uow() as session:
        now = clock()
        session.execute(update(TaskRow).where(TaskRow.id == old).values(expires_at=now - timedelta(days=10)))
        session.execute(
            update(TaskRow).where(TaskRow.id == recent).values(expires_at=now - timedelta(days=1))
        )
        session.execute(
            update(TaskRow).where(TaskRow.id == running).values(expires_at=None, status="processing")
        )
    assert ttl > timedelta(0)
    assert asyncio.run(purge_tasks(runtime, age_in_days=5)) == 1
    for name in [n for n in os.environ if n.startswith("GLIMPSE_")]:
        monkeypatch.delenv(name)  # what other tests' commands left behind
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLIMPSE_DATABASE__CONNECTION", runtime.settings.database_connection)
    monkeypatch.setenv("GLIMPSE_ENABLED_BACKENDS", "fast:file,cheap:file,reliable:file")
    assert main(["db", "purge"]) == 0
    with runtime.uow(readonly=True) as session:
        repo = SqlTaskRepository(session)
        assert repo.find(old) is None
        assert repo.find(recent) is None
        assert repo.find(running) is not None
    runtime.close()
