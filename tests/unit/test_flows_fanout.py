"""fan_out: one read, many writes, bounded buffers, and what is left behind when something fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from glimpse.domain.tasks import StoreProgress
from glimpse.errors import StorageError
from glimpse.jobs.fanout import Outcome, StoreWriteFailed, Target, fan_out
from glimpse.ports import StoredObject
from glimpse.storage.memory import InMemoryStore

BLOCK = 64 * 1024


def clock() -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC)


async def no_beat(final: bool) -> None:
    return None


class BrokenStore(InMemoryStore):
    """Fails after taking ``after`` chunks."""

    def __init__(self, id: str, after: int) -> None:
        super().__init__(id)
        self.after = after

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def breaking() -> AsyncIterator[bytes]:
            taken = 0
            async for chunk in chunks:
                taken += 1
                if taken > self.after:
                    raise StorageError(f"store '{self.id}' broke")
                yield chunk

        return await super().write(key, breaking(), max_size)


class SlowStore(InMemoryStore):
    def __init__(self, id: str, delay: float, taken: list[int]) -> None:
        super().__init__(id)
        self.delay = delay
        self.taken = taken

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def slow() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                await asyncio.sleep(self.delay)
                self.taken.append(1)
                yield chunk

        return await super().write(key, slow(), max_size)


def blocks(count: int, read: list[int] | None = None) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(count):
            await asyncio.sleep(0)
            if read is not None:
                read.append(i)
            yield bytes([i % 256]) * BLOCK

    return gen()


def data(count: int) -> bytes:
    return b"".join(bytes([i % 256]) * BLOCK for i in range(count))


def targets(*stores: InMemoryStore) -> list[Target]:
    return [Target(store, "image", StoreProgress()) for store in stores]


def test_every_store_gets_every_byte() -> None:
    stores = [InMemoryStore(name) for name in ("a", "b", "c")]
    outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
    chosen = targets(*stores)
    results = asyncio.run(fan_out(blocks(20), chosen, clock=clock, on_block=no_beat, outcomes=outcomes))
    assert sorted(r.store_id for r in results) == ["a", "b", "c"]
    assert all(r.ok for r in results)
    assert outcomes.qsize() == 3
    for store, target in zip(stores, chosen, strict=True):
        assert asyncio.run(_read(store)) == data(20)
        assert target.progress.state == "done"
        assert target.progress.bytes_done == target.progress.bytes_total == 20 * BLOCK


async def _read(store: InMemoryStore) -> bytes:
    stream = await store.open(store.location_for("image"))
    return b"".join([chunk async for chunk in stream])


def test_a_failing_store_is_dropped_and_the_others_finish() -> None:
    good, bad = InMemoryStore("good"), BrokenStore("bad", after=3)
    chosen = targets(good, bad)
    results = asyncio.run(fan_out(blocks(10), chosen, clock=clock, on_block=no_beat))
    by_store = {r.store_id: r for r in results}
    assert by_store["good"].ok
    assert isinstance(by_store["bad"].error, StorageError)
    assert bad.peek_keys() == []
    assert asyncio.run(_read(good)) == data(10)
    assert chosen[1].progress.state == "failed"
    assert chosen[1].progress.error == "store 'bad' broke"


def test_stop_on_failure_commits_nothing() -> None:
    good, bad = InMemoryStore("good"), BrokenStore("bad", after=2)
    with pytest.raises(StoreWriteFailed) as failure:
        asyncio.run(
            fan_out(blocks(10), targets(good, bad), clock=clock, on_block=no_beat, stop_on_failure=True)
        )
    assert failure.value.outcome.store_id == "bad"
    assert good.peek_keys() == []
    assert bad.peek_keys() == []


def test_when_every_store_failed_the_source_is_not_read_to_the_end() -> None:
    read: list[int] = []
    results = asyncio.run(
        fan_out(
            blocks(100, read),
            targets(BrokenStore("x", 1), BrokenStore("y", 2)),
            clock=clock,
            on_block=no_beat,
        )
    )
    assert not any(r.ok for r in results)
    assert len(read) < 20


def test_a_source_error_leaves_no_object() -> None:
    store = InMemoryStore("a")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * BLOCK
        raise StorageError("the source store could not read the image data")

    with pytest.raises(StorageError):
        asyncio.run(fan_out(broken(), targets(store), clock=clock, on_block=no_beat))
    assert store.peek_keys() == []


def test_a_failing_final_check_leaves_no_object() -> None:
    store = InMemoryStore("a")

    async def final_check(final: bool) -> None:
        if final:
            raise RuntimeError("size mismatch")

    with pytest.raises(RuntimeError):
        asyncio.run(fan_out(blocks(5), targets(store), clock=clock, on_block=final_check))
    assert store.peek_keys() == []


def test_the_slowest_store_sets_the_pace() -> None:
    read: list[int] = []
    taken: list[int] = []
    slow, fast = SlowStore("slow", 0.002, taken), InMemoryStore("fast")
    gaps: list[int] = []

    async def on_block(final: bool) -> None:
        gaps.append(len(read) - len(taken))

    asyncio.run(fan_out(blocks(60, read), targets(slow, fast), clock=clock, on_block=on_block, depth=4))
    # Never more than the lane's queue (4) plus the blocks in hand ahead of the slow store.
    assert max(gaps) <= 6
    assert fast.peek_keys() == ["image"]
    assert slow.peek_keys() == ["image"]
