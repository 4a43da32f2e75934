"""SqlImageRepository: images, their properties, tags and locations, with compare-and-swap status updates."""

from __future__ import annotations

import builtins
import json
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.db.base import utcnow
from glimpse.db.image_query import IMAGE_COLUMNS, list_statement, marker_values
from glimpse.db.models import ImageLocationRow, ImageMemberRow, ImagePropertyRow, ImageRow, ImageTagRow
from glimpse.db.prepared import Prepared
from glimpse.domain.images import (
    STORED_ATTRIBUTES,
    Image,
    ImageStatus,
    Location,
    Visibility,
    require_transition,
)
from glimpse.domain.members import Viewer
from glimpse.domain.queries import ImageListQuery
from glimpse.errors import Conflict, Duplicate, InvalidInput, NotFound
from glimpse.ports import LockState

_COLUMNS = STORED_ATTRIBUTES


_IMAGES = cast(Table, ImageRow.__table__)
_PROPERTIES = cast(Table, ImagePropertyRow.__table__)
_TAGS = cast(Table, ImageTagRow.__table__)
_LOCATIONS = cast(Table, ImageLocationRow.__table__)


# The statements every image read runs, built once and run as prepared statements (see
# glimpse.db.prepared): building and executing a statement through SQLAlchemy costs more Python
# than the database takes to run it.
_BY_ID = Prepared(
    select(*IMAGE_COLUMNS).where(_IMAGES.c.id == bindparam("image_id"), _IMAGES.c.deleted.is_(False))
)


def _details_of() -> CompoundSelect[Any]:
    """The properties, tags and locations of the images ``ids``, in one statement: a row per item,
    ``kind`` ('l', 'p' or 't') first, then the image, the item's row id ``seq`` (each kind's rows
    were written in that order), and up to four values. The fixed cost of a statement (and of
    expanding the ids into it) is most of what these reads cost: for a page of 20 images, one
    statement takes 294 µs of CPU where three took 404. The rows come in no particular order; the
    caller sorts them by ``seq`` (40 rows in Python: 3 µs, where SQLite's ORDER BY cost 30)."""
    ids: BindParameter[list[str]] = bindparam("ids", expanding=True)

    def kind(letter: str) -> ColumnElement[str]:
        return literal_column(f"'{letter}'", String)

    return union_all(
        select(
            kind("p").label("kind"),
            _PROPERTIES.c.image_id,
            _PROPERTIES.c.id.label("seq"),
            _PROPERTIES.c.name.label("first"),
            _PROPERTIES.c.value.label("second"),
            null().label("third"),
            null().label("fourth"),
        ).where(_PROPERTIES.c.image_id.in_(ids)),
        select(kind("t"), _TAGS.c.image_id, _TAGS.c.id, _TAGS.c.value, null(), null(), null()).where(
            _TAGS.c.image_id.in_(ids)
        ),
        select(
            kind("l"),
            _LOCATIONS.c.image_id,
            _LOCATIONS.c.id,
            _LOCATIONS.c.store_id,
            _LOCATIONS.c.url,
            _LOCATIONS.c.meta_data,
            _LOCATIONS.c.status,
        ).where(_LOCATIONS.c.image_id.in_(ids)),
    )


_DETAILS_OF = Prepared(_details_of())
_BY_SEQ = operator.itemgetter("seq")
_ID_USED = select(_IMAGES.c.id).where(_IMAGES.c.id == bindparam("image_id"))
# A new image is written with Core inserts of these (one per table, properties and tags as one
# executemany each): the ORM's flush of the same rows costs several times the Python.
_INSERT_IMAGE = insert(_IMAGES)
_INSERT_PROPERTY = insert(_PROPERTIES)
_INSERT_TAG = insert(_TAGS)


#: Each status and visibility by its stored value: a lookup here costs 20 ns where calling the enum
#: costs 650, twice for every image read (forty times a page).
_STATUSES = {str(status): status for status in ImageStatus}
_VISIBILITIES = {str(visibility): visibility for visibility in Visibility}


