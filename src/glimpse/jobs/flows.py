"""The import flows: glance-direct, web-download and copy-image, as linear lists of steps.

============== ==========================================================================
glance-direct  Begin → CopyToStores (staging → targets) → Complete (image active)
web-download   Begin → Download (URL → staging) → CopyToStores → Complete (image active)
copy-image     Begin → CopyToStores (an existing location → targets) → Complete
============== ==========================================================================

:func:`execute_task` runs one claimed task to its end: success, failure (with a message that says
what failed and what to do), or a clean hand-back to the queue when the runner is stopping. How a
failure is undone, per method, is documented in ``docs/tasks.md`` ("Task runner").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, TypeVar

from sqlalchemy.orm import Session

from glimpse.context import RequestContext, new_request_id
from glimpse.db.image_repository import SqlImageRepository
from glimpse.db.session import DatabaseUnavailable
from glimpse.db.task_repository import SqlTaskRepository, TaskLost
from glimpse.domain.images import Image, ImageStatus, Location
from glimpse.domain.tasks import StoreState, Task, TaskProgress, TaskType, copied_message
from glimpse.errors import Conflict, InvalidInput, NotFound, StorageError, StoreNotFound, TooLarge
from glimpse.jobs.errors import FlowFailed, ImageGone, Interrupted, LockLost, TaskStopped
from glimpse.jobs.fanout import Outcome, StoreWriteFailed, Target, describe_error, fan_out
from glimpse.jobs.image_state import check_holder, hold_lock, lock_holder, update_store_lists
from glimpse.jobs.objects import delete_object, location_of, remove_unreferenced
from glimpse.jobs.progress import Heartbeat, ProgressWriter
from glimpse.jobs.steps import Step, Why, run_steps
from glimpse.jobs.web_source import DownloadFailed, ImportFilter, WebSource
from glimpse.runtime import Runtime
from glimpse.services.hashing import StreamHasher, prefetch
from glimpse.services.image_data import PLAIN_DISK_FORMATS
from glimpse.storage.base import ImageStore

log = logging.getLogger(__name__)

T = TypeVar("T")

GLANCE_DIRECT: Final = "glance-direct"
WEB_DOWNLOAD: Final = "web-download"
COPY_IMAGE: Final = "copy-image"
#: Methods that bring new data into a queued image (through the staging area) and activate it.
IMPORT_METHODS: Final = frozenset({GLANCE_DIRECT, WEB_DOWNLOAD})
METHODS: Final = (GLANCE_DIRECT, WEB_DOWNLOAD, COPY_IMAGE)

#: Progress phases, in order.
PHASE_PENDING: Final = "pending"
PHASE_STAGING: Final = "staging"
PHASE_STORES: Final = "stores"
PHASE_DONE: Final = "done"
PHASE_FAILED: Final = "failed"

#: The per-store error of a store whose data was removed because the task as a whole failed.
NOT_KEPT: Final = "not kept: the task failed (its message says why)"


@dataclass
class ImportRun:
    """Everything one execution of one task knows; the steps share it."""

    runtime: Runtime
    task: Task
    worker_id: str
    heartbeat: Heartbeat
    context: RequestContext
    image_id: str
    method: str | None
    targets: list[str]
    must_succeed: bool
    image: Image | None = None
    #: Bytes of the image data (staged, downloaded or read from the source location).
    size: int | None = None
    #: The staging location this run wrote (web-download).
    staged: str | None = None
    #: Objects this run committed to target stores: store id → location.
    written: dict[str, str] = field(default_factory=dict)
    #: Stores whose location row this run added.
    recorded: list[str] = field(default_factory=list)
    #: Stores that failed while the flow went on (all_stores_must_succeed = false): id → reason.
    failed: dict[str, str] = field(default_factory=dict)
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None

    @classmethod
    def for_task(cls, runtime: Runtime, task: Task, worker_id: str, heartbeat: Heartbeat) -> ImportRun:
        request = task.input.get("import_req")
        request = request if isinstance(request, dict) else {}
        method = task.method
        return cls(
            runtime=runtime,
            task=task,
            worker_id=worker_id,
            heartbeat=heartbeat,
            # The caller's identity travels with the task; copy-image changes image metadata with
            # admin rights, as Glance does (an admin may copy any image it can see).
            context=RequestContext(
                user_id=task.user_id,
                project_id=task.owner,
                roles=("admin",) if method == COPY_IMAGE else (),
                is_admin=method == COPY_IMAGE,
                request_id=task.request_id or new_request_id(),
            ),
            image_id=task.image_id or str(task.input.get("image_id") or ""),
            method=method,
            targets=list(dict.fromkeys(task.stores)),
            must_succeed=request.get("all_stores_must_succeed", True) is not False,
        )

    @property
    def progress(self) -> TaskProgress:
        return self.heartbeat.progress

    @property
    def staging(self) -> ImageStore:
        return self.runtime.stores.staging

    async def locked(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one unit of work that first re-asserts this task's hold on the lock."""

        def unit(session: Session) -> T:
            hold_lock(session, self.image_id, self.task.id)
            return fn(session)

        return await self.runtime.run(unit)

    async def image_is_gone(self) -> bool:
        def look(session: Session) -> bool:
            try:
                lock_holder(session, self.image_id)
            except ImageGone:
                return True
            return False

        return await self.runtime.run(look, readonly=True)

    def mark_failed_stores(self, reason: str) -> None:
        """After a revert: every target that does not hold the data shows as failed."""
        for store_id in self.targets:
            progress = self.heartbeat.store(store_id)
            if store_id in self.recorded and store_id in self.written:
                continue
            if progress.state != StoreState.FAILED:
                progress.state = StoreState.FAILED
                progress.error = progress.error or reason
                progress.updated_at = self.runtime.clock()


