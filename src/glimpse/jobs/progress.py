"""Heartbeat = progress = lease = cancellation point.

A :class:`Heartbeat` owns the task's :class:`~glimpse.domain.tasks.TaskProgress`. Byte-moving code
updates the progress in memory and calls :meth:`Heartbeat.beat` after every block; a beat writes
(through the ``write`` callable the runner supplies) at most once every ``interval`` seconds of the
injected clock, plus whenever it is forced (the start and the end of a step). The write renews the
task's lease and re-checks that the task and the image lock are still this run's, so a failed write
is how a running task learns it must stop.

:meth:`Heartbeat.guard` runs a byte-moving step in a task of its own next to a ticker that keeps
beating while bytes stall (a silent web server, a slow store), and cancels the step as soon as a
beat fails or the runner asks the task to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from glimpse.domain.tasks import Clock, StoreProgress, TaskProgress, copied_message
from glimpse.jobs.errors import Interrupted

T = TypeVar("T")

#: Writes one heartbeat: the progress snapshot and the message ``"Copied N MiB"``.
ProgressWriter = Callable[[TaskProgress, str], Awaitable[None]]


class Heartbeat:
    def __init__(
        self,
        progress: TaskProgress,
        write: ProgressWriter,
        *,
        clock: Clock,
        interval: float,
    ) -> None:
        self.progress = progress
        self.clock = clock
        self.interval = interval
        self._write = write
        self._period = timedelta(seconds=interval)
        self._last: datetime | None = None
        self._writing = asyncio.Lock()
        self._interrupted = False
        self._phase_started: datetime | None = None
        self._phase_bytes = 0

    # -- what the runner and the flows call -----------------------------------------------------
    def interrupt(self) -> None:
        """Ask the task to stop at its next beat (the runner is shutting down)."""
        self._interrupted = True

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def start_phase(self, phase: str) -> None:
        """Enter ``phase`` (``staging``, ``stores``, ...); the transfer rate is measured per phase."""
        self.progress.phase = phase
        self.progress.percent = None
        self.progress.processed_bytes = 0
        self._phase_started = self.clock()
        self._phase_bytes = self.progress.bytes_moved()
        self.progress.bytes_per_second = None

    def store(self, store_id: str) -> StoreProgress:
        return self.progress.stores.setdefault(store_id, StoreProgress())

    async def beat(self, *, force: bool = False) -> None:
        """Write progress if ``interval`` has passed since the last write (always when ``force``).

        Raises whatever the write raises (``TaskLost``, ``LockLost``, ``ImageDeleted``) and
        :class:`~glimpse.jobs.errors.Interrupted` once :meth:`interrupt` was called.
        """
        if self._interrupted:
            raise Interrupted("the runner is stopping")
        if not force:
            if self._writing.locked():
                return  # a write is under way; this one would say nothing new
            if self._last is not None and self.clock() - self._last < self._period:
                return
        async with self._writing:
            now = self.clock()
            self._measure(now)
            snapshot = TaskProgress.from_dict(self.progress.to_dict())
            await self._write(snapshot, copied_message(snapshot))
            self._last = now

    async def guard(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` while a ticker keeps the heartbeat going; a failed beat cancels ``work``
        and is raised in its place."""
        mover: asyncio.Task[T] = asyncio.ensure_future(work)
        failure: BaseException | None = None

        async def tick() -> None:
            nonlocal failure
            while not mover.done():
                await asyncio.sleep(self.interval)
                try:
                    await self.beat()
                except Exception as exc:
                    failure = exc
                    mover.cancel()
                    return

        ticker = asyncio.create_task(tick())
        try:
            return await mover
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if failure is not None and (current is None or current.cancelling() == 0):
                raise failure from None
            raise
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            if not mover.done():
                mover.cancel()
                await asyncio.gather(mover, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------------
    def _measure(self, now: datetime) -> None:
        if self._phase_started is None:
            return
        seconds = (now - self._phase_started).total_seconds()
        moved = self.progress.bytes_moved() - self._phase_bytes
        if seconds > 0:
            self.progress.bytes_per_second = round(moved / seconds, 1)
