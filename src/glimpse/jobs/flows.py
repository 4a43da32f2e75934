"""The import flows: glance-direct, web-download, glance-download and copy-image, as linear lists
of steps.

================ ========================================================================================
glance-direct    Begin → [plugins] → CopyToStores (staging → targets) → Complete (image active)
web-download     Begin → Download (URL → staging) → [plugins] → CopyToStores → Complete
glance-download  Begin → GlanceDownload (remote image → staging) → [plugins] → CopyToStores → Complete
copy-image       Begin → CopyToStores (an existing location → targets) → Complete
================ ========================================================================================

``[plugins]`` are the steps of ``[image_import_opts] image_import_plugins`` in their configured
order (:mod:`glimpse.jobs.plugin_steps`, :mod:`glimpse.jobs.decompress_step`,
:mod:`glimpse.jobs.convert_step`).

:func:`execute_task` runs one claimed task to its end: success, failure (with a message that says
what failed and what to do), or a clean hand-back to the queue when the runner is stopping. How a
failure is undone, per method, is documented in ``docs/tasks.md`` ("Task runner"). The steps
are in :mod:`glimpse.jobs.import_steps`, and what they share in :mod:`glimpse.jobs.import_run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryOutcome
from glimpse.domain.import_plugins import ImportPlugin
from glimpse.domain.imports import ImportMethod
from glimpse.domain.tasks import (
    CancelRequest,
    Task,
    TaskCancelled,
    TaskLost,
    TaskProgress,
    cancelled_outcome,
    waiting_message,
)
from glimpse.errors import DatabaseUnavailable, FlowFailed
from glimpse.jobs.convert_step import Convert
from glimpse.jobs.decompress_step import Decompress
from glimpse.jobs.errors import ImageDeleted, Interrupted, LimitReached, LockLost, Stalled, TaskStopped
from glimpse.jobs.fanout import describe_error
from glimpse.jobs.image_state import check_holder, record_task_end
from glimpse.jobs.import_run import NOT_KEPT, PHASE_FAILED, ImportRun
from glimpse.jobs.import_steps import Begin, Complete, CopyToStores, Download, GlanceDownload
from glimpse.jobs.plugin_steps import NoOp
from glimpse.jobs.progress import Heartbeat, ProgressWriter
from glimpse.jobs.steps import Step, run_steps
from glimpse.logs import log_fields
from glimpse.ports import Ports, Repositories, undo_import_request
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)


#: The step of each import plugin (``[image_import_opts] image_import_plugins``).
PLUGIN_STEPS: Mapping[ImportPlugin, Callable[[], Step[ImportRun]]] = {
    ImportPlugin.IMAGE_DECOMPRESSION: Decompress,
    ImportPlugin.IMAGE_CONVERSION: Convert,
    ImportPlugin.NO_OP: NoOp,
}


def steps_for(method: ImportMethod | None, plugins: Sequence[ImportPlugin] = ()) -> Sequence[Step[ImportRun]]:
    """The steps of a task: the import plugins, in their configured order, run on the staged data
    of glance-direct and web-download (after the download), never for copy-image."""
    transform = [PLUGIN_STEPS[plugin]() for plugin in plugins]
    if method is ImportMethod.WEB_DOWNLOAD:
        return (Begin(), Download(), *transform, CopyToStores(), Complete())
    if method is ImportMethod.GLANCE_DOWNLOAD:
        return (Begin(), GlanceDownload(), *transform, CopyToStores(), Complete())
    if method is ImportMethod.GLANCE_DIRECT:
        return (Begin(), *transform, CopyToStores(), Complete())
    return (Begin(), CopyToStores(), Complete())


# -- running a task to its end ---------------------------------------------------------------------


def _outcome_text(run: ImportRun) -> str:
    """What the failed task left behind and what the user can do next."""
    if run.method is ImportMethod.COPY_IMAGE:
        return (
            f"Image {run.image_id} is unchanged and the partial copies were removed; "
            "copy it again once the problem is fixed."
        )
    if run.method is ImportMethod.GLANCE_DIRECT:
        return (
            f"Image {run.image_id} is back to 'queued' and the data written for it was removed; "
            "stage the data again and import it again."
        )
    if run.method in (ImportMethod.WEB_DOWNLOAD, ImportMethod.GLANCE_DOWNLOAD):
        return (
            f"Image {run.image_id} is back to 'queued' and the data written for it was removed; "
            "import it again once the problem is fixed."
        )
    return "Nothing was changed."


def _unexpected(run: ImportRun, exc: BaseException) -> str:
    return (
        f"The {run.method or 'import'} task stopped on an unexpected error ({describe_error(exc)}). "
        f"{_outcome_text(run)} If it happens again, the service log has the details (task {run.task.id})."
    )


async def execute_task(ports: Ports, task: Task, worker_id: str, heartbeat: Heartbeat) -> str:
    """Run a claimed task to its end; returns ``success``, ``failure``, ``cancelled``, ``requeued``
    or ``lost``."""
    run = ImportRun.for_task(ports, task, worker_id, heartbeat)
    with log_fields(
        task_id=task.id,
        image_id=run.image_id,
        request_id=run.context.request_id,
        user_id=run.context.user_id,
        project_id=run.context.project_id,
    ):
        return await _execute(run)


async def _execute(run: ImportRun) -> str:
    task = run.task
    run.ports.notifier.notify(
        events.Event(events.TASK_PROCESSING, events.task_payload(task), run.context.to_dict())
    )
    log.info(
        "task %s: %s of image %s to %s (request %s, user %s)",
        task.id,
        run.method,
        run.image_id,
        ",".join(run.targets) or "-",
        run.context.request_id,
        run.context.user_id,
    )
    try:
        await run_steps(
            steps_for(run.method, run.ports.settings.import_plugins), run, settle=_database_back(run)
        )
    except TaskLost:
        log.info("task %s: no longer ours (failed, busted or reclaimed); stopped", task.id)
        return "lost"
    except TaskCancelled as exc:
        return await _cancelled(run, exc.request)
    except Interrupted:
        return await _requeue(run)
    except ImageDeleted:
        return await _fail(
            run,
            f"Image {run.image_id} was deleted while this task was running; the task stopped and "
            "removed the data it had written.",
        )
    except LockLost as exc:
        holder = f"task {exc.holder}" if exc.holder else "nobody"
        return await _fail(
            run,
            f"The import lock of image {run.image_id} was taken from this task (it is now held by "
            f"{holder}); this task stopped and removed the data it had not recorded. See the "
            "image's tasks for the operation that holds it now.",
        )
    except DatabaseUnavailable:
        # Undone as for a stopping runner once the database answered again (see _database_back):
        # the task goes back to the queue and runs again from the start.
        log.warning("task %s: the database went away while it ran; queueing it again", task.id)
        return await _requeue(run)
    except LimitReached as exc:
        return await _out_of_time(run, exc)
    except FlowFailed as exc:
        run.mark_failed_stores(NOT_KEPT)
        return await _fail(run, f"{exc.message} {_outcome_text(run)}")
    except TaskStopped as exc:  # pragma: no cover - every subclass is handled above
        return await _fail(run, str(exc))
    except Exception as exc:
        log.exception("task %s: unexpected error", task.id)
        run.mark_failed_stores(NOT_KEPT)
        return await _fail(run, _unexpected(run, exc))
    log.info("task %s: success (%s)", task.id, run.heartbeat.progress.phase)
    return "success"


#: Seconds between the first two looks for the database after it failed a task; doubled each time, up
#: to a third of the lease (so the task renews its lease soon after the database is back).
DATABASE_RETRY = 0.25


def _database_back(run: ImportRun) -> Callable[[BaseException], Awaitable[None]]:
    """Before a flow stopped by the database is undone, wait until the database answers again (the
    undo needs it), or until the runner stops (then the lease lapses and a reaper undoes it)."""

    async def settle(error: BaseException) -> None:
        if not isinstance(error, DatabaseUnavailable):
            return
        log.warning("task %s: %s; waiting for the database to undo and re-queue it", run.task.id, error)
        ceiling = max(DATABASE_RETRY, run.ports.settings.task_lease_time / 3)
        delay = DATABASE_RETRY
        while not run.heartbeat.interrupted:
            await asyncio.sleep(delay)
            try:
                await run.ports.run(lambda repos: None, readonly=True)
            except DatabaseUnavailable:
                delay = min(delay * 2, ceiling)
                continue
            log.info("task %s: the database answers again", run.task.id)
            return
        raise error

    return settle


async def _fail(run: ImportRun, message: str) -> str:
    progress = run.heartbeat.progress
    progress.end(PHASE_FAILED)
    snapshot = TaskProgress.from_dict(progress.to_dict())
    now = run.ports.clock()
    ttl = timedelta(hours=run.ports.settings.task_time_to_live)

    def fail(repos: Repositories) -> bool:
        if not repos.tasks.fail(run.task.id, now, ttl, message, worker=run.worker_id, progress=snapshot):
            return False
        if run.image_id:
            repos.images.release_lock(run.image_id, run.task.id)
        record_task_end(repos, run.task, now, HistoryOutcome.FAILURE, message, snapshot)
        failed = repos.tasks.find(run.task.id) if repos.outbox.wants(events.TASK_FAILURE) else None
        if failed is not None:
            payload = events.task_payload(failed, run.failed)
            repos.outbox.add(events.Event(events.TASK_FAILURE, payload, run.context.to_dict()))
        return True

    if await run.ports.run(fail):
        log.warning("task %s: failure: %s", run.task.id, message)
        return "failure"
    log.info("task %s: failed elsewhere in the meantime; its own message stays", run.task.id)
    return "lost"


async def _cancelled(run: ImportRun, request: CancelRequest) -> str:
    """The steps undid this run's work (as for an interrupted run): now undo the import request
    (image status, importing list, lock) and end the task ``failure``, in one unit of work."""
    outcome = cancelled_outcome(run.method, run.image_id)
    return await _end_undone(
        run,
        f"{request.describe()} {outcome}",
        store_reason=f"cancelled: {request.describe()}",
        history=(HistoryOutcome.CANCELLED, outcome),
        result="cancelled",
    )


async def _out_of_time(run: ImportRun, exc: LimitReached) -> str:
    """A time limit ran out (the deadline, or a stall): the steps undid this run's work as for a
    cancel; now undo the import request and end the task ``failure`` with the limit's message."""
    stalled = isinstance(exc, Stalled)
    if stalled:
        metrics().task_stalls.labels(str(run.task.type), str(run.method or "-")).inc()
    message = f"{exc.message} {cancelled_outcome(run.method, run.image_id)}"
    return await _end_undone(
        run,
        message,
        store_reason=f"{'stalled' if stalled else 'out of time'}: {exc.message}",
        history=(HistoryOutcome.FAILURE, message),
        result="failure",
        notify=True,
    )