# -- steps -----------------------------------------------------------------------------------------


class Begin:
    """Check the task and the image, set up the progress, and (on revert) restore the image."""

    name = "begin"

    async def execute(self, run: ImportRun) -> None:
        task = run.task
        if task.type != TaskType.API_IMAGE_IMPORT:
            raise FlowFailed(f"Tasks of type '{task.type}' are not run by Glimpse; use api_image_import.")
        if not run.image_id:
            raise FlowFailed("The task input names no image_id, so there is nothing to import.")
        if run.method not in METHODS:
            raise FlowFailed(
                f"The task input asks for import method {run.method!r}; the methods are {', '.join(METHODS)}."
            )
        if not run.targets:
            raise FlowFailed("The task input names no target store (the 'backend' list is empty).")
        unknown = [s for s in run.targets if s not in run.runtime.stores]
        if unknown:
            raise FlowFailed(
                f"Store(s) {', '.join(unknown)} are not configured at this site any more; "
                f"the stores are {', '.join(run.runtime.stores.ids())}."
            )

        def load(session: Session) -> Image:
            check_holder(session, run.image_id, task.id)
            return SqlImageRepository(session).get(run.image_id)

        image = await run.runtime.run(load, readonly=True)
        expected = ImageStatus.ACTIVE if run.method == COPY_IMAGE else ImageStatus.IMPORTING
        if image.status != expected:
            raise FlowFailed(
                f"Image {image.id} is '{image.status}', but {run.method} runs on '{expected}' images."
            )
        run.image = image
        run.size = image.size
        for store_id in run.targets:
            run.heartbeat.store(store_id).bytes_total = image.size
        run.heartbeat.start_phase(PHASE_PENDING)
        await run.heartbeat.beat(force=True)

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if run.method not in METHODS or not run.targets or reason == Why.LOST:
            return
        importing = run.method in IMPORT_METHODS

        def restore(session: Session) -> bool:
            if reason == Why.INTERRUPTED:
                # Exactly as the import request left it, so that the task can simply run again.
                update_store_lists(session, run.image_id, importing=run.targets, not_failed=run.targets)
                return False
            update_store_lists(session, run.image_id, failed=run.targets)
            images = SqlImageRepository(session)
            if not importing or images.get(run.image_id).status != ImageStatus.IMPORTING:
                return False
            images.set_status(
                run.image_id, [ImageStatus.IMPORTING], ImageStatus.QUEUED, size=None, virtual_size=None
            )
            return True

        queued = await run.locked(restore)
        if queued:
            # Back in 'queued', the image has no data: the staged copy goes too (a new stage or
            # web-download starts from a clean slate).
            await delete_object(run.staging, location_of(run.staging, run.image_id))


