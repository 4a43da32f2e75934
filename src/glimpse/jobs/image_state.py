"""The image side of a running task: the lock re-check and the two store-list properties.

A task writes image metadata only inside a unit of work that first calls :func:`hold_lock`. That is
a compare-and-set on ``images.import_task_id``: it changes no value, but it succeeds only while this
task holds the lock, and on a database server it row-locks the image until the transaction ends, so
a lock bust (itself an UPDATE guarded by the old holder's id) waits for our commit and then sees the
result. On SQLite every writer holds the database lock for the whole transaction, which gives the
same order. Either way no write of ours can land after another task took the lock.

Only the properties named here are written, one row at a time: a whole-image save would overwrite a
user's concurrent PATCH of unrelated attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from glimpse.db.models import ImagePropertyRow, ImageRow
from glimpse.jobs.errors import ImageDeleted, LockLost

IMPORTING_PROPERTY = "os_glance_importing_to_stores"
FAILED_PROPERTY = "os_glance_failed_import"

_IMAGES = cast(Table, ImageRow.__table__)
_PROPERTIES = cast(Table, ImagePropertyRow.__table__)


def join_stores(stores: Iterable[str]) -> str:
    """Glance's format: sorted, de-duplicated, comma-joined; ``""`` when empty."""
    return ",".join(sorted({s for s in stores if s}))


def split_stores(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def lock_holder(session: Session, image_id: str) -> str | None:
    """Who holds the image's lock; ImageDeleted when the image is deleted or missing."""
    row = session.execute(
        select(_IMAGES.c.deleted, _IMAGES.c.import_task_id).where(_IMAGES.c.id == image_id)
    ).first()
    if row is None or row.deleted:
        raise ImageDeleted(image_id)
    holder: str | None = row.import_task_id
    return holder


def check_holder(session: Session, image_id: str, task_id: str) -> None:
    """Raise ImageDeleted or LockLost unless the image exists and ``task_id`` holds its lock (a read)."""
    holder = lock_holder(session, image_id)
    if holder != task_id:
        raise LockLost(image_id, holder)


def hold_lock(session: Session, image_id: str, task_id: str) -> None:
    """Assert, for the rest of this transaction, that ``task_id`` holds the image's lock."""
    result = session.execute(
        update(_IMAGES)
        .where(_IMAGES.c.id == image_id, _IMAGES.c.deleted.is_(False), _IMAGES.c.import_task_id == task_id)
        .values(import_task_id=task_id)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        check_holder(session, image_id, task_id)
        raise LockLost(image_id, None)  # pragma: no cover - the row changed between the two statements


def get_property(session: Session, image_id: str, name: str) -> str | None:
    value: str | None = session.execute(
        select(_PROPERTIES.c.value).where(_PROPERTIES.c.image_id == image_id, _PROPERTIES.c.name == name)
    ).scalar()
    return value


def set_property(session: Session, image_id: str, name: str, value: str) -> None:
    result = session.execute(
        update(_PROPERTIES)
        .where(_PROPERTIES.c.image_id == image_id, _PROPERTIES.c.name == name)
        .values(value=value)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(_PROPERTIES.insert().values(image_id=image_id, name=name, value=value))


def delete_property(session: Session, image_id: str, name: str) -> None:
    session.execute(delete(_PROPERTIES).where(_PROPERTIES.c.image_id == image_id, _PROPERTIES.c.name == name))


def update_store_lists(
    session: Session,
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
        else split_stores(get_property(session, image_id, IMPORTING_PROPERTY))
    )
    gone = set(finished) | set(failed)
    set_property(session, image_id, IMPORTING_PROPERTY, join_stores(s for s in current if s not in gone))
    cleared = set(not_failed)
    already = [s for s in split_stores(get_property(session, image_id, FAILED_PROPERTY)) if s not in cleared]
    set_property(session, image_id, FAILED_PROPERTY, join_stores([*already, *failed]))