async def _end_undone(
    run: ImportRun,
    message: str,
    *,
    store_reason: str,
    history: tuple[HistoryOutcome, str],
    result: str,
    notify: bool = False,
) -> str:
    """End a task whose steps undid their work: undo the import request (image status, importing
    list, lock), fail the task with ``message`` and record the end in the image's history, in one
    unit of work. Returns ``result``, or ``"lost"`` when the task had ended elsewhere meanwhile."""
    progress = run.heartbeat.progress
    progress.end(PHASE_FAILED)
    run.mark_failed_stores(store_reason)
    snapshot = TaskProgress.from_dict(progress.to_dict())
    now = run.ports.clock()
    ttl = timedelta(hours=run.ports.settings.task_time_to_live)

    def finish(repos: Repositories) -> bool:
        if not repos.tasks.fail(run.task.id, now, ttl, message, worker=run.worker_id, progress=snapshot):
            return False
        undo_import_request(repos, run.task)
        record_task_end(repos, run.task, now, *history, snapshot)
        if notify and repos.outbox.wants(events.TASK_FAILURE):
            failed = repos.tasks.find(run.task.id)
            if failed is not None:
                payload = events.task_payload(failed, run.failed)
                repos.outbox.add(events.Event(events.TASK_FAILURE, payload, run.context.to_dict()))
        return True

    if await run.ports.run(finish):
        log.warning("task %s: %s: %s", run.task.id, result, message)
        return result
    log.info("task %s: ended elsewhere while it was being stopped", run.task.id)
    return "lost"


