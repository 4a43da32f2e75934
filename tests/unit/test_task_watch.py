"""TaskWatcher: one poll per interval for any number of waiters, the right ones woken, nothing left."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from glimpse.services.task_watch import SharedReads, TaskWatcher

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeTasks:
    """The latest ``updated_at`` per image, and every poll that asked for it."""

    def __init__(self) -> None:
        self.latest: dict[str, datetime] = {}
        self.polls: list[frozenset[str]] = []

    async def poll(self, image_ids: frozenset[str]) -> dict[str, datetime]:
        self.polls.append(image_ids)
        return {i: self.latest[i] for i in image_ids if i in self.latest}


async def eventually(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait until ``condition()`` holds; a busy machine may run the event loop late, so no fixed sleep."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        await asyncio.sleep(0.01)


def test_a_thousand_waiters_one_query_per_interval() -> None:
    tasks = FakeTasks()
    images = [f"image-{n}" for n in range(4)]
    tasks.latest = dict.fromkeys(images, T0)
    interval = 0.05

    async def scenario() -> None:
        asked: list[tuple[frozenset[str], frozenset[str]]] = []  # (polled for, watched at the time)

        async def poll(image_ids: frozenset[str]) -> dict[str, datetime]:
            # A waiter's task is done exactly when it has unregistered (nothing in between awaits).
            asked.append((image_ids, frozenset(images[n % 4] for n, w in enumerate(waits) if not w.done())))
            return await tasks.poll(image_ids)

        begun = time.monotonic()
        hub = TaskWatcher(poll, interval=interval)
        waits = [
            asyncio.create_task(hub.wait(images[n % 4], T0, 0.6 if n % 4 >= 2 else 5.0)) for n in range(1000)
        ]
        await asyncio.sleep(0)  # one turn of the loop: every waiter has registered, none has timed out
        assert hub.watching == 1000
        await eventually(lambda: bool(tasks.polls), "the first poll")
        tasks.latest[images[0]] = tasks.latest[images[1]] = T0 + timedelta(seconds=1)
        results = await asyncio.gather(*waits)
        for n, seen in enumerate(results):
            assert seen == (T0 + timedelta(seconds=1) if n % 4 < 2 else None)
        # One query per poll, for every image somebody watched, and an interval before each.
        assert all(polled == watched for polled, watched in asked), asked
        assert len(tasks.polls) <= (time.monotonic() - begun) / interval + 1
        assert hub.watching == 0
        await eventually(lambda: not hub.polling, "the poller's stop")
        polls = len(tasks.polls)
        await asyncio.sleep(interval * 3)
        assert len(tasks.polls) == polls  # nobody watches: no queries

    asyncio.run(scenario())


def test_only_changes_after_since_wake() -> None:
    tasks = FakeTasks()
    tasks.latest = {"a": T0}

    async def scenario() -> None:
        hub = TaskWatcher(tasks.poll, interval=0.02)
        assert await hub.wait("a", T0 - timedelta(microseconds=1), 1.0) == T0
        assert await hub.wait("a", T0, 0.1) is None
        assert await hub.wait("missing", T0, 0.1) is None
        assert hub.watching == 0

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_no_registration() -> None:
    tasks = FakeTasks()

    async def scenario() -> None:
        hub = TaskWatcher(tasks.poll, interval=0.02)
        waiter = asyncio.create_task(hub.wait("a", T0, 30.0))
        await asyncio.sleep(0.05)
        assert hub.watching == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert hub.watching == 0
        await asyncio.sleep(0.1)
        assert not hub.polling

    asyncio.run(scenario())


def test_notify_polls_at_once_and_close_ends_waits() -> None:
    tasks = FakeTasks()

    async def scenario() -> None:
        hub = TaskWatcher(tasks.poll, interval=30.0)
        waiter = asyncio.create_task(hub.wait("a", T0, 30.0))
        await asyncio.sleep(0.01)
        tasks.latest["a"] = T0 + timedelta(seconds=1)
        hub.notify("a")
        assert await asyncio.wait_for(waiter, 2.0) == T0 + timedelta(seconds=1)
        assert len(tasks.polls) == 1
        other = asyncio.create_task(hub.wait("b", T0, 30.0))
        await asyncio.sleep(0.01)
        await hub.close()
        assert await asyncio.wait_for(other, 2.0) is None
        assert hub.watching == 0

    asyncio.run(scenario())


def test_failed_poll_is_retried() -> None:
    calls = 0

    async def flaky(image_ids: frozenset[str]) -> dict[str, datetime]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database away")
        return dict.fromkeys(image_ids, T0 + timedelta(seconds=1))

    async def scenario() -> None:
        hub = TaskWatcher(flaky, interval=0.02)
        assert await hub.wait("a", T0, 2.0) == T0 + timedelta(seconds=1)
        assert calls == 2

    asyncio.run(scenario())


def test_shared_reads_are_made_once_per_key_while_running() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def read(key: str) -> str:
        calls.append(key)
        await release.wait()
        return f"result of {key}"

    async def scenario() -> None:
        shared = SharedReads()
        waiting = [asyncio.ensure_future(shared.read(k, lambda k=k: read(k))) for k in ["a"] * 50 + ["b"] * 2]
        await asyncio.sleep(0.01)
        assert (calls, shared.running) == (["a", "b"], 2)
        waiting[0].cancel()  # one caller goes away; the read goes on for the others
        release.set()
        results = await asyncio.gather(*waiting[1:])
        assert results == ["result of a"] * 49 + ["result of b"] * 2
        assert shared.running == 0
        assert await shared.read("a", lambda: read("a")) == "result of a"  # ended: a new read
        assert calls == ["a", "b", "a"]

    asyncio.run(scenario())


def test_a_shared_read_that_fails_fails_for_every_caller() -> None:
    async def failing() -> str:
        await asyncio.sleep(0.01)
        raise LookupError("gone")

    async def scenario() -> None:
        shared = SharedReads()
        outcomes = await asyncio.gather(
            *(shared.read("k", failing) for _ in range(3)), return_exceptions=True
        )
        assert [type(o) for o in outcomes] == [LookupError] * 3
        with pytest.raises(LookupError):
            await shared.read("k", failing)

    asyncio.run(scenario())
