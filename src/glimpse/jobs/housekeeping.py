"""Housekeeping: the reaper of tasks whose runner died, the staging sweep, and the task purge.

**Reaper.** A running task renews its lease with every heartbeat. A lease that has expired means its
runner stopped (SIGKILL, a lost node, a hung process). The reaper, which every runner runs on every
pass, takes such a task back:

* when the task had not moved a byte yet (its progress is still in the ``pending`` phase), it is put
  back in the queue, at most :data:`MAX_ATTEMPTS` times in all;
* otherwise it fails, and the image is reverted as a failure of that method would revert it (see
  ``docs/tasks.md``), all in one unit of work that first checks the task's lease is still expired
  and, for the image, that the task still holds the lock. Objects named for the image in the target
  stores that no location row refers to are removed afterwards, and so is the staged data of an
  image that went back to ``queued`` (or was deleted).

**Stranded tasks.** A task bound to one node's staged data (``stage_host``) waits for a runner of
that node. If none claims it within twice ``import_lock_stale_after`` (the window after which its
import lock could be broken), any runner fails it and puts the image back to ``queued``.

**Staging sweep.** Staged objects of images that are deleted or missing, or that have left the
import path (queued, active and the rest, with no lock held), are removed, and so is the output of
an import plugin (decompressed or converted data) whose task no longer holds the image's lock.
Glance does the first part when the API starts; Glimpse's runners do all at start-up and then
every hour. With a staging directory on each node, each node's runners sweep their own node's
directory, so data staged on a node for an image deleted (or reverted) through another node is
removed by the node that holds it.

**Orphan sweep.** Objects of the configured stores that no image can use are removed: an object
named for an image (its id) that was last written more than ``[task] orphan_sweep_grace_time``
seconds ago, whose image is deleted or missing, or has no location in any store, holds no import
lock and is not being uploaded (``saving``); the data of a ``pending_delete`` image (delayed delete)
is the scrubber's and stays. This catches what a clean-up that failed (its store
was down) or a runner that died left behind. Each candidate is checked again right before it is
removed; a store that cannot be listed is skipped with a log line. The same pass removes, from
every store and the staging store, the leftovers of writes that never finished (a process killed
mid-write): temporary files, multipart uploads never completed, segments no manifest refers to,
once last written more than the same grace time ago. The runners sweep at start-up and then every
hour, with the staging sweep.

**Idempotency keys.** The answers kept for retries of requests sent with an ``Idempotency-Key``
(``idempotency_key_ttl`` hours) are deleted once expired, by the runners' hourly sweep
(:func:`expire_idempotency_keys`). An expired record is ignored by requests anyway, so the sweep
only keeps the table small.

**Quota reservations.** A reservation of quota for data being written (:mod:`glimpse.services.quotas`)
whose upload's process died stops counting once its expiry passes (``[quota] reservation_timeout``
after its last renewal); the same hourly sweep deletes it (:func:`expire_quota_reservations`).

**Purge.** ``glimpse-server db purge`` hard-deletes tasks that expired more than N days ago, and
the image history entries older than ``image_history_days`` (:func:`purge_history`, which every
runner's sweep pass runs too).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from glimpse.domain import notifications as events
from glimpse.domain.history import HistoryAction, HistoryEntry, HistoryOutcome
from glimpse.domain.images import ImageStatus, is_uuid
from glimpse.domain.import_plugins import ImportPlugin, derived_key, derived_owner
from glimpse.domain.imports import ImportMethod
from glimpse.domain.tasks import StoreState, Task, TaskProgress, waiting_message
from glimpse.errors import NotFound, StorageError
from glimpse.jobs.errors import ImageDeleted
from glimpse.jobs.image_state import lock_holder, record_task_end, update_store_lists
from glimpse.jobs.import_run import PHASE_FAILED, PHASE_PENDING
from glimpse.jobs.objects import delete_object, remove_unreferenced
from glimpse.ports import ImageStore, Ports, Repositories
from glimpse.telemetry import metrics

log = logging.getLogger(__name__)

#: Claims a task may have before a lost runner makes it fail instead of going back to the queue.
MAX_ATTEMPTS: Final = 3
#: Statuses in which an image may legitimately have staged data. A ``queued`` image has none: every
#: path back to ``queued`` removes it, except when the data lies on another node than the runner
#: that reverted the image (node-local staging), and then that node's sweep removes it.
_STAGING_STATUSES: Final = frozenset({ImageStatus.SAVING, ImageStatus.UPLOADING, ImageStatus.IMPORTING})


def lease_expired_message(task: Task) -> str:
    expired = task.lease_expires_at or task.heartbeat_at or task.updated_at
    when = expired.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"The worker running this task stopped (lease expired at {when}); its partial data was "
        "removed; start the import again."
    )


@dataclass
class _Cleanup:
    """What to remove from the stores once the reaper's unit of work has committed."""

    image_gone: bool = False
    staging: bool = False


