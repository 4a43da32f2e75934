"""TaskRunner: claims pending tasks and runs their flows, a few at a time, in one event loop.

Every pass (each ``runner_poll_interval`` seconds, or at once when woken) the runner

1. reaps tasks whose lease expired (:mod:`glimpse.jobs.housekeeping`), fails tasks stranded on a
   node that never claimed them (at start-up, then every minute), and sweeps the staging area and
   the stores' orphan objects at start-up and then hourly;
2. claims pending tasks, oldest first, up to ``max_concurrent_tasks`` running at once: a claim is
   a compare-and-set ``pending → processing`` with this runner's id and a lease of
   ``task_lease_time`` seconds, so of several runners (in any number of processes) one wins. A task
   whose data was staged in one node's own staging directory (``tasks.stage_host``) is claimed only
   by the runners of that node (``worker_self_reference_url``);
3. runs each claimed task's flow as an asyncio task with its own :class:`Heartbeat`.

While the database does not answer, passes fail and are tried again; tasks it stopped wait for it,
undo their work and go back to the queue. After an outage a runner reaps no lease for one lease time:
nobody could renew a lease while the database was away, and the runners still alive renew theirs in
that time.

Stopping (:meth:`TaskRunner.request_stop`, SIGTERM in ``glimpse-server worker``, the API's shutdown) stops
claiming at once and asks every running task to stop at its next heartbeat: each undoes its work and
goes back to ``pending`` for another runner. A task that does not stop within ``stop_timeout``
seconds is cancelled; its lease then lapses and a reaper takes it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from glimpse.domain.tasks import Task, TaskProgress
from glimpse.errors import DatabaseUnavailable
from glimpse.jobs.flows import execute_task, heartbeat_writer
from glimpse.jobs.housekeeping import (
    expire_idempotency_keys,
    expire_quota_reservations,
    fail_stranded,
    purge_history,
    reap_expired,
    revert_silent_uploads,
    sweep_orphans,
    sweep_staging,
)
from glimpse.jobs.progress import Heartbeat, TaskLimits
from glimpse.ports import Ports, Repositories
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)

#: Seconds between two sweeps (staging area, orphan objects) of one runner.
SWEEP_INTERVAL: Final = 3600.0
#: Seconds between two looks of one runner for tasks stranded on a node (their window is hours).
STRANDED_INTERVAL: Final = 60.0
#: Outcomes of finished tasks a runner remembers (for logs and tests), newest last.
FINISHED_KEPT: Final = 1000


def default_worker_id() -> str:
    """``host:pid:random``: unique per runner, and telling an operator where the task runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Running:
    task: Task
    heartbeat: Heartbeat
    job: asyncio.Task[str]


