"""Read a stream once and write it to several stores at the same time.

Each target store gets a *lane*: a bounded queue of blocks feeding that store's ``write``. The
producer reads one block from the source and puts it into every live lane before reading the next,
so memory stays at ``depth`` blocks per store and the slowest store sets the pace. A store whose
write fails is dropped (its lane drained so the producer never waits on it) and reported; with
``stop_on_failure`` the first failure instead cancels the producer and every other lane, whose
stores then discard their partial objects themselves (the store contract).

Every outcome is also put into ``outcomes`` the moment it is known, so the caller can record a
finished store while the others are still being written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from glimpse.domain.tasks import Clock, StoreProgress, StoreState
from glimpse.errors import GlimpseError
from glimpse.ports import ImageStore, StoredObject

#: Blocks (of one to two MiB) buffered per target store.
DEFAULT_DEPTH: Final = 4


@dataclass(slots=True)
class Target:
    store: ImageStore
    key: str
    progress: StoreProgress
    max_size: int | None = None
    #: Told the size of each block handed to the store (a byte counter of the metrics).
    on_bytes: Callable[[int], object] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    store_id: str
    stored: StoredObject | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.stored is not None


class StoreWriteFailed(Exception):
    """A target store failed while every store had to succeed."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(f"store '{outcome.store_id}' failed: {describe_error(outcome.error)}")


def describe_error(error: BaseException | None) -> str:
    if isinstance(error, GlimpseError):
        return error.message
    if error is None:
        return "unknown error"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _End:
    """The end of the stream, sent down every lane."""


_END: Final = _End()


class _Lane:
    def __init__(self, target: Target, depth: int, clock: Clock) -> None:
        self.target = target
        self.queue: asyncio.Queue[bytes | _End] = asyncio.Queue(maxsize=depth)
        self.clock = clock
        self.dead = False
        self.task: asyncio.Task[None] | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        progress = self.target.progress
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                return
            progress.bytes_done += len(item)
            progress.updated_at = self.clock()
            if self.target.on_bytes is not None:
                self.target.on_bytes(len(item))
            yield item

    def drop(self) -> None:
        """Stop feeding this lane; free the producer if it waits on the lane's full queue."""
        self.dead = True
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return


async def fan_out(
    source: AsyncIterator[bytes],
    targets: Sequence[Target],
    *,
    clock: Clock,
    on_block: Callable[[bool], Awaitable[None]],
    outcomes: asyncio.Queue[Outcome] | None = None,
    stop_on_failure: bool = False,
    depth: int = DEFAULT_DEPTH,
    verify: Callable[[ImageStore, StoredObject], Awaitable[None]] | None = None,
) -> list[Outcome]:
    """Write every block of ``source`` to every target; one outcome per target, in finishing order.

    ``on_block(False)`` runs after each block has been handed to every lane, and ``on_block(True)``
    once the source is exhausted but before any store completes its write: raising there (a lost
    heartbeat, a size that does not match) stops the copy before a single object is committed.
    Errors of the source or of ``on_block`` propagate after every lane has been cancelled; with
    ``stop_on_failure`` a store's failure raises :class:`StoreWriteFailed`. ``verify(store, stored)``
    runs after each store's write and, by raising, fails that store as a failed write would.
    """
    lanes = [_Lane(target, depth, clock) for target in targets]
    results: list[Outcome] = []
    first_failure: list[Outcome] = []
    producer: asyncio.Task[None] | None = None

    def abort(failed: _Lane) -> None:
        if producer is not None:
            producer.cancel()
        for lane in lanes:
            if lane is not failed and lane.task is not None:
                lane.task.cancel()

    async def run_lane(lane: _Lane) -> None:
        target = lane.target
        target.progress.state = StoreState.COPYING
        target.progress.started_at = target.progress.updated_at = clock()
        stored: StoredObject | None = None
        try:
            stored = await target.store.write(target.key, lane.chunks(), max_size=target.max_size)
            if verify is not None:
                await verify(target.store, stored)
        except asyncio.CancelledError:
            lane.drop()
            if stored is not None:  # written but not verified: nobody will record it
                with contextlib.suppress(Exception):
                    await target.store.delete(stored.location)
            raise
        except Exception as exc:
            lane.drop()
            target.progress.state = StoreState.FAILED
            target.progress.error = describe_error(exc)
            target.progress.updated_at = clock()
            outcome = Outcome(target.store.id, error=exc)
            if stop_on_failure and not first_failure:
                first_failure.append(outcome)
                abort(lane)
        else:
            target.progress.state = StoreState.DONE
            target.progress.bytes_total = stored.size
            target.progress.updated_at = clock()
            outcome = Outcome(target.store.id, stored=stored)
        results.append(outcome)
        if outcomes is not None:
            outcomes.put_nowait(outcome)

    async def produce() -> None:
        try:
            async for block in source:
                live = [lane for lane in lanes if not lane.dead]
                if not live:
                    return  # every store failed: reading on would be wasted work
                for lane in live:
                    if not lane.dead:
                        await lane.queue.put(block)
                await on_block(False)
            await on_block(True)
            for lane in lanes:
                if not lane.dead:
                    await lane.queue.put(_END)
        finally:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    for lane in lanes:
        lane.task = asyncio.create_task(run_lane(lane))
    producer = asyncio.create_task(produce())
    finished = False
    try:
        try:
            await producer
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if first_failure and (current is None or current.cancelling() == 0):
                raise StoreWriteFailed(first_failure[0]) from None
            raise
        await asyncio.gather(*(lane.task for lane in lanes if lane.task is not None), return_exceptions=True)
        if first_failure:
            raise StoreWriteFailed(first_failure[0])
        finished = True
        return results
    finally:
        if not finished:
            pending = [lane.task for lane in lanes if lane.task is not None and not lane.task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