def _untouched(task: Task) -> bool:
    """Whether the task is known to have had no side effect yet (no byte moved, nothing recorded)."""
    return task.progress.phase == PHASE_PENDING and all(
        p.state == StoreState.PENDING and p.bytes_done == 0 for p in task.progress.stores.values()
    )


def _failed_progress(task: Task) -> TaskProgress:
    progress = TaskProgress.from_dict(task.progress.to_dict())
    progress.end(PHASE_FAILED)
    for store in progress.stores.values():
        if store.state != StoreState.DONE:
            store.state = StoreState.FAILED
            store.error = store.error or "the worker running the task stopped"
    return progress


def _revert_image(repos: Repositories, task: Task, cleanup: _Cleanup) -> None:
    """Undo the task's image changes as a failure of its method would (the lock must be its own)."""
    image_id = task.image_id
    if image_id is None:
        return
    try:
        holder = lock_holder(repos, image_id)
    except ImageDeleted:
        cleanup.image_gone = True
        return
    if holder != task.id:
        return  # someone else holds it now: its metadata is theirs
    images = repos.images
    image = images.get(image_id)
    targets = task.stores
    request = task.import_request
    keep_copies = (
        request is not None
        and request.method is ImportMethod.COPY_IMAGE
        and not request.all_stores_must_succeed
    )
    if not keep_copies:
        for store_id in targets:
            with contextlib.suppress(NotFound):
                images.remove_location(image_id, store_id)
        failed = targets
    else:
        # A copy that may partly succeed keeps the stores it finished (each one is complete: a
        # location row is only added once its object is).
        failed = [s for s in targets if s not in image.stores]
    if request is not None and request.method.brings_data and image.status == ImageStatus.IMPORTING:
        images.set_status(image_id, [ImageStatus.IMPORTING], ImageStatus.QUEUED, size=None, virtual_size=None)
        cleanup.staging = True
    update_store_lists(repos, image_id, finished=targets, failed=failed)
    images.release_lock(image_id, task.id)


async def reap_task(ports: Ports, task: Task) -> str:
    """Take back one task whose lease expired: ``requeued``, ``failed`` or ``skipped`` (it moved on)."""
    now = ports.clock()
    if _untouched(task) and task.attempt < MAX_ATTEMPTS:

        def requeue(repos: Repositories) -> bool:
            # One guarded UPDATE (no row lock taken by a read first): a runner that renewed its
            # lease since the list was read keeps its task.
            return repos.tasks.requeue(
                task.id,
                task.claimed_by or "",
                now,
                message=waiting_message(task.stage_host) or None,
                lease_expired_by=now,
            )

        if await ports.run(requeue):
            log.warning(
                "task %s: runner %s stopped before starting it; queued again", task.id, task.claimed_by
            )
            return "requeued"
        return "skipped"

    message = lease_expired_message(task)
    ttl = timedelta(hours=ports.settings.task_time_to_live)
    progress = _failed_progress(task)

    def fail(repos: Repositories) -> _Cleanup | None:
        tasks = repos.tasks
        if not tasks.fail(
            task.id, now, ttl, message, worker=task.claimed_by, progress=progress, lease_expired_by=now
        ):
            return None
        cleanup = _Cleanup()
        _revert_image(repos, task, cleanup)
        record_task_end(repos, task, now, HistoryOutcome.FAILURE, message, progress)
        if repos.outbox.wants(events.TASK_FAILURE) and (failed := tasks.find(task.id)) is not None:
            repos.outbox.add(events.task_event(events.TASK_FAILURE, failed))
        return cleanup

    cleanup = await ports.run(fail)
    if cleanup is None:
        return "skipped"
    log.warning(
        "task %s: runner %s stopped (lease expired); task failed and reverted", task.id, task.claimed_by
    )
    if task.image_id is not None:
        await _remove_debris(ports, task, task.image_id, cleanup)
    return "failed"


