"""The server-sent event stream of an image's tasks, against a TaskWatcher polling a fake table."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from glimpse.api.v2.task_events import task_events, wants_events
from glimpse.domain.tasks import Task, TaskStatus, TaskType
from glimpse.errors import GlimpseError, NotFound
from glimpse.services.task_watch import TaskWatcher

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
IMAGE = "image-1"


def task(status: TaskStatus, seconds: float = 0) -> Task:
    return Task(
        id="task-1",
        type=TaskType.API_IMAGE_IMPORT,
        status=status,
        owner="p",
        image_id=IMAGE,
        request_id="req-1",
        user_id="u",
        input={},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=seconds),
    )


class Table:
    """What the caller may read, and the latest ``updated_at`` the watcher's poll sees (which may be
    a task the caller cannot see)."""

    def __init__(self, visible: list[Task], latest: datetime) -> None:
        self.visible = visible
        self.latest = latest
        self.reads = 0
        self.error: GlimpseError | None = None

    async def poll(self, image_ids: frozenset[str]) -> dict[str, datetime]:
        return {IMAGE: self.latest}

    async def read(self) -> list[Task]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return list(self.visible)

    async def read_after(self, change: datetime) -> list[Task]:
        assert change == self.latest  # the change the watcher reported
        return await self.read()


def collect(table: Table, hub_interval: float = 0.01, **limits: float) -> list[bytes]:
    async def scenario() -> list[bytes]:
        hub = TaskWatcher(table.poll, interval=hub_interval)
        first = await table.read()
        stream = task_events(IMAGE, first, None, table.read_after, hub, lambda e: 404, **limits)
        chunks = [chunk async for chunk in stream]
        await hub.close()
        return chunks

    return asyncio.run(scenario())


def kinds(chunks: list[bytes]) -> list[str]:
    names = []
    for chunk in chunks:
        text = chunk.decode()
        if text.startswith(":"):
            names.append("keep-alive")
        elif text.startswith("retry:"):
            names.append("retry")
        else:
            names.append(next(line[7:] for line in text.splitlines() if line.startswith("event: ")))
    return names


def test_an_idle_stream_sends_keep_alives_and_closes_after_its_time() -> None:
    table = Table([task(TaskStatus.PROCESSING)], T0)
    started = time.monotonic()
    chunks = collect(table, keepalive=0.05, max_stream=0.3)
    took = time.monotonic() - started
    names = kinds(chunks)
    assert names[:2] == ["retry", "tasks"]
    assert set(names[2:]) == {"keep-alive"}
    assert 3 <= len(names[2:]) <= 7
    assert 0.3 <= took < 2


def test_a_change_the_caller_cannot_see_sends_nothing_and_is_not_polled_again_and_again() -> None:
    # The watcher sees a newer task (another project's), the caller's listing stays the same.
    table = Table([task(TaskStatus.PROCESSING)], T0 + timedelta(seconds=5))
    chunks = collect(table, keepalive=0.1, max_stream=0.5)
    assert kinds(chunks)[:2] == ["retry", "tasks"]
    assert "tasks" not in kinds(chunks)[2:]
    assert table.reads == 2  # the first read, and one after the single wake-up


def test_a_vanished_image_ends_the_stream_with_an_error_event() -> None:
    table = Table([task(TaskStatus.PROCESSING)], T0)

    async def scenario() -> list[bytes]:
        hub = TaskWatcher(table.poll, interval=0.01)
        stream = task_events(IMAGE, await table.read(), None, table.read_after, hub, lambda e: 404)
        chunks = [await anext(stream), await anext(stream)]
        table.error, table.latest = NotFound("Image image-1 not found."), T0 + timedelta(seconds=1)
        chunks += [chunk async for chunk in stream]
        await hub.close()
        return chunks

    chunks = asyncio.run(scenario())
    assert kinds(chunks) == ["retry", "tasks", "error"]
    assert b'"code":404' in chunks[-1]
    assert b"not found" in chunks[-1]


def test_a_closing_watcher_ends_the_stream() -> None:
    table = Table([task(TaskStatus.PROCESSING)], T0)

    async def scenario() -> list[str]:
        hub = TaskWatcher(table.poll, interval=0.01)
        stream = task_events(
            IMAGE, await table.read(), None, table.read_after, hub, lambda e: 404, keepalive=0.05
        )
        chunks = [await anext(stream), await anext(stream)]
        await hub.close()
        chunks += [chunk async for chunk in stream]
        return kinds(chunks)

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=5)) == ["retry", "tasks"]


def test_accept_header() -> None:
    assert wants_events("text/event-stream")
    assert wants_events("application/json;q=0.5, Text/Event-Stream")
    assert not wants_events("application/json")
    assert not wants_events(None)