class Download:
    """web-download: stream the URL into the staging area, heart-beating as bytes arrive."""

    name = "download"

    async def execute(self, run: ImportRun) -> None:
        request = run.task.input.get("import_req") or {}
        method = request.get("method") if isinstance(request, dict) else None
        uri = method.get("uri") if isinstance(method, dict) else None
        if not isinstance(uri, str) or not uri:
            raise FlowFailed("The web-download request has no method.uri, so there is nothing to download.")
        limit = await self._limit(run)
        try:
            source = WebSource(
                ImportFilter.from_options(run.runtime.settings.import_filtering_opts), max_size=limit
            )
        except ValueError as exc:
            raise FlowFailed(f"web-download is misconfigured at this site: {exc}") from None
        hb = run.heartbeat
        hb.start_phase(PHASE_STAGING)
        await hb.beat(force=True)

        async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            async for chunk in chunks:
                hb.progress.staged_bytes += len(chunk)
                yield chunk
                await hb.beat()
            await hb.beat(force=True)  # the last check before the staged object is committed

        async def fetch() -> int:
            async with source.stream(uri) as download:
                stored = await run.staging.write(run.image_id, counted(download.chunks), max_size=limit)
                run.staged = stored.location
                return stored.size

        try:
            run.size = await hb.guard(fetch())
        except (InvalidInput, DownloadFailed, TooLarge) as exc:
            raise FlowFailed(f"web-download of {uri} failed: {exc.message}") from None
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise FlowFailed(
                f"Writing the downloaded data to the staging area failed: {exc.message}"
            ) from None
        for store_id in run.targets:
            hb.store(store_id).bytes_total = run.size

    @staticmethod
    async def _limit(run: ImportRun) -> int:
        settings = run.runtime.settings
        image = run.image
        if not settings.user_storage_quota or image is None or image.owner is None:
            return settings.image_size_cap
        owner = image.owner
        used = await run.runtime.run(lambda s: SqlImageRepository(s).storage_used(owner), readonly=True)
        return min(settings.image_size_cap, max(0, settings.user_storage_quota - used))

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if run.staged is None:
            return  # a write that did not complete leaves nothing: the store discards it
        if reason == Why.LOST and not await run.image_is_gone():
            return  # the task that failed us owns the clean-up of the image's staging data
        await delete_object(run.staging, run.staged)
        run.staged = None


