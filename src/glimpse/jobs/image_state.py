"""The image side of a running task: the lock re-check and the two store-list properties.

A task writes image metadata only inside a unit of work that first calls :func:`hold_lock`, the
image repository's compare-and-set on the lock holder (``ImageRepository.hold_lock``): it succeeds
only while this task holds the lock and, being a write of the image row, keeps anyone from taking the
lock until the transaction ends (on a Galera cluster: makes one of the two fail), so no write of ours
can land after another task took the lock.

Only the properties named here are written, one row at a time: a whole-image save would overwrite a
user's concurrent PATCH of unrelated attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from glimpse.domain.history import HistoryEntry, HistoryOutcome
from glimpse.domain.tasks import Task, TaskProgress
from glimpse.errors import NotFound
from glimpse.jobs.errors import ImageDeleted, LockLost
from glimpse.ports import Repositories

IMPORTING_PROPERTY = "os_glance_importing_to_stores"
FAILED_PROPERTY = "os_glance_failed_import"


def join_stores(stores: Iterable[str]) -> str:
    """Glance's format: sorted, de-duplicated, comma-joined; ``""`` when empty."""
    return ",".join(sorted({s for s in stores if s}))


def split_stores(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def lock_holder(repos: Repositories, image_id: str) -> str | None:
    """Who holds the image's lock; ImageDeleted when the image is deleted or missing."""
    try:
        return repos.images.lock_holder(image_id)
    except NotFound:
        raise ImageDeleted(image_id) from None


def check_holder(repos: Repositories, image_id: str, task_id: str) -> None:
    """Raise ImageDeleted or LockLost unless the image exists and ``task_id`` holds its lock (a read)."""
    holder = lock_holder(repos, image_id)
    if holder != task_id:
        raise LockLost(image_id, holder)


def hold_lock(repos: Repositories, image_id: str, task_id: str) -> None:
    """Assert, for the rest of this transaction, that ``task_id`` holds the image's lock."""
    if not repos.images.hold_lock(image_id, task_id):
        check_holder(repos, image_id, task_id)
        raise LockLost(image_id, None)  # pragma: no cover - the row changed between the two statements


def update_store_lists(
    repos: Repositories,
    image_id: str,
    *,
    finished: Iterable[str] = (),
    failed: Iterable[str] = (),
    importing: Iterable[str] | None = None,
    not_failed: Iterable[str] = (),
) -> None:
    """Take ``finished`` and ``failed`` stores off the importing list and add ``failed`` to the
    failed list. ``importing`` (when given) replaces the importing list first, and ``not_failed``
    stores are taken off the failed list first. Both properties are always written, so a finished
    import shows them as ``""``, as Glance does."""
    failed = list(failed)
    current = (
        list(importing)
        if importing is not None
        else split_stores(repos.images.get_property(image_id, IMPORTING_PROPERTY))
    )
    gone = set(finished) | set(failed)
    repos.images.set_property(image_id, IMPORTING_PROPERTY, join_stores(s for s in current if s not in gone))
    cleared = set(not_failed)
    failed_before = split_stores(repos.images.get_property(image_id, FAILED_PROPERTY))
    already = [s for s in failed_before if s not in cleared]
    repos.images.set_property(image_id, FAILED_PROPERTY, join_stores([*already, *failed]))


def record_task_end(
    repos: Repositories,
    task: Task,
    now: datetime,
    outcome: HistoryOutcome,
    message: str,
    progress: TaskProgress | None = None,
) -> None:
    """Add how ``task`` ended to its image's history, in the unit of work that ends it, with the
    bytes it moved and the image's status at that moment."""
    if task.image_id is None:
        return
    states = repos.images.lock_states([task.image_id])
    status = None if not states else "deleted" if states[0].deleted else str(states[0].status)
    moved = (progress or task.progress).bytes_moved()
    entry = HistoryEntry.of_task(task, now, outcome, bytes_moved=moved, status=status, message=message)
    repos.history.add(entry)
