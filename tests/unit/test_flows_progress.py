"""Heartbeat: throttled by the injected clock, forced at step edges, a cancellation point, and the
"Copied N MiB" sequence a copy produces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from glimpse.domain.tasks import TaskProgress
from glimpse.jobs.errors import Interrupted, LockLost
from glimpse.jobs.fanout import Target, fan_out
from glimpse.jobs.progress import Heartbeat
from glimpse.storage.memory import InMemoryStore

MIB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.writes: list[tuple[str, dict[str, object]]] = []
        self.fail_with = fail_with

    async def __call__(self, progress: TaskProgress, message: str) -> None:
        await asyncio.sleep(0)  # a real write hands the loop over while the database works
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append((message, progress.to_dict()))

    @property
    def messages(self) -> list[str]:
        return [message for message, _ in self.writes]


def test_beats_are_throttled_by_the_clock_and_forced_ones_always_write() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=2.0)

    async def scenario() -> None:
        await heartbeat.beat()  # the first beat always writes
        for _ in range(10):
            clock.advance(0.5)
            await heartbeat.beat()
        await heartbeat.beat(force=True)

    asyncio.run(scenario())
    # t=0 (first), t=2.0, t=4.0 (every 2 s of the clock), then the forced one at t=5.0.
    assert len(recorder.writes) == 4


def test_a_frozen_clock_writes_only_the_forced_beats() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=0.1)

    async def scenario() -> None:
        await heartbeat.beat(force=True)
        for _ in range(100):
            await heartbeat.beat()
        await heartbeat.beat(force=True)

    asyncio.run(scenario())
    assert len(recorder.writes) == 2


def test_rate_and_phase_are_part_of_every_write() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=1.0)

    async def scenario() -> None:
        heartbeat.start_phase("staging")
        heartbeat.progress.staged_bytes = 4 * MIB
        clock.advance(2)
        await heartbeat.beat()

    asyncio.run(scenario())
    message, written = recorder.writes[-1]
    assert message == "Copied 4 MiB"
    assert written["phase"] == "staging"
    assert written["bytes_per_second"] == 2 * MIB


def test_interrupt_makes_the_next_beat_raise() -> None:
    heartbeat = Heartbeat(TaskProgress(), Recorder(), clock=Clock(), interval=1.0)
    heartbeat.interrupt()
    with pytest.raises(Interrupted):
        asyncio.run(heartbeat.beat())


def test_guard_cancels_the_work_when_a_beat_fails() -> None:
    lost = LockLost("image", "other-task")
    recorder = Recorder(fail_with=lost)
    clock = Clock()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=0.01)
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(60)  # a source that went silent
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        await heartbeat.guard(stuck())

    with pytest.raises(LockLost):
        asyncio.run(scenario())
    assert cancelled.is_set()


def test_guard_returns_the_result_of_the_work() -> None:
    heartbeat = Heartbeat(TaskProgress(), Recorder(), clock=Clock(), interval=0.01)

    async def work() -> int:
        await asyncio.sleep(0.05)
        return 42

    assert asyncio.run(heartbeat.guard(work())) == 42


def test_copied_mib_sequence_of_a_copy() -> None:
    """A 6 MiB copy to one store, the clock moving 1 s per block read, progress every 2.5 s."""
    clock, recorder = Clock(), Recorder()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=2.5)
    store = InMemoryStore("fast")

    async def source() -> AsyncIterator[bytes]:
        for _ in range(6):
            await asyncio.sleep(0)  # reading hands the loop over, as a file or socket read does
            clock.advance(1)
            yield b"x" * MIB

    async def scenario() -> None:
        progress = heartbeat.store("fast")
        progress.bytes_total = 6 * MIB
        heartbeat.start_phase("stores")
        await heartbeat.beat(force=True)

        async def on_block(final: bool) -> None:
            await heartbeat.beat(force=final)

        await fan_out(source(), [Target(store, "img", progress)], clock=clock, on_block=on_block)

    asyncio.run(scenario())
    # A beat counts the bytes each store has taken; the block just read is still on its way.
    assert recorder.messages == ["Copied 0 MiB", "Copied 2 MiB", "Copied 5 MiB", "Copied 6 MiB"]
    final = recorder.writes[-1][1]
    assert final["bytes_per_second"] == MIB
    assert final["stores"]["fast"]["bytes_done"] == 6 * MIB  # type: ignore[index]