class CopyToStores:
    """Read the data once and write it to every target store at the same time."""

    name = "copy"

    async def execute(self, run: ImportRun) -> None:
        image = run.image
        if image is None:  # pragma: no cover - Begin always sets it
            raise FlowFailed("The image was not loaded.")
        targets = await self._targets(run, image)
        hasher = self._hasher(run, image)
        stream, source = await self._open(run, image)
        hb = run.heartbeat
        hb.start_phase(PHASE_STORES)
        await hb.beat(force=True)
        expected = run.size

        async def on_block(final: bool) -> None:
            if not final:
                await hb.beat()
                return
            if expected is not None and hasher.size != expected:
                raise FlowFailed(
                    f"The data read from {source} has {hasher.size} bytes, "
                    f"but the image's size is {expected}."
                )
            if run.method == COPY_IMAGE:
                self._verify(image, hasher, source)
            await hb.beat(force=True)

        outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        copy = asyncio.ensure_future(
            hb.guard(
                fan_out(
                    prefetch(hasher.wrap(stream)),
                    targets,
                    clock=run.runtime.clock,
                    on_block=on_block,
                    outcomes=outcomes,
                    stop_on_failure=run.must_succeed,
                )
            )
        )
        try:
            await self._record_as_they_finish(run, copy, outcomes)
            copy.result()
        except StoreWriteFailed as exc:
            raise FlowFailed(
                f"The import to store '{exc.outcome.store_id}' failed ({describe_error(exc.outcome.error)}) "
                "and all_stores_must_succeed is true, so no store kept the data (import with "
                "all_stores_must_succeed=false to keep the stores that work)."
            ) from None
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise FlowFailed(f"Reading the image data from {source} failed: {exc.message}") from None
        finally:
            await _close(stream)
        if not run.recorded:
            details = "; ".join(f"{s}: {why}" for s, why in sorted(run.failed.items()))
            raise FlowFailed(f"No target store accepted the image data ({details}).")
        run.size = hasher.size
        run.checksum, run.os_hash_algo, run.os_hash_value = (
            hasher.checksum,
            hasher.algorithm,
            hasher.multihash,
        )

    async def _targets(self, run: ImportRun, image: Image) -> list[Target]:
        present = set(image.stores)
        targets: list[Target] = []
        for store_id in run.targets:
            progress = run.heartbeat.store(store_id)
            if store_id in present:
                # Already holds the data (a copy-image asked for a store it is in): nothing to do.
                progress.state = StoreState.DONE
                progress.bytes_done = progress.bytes_total or 0
                await run.locked(_finished_store(run.image_id, store_id))
                continue
            targets.append(
                Target(
                    store=run.runtime.stores.get(store_id),
                    key=run.image_id,
                    progress=progress,
                    max_size=run.size,
                )
            )
        if not targets:
            raise FlowFailed(f"Image {run.image_id} is already in every target store.")
        return targets

    @staticmethod
    def _hasher(run: ImportRun, image: Image) -> StreamHasher:
        algorithm = run.runtime.settings.hashing_algorithm
        if run.method == COPY_IMAGE and image.os_hash_algo in hashlib.algorithms_available:
            algorithm = image.os_hash_algo or algorithm
        return StreamHasher(algorithm)

    @staticmethod
    def _verify(image: Image, hasher: StreamHasher, source: str) -> None:
        """A copy must carry exactly the image's bytes: compare what was read with the recorded hashes."""
        mismatch = (image.checksum is not None and hasher.checksum != image.checksum) or (
            image.os_hash_value is not None
            and image.os_hash_algo == hasher.algorithm
            and hasher.multihash != image.os_hash_value
        )
        if mismatch:
            raise FlowFailed(
                f"The data read from {source} does not match the image's checksum, so it was not "
                "copied; that copy of the image may be damaged and an operator should check it."
            )

    @staticmethod
    async def _open(run: ImportRun, image: Image) -> tuple[AsyncIterator[bytes], str]:
        if run.method in IMPORT_METHODS:
            staging = run.staging
            staged = run.staged or location_of(staging, run.image_id)
            try:
                if run.size is None:
                    run.size = await staging.size(staged)
                stream = await staging.open(staged)
            except StoreNotFound:
                raise FlowFailed(
                    f"The staging area holds no data for image {run.image_id}, so there is nothing to import."
                ) from None
            return stream, "the staging area"
        default = run.runtime.stores.default.id
        candidates = sorted(image.locations, key=lambda location: location.store_id != default)
        for location in candidates:
            if location.store_id not in run.runtime.stores:
                continue
            try:
                stream = await run.runtime.stores.get(location.store_id).open(location.url)
            except StorageError as exc:
                log.warning(
                    "image %s: cannot read from store %s (%s); trying the next",
                    run.image_id,
                    location.store_id,
                    exc.message,
                )
                continue
            return stream, f"store '{location.store_id}'"
        raise FlowFailed(
            f"None of the stores holding image {run.image_id} could be read, so it cannot be copied."
        )

    async def _record_as_they_finish(
        self, run: ImportRun, copy: asyncio.Future[list[Outcome]], outcomes: asyncio.Queue[Outcome]
    ) -> None:
        """Record each store's outcome in the database as soon as it is known (in this task, where
        no heartbeat cancellation can interrupt a commit half-way)."""
        try:
            while not (copy.done() and outcomes.empty()):
                if outcomes.empty():
                    getter = asyncio.ensure_future(outcomes.get())
                    await asyncio.wait((copy, getter), return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        await asyncio.gather(getter, return_exceptions=True)
                        continue
                    outcome = getter.result()
                else:
                    outcome = outcomes.get_nowait()
                if copy.done() and (copy.cancelled() or copy.exception() is not None):
                    # The copy as a whole failed: its objects are only tracked, to be reverted.
                    if outcome.stored is not None:
                        run.written[outcome.store_id] = outcome.stored.location
                    continue
                await self._record(run, outcome)
        except BaseException:
            if not copy.done():
                copy.cancel()
            await asyncio.gather(copy, return_exceptions=True)
            while not outcomes.empty():
                outcome = outcomes.get_nowait()
                if outcome.stored is not None:
                    run.written[outcome.store_id] = outcome.stored.location
            raise

    @staticmethod
    async def _record(run: ImportRun, outcome: Outcome) -> None:
        store_id = outcome.store_id
        if outcome.stored is not None:
            location = outcome.stored.location
            run.written[store_id] = location

            def done(session: Session) -> None:
                SqlImageRepository(session).add_location(
                    run.image_id, Location(store_id=store_id, url=location, metadata={"store": store_id})
                )
                update_store_lists(session, run.image_id, finished=[store_id])

            await run.locked(done)
            run.recorded.append(store_id)
            log.info("task %s: image %s is now in store %s", run.task.id, run.image_id, store_id)
            return
        reason = describe_error(outcome.error)
        run.failed[store_id] = reason
        log.warning("task %s: store %s failed: %s", run.task.id, store_id, reason)
        if run.must_succeed:
            return  # the whole flow fails and is reverted; the revert records the failed stores
        await run.locked(lambda s: update_store_lists(s, run.image_id, failed=[store_id]))

    async def revert(self, run: ImportRun, reason: Why) -> None:
        if reason == Why.LOST:
            await remove_unreferenced(run.runtime, run.image_id, run.written, task_id=run.task.id)
            return
        recorded = list(run.recorded)

        def unrecord(session: Session) -> None:
            repo = SqlImageRepository(session)
            for store_id in recorded:
                with contextlib.suppress(NotFound):
                    repo.remove_location(run.image_id, store_id)

        await run.locked(unrecord)
        run.recorded.clear()
        for store_id, location in list(run.written.items()):
            await delete_object(run.runtime.stores.get(store_id), location)
            del run.written[store_id]


class Complete:
    """Activate the image (imports), mark the task successful and release the lock, atomically."""

    name = "complete"

    async def execute(self, run: ImportRun) -> None:
        hb = run.heartbeat
        hb.progress.phase = PHASE_DONE
        progress = TaskProgress.from_dict(hb.progress.to_dict())
        image = run.image
        now = run.runtime.clock()
        ttl = timedelta(hours=run.runtime.settings.task_time_to_live)

        def complete(session: Session) -> None:
            images = SqlImageRepository(session)
            if run.method in IMPORT_METHODS and image is not None:
                try:
                    images.set_status(
                        run.image_id,
                        [ImageStatus.IMPORTING],
                        ImageStatus.ACTIVE,
                        size=run.size,
                        virtual_size=run.size if image.disk_format in PLAIN_DISK_FORMATS else None,
                        checksum=run.checksum,
                        os_hash_algo=run.os_hash_algo,
                        os_hash_value=run.os_hash_value,
                    )
                except Conflict as exc:
                    raise FlowFailed(f"The image could not be activated: {exc.message}") from None
            tasks = SqlTaskRepository(session)
            result = {"image_id": run.image_id}
            if not tasks.succeed(
                run.task.id, run.worker_id, now, ttl, result, progress, copied_message(progress)
            ):
                raise TaskLost(run.task.id)
            images.release_lock(run.image_id, run.task.id)

        await run.locked(complete)
        if run.method in IMPORT_METHODS:
            await delete_object(run.staging, run.staged or location_of(run.staging, run.image_id))

    async def revert(self, run: ImportRun, reason: Why) -> None:
        return  # one transaction: it either happened entirely or not at all


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close a source stream now rather than whenever it is garbage-collected (it holds a file)."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


def _finished_store(image_id: str, store_id: str) -> Callable[[Session], None]:
    def finish(session: Session) -> None:
        update_store_lists(session, image_id, finished=[store_id])

    return finish


def steps_for(method: str | None) -> Sequence[Step[ImportRun]]:
    if method == WEB_DOWNLOAD:
        return (Begin(), Download(), CopyToStores(), Complete())
    return (Begin(), CopyToStores(), Complete())


# -- running a task to its end ---------------------------------------------------------------------


def _outcome_text(run: ImportRun) -> str:
    """What the failed task left behind and what the user can do next."""
    if run.method == COPY_IMAGE:
        return (
            f"Image {run.image_id} is unchanged and the partial copies were removed; "
            "copy it again once the problem is fixed."
        )
    if run.method == GLANCE_DIRECT:
        return (
            f"Image {run.image_id} is back to 'queued' and the data written for it was removed; "
            "stage the data again and import it again."
        )
    if run.method == WEB_DOWNLOAD:
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


async def execute_task(runtime: Runtime, task: Task, worker_id: str, heartbeat: Heartbeat) -> str:
    """Run a claimed task to its end; returns ``success``, ``failure``, ``requeued`` or ``lost``."""
    run = ImportRun.for_task(runtime, task, worker_id, heartbeat)
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
        await run_steps(steps_for(run.method), run)
    except TaskLost:
        log.info("task %s: no longer ours (failed, busted or reclaimed); stopped", task.id)
        return "lost"
    except Interrupted:
        return await _requeue(run)
    except ImageGone:
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
    except FlowFailed as exc:
        run.mark_failed_stores(NOT_KEPT)
        return await _fail(run, f"{exc.message} {_outcome_text(run)}")
    except TaskStopped as exc:  # pragma: no cover - every subclass is handled above
        return await _fail(run, str(exc))
    except Exception as exc:
        log.exception("task %s: unexpected error", task.id)
        run.mark_failed_stores(NOT_KEPT)
        return await _fail(run, _unexpected(run, exc))
    log.info("task %s: success (%s)", task.id, heartbeat.progress.phase)
    return "success"


async def _fail(run: ImportRun, message: str) -> str:
    progress = run.heartbeat.progress
    progress.phase = PHASE_FAILED
    snapshot = TaskProgress.from_dict(progress.to_dict())
    now = run.runtime.clock()
    ttl = timedelta(hours=run.runtime.settings.task_time_to_live)

    def fail(session: Session) -> bool:
        if not SqlTaskRepository(session).fail(
            run.task.id, now, ttl, message, worker=run.worker_id, progress=snapshot
        ):
            return False
        if run.image_id:
            SqlImageRepository(session).release_lock(run.image_id, run.task.id)
        return True

    if await run.runtime.run(fail):
        log.warning("task %s: failure: %s", run.task.id, message)
        return "failure"
    log.info("task %s: failed elsewhere in the meantime; its own message stays", run.task.id)
    return "lost"


async def _requeue(run: ImportRun) -> str:
    now = run.runtime.clock()
    if await run.runtime.run(lambda s: SqlTaskRepository(s).requeue(run.task.id, run.worker_id, now)):
        log.info("task %s: handed back to the queue (runner stopping)", run.task.id)
        return "requeued"
    return "lost"


def heartbeat_writer(runtime: Runtime, task: Task, worker_id: str) -> ProgressWriter:
    """The database write behind every beat: renew the lease (TaskLost if the task is no longer
    ours) and re-check the image lock (LockLost, ImageGone)."""
    lease = timedelta(seconds=runtime.settings.task_lease_time)

    async def write(progress: TaskProgress, message: str) -> None:
        now = runtime.clock()

        def beat(session: Session) -> None:
            SqlTaskRepository(session).heartbeat(task.id, worker_id, now, lease, progress, message)
            if task.image_id:
                check_holder(session, task.image_id, task.id)

        await runtime.run(beat)

    return write