async def _remove_debris(ports: Ports, task: Task, image_id: str, cleanup: _Cleanup) -> None:
    objects: dict[str, str] = {}
    for store_id in task.stores:
        if store_id in ports.stores:
            store = ports.stores.get(store_id)
            try:
                objects[store_id] = store.location_for(image_id)
            except TypeError:
                log.warning("image %s: store %s cannot be cleaned by name", image_id, store_id)
    await remove_unreferenced(ports, image_id, objects, task_id=task.id)
    staging = ports.stores.staging
    if task.method is not None and task.method.brings_data:
        # What the task's import plugins wrote is its own, whatever became of the image.
        for plugin in ImportPlugin:
            await delete_object(staging, staging.location_for(derived_key(image_id, task.id, plugin)))
    if cleanup.staging or cleanup.image_gone:
        await delete_object(staging, staging.location_for(image_id))


def stranded_message(task: Task, minutes: int) -> str:
    return (
        f"No task runner of node {task.stage_host}, where the image data was staged, claimed this task "
        f"within {minutes} minutes, so it failed and image {task.image_id} is back to 'queued' (the "
        "staged data is removed from that node by its staging sweep). Check that node's task runners, "
        "then stage the data again and import it again."
    )


async def fail_stranded(ports: Ports, *, limit: int = 20) -> list[str]:
    """Fail the pending tasks bound to one node (their data was staged there) that no runner of that
    node claimed within the pending lock window (twice ``import_lock_stale_after``), and revert their
    images as a failed import would. Returns the ids of the tasks failed."""
    now = ports.clock()
    window = timedelta(minutes=2 * ports.settings.import_lock_stale_after)
    before = now - window
    found = await ports.run(lambda s: s.tasks.stranded(before, limit), readonly=True)
    ttl = timedelta(hours=ports.settings.task_time_to_live)
    failed: list[str] = []
    for task in found:
        message = stranded_message(task, int(window.total_seconds() // 60))

        def fail(repos: Repositories, task: Task = task, message: str = message) -> _Cleanup | None:
            if not repos.tasks.fail_stranded(task.id, before, now, ttl, message):
                return None
            cleanup = _Cleanup()
            _revert_image(repos, task, cleanup)
            record_task_end(repos, task, now, HistoryOutcome.FAILURE, message)
            return cleanup

        try:
            cleanup = await ports.run(fail)
        except Exception:
            log.exception("task %s: could not fail the stranded task; the next pass tries again", task.id)
            continue
        if cleanup is None:
            continue
        log.warning("task %s: no runner of node %s claimed it in time; failed", task.id, task.stage_host)
        metrics().reaper_actions.labels("stranded_failed").inc()
        failed.append(task.id)
        if task.image_id is not None:
            ports.notify_task_change(task.image_id)
    return failed


def _revert_upload(repos: Repositories, image_id: str, before: datetime, now: datetime) -> bool:
    if not repos.images.revert_silent_upload(image_id, before):
        return False
    since = before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = HistoryEntry(
        image_id=image_id,
        at=now,
        action=HistoryAction.UPLOAD,
        outcome=HistoryOutcome.FAILURE,
        status=str(ImageStatus.QUEUED),
        message=f"The upload stopped (no sign of it since {since}); the housekeeping queued the image "
        "again for a new upload.",
    )
    repos.history.add(entry)
    return True


async def revert_silent_uploads(ports: Ports, *, limit: int = 20) -> list[str]:
    """Put back to ``queued`` the images left ``saving`` by an upload, or ``uploading`` with no size
    by a stage, that gave no sign of life for ``upload_stale_after`` seconds (both touch their image
    every 15 seconds; their process died), so their owners can upload or stage again. What that
    upload or stage wrote is the sweeps' (a partial file or an unfinished multipart write, or an
    object no location refers to). Returns the images reverted."""
    now = ports.clock()
    before = now - timedelta(seconds=ports.settings.upload_stale_after)
    found = await ports.run(lambda s: s.images.silent_uploads(before, limit), readonly=True)
    reverted: list[str] = []
    for image_id in found:
        if not await ports.run(functools.partial(_revert_upload, image_id=image_id, before=before, now=now)):
            continue  # the upload touched it, finished or failed meanwhile
        log.warning(
            "image %s: its upload or stage stopped (no sign of it since %s); the image is queued again "
            "for a new one",
            image_id,
            before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        metrics().reaper_actions.labels("stalled_upload_reverted").inc()
        reverted.append(image_id)
    return reverted


async def reap_expired(ports: Ports, *, limit: int = 20) -> list[tuple[str, str]]:
    """Reap every task whose lease expired; returns (task id, what happened) pairs."""
    now = ports.clock()
    expired = await ports.run(lambda s: s.tasks.expired_leases(now, limit), readonly=True)
    done: list[tuple[str, str]] = []
    for task in expired:
        try:
            action = await reap_task(ports, task)
            done.append((task.id, action))
            if action != "skipped":
                metrics().reaper_actions.labels(f"lease_expired_{action}").inc()
        except Exception:
            log.exception("task %s: reaping failed; the next pass tries again", task.id)
    return done


# -- staging sweep -----------------------------------------------------------------------------------


def _stale_staged(repos: Repositories, keys: Sequence[str]) -> list[str]:
    ids = [key for key in keys if is_uuid(key)]
    derived = {key: owner for key in keys if (owner := derived_owner(key)) is not None}
    rows = {
        state.id: state
        for state in repos.images.lock_states(sorted({*ids, *(image for image, _ in derived.values())}))
    }
    stale: list[str] = []
    for key in ids:
        row = rows.get(key)
        if row is None or row.deleted or (row.status not in _STAGING_STATUSES and row.import_task_id is None):
            stale.append(key)
    for key, (image_id, task_id) in derived.items():
        # An import plugin's output lives only as long as its task holds the image's lock.
        row = rows.get(image_id)
        if row is None or row.deleted or row.import_task_id != task_id:
            stale.append(key)
    return sorted(stale)


async def sweep_staging(ports: Ports) -> list[str]:
    """Remove staged data that no image can use any more; returns the keys removed."""
    staging = ports.stores.staging
    keys = [entry.key for entry in await staging.objects()]
    if not keys:
        return []
    stale = await ports.run(lambda s: _stale_staged(s, keys), readonly=True)
    removed = [key for key in stale if await delete_object(staging, staging.location_for(key))]
    if removed:
        metrics().reaper_actions.labels("staged_data_removed").inc(len(removed))
        log.info("staging sweep removed the data of %d image(s): %s", len(removed), ", ".join(removed))
    return removed


# -- orphan sweep ------------------------------------------------------------------------------------

#: Image ids looked up in one query of the orphan sweep.
_SWEEP_BATCH: Final = 500


def _orphans(repos: Repositories, store: ImageStore, keys: Sequence[str]) -> list[str]:
    """The keys among ``keys`` (image ids) whose object in ``store`` no image can use."""
    rows = {state.id: state for state in repos.images.lock_states(keys)}
    orphans: list[str] = []
    for key in keys:
        row = rows.get(key)
        if row is not None and row.status == ImageStatus.PENDING_DELETE:
            continue  # deleted, but its data is kept until the scrubber removes it
        if row is not None and not row.deleted:
            if row.location_stores:
                # Its data, or a copy of it another store may share a place with (two stores on
                # one directory or container see each other's objects): never judged here.
                continue
            if row.import_task_id is not None or row.status == ImageStatus.SAVING:
                continue  # a task or an upload may be writing it right now
        orphans.append(key)
    return orphans


async def _sweep_store(ports: Ports, store: ImageStore, grace: timedelta) -> list[str]:
    try:
        entries = await store.objects()
    except StorageError as exc:
        log.warning("orphan sweep: store %s cannot be listed, skipped: %s", store.id, exc.message)
        return []
    staging = ports.stores.staging
    cutoff = ports.clock() - grace
    old = [
        entry
        for entry in entries
        if entry.modified <= cutoff
        and is_uuid(entry.key)
        and not store.owns(staging.location_for(entry.key))  # a store sharing the staging area
    ]
    removed: list[str] = []
    for start in range(0, len(old), _SWEEP_BATCH):
        batch = {entry.key: entry for entry in old[start : start + _SWEEP_BATCH]}
        keys = list(batch)
        candidates = await ports.run(functools.partial(_orphans, store=store, keys=keys), readonly=True)
        for key in candidates:
            # Again, just before the removal: a copy may have started since the batch was read.
            if not await ports.run(functools.partial(_orphans, store=store, keys=[key]), readonly=True):
                continue
            if await delete_object(store, store.location_for(key)):
                metrics().reaper_actions.labels("orphan_object_removed").inc()
                log.warning(
                    "orphan sweep: removed the object of image %s from store %s (written %s, no "
                    "image refers to it)",
                    key,
                    store.id,
                    batch[key].modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                removed.append(key)
    return removed


async def sweep_orphans(ports: Ports) -> dict[str, list[str]]:
    """Remove the objects of every configured store that no image can use and that were written
    more than ``orphan_sweep_grace_time`` seconds ago; returns the keys removed, by store id. Then
    remove the leftovers of unfinished writes of every store and of the staging store, with the
    same grace time (see :func:`sweep_unfinished`)."""
    grace = timedelta(seconds=ports.settings.orphan_sweep_grace_time)
    removed: dict[str, list[str]] = {}
    for store in ports.stores.all():
        keys = await _sweep_store(ports, store, grace)
        if keys:
            removed[store.id] = keys
    stores = [*ports.stores.all()]
    if not any(store is ports.stores.staging for store in stores):
        stores.append(ports.stores.staging)
    for store in stores:
        await sweep_unfinished(ports, store, grace)
    return removed


async def sweep_unfinished(ports: Ports, store: ImageStore, grace: timedelta) -> list[str]:
    """Remove what writes to ``store`` that never finished left behind (temporary files, multipart
    uploads, segments without a manifest) and that was last written more than ``grace`` ago; a
    store that fails is skipped with a log line. Returns the driver's descriptions of what went."""
    try:
        removed = await store.sweep_unfinished(ports.clock() - grace)
    except StorageError as exc:
        log.warning(
            "orphan sweep: the unfinished writes of store %s could not be swept, skipped: %s",
            store.id,
            exc.message,
        )
        return []
    if removed:
        metrics().reaper_actions.labels("unfinished_write_removed").inc(len(removed))
    for what in removed:
        log.warning(
            "orphan sweep: removed from store %s the leftover of a write that never finished: %s",
            store.id,
            what,
        )
    return removed


# -- idempotency keys ------------------------------------------------------------------------------

#: Records deleted per unit of work, so that one sweep never holds a long transaction.
IDEMPOTENCY_BATCH: Final = 500


async def expire_idempotency_keys(ports: Ports, *, batch: int = IDEMPOTENCY_BATCH) -> int:
    """Delete every expired ``Idempotency-Key`` record, a batch per unit of work; returns how many."""
    now = ports.clock()
    removed = 0
    while True:
        done = await ports.run(lambda s: s.idempotency.purge_expired(now, batch))
        removed += done
        if done < batch:
            break
    if removed:
        log.info("removed %d expired Idempotency-Key record(s)", removed)
    return removed


# -- image history -----------------------------------------------------------------------------------

#: History entries deleted per unit of work, so that one purge never holds a long transaction.
HISTORY_BATCH: Final = 1000


async def purge_history(ports: Ports, *, batch: int = HISTORY_BATCH) -> int:
    """Delete the history entries older than ``image_history_days``, a batch per unit of work;
    returns how many."""
    before = ports.clock() - timedelta(days=ports.settings.image_history_days)
    removed = 0
    while True:
        done = await ports.run(lambda s: s.history.purge_older(before, batch))
        removed += done
        if done < batch:
            break
    if removed:
        log.info(
            "purged %d image history entr%s older than %s", removed, "y" if removed == 1 else "ies", before
        )
    return removed


async def expire_quota_reservations(ports: Ports) -> int:
    """Delete the quota reservations whose expiry passed; returns how many."""
    now = ports.clock()
    removed = await ports.run(lambda s: s.quotas.purge_expired(now))
    if removed:
        log.info("removed %d expired quota reservation(s) of uploads that stopped", removed)
    return removed


# -- purge -------------------------------------------------------------------------------------------


async def purge_tasks(ports: Ports, age_in_days: int = 0) -> int:
    """Hard-delete tasks that expired more than ``age_in_days`` days ago; returns how many."""
    now = ports.clock()
    older_than = timedelta(days=age_in_days)
    return await ports.run(lambda s: s.tasks.purge_expired(now, older_than))