class TaskRunner:
    def __init__(
        self,
        ports: Ports,
        worker_id: str | None = None,
        *,
        stop_timeout: float | None = None,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        settings = ports.settings
        self.ports = ports
        self.worker_id = worker_id or default_worker_id()
        #: This runner's node (``worker_self_reference_url``): besides the tasks any node may run, it
        #: claims those whose data was staged on this node, and no other node's.
        self.node = settings.worker_self_reference_url
        self.capacity = settings.max_concurrent_tasks
        self.poll_interval = settings.runner_poll_interval
        self.lease = timedelta(seconds=settings.task_lease_time)
        self.stop_timeout = settings.task_lease_time if stop_timeout is None else stop_timeout
        self.sweep_interval = sweep_interval
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._last_sweep: float | None = None
        self._last_stranded: float | None = None
        #: Whether the last pass found the database away, and (loop time) when reaping starts again.
        self._database_away = False
        self._reap_from: float | None = None
        #: Outcome of the tasks this runner ran, by task id: success, failure, cancelled (someone
        #: cancelled it), requeued, lost, error or aborted (the runner stopped it hard), the last
        #: FINISHED_KEPT of them.
        self.finished: dict[str, str] = {}

    # -- control -----------------------------------------------------------------------------------
    def wake(self) -> None:
        """Look for work now (safe to call from any thread; does nothing before :meth:`run`)."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                event.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(event.set)

    def request_stop(self) -> None:
        """Stop claiming and ask the running tasks to hand themselves back; :meth:`run` then returns."""
        self._stopping = True
        for running in self._running.values():
            running.heartbeat.interrupt()
        self.wake()

    @property
    def running(self) -> list[str]:
        return list(self._running)

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Work until :meth:`request_stop`; then wait for the running tasks to stop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        log.info(
            "task runner %s started (node %s, up to %d task(s) at once, lease %.1fs)",
            self.worker_id,
            self.node or "unnamed",
            self.capacity,
            self.lease.total_seconds(),
        )
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.run_once()
                except DatabaseUnavailable as exc:
                    self._database_gone(exc)
                except Exception:
                    log.exception("task runner %s: pass failed; trying again", self.worker_id)
                else:
                    self._database_back()
                if self._stopping:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
        finally:
            await self._drain()
            log.info("task runner %s stopped", self.worker_id)

    async def run_once(self) -> int:
        """One pass: reap, sweep when due, claim and start tasks; returns how many were started."""
        if self._may_reap():
            await reap_expired(self.ports)
        await self._fail_stranded_when_due()
        await self._sweep_when_due()
        started = 0
        free = self.capacity - len(self._running)
        if free <= 0 or self._stopping:
            return 0
        node = self.node
        candidates = await self.ports.run(lambda s: s.tasks.pending_ids(free * 2, node=node), readonly=True)
        for task_id in candidates:
            if started >= free or self._stopping:
                break
            task = await self._claim(task_id)
            if task is not None:
                self._start(task)
                started += 1
        return started

    async def wait_idle(self) -> None:
        """Wait until no task is running (tests)."""
        while self._running:
            await asyncio.gather(*(r.job for r in list(self._running.values())), return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------------
    def _may_reap(self) -> bool:
        if self._database_away:
            return False
        return self._reap_from is None or asyncio.get_running_loop().time() >= self._reap_from

    def _database_gone(self, exc: DatabaseUnavailable) -> None:
        if not self._database_away:
            log.warning("task runner %s: %s; trying again", self.worker_id, exc.message)
        self._database_away = True

    def _database_back(self) -> None:
        if not self._database_away:
            return
        self._database_away = False
        self._reap_from = asyncio.get_running_loop().time() + self.lease.total_seconds()
        log.warning(
            "task runner %s: the database answers again; no lease is reaped for %.0fs so that the "
            "runners still alive renew theirs",
            self.worker_id,
            self.lease.total_seconds(),
        )

    async def _sweep_when_due(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if self._last_sweep is not None and loop_time - self._last_sweep < self.sweep_interval:
            return
        self._last_sweep = loop_time
        try:
            await sweep_staging(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("staging sweep failed; the next one tries again")
        try:
            await sweep_orphans(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("orphan sweep failed; the next one tries again")
        try:
            await expire_idempotency_keys(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("expiring Idempotency-Key records failed; the next sweep tries again")
        try:
            await purge_history(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("purging old image history failed; the next sweep tries again")
        try:
            await expire_quota_reservations(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("expiring quota reservations failed; the next sweep tries again")

    async def _fail_stranded_when_due(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if self._last_stranded is not None and loop_time - self._last_stranded < STRANDED_INTERVAL:
            return
        self._last_stranded = loop_time
        try:
            await fail_stranded(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("looking for stranded tasks failed; the next look tries again")
        try:
            await revert_silent_uploads(self.ports)
        except DatabaseUnavailable as exc:
            self._database_gone(exc)
        except Exception:
            log.exception("looking for stopped uploads failed; the next look tries again")

    async def _claim(self, task_id: str) -> Task | None:
        now = self.ports.clock()

        def claim(repos: Repositories) -> Task | None:
            tasks = repos.tasks
            if not tasks.claim(task_id, self.worker_id, now, self.lease, node=self.node):
                return None
            return tasks.find(task_id)

        return await self.ports.run(claim)

    def _start(self, task: Task) -> None:
        settings = self.ports.settings
        limits = TaskLimits.for_task(
            task, max_duration=settings.task_max_duration, stall_timeout=settings.task_stall_timeout
        )
        heartbeat = Heartbeat(
            TaskProgress(),
            heartbeat_writer(self.ports, task, self.worker_id),
            clock=self.ports.clock,
            # At least three beats per lease, whatever the configuration says.
            interval=min(settings.task_progress_interval, self.lease.total_seconds() / 3),
            limits=limits,
        )
        job = asyncio.create_task(self._execute(task, heartbeat), name=f"task-{task.id}")
        self._running[task.id] = _Running(task, heartbeat, job)
        if self._stopping:
            heartbeat.interrupt()

    async def _execute(self, task: Task, heartbeat: Heartbeat) -> str:
        outcome = "error"
        started = time.monotonic()
        try:
            outcome = await execute_task(self.ports, task, self.worker_id, heartbeat)
        except asyncio.CancelledError:
            outcome = "aborted"
            raise
        except Exception:
            log.exception(
                "task %s: the runner could not finish it; its lease will lapse and a reaper takes it back",
                task.id,
            )
        finally:
            _count_run(task, outcome, time.monotonic() - started)
            self.finished[task.id] = outcome
            while len(self.finished) > FINISHED_KEPT:
                del self.finished[next(iter(self.finished))]
            self._running.pop(task.id, None)
            self.wake()  # a slot is free
        return outcome

    async def _drain(self) -> None:
        """Stop: interrupt every running task, wait for them, cancel the ones that overstay."""
        self._stopping = True
        jobs = []
        for running in self._running.values():
            running.heartbeat.interrupt()
            jobs.append(running.job)
        if not jobs:
            return
        _, late = await asyncio.wait(jobs, timeout=self.stop_timeout)
        for job in late:
            job.cancel()
        if late:
            log.warning(
                "task runner %s: %d task(s) did not stop in time; their leases will lapse",
                self.worker_id,
                len(late),
            )
            await asyncio.gather(*late, return_exceptions=True)


def _count_run(task: Task, outcome: str, seconds: float) -> None:
    method = str(task.method or "-")
    counters = metrics()
    counters.tasks_finished.labels(str(task.type), method, outcome).inc()
    counters.task_seconds.labels(method, outcome).observe(seconds)


async def run_worker(ports: Ports, worker_id: str | None = None) -> None:
    """``glimpse-server worker``: one runner until SIGTERM or SIGINT.

    The first signal stops claiming and hands the running tasks back to the queue (each undoes its
    work first); a second one exits at once, leaving the leases to lapse.
    """
    runner = TaskRunner(ports, worker_id)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    received = 0

    def on_signal(signum: int) -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("signal %d: stopping; running tasks go back to the queue", signum)
            runner.request_stop()
        elif main is not None:
            log.warning("signal %d again: exiting now; running tasks' leases will lapse", signum)
            main.cancel()

    handled = (signal.SIGTERM, signal.SIGINT)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await runner.run()
    except asyncio.CancelledError:
        log.warning("task runner %s cancelled", runner.worker_id)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