async def _requeue(run: ImportRun) -> str:
    now = run.ports.clock()
    lease = timedelta(seconds=run.ports.settings.task_lease_time)

    def requeue(repos: Repositories) -> bool:
        tasks = repos.tasks
        try:
            # Back to a fresh task's progress and message: the next run starts from nothing.
            message = waiting_message(run.task.stage_host)
            tasks.heartbeat(run.task.id, run.worker_id, now, lease, TaskProgress(), message)
        except TaskLost:
            return False
        return tasks.requeue(run.task.id, run.worker_id, now)

    try:
        requeued = await run.ports.run(requeue)
    except TaskCancelled as exc:
        # Cancelled while the runner was stopping: the work is undone already, end it here.
        return await _cancelled(run, exc.request)
    if requeued:
        log.info("task %s: handed back to the queue", run.task.id)
        return "requeued"
    return "lost"


def heartbeat_writer(ports: Ports, task: Task, worker_id: str) -> ProgressWriter:
    """The database write behind every beat: renew the lease (TaskLost if the task is no longer
    ours) and re-check the image lock (LockLost, ImageDeleted)."""
    lease = timedelta(seconds=ports.settings.task_lease_time)
    reservation_life = timedelta(seconds=ports.settings.reservation_timeout)

    async def write(progress: TaskProgress, message: str) -> None:
        now = ports.clock()

        def beat(repos: Repositories) -> None:
            repos.tasks.heartbeat(task.id, worker_id, now, lease, progress, message)
            repos.quotas.renew(task.id, now + reservation_life)  # the quota the task reserved
            if task.image_id:
                check_holder(repos, task.image_id, task.id)

        await ports.run(beat)

    return write
