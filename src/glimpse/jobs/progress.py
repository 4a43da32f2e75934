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

Every beat, written or not, also watches the task's time limits (:class:`TaskLimits`): past its
deadline it raises :class:`~glimpse.jobs.errors.DeadlineReached`, and when a byte-moving phase has
moved nothing for the stall timeout it raises :class:`~glimpse.jobs.errors.Stalled`. The written
progress carries ``eta_seconds`` (from the rate of the last :data:`RATE_WINDOW` seconds) and
``stalled_since`` (when the last byte moved, once a whole interval passed without one).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from glimpse.domain.tasks import (
    DATA_STEP_PHASES,
    Clock,
    StoreProgress,
    StoreState,
    Task,
    TaskProgress,
    copied_message,
)
from glimpse.jobs.errors import DeadlineReached, Interrupted, Stalled

T = TypeVar("T")

#: Writes one heartbeat: the progress snapshot and the message ``"Copied N MiB"``.
ProgressWriter = Callable[[TaskProgress, str], Awaitable[None]]

#: Seconds of recent progress the rate behind ``eta_seconds`` is measured over, and the least time
#: between two of the samples it is measured from.
RATE_WINDOW: Final = 30.0
SAMPLE_EVERY: Final = 0.5
_RATE_WINDOW: Final = timedelta(seconds=RATE_WINDOW)
_SAMPLE_EVERY: Final = timedelta(seconds=SAMPLE_EVERY)
#: The phases in which bytes move, so that a pause in them is a stall; each with its step.
MOVING_PHASES: Final = {
    "staging": "step 'download' (the web-download into the staging area)",
    "stores": "step 'copy' (writing the target stores)",
    "decompressing": "step 'image_decompression' (decompressing the staged data)",
    "converting": "step 'image_conversion' (converting the staged data)",
}


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The time limits of one task run: when it must have ended, and how long a pause may last."""

    #: When the task must have ended; None: no deadline.
    deadline_at: datetime | None = None
    #: Which limit sets ``deadline_at``, as the failure message says it.
    deadline_text: str = ""
    #: Seconds a byte-moving phase may go without moving a byte (0: no stall detection).
    stall_timeout: float = 0.0

    @classmethod
    def for_task(cls, task: Task, *, max_duration: float, stall_timeout: float) -> TaskLimits:
        """The earlier of the import request's ``deadline`` and ``[task] task_max_duration``, both
        counted from the moment the import was accepted (the task's ``created_at``)."""
        accepted = task.created_at
        request = task.import_request
        candidates: list[tuple[datetime, str]] = []
        if request is not None and request.deadline is not None:
            at = accepted + timedelta(seconds=request.deadline)
            candidates.append(
                (
                    at,
                    f"Deadline reached: the import request asked for the task to end within "
                    f"{request.deadline} seconds of {_when(accepted)}, that is by {_when(at)}",
                )
            )
        if max_duration > 0:
            at = accepted + timedelta(seconds=max_duration)
            candidates.append(
                (
                    at,
                    f"Time limit reached: this site lets a task run for at most {max_duration:g} "
                    f"seconds ([task] task_max_duration), so this one, accepted at {_when(accepted)}, "
                    f"had to end by {_when(at)}",
                )
            )
        if not candidates:
            return cls(stall_timeout=stall_timeout)
        at, text = min(candidates, key=lambda candidate: candidate[0])
        return cls(deadline_at=at, deadline_text=text, stall_timeout=stall_timeout)


class Heartbeat:
    def __init__(
        self,
        progress: TaskProgress,
        write: ProgressWriter,
        *,
        clock: Clock,
        interval: float,
        limits: TaskLimits | None = None,
    ) -> None:
        self.progress = progress
        self.clock = clock
        self.interval = interval
        self.limits = limits or TaskLimits()
        self._write = write
        self._period = timedelta(seconds=interval)
        self._last: datetime | None = None
        self._writing = asyncio.Lock()
        self._interrupted = False
        self._phase_started: datetime | None = None
        self._phase_bytes = 0
        #: The last moment anything moved, and what had moved then (to see the next move).
        self._moved_at: datetime | None = None
        self._moved: tuple[int, float | None] | None = None
        #: (moment, amount done in the phase's unit) of the last RATE_WINDOW seconds, at most one
        #: every SAMPLE_EVERY seconds (a beat comes after every block: keep it cheap).
        self._samples: deque[tuple[datetime, float]] = deque()

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
        self.progress.eta_seconds = None
        self.progress.stalled_since = None
        # A new phase starts the stall clock and the rate afresh.
        self._moved_at = None
        self._samples.clear()
        self._track(self._phase_started)

    def store(self, store_id: str) -> StoreProgress:
        return self.progress.stores.setdefault(store_id, StoreProgress())

    async def beat(self, *, force: bool = False) -> None:
        """Write progress if ``interval`` has passed since the last write (always when ``force``).

        Raises whatever the write raises (``TaskLost``, ``LockLost``, ``ImageDeleted``),
        :class:`~glimpse.jobs.errors.Interrupted` once :meth:`interrupt` was called, and
        :class:`~glimpse.jobs.errors.DeadlineReached` or :class:`~glimpse.jobs.errors.Stalled` once
        a limit ran out (checked at every beat, written or not).
        """
        if self._interrupted:
            raise Interrupted("the runner is stopping")
        now = self.clock()
        self._track(now)
        self._check_limits(now)
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
        moving = self.progress.phase in MOVING_PHASES
        idle = self._moved_at is not None and (now - self._moved_at).total_seconds() >= self.interval
        self.progress.stalled_since = self._moved_at if moving and idle else None
        self.progress.eta_seconds = None if not moving or idle else self._eta()

    def _track(self, now: datetime) -> None:
        """Note whether anything moved since the last beat (bytes, or a plugin's percentage)."""
        progress = self.progress
        seen = (progress.bytes_moved(), progress.percent)
        if self._moved_at is not None and seen == self._moved:
            return
        self._moved, self._moved_at = seen, now
        samples = self._samples
        if samples and now - samples[-1][0] < _SAMPLE_EVERY:
            return
        done = self._done()
        if done is not None:
            samples.append((now, done))
            while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
                samples.popleft()

    def _done(self) -> float | None:
        """How far the current phase is, in its own unit (bytes; a plugin's percentage)."""
        progress = self.progress
        if progress.phase == "staging":
            return float(progress.staged_bytes)
        if progress.phase == "stores":
            return float(sum(p.bytes_done for p in progress.stores.values()))
        if progress.phase in DATA_STEP_PHASES:
            return progress.percent
        return None

    def _remaining(self) -> float | None:
        progress = self.progress
        if progress.phase == "staging":
            total = progress.staged_total
            return None if total is None else float(max(0, total - progress.staged_bytes))
        if progress.phase == "stores":
            left = 0
            for store in progress.stores.values():
                if store.state in (StoreState.DONE, StoreState.FAILED):
                    continue
                if store.bytes_total is None:
                    return None
                left += max(0, store.bytes_total - store.bytes_done)
            return float(left)
        if progress.phase in DATA_STEP_PHASES and progress.percent is not None:
            return 100.0 - progress.percent
        return None

    def _eta(self) -> int | None:
        remaining = self._remaining()
        if remaining is None:
            return None
        if remaining <= 0:
            return 0
        if len(self._samples) < 2:
            return None
        (first_at, first), (last_at, last) = self._samples[0], self._samples[-1]
        seconds = (last_at - first_at).total_seconds()
        if seconds <= 0 or last <= first:
            return None
        return math.ceil(remaining / ((last - first) / seconds))

    def _describe_done(self) -> str:
        progress = self.progress
        if progress.phase == "staging":
            total = "" if progress.staged_total is None else f" of {progress.staged_total}"
            return f"{progress.staged_bytes}{total} bytes downloaded"
        if progress.phase == "stores":
            parts = [
                f"store '{name}' {p.bytes_done}"
                + ("" if p.bytes_total is None else f" of {p.bytes_total}")
                + " bytes"
                for name, p in progress.stores.items()
            ]
            return ", ".join(parts) or "no store started"
        if progress.phase in DATA_STEP_PHASES:
            percent = "an unknown share" if progress.percent is None else f"{progress.percent:g}%"
            return f"{percent} done, {progress.processed_bytes} bytes written"
        return f"{progress.bytes_moved()} bytes moved"

    def _check_limits(self, now: datetime) -> None:
        limits = self.limits
        phase = self.progress.phase
        if limits.deadline_at is not None and now >= limits.deadline_at:
            raise DeadlineReached(
                f"{limits.deadline_text}; it was stopped at {_when(now)} in phase '{phase}'."
            )
        step = MOVING_PHASES.get(phase)
        if step is None or limits.stall_timeout <= 0 or self._moved_at is None:
            return
        idle = (now - self._moved_at).total_seconds()
        if idle >= limits.stall_timeout:
            raise Stalled(
                f"Stalled: no bytes moved for {idle:g} seconds (the limit is {limits.stall_timeout:g}, "
                f"[task] task_stall_timeout) in {step}; the last progress was at "
                f"{_when(self._moved_at)}, with {self._describe_done()}. It was stopped at {_when(now)}."
            )
