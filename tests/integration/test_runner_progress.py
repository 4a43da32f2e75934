"""Progress writes of a real runner against a real database, with an injected clock: throttled to
one per ``task_progress_interval`` of that clock, forced at the edges of each step, and each one a
``Copied N MiB`` message that never goes backwards."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_runner_support import (
    MIB,
    ManualClock,
    WrappedStore,
    create_image,
    make_runtime,
    payload,
    run_all,
    stage,
    start_import,
    task_of,
)

from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.tasks import TaskProgress, TaskStatus
from glimpse.ports import ImageStore
from glimpse.runtime import Runtime
from glimpse.storage.registry import STAGING_STORE_ID

DATA = payload(8 * MIB)


class TickingStore(WrappedStore):
    """A staging store whose reads move the clock on by ``step`` seconds per chunk."""

    def __init__(self, inner: ImageStore, clock: ManualClock, step: float) -> None:
        super().__init__(inner)
        self.clock = clock
        self.step = step

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        stream = await self.inner.open(location, offset, length)

        async def ticking() -> AsyncIterator[bytes]:
            async for chunk in stream:
                self.clock.advance(self.step)
                yield chunk

        return ticking()


def record_heartbeats(monkeypatch: pytest.MonkeyPatch) -> list[tuple[datetime, str]]:
    writes: list[tuple[datetime, str]] = []
    original = SqlTaskRepository.heartbeat

    def heartbeat(
        self: SqlTaskRepository,
        task_id: str,
        worker: str,
        now: datetime,
        lease: timedelta,
        progress: TaskProgress,
        message: str,
    ) -> None:
        original(self, task_id, worker, now, lease, progress, message)
        writes.append((now, message))

    monkeypatch.setattr(SqlTaskRepository, "heartbeat", heartbeat)
    return writes


def import_once(runtime: Runtime) -> str:
    async def scenario() -> str:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(runtime, image_id, {"method": {"name": "glance-direct"}})
        await run_all(runtime)
        return task_id

    return asyncio.run(scenario())


def runtime_with(
    tmp_path: Path,
    url: str,
    clock: ManualClock,
    step: float,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> Runtime:
    wrap = {STAGING_STORE_ID: lambda store: TickingStore(store, clock, step)}
    runtime = make_runtime(tmp_path, url, wrap=wrap, environ=environ, **settings)
    runtime.clock = clock
    return runtime


def test_a_frozen_clock_means_only_the_forced_writes(
    tmp_path: Path, migrated_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    runtime = runtime_with(tmp_path, migrated_database_url, clock, step=0.0, task_progress_interval=0.1)
    writes = record_heartbeats(monkeypatch)
    task_id = import_once(runtime)
    assert task_of(runtime, task_id).status == TaskStatus.SUCCESS
    # Begin, the start of the copy, and the end of the copy; never one per block. The last beat comes
    # when the source is exhausted and may trail the stores by the blocks still queued to them.
    messages = [message for _, message in writes]
    assert messages[:2] == ["Copied 0 MiB", "Copied 0 MiB"]
    assert len(messages) == 3
    assert task_of(runtime, task_id).message == "Copied 8 MiB"
    runtime.close()


def test_writes_follow_the_clock(
    tmp_path: Path, migrated_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    # The staging store reads 1 MiB chunks (set here: its default is 4 MiB); each read moves the
    # clock by 1 s; progress every 3 s.
    runtime = runtime_with(
        tmp_path,
        migrated_sqlite_url,
        clock,
        step=1.0,
        environ={"GLIMPSE_OS_GLANCE_STAGING_STORE__FILESYSTEM_STORE_CHUNK_SIZE": "1MB"},
        task_progress_interval=3.0,
        task_lease_time=60.0,
    )
    writes = record_heartbeats(monkeypatch)
    task_id = import_once(runtime)
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.message == "Copied 8 MiB"
    times = [when for when, _ in writes]
    messages = [int(message.split()[1]) for _, message in writes]
    assert messages == sorted(messages)
    assert messages[0] == 0
    # The last beat may trail the stores by the blocks still queued to them; the task's final
    # message (checked above) is exact.
    assert 6 <= messages[-1] <= 8
    # Throttled writes (all but the 3 forced ones) are at least 3 s of the clock apart.
    throttled = times[2:-1]
    assert 1 <= len(throttled) <= 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times[1:-1])]
    assert all(gap >= 3.0 for gap in gaps), gaps
    runtime.close()
