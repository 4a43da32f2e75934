"""TaskWatcher: one process-wide poller that wakes the requests waiting for an image's tasks to change.

A watching request (``GET /v2/images/{id}/tasks?changes-since=...&wait=...``) registers the image and
its ``since`` timestamp and awaits a future: it holds no database connection and no thread while it
waits. One background task polls the database every ``interval`` seconds with a single query for all
the watched images (the latest ``updated_at`` of each) and resolves the futures of the watchers whose
image changed after their ``since``. The poller runs only while somebody watches; it stops when the
last registration goes and starts again with the next one.

Changes are found by comparing timestamps, not by remembering what the last poll saw, so a change
that lands between a request's own first read and its registration is still found by the next poll.
:meth:`TaskWatcher.notify` asks for a poll at once (this process just changed a task of the image).

The requests one change wakes then read the tasks again, all at the same moment. :class:`SharedReads`
(the hub's ``reads``) lets the ones that would make the same read share it: one database read per
caller identity and change instead of one per request.

A hub belongs to one event loop (its futures and its poller task do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: Given the watched image ids, the latest ``updated_at`` of each image that has tasks.
PollFunction = Callable[[frozenset[str]], Awaitable[dict[str, datetime]]]
T = TypeVar("T")


class SharedReads:
    """Identical reads made at the same time are made once.

    A caller that asks for ``key`` while a read of that key is running gets that read's result, or
    its exception. The key must therefore name everything the result depends on and a moment after
    which the read must start (for the hub's callers: the change they were woken for, which any read
    started after the wake-up sees). The read runs as a task of its own, so a caller that goes away
    does not cancel it for the others; once it ends, the next caller reads again.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def read(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        result: T = await asyncio.shield(running)
        return result

    def _finished(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every caller went away


@dataclass(eq=False)
class _Watch:
    since: datetime
    future: asyncio.Future[datetime] = field(repr=False)


class TaskWatcher:
    def __init__(self, poll: PollFunction, *, interval: float) -> None:
        self.interval = interval
        self._poll = poll
        self._watches: dict[str, set[_Watch]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._closed = False
        #: The reads of the requests a change woke, shared between those that make the same one.
        self.reads = SharedReads()

    # -- what requests call ------------------------------------------------------------------------
    async def wait(self, image_id: str, since: datetime, within: float) -> datetime | None:
        """Wait until a task of the image has ``updated_at`` after ``since``, at most ``within``
        seconds. Returns the latest ``updated_at`` the poll saw, or None on time-out."""
        if self._closed:
            return None
        watch = _Watch(since, asyncio.get_running_loop().create_future())
        self._watches.setdefault(image_id, set()).add(watch)
        self._ensure_poller()
        try:
            await asyncio.wait({watch.future}, timeout=within)
            done = watch.future.done() and not watch.future.cancelled()
            return watch.future.result() if done else None
        finally:
            self._forget(image_id, watch)

    def notify(self, image_id: str) -> None:
        """This process changed a task of ``image_id``: poll now rather than at the next interval."""
        if image_id in self._watches:
            self._kick.set()

    @property
    def watching(self) -> int:
        """How many registrations are waiting (for tests and diagnostics)."""
        return sum(len(watches) for watches in self._watches.values())

    @property
    def closed(self) -> bool:
        """Closed for the process's shutdown: :meth:`wait` answers at once."""
        return self._closed

    @property
    def polling(self) -> bool:
        return self._poller is not None and not self._poller.done()

    async def close(self) -> None:
        """Stop polling; the waiting requests answer as if their wait had run out."""
        self._closed = True
        for watches in self._watches.values():
            for watch in watches:
                if not watch.future.done():
                    watch.future.cancel()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------------
    def _forget(self, image_id: str, watch: _Watch) -> None:
        watches = self._watches.get(image_id)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self._watches[image_id]

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._run(), name="glimpse-task-watcher")

    async def _run(self) -> None:
        while self._watches:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=self.interval)
            self._kick.clear()
            if not self._watches:
                break
            try:
                latest = await self._poll(frozenset(self._watches))
            except Exception:
                log.warning("polling for task changes failed; trying again", exc_info=True)
                continue
            self._deliver(latest)

    def _deliver(self, latest: dict[str, datetime]) -> None:
        for image_id, updated_at in latest.items():
            for watch in self._watches.get(image_id, ()):
                if updated_at > watch.since and not watch.future.done():
                    watch.future.set_result(updated_at)