def _image_from(row: Mapping[Any, Any]) -> Image:
    return Image(
        id=row["id"],
        name=row["name"],
        status=_STATUSES[row["status"]],
        visibility=_VISIBILITIES[row["visibility"]],
        protected=row["protected"],
        os_hidden=row["os_hidden"],
        checksum=row["checksum"],
        os_hash_algo=row["os_hash_algo"],
        os_hash_value=row["os_hash_value"],
        owner=row["owner"],
        size=row["size"],
        virtual_size=row["virtual_size"],
        container_format=row["container_format"],
        disk_format=row["disk_format"],
        min_ram=row["min_ram"],
        min_disk=row["min_disk"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        import_task_id=row["import_task_id"],
    )


def _data_coming() -> ColumnElement[bool]:
    """Images whose data is on its way: ``saving`` (an upload) or ``uploading`` without a size (a
    stage under way; a finished stage records the size it staged)."""
    return or_(
        ImageRow.status == str(ImageStatus.SAVING),
        and_(ImageRow.status == str(ImageStatus.UPLOADING), ImageRow.size.is_(None)),
    )


class SqlImageRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    # -- reads -------------------------------------------------------------------------------------
    def get(self, image_id: str, *, details: bool = True) -> Image:
        """The image; without ``details`` its properties, tags and locations are left empty (one query)."""
        params = {"image_id": image_id}
        images = (
            self._load(_BY_ID, params)
            if details
            else [_image_from(row) for row in _BY_ID.rows(self._session.connection(), params)]
        )
        if not images:
            raise NotFound(f"No image found with ID {image_id}")
        return images[0]

    def _load(self, stmt: Prepared | Select[Any], params: dict[str, Any]) -> list[Image]:
        """Images selected by ``stmt`` (a select of the images table) with their properties, tags and
        locations: two queries whatever the page size, no ORM identity map to fill."""
        conn = self._session.connection()
        rows: Sequence[Mapping[Any, Any]] = (
            stmt.rows(conn, params)
            if isinstance(stmt, Prepared)
            # ``all()`` fetches the rows at once; iterating a result fetches them one call at a time.
            else conn.execute(stmt, params).mappings().all()
        )
        images = [_image_from(row) for row in rows]
        if not images:
            return images
        by_id = {image.id: image for image in images}
        for item in sorted(_DETAILS_OF.rows(conn, {"ids": list(by_id)}), key=_BY_SEQ):
            image, first, second = by_id[item["image_id"]], item["first"], item["second"]
            if item["kind"] == "p":
                image.properties[first] = second
            elif item["kind"] == "t":
                image.tags.append(first)
            else:
                image.locations.append(
                    Location(
                        store_id=first, url=second, metadata=json.loads(item["third"]), status=item["fourth"]
                    )
                )
        return images

    def exists_ever(self, image_id: str) -> bool:
        """Whether the id was ever used, deleted images included (ids are never reused)."""
        params = {"image_id": image_id}
        return self._session.connection().execute(_ID_USED, params).first() is not None

    def list(self, query: ImageListQuery, viewer: Viewer) -> list[Image]:
        marker = None
        if query.marker is not None:
            marker = marker_values(self._session, query, viewer)
            if marker is None:
                raise InvalidInput(f"Invalid marker: image {query.marker} could not be found.")
        dialect = self._session.get_bind().dialect.name
        stmt, params = list_statement(query, viewer, marker, nulls_sort_low=dialect in ("mysql", "mariadb"))
        return self._load(stmt, params)

    # -- writes ------------------------------------------------------------------------------------
    def add(self, image: Image) -> None:
        values: dict[str, Any] = {name: getattr(image, name) for name in _COLUMNS}
        values.update(
            id=image.id,
            status=str(image.status),
            visibility=str(image.visibility),
            created_at=image.created_at,
            updated_at=image.updated_at,
            deleted=False,
            deleted_at=None,
            import_lock_version=None,
        )
        conn = self._session.connection()
        try:
            conn.execute(_INSERT_IMAGE, values)
        except IntegrityError:
            raise Duplicate(f"An image with identifier {image.id} already exists.") from None
        if image.properties:
            conn.execute(
                _INSERT_PROPERTY,
                [{"image_id": image.id, "name": k, "value": v} for k, v in image.properties.items()],
            )
        if image.tags:
            conn.execute(_INSERT_TAG, [{"image_id": image.id, "value": t} for t in image.tags])

    def save(
        self, image: Image, *, expected_status: ImageStatus | Sequence[ImageStatus] | None = None
    ) -> None:
        """Write base attributes, properties and tags; only if the image is still in ``expected_status``.

        Raises Conflict when the image changed status (or was deleted) under us: the compare-and-swap
        is the only concurrency control a status change needs.
        """
        image.updated_at = utcnow()
        stmt = update(ImageRow).where(ImageRow.id == image.id, ImageRow.deleted.is_(False))
        if expected_status is not None:
            statuses = (
                [expected_status] if isinstance(expected_status, ImageStatus) else list(expected_status)
            )
            stmt = stmt.where(ImageRow.status.in_([str(s) for s in statuses]))
        values = {name: getattr(image, name) for name in _COLUMNS}
        values["status"] = str(image.status)
        values["visibility"] = str(image.visibility)
        result = self._session.execute(
            stmt.values(updated_at=image.updated_at, **values),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self._raise_changed(image.id)
        self._sync_properties(image)
        self._sync_tags(image)

    def _raise_changed(self, image_id: str) -> None:
        current = self._session.scalar(
            select(ImageRow.status).where(ImageRow.id == image_id, ImageRow.deleted.is_(False))
        )
        if current is None:
            raise NotFound(f"No image found with ID {image_id}")
        raise Conflict(
            f"Image {image_id} changed status to '{current}' while this request ran; reload it and try again."
        )

    def _sync_properties(self, image: Image) -> None:
        rows = {
            row.name: row
            for row in self._session.scalars(
                select(ImagePropertyRow).where(ImagePropertyRow.image_id == image.id)
            )
        }
        for name, row in rows.items():
            if name not in image.properties:
                self._session.delete(row)
            elif row.value != image.properties[name]:
                row.value = image.properties[name]
        for name, value in image.properties.items():
            if name not in rows:
                self._session.add(ImagePropertyRow(image_id=image.id, name=name, value=value))

    def _sync_tags(self, image: Image) -> None:
        rows = {
            row.value: row
            for row in self._session.scalars(select(ImageTagRow).where(ImageTagRow.image_id == image.id))
        }
        for value, row in rows.items():
            if value not in image.tags:
                self._session.delete(row)
        for value in image.tags:
            if value not in rows:
                self._session.add(ImageTagRow(image_id=image.id, value=value))

    def set_status(
        self, image_id: str, expected: Iterable[ImageStatus], target: ImageStatus, **fields: object
    ) -> None:
        """Compare-and-swap the status (plus any base columns in ``fields``); Conflict if it moved.

        Every status change goes through here, so every one is checked against the domain's status
        machine first: an edge the machine does not have raises InvalidTransition.
        """
        expected = list(expected)
        for current in expected:
            require_transition(current, target)
        now = utcnow()
        result = self._session.execute(
            update(ImageRow)
            .where(
                ImageRow.id == image_id,
                ImageRow.deleted.is_(False),
                ImageRow.status.in_([str(s) for s in expected]),
            )
            .values(status=str(target), updated_at=now, **fields),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self._raise_changed(image_id)

    def add_location(self, image_id: str, location: Location) -> None:
        self._session.add(
            ImageLocationRow(
                image_id=image_id,
                store_id=location.store_id,
                url=location.url,
                meta_data=json.dumps(location.metadata),
                status=location.status,
                created_at=utcnow(),
            )
        )
        self._session.flush()

    def remove_location(self, image_id: str, store_id: str) -> None:
        result = self._session.execute(
            delete(ImageLocationRow).where(
                ImageLocationRow.image_id == image_id, ImageLocationRow.store_id == store_id
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"Image {image_id} has no data in store '{store_id}'.")

    def mark_deleted(self, image_id: str, expected: Iterable[ImageStatus]) -> None:
        """Soft-delete the image row (ids are never reused) and drop everything hanging off it."""
        self.set_status(image_id, expected, ImageStatus.DELETED, deleted=True, deleted_at=utcnow())
        for table in (ImagePropertyRow, ImageTagRow, ImageLocationRow):
            self._session.execute(delete(table).where(table.image_id == image_id))

    # -- delayed delete: pending_delete images and their scrub claims ----------------------------------
    #
    # A pending_delete image is a deleted row (hidden from every API read) that keeps its properties,
    # tags, members and locations until the scrubber removes its data. Its ``updated_at`` is the
    # scrub claim: equal to ``deleted_at`` while nobody holds it, else the time a scrubber claimed it
    # (or renewed its claim). Every step is one UPDATE guarded by that value.

    def _pending(self, image_id: str) -> Any:
        return (
            (ImageRow.id == image_id)
            & (ImageRow.status == str(ImageStatus.PENDING_DELETE))
            & ImageRow.deleted.is_(True)
        )

    def mark_pending_delete(self, image_id: str) -> None:
        """``active`` → ``pending_delete``: hidden as deleted, everything kept for the scrubber."""
        require_transition(ImageStatus.ACTIVE, ImageStatus.PENDING_DELETE)
        now = utcnow()
        result = self._session.execute(
            update(ImageRow)
            .where(
                ImageRow.id == image_id,
                ImageRow.deleted.is_(False),
                ImageRow.status == str(ImageStatus.ACTIVE),
            )
            .values(status=str(ImageStatus.PENDING_DELETE), deleted=True, deleted_at=now, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self._raise_changed(image_id)
        self._session.execute(
            update(ImageLocationRow)
            .where(ImageLocationRow.image_id == image_id)
            .values(status=str(ImageStatus.PENDING_DELETE))
        )

    def pending_delete_locations(self, image_id: str) -> builtins.list[Location]:
        """The locations a pending_delete image still has (none for any other image)."""
        rows = self._session.execute(
            select(ImageLocationRow.store_id, ImageLocationRow.url)
            .join(ImageRow, ImageRow.id == ImageLocationRow.image_id)
            .where(self._pending(image_id))
            .order_by(ImageLocationRow.id)
        )
        return [
            Location(store_id=r.store_id, url=r.url, status=str(ImageStatus.PENDING_DELETE)) for r in rows
        ]

    def scrub_due(self, deleted_before: datetime, limit: int) -> builtins.list[str]:
        """Ids of pending_delete images deleted at or before ``deleted_before``, oldest first."""
        rows = self._session.execute(
            select(ImageRow.id)
            .where(
                ImageRow.status == str(ImageStatus.PENDING_DELETE),
                ImageRow.deleted.is_(True),
                ImageRow.deleted_at <= deleted_before,
            )
            .order_by(ImageRow.deleted_at, ImageRow.id)
            .limit(limit)
        )
        return [str(image_id) for image_id in rows.scalars()]

    def _unclaimed(self, claim_expired_before: datetime) -> Any:
        return or_(ImageRow.updated_at == ImageRow.deleted_at, ImageRow.updated_at <= claim_expired_before)

    def claim_scrub(
        self, image_id: str, deleted_before: datetime, claim_expired_before: datetime, stamp: datetime
    ) -> bool:
        """Take the scrub claim of a due image nobody holds (or whose claim expired); True if we won."""
        result = self._session.execute(
            update(ImageRow)
            .where(
                self._pending(image_id),
                ImageRow.deleted_at <= deleted_before,
                ImageRow.deleted_at != stamp,
                self._unclaimed(claim_expired_before),
            )
            .values(updated_at=stamp),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def renew_scrub(self, image_id: str, stamp: datetime, new_stamp: datetime) -> bool:
        """Move our claim from ``stamp`` to ``new_stamp``; False if we no longer hold it."""
        result = self._session.execute(
            update(ImageRow)
            .where(self._pending(image_id), ImageRow.updated_at == stamp)
            .values(updated_at=new_stamp),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_scrub(self, image_id: str, stamp: datetime) -> bool:
        """Give our claim back (the next pass retries at once); False if we no longer held it."""
        result = self._session.execute(
            update(ImageRow)
            .where(self._pending(image_id), ImageRow.updated_at == stamp)
            .values(updated_at=ImageRow.deleted_at),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def drop_scrubbed_location(self, image_id: str, store_id: str) -> None:
        self._session.execute(
            delete(ImageLocationRow).where(
                ImageLocationRow.image_id == image_id, ImageLocationRow.store_id == store_id
            )
        )

    def finish_scrub(self, image_id: str, stamp: datetime) -> bool:
        """``pending_delete`` → ``deleted`` once no location is left, under our claim; then the
        properties, tags and members go, as for an image deleted at once."""
        require_transition(ImageStatus.PENDING_DELETE, ImageStatus.DELETED)
        located = exists().where(ImageLocationRow.image_id == image_id)
        result = self._session.execute(
            update(ImageRow)
            .where(self._pending(image_id), ImageRow.updated_at == stamp, ~located)
            .values(status=str(ImageStatus.DELETED), updated_at=stamp),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        for table in (ImagePropertyRow, ImageTagRow, ImageMemberRow):
            self._session.execute(delete(table).where(table.image_id == image_id))
        return True

    def restore_pending_delete(self, image_id: str, claim_expired_before: datetime) -> None:
        """``pending_delete`` → ``active`` with what it still has, unless a scrubber holds it now.

        NotFound when no such image is pending deletion; Conflict when a scrubber holds it or has
        already removed all of its data.
        """
        require_transition(ImageStatus.PENDING_DELETE, ImageStatus.ACTIVE)
        located = exists().where(ImageLocationRow.image_id == image_id)
        now = utcnow()
        result = self._session.execute(
            update(ImageRow)
            .where(self._pending(image_id), self._unclaimed(claim_expired_before), located)
            .values(status=str(ImageStatus.ACTIVE), deleted=False, deleted_at=None, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            self._session.execute(
                update(ImageLocationRow)
                .where(ImageLocationRow.image_id == image_id)
                .values(status=str(ImageStatus.ACTIVE))
            )
            return
        row = self._session.execute(
            select(ImageRow.status, ImageRow.deleted).where(ImageRow.id == image_id)
        ).first()
        if row is None or row.status != str(ImageStatus.PENDING_DELETE):
            state = "does not exist" if row is None else f"is '{row.status}'"
            raise NotFound(f"Image {image_id} {state}; only an image in 'pending_delete' can be restored.")
        if not self.pending_delete_locations(image_id):
            raise Conflict(f"The scrubber has already removed all the data of image {image_id}.")
        raise Conflict(
            f"A scrubber is removing the data of image {image_id} right now; try again once it "
            "is done (a scrubber that stopped gives its claim up after its lease)."
        )

    # -- the import lock: compare-and-set on images.import_task_id ------------------------------------
    def take_lock(self, image_id: str, task_id: str, *, replacing: str | None = None) -> bool:
        """Set the lock to ``task_id`` if it is free (or still held by ``replacing``); True if we won.

        One UPDATE guarded by the expected holder: of any number of concurrent callers, on any
        database and from any process, exactly one sees a changed row.
        """
        holder = (
            _IMAGES.c.import_task_id.is_(None) if replacing is None else _IMAGES.c.import_task_id == replacing
        )
        result = self._session.execute(
            update(_IMAGES)
            .where(_IMAGES.c.id == image_id, _IMAGES.c.deleted.is_(False), holder)
            .values(import_task_id=task_id)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_lock(self, image_id: str, task_id: str) -> bool:
        """Drop the lock only if ``task_id`` still holds it; True if it did."""
        result = self._session.execute(
            update(_IMAGES)
            .where(_IMAGES.c.id == image_id, _IMAGES.c.import_task_id == task_id)
            .values(import_task_id=None)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def hold_lock(self, image_id: str, task_id: str) -> bool:
        """Whether ``task_id`` holds the image's lock, asserted for the rest of this transaction.

        A compare-and-set on the holder that bumps ``import_lock_version``: it succeeds only while
        ``task_id`` holds the lock, and on a database server it row-locks the image until the
        transaction ends, so a lock bust (an UPDATE guarded by the old holder's id) waits for our
        commit and then sees the result. Because it really changes the row, a Galera cluster also
        sees it conflict with a bust made on another node (one of the two fails at commit). On SQLite
        every writer holds the database lock for the whole transaction, which gives the same order.
        """
        result = self._session.execute(
            update(_IMAGES)
            .where(
                _IMAGES.c.id == image_id,
                _IMAGES.c.deleted.is_(False),
                _IMAGES.c.import_task_id == task_id,
            )
            .values(import_lock_version=func.coalesce(_IMAGES.c.import_lock_version, 0) + 1)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def lock_holder(self, image_id: str) -> str | None:
        """The task holding the image's lock; ``NotFound`` when the image is deleted or missing."""
        row = self._session.execute(
            select(_IMAGES.c.deleted, _IMAGES.c.import_task_id).where(_IMAGES.c.id == image_id)
        ).first()
        if row is None or row.deleted:
            raise NotFound(f"Image {image_id} was deleted.")
        holder: str | None = row.import_task_id
        return holder

    def lock_states(self, image_ids: Collection[str]) -> builtins.list[LockState]:
        ids = list(image_ids)
        rows = self._session.execute(
            select(_IMAGES.c.id, _IMAGES.c.status, _IMAGES.c.deleted, _IMAGES.c.import_task_id).where(
                _IMAGES.c.id.in_(ids)
            )
        )
        stores: dict[str, set[str]] = {}
        located = self._session.execute(
            select(ImageLocationRow.image_id, ImageLocationRow.store_id).where(
                ImageLocationRow.image_id.in_(ids)
            )
        )
        for image_id, store_id in located:
            stores.setdefault(image_id, set()).add(store_id)
        return [
            LockState(
                id=row.id,
                status=ImageStatus(row.status),
                deleted=bool(row.deleted),
                import_task_id=row.import_task_id,
                location_stores=frozenset(stores.get(row.id, ())),
            )
            for row in rows
        ]

    # -- one property at a time (a whole-image save would overwrite a concurrent PATCH) -------------------
    def get_property(self, image_id: str, name: str) -> str | None:
        value: str | None = self._session.execute(
            select(_PROPERTIES.c.value).where(_PROPERTIES.c.image_id == image_id, _PROPERTIES.c.name == name)
        ).scalar()
        return value

    def set_property(self, image_id: str, name: str, value: str) -> None:
        result = self._session.execute(
            update(_PROPERTIES)
            .where(_PROPERTIES.c.image_id == image_id, _PROPERTIES.c.name == name)
            .values(value=value)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            self._session.execute(_PROPERTIES.insert().values(image_id=image_id, name=name, value=value))

    def touch(self, image_id: str) -> datetime:
        now = utcnow()
        self._session.execute(update(ImageRow).where(ImageRow.id == image_id).values(updated_at=now))
        return now

    def silent_uploads(self, before: datetime, limit: int = 20) -> builtins.list[str]:
        rows = self._session.execute(
            select(ImageRow.id)
            .where(_data_coming(), ImageRow.deleted.is_(False), ImageRow.updated_at < before)
            .order_by(ImageRow.updated_at)
            .limit(limit)
        )
        return [str(image_id) for image_id in rows.scalars()]

    def revert_silent_upload(self, image_id: str, before: datetime) -> bool:
        require_transition(ImageStatus.SAVING, ImageStatus.QUEUED)
        require_transition(ImageStatus.UPLOADING, ImageStatus.QUEUED)
        result = self._session.execute(
            update(ImageRow)
            .where(
                ImageRow.id == image_id,
                _data_coming(),
                ImageRow.deleted.is_(False),
                ImageRow.updated_at < before,
            )
            .values(status=str(ImageStatus.QUEUED), size=None, virtual_size=None, updated_at=utcnow()),
            execution_options={"synchronize_session": False},
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]
