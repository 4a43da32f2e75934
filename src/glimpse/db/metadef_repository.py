"""SqlMetadefRepository: metadata-definition namespaces, their entries and resource types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.db.base import utcnow
from glimpse.db.models import (
    MetadefAssociationRow,
    MetadefEntryRow,
    MetadefNamespaceRow,
    MetadefResourceTypeRow,
)
from glimpse.domain.metadefs import Association, Entry, EntryKind, Namespace, NamespaceQuery, ResourceType
from glimpse.errors import Duplicate, InvalidInput, NotFound

_SORT_COLUMNS = {
    "created_at": MetadefNamespaceRow.created_at,
    "updated_at": MetadefNamespaceRow.updated_at,
    "namespace": MetadefNamespaceRow.namespace,
}


def _namespace(row: MetadefNamespaceRow) -> Namespace:
    return Namespace(
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        visibility=row.visibility,
        protected=row.protected,
        owner=row.owner,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _entry(row: MetadefEntryRow) -> Entry:
    return Entry(
        kind=EntryKind(row.kind),
        name=row.name,
        body=orjson.loads(row.body),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _missing(namespace: str) -> NotFound:
    return NotFound(f"Metadata definition namespace {namespace} not found.")


def _no_entry(namespace: str, kind: EntryKind, name: str) -> NotFound:
    return NotFound(f"Metadata definition {kind} {name} not found in namespace {namespace}.")


def _namespace_taken(namespace: str) -> Duplicate:
    return Duplicate(f"A metadata definition namespace named {namespace} already exists.")


def _entry_is(namespace_id: int, kind: EntryKind, name: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions that select one entry of a namespace."""
    return (
        MetadefEntryRow.namespace_id == namespace_id,
        MetadefEntryRow.kind == str(kind),
        MetadefEntryRow.name == name,
    )


class SqlMetadefRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _insert(self, row: object, taken: Duplicate) -> None:
        """Add ``row`` in a savepoint; ``taken`` is raised when a unique constraint refuses it."""
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            raise taken from None

    # -- namespaces ----------------------------------------------------------------------------------

    def _row(self, name: str) -> MetadefNamespaceRow | None:
        return self._session.scalars(
            select(MetadefNamespaceRow).where(MetadefNamespaceRow.namespace == name)
        ).one_or_none()

    def _id(self, name: str) -> int:
        row_id = self._session.scalar(
            select(MetadefNamespaceRow.id).where(MetadefNamespaceRow.namespace == name)
        )
        if row_id is None:
            raise _missing(name)
        return int(row_id)

    def find_namespace(self, name: str) -> Namespace | None:
        row = self._row(name)
        return None if row is None else _namespace(row)

    def list_namespaces(
        self, query: NamespaceQuery, *, project_id: str | None, admin: bool
    ) -> list[Namespace]:
        stmt = select(MetadefNamespaceRow)
        if not admin:
            stmt = stmt.where(
                or_(MetadefNamespaceRow.visibility == "public", MetadefNamespaceRow.owner == project_id)
            )
        if query.visibility is not None:
            stmt = stmt.where(MetadefNamespaceRow.visibility == query.visibility)
        if query.resource_types:
            associated = (
                select(MetadefAssociationRow.namespace_id)
                .join(
                    MetadefResourceTypeRow,
                    MetadefResourceTypeRow.id == MetadefAssociationRow.resource_type_id,
                )
                .where(MetadefResourceTypeRow.name.in_(query.resource_types))
            )
            stmt = stmt.where(MetadefNamespaceRow.id.in_(associated))
        column = _SORT_COLUMNS[query.sort_key]
        descending = query.sort_dir == "desc"
        if query.marker is not None:
            marker = self._row(query.marker)
            if marker is None or not (admin or marker.visibility == "public" or marker.owner == project_id):
                raise InvalidInput(f"Marker {query.marker} is not a namespace you can see; start without it.")
            value = getattr(marker, query.sort_key)
            if descending:
                stmt = stmt.where(
                    or_(column < value, and_(column == value, MetadefNamespaceRow.id < marker.id))
                )
            else:
                stmt = stmt.where(
                    or_(column > value, and_(column == value, MetadefNamespaceRow.id > marker.id))
                )
        order = (
            (column.desc(), MetadefNamespaceRow.id.desc()) if descending else (column, MetadefNamespaceRow.id)
        )
        rows = self._session.scalars(stmt.order_by(*order).limit(query.limit))
        return [_namespace(row) for row in rows]

    def add_namespace(self, namespace: Namespace) -> Namespace:
        now = utcnow()
        row = MetadefNamespaceRow(
            namespace=namespace.namespace,
            display_name=namespace.display_name,
            description=namespace.description,
            visibility=namespace.visibility,
            protected=namespace.protected,
            owner=namespace.owner,
            created_at=now,
            updated_at=now,
        )
        self._insert(row, _namespace_taken(namespace.namespace))
        return _namespace(row)

    def update_namespace(self, name: str, namespace: Namespace) -> Namespace:
        row_id = self._id(name)
        try:
            with self._session.begin_nested():
                self._session.execute(
                    update(MetadefNamespaceRow)
                    .where(MetadefNamespaceRow.id == row_id)
                    .values(
                        namespace=namespace.namespace,
                        display_name=namespace.display_name,
                        description=namespace.description,
                        visibility=namespace.visibility,
                        protected=namespace.protected,
                        owner=namespace.owner,
                        updated_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise _namespace_taken(namespace.namespace) from None
        found = self.find_namespace(namespace.namespace)
        if found is None:  # pragma: no cover - renamed away by a concurrent writer
            raise _missing(namespace.namespace)
        return found

    def delete_namespace(self, name: str) -> None:
        row_id = self._id(name)
        # Children first: a cascade is not relied upon (SQLite enforces it only with foreign keys on).
        self._session.execute(delete(MetadefEntryRow).where(MetadefEntryRow.namespace_id == row_id))
        self._session.execute(
            delete(MetadefAssociationRow).where(MetadefAssociationRow.namespace_id == row_id)
        )
        result = self._session.execute(delete(MetadefNamespaceRow).where(MetadefNamespaceRow.id == row_id))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _missing(name)

    # -- resource types ------------------------------------------------------------------------------

    def associations(self, names: Sequence[str]) -> dict[str, list[Association]]:
        found: dict[str, list[Association]] = {name: [] for name in names}
        if not names:
            return found
        rows = self._session.execute(
            select(MetadefNamespaceRow.namespace, MetadefResourceTypeRow.name, MetadefAssociationRow)
            .join(MetadefNamespaceRow, MetadefNamespaceRow.id == MetadefAssociationRow.namespace_id)
            .join(MetadefResourceTypeRow, MetadefResourceTypeRow.id == MetadefAssociationRow.resource_type_id)
            .where(MetadefNamespaceRow.namespace.in_(list(names)))
            .order_by(MetadefAssociationRow.id)
        )
        for namespace, resource_type, row in rows:
            found[namespace].append(
                Association(
                    name=resource_type,
                    prefix=row.prefix,
                    properties_target=row.properties_target,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                )
            )
        return found

    def _resource_type_id(self, name: str) -> int:
        row_id = self._session.scalar(
            select(MetadefResourceTypeRow.id).where(MetadefResourceTypeRow.name == name)
        )
        if row_id is not None:
            return int(row_id)
        now = utcnow()
        row = MetadefResourceTypeRow(name=name, protected=False, created_at=now, updated_at=now)
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:  # created meanwhile by another writer
            return self._resource_type_id(name)
        return row.id

    def add_association(self, namespace: str, association: Association) -> Association:
        namespace_id = self._id(namespace)
        now = utcnow()
        row = MetadefAssociationRow(
            namespace_id=namespace_id,
            resource_type_id=self._resource_type_id(association.name),
            prefix=association.prefix,
            properties_target=association.properties_target,
            created_at=now,
            updated_at=now,
        )
        self._insert(
            row,
            Duplicate(f"Namespace {namespace} is already associated with resource type {association.name}."),
        )
        return Association(association.name, row.prefix, row.properties_target, now, now)

    def remove_association(self, namespace: str, resource_type: str) -> None:
        namespace_id = self._id(namespace)
        type_id = select(MetadefResourceTypeRow.id).where(MetadefResourceTypeRow.name == resource_type)
        result = self._session.execute(
            delete(MetadefAssociationRow).where(
                MetadefAssociationRow.namespace_id == namespace_id,
                MetadefAssociationRow.resource_type_id.in_(type_id.scalar_subquery()),
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"Namespace {namespace} is not associated with resource type {resource_type}.")

    def resource_types(self) -> list[ResourceType]:
        rows = self._session.scalars(select(MetadefResourceTypeRow).order_by(MetadefResourceTypeRow.id))
        return [ResourceType(row.name, row.protected, row.created_at, row.updated_at) for row in rows]

    # -- objects, properties, tags -------------------------------------------------------------------

    def entries(self, namespace: str, kind: EntryKind) -> list[Entry]:
        namespace_id = self._id(namespace)
        rows = self._session.scalars(
            select(MetadefEntryRow)
            .where(MetadefEntryRow.namespace_id == namespace_id, MetadefEntryRow.kind == str(kind))
            .order_by(MetadefEntryRow.id)
        )
        return [_entry(row) for row in rows]

    def _entry_row(self, namespace_id: int, kind: EntryKind, name: str) -> MetadefEntryRow | None:
        return self._session.scalars(
            select(MetadefEntryRow).where(*_entry_is(namespace_id, kind, name))
        ).one_or_none()

    def find_entry(self, namespace: str, kind: EntryKind, name: str) -> Entry | None:
        row = self._entry_row(self._id(namespace), kind, name)
        return None if row is None else _entry(row)

    def add_entry(self, namespace: str, kind: EntryKind, name: str, body: Mapping[str, Any]) -> Entry:
        now = utcnow()
        row = MetadefEntryRow(
            namespace_id=self._id(namespace),
            kind=str(kind),
            name=name,
            body=orjson.dumps(dict(body)).decode(),
            created_at=now,
            updated_at=now,
        )
        self._insert(row, Duplicate(f"Namespace {namespace} already has a {kind} named {name}."))
        return _entry(row)

    def replace_entry(
        self, namespace: str, kind: EntryKind, name: str, new_name: str, body: Mapping[str, Any]
    ) -> Entry:
        namespace_id = self._id(namespace)
        try:
            with self._session.begin_nested():
                result = self._session.execute(
                    update(MetadefEntryRow)
                    .where(*_entry_is(namespace_id, kind, name))
                    .values(name=new_name, body=orjson.dumps(dict(body)).decode(), updated_at=utcnow())
                )
        except IntegrityError:
            raise Duplicate(f"Namespace {namespace} already has a {kind} named {new_name}.") from None
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _no_entry(namespace, kind, name)
        row = self._entry_row(namespace_id, kind, new_name)
        if row is None:  # pragma: no cover - removed by a concurrent writer
            raise _no_entry(namespace, kind, new_name)
        self._session.refresh(row)
        return _entry(row)

    def remove_entry(self, namespace: str, kind: EntryKind, name: str) -> None:
        result = self._session.execute(
            delete(MetadefEntryRow).where(*_entry_is(self._id(namespace), kind, name))
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _no_entry(namespace, kind, name)

    def remove_entries(self, namespace: str, kind: EntryKind) -> None:
        self._session.execute(
            delete(MetadefEntryRow).where(
                MetadefEntryRow.namespace_id == self._id(namespace), MetadefEntryRow.kind == str(kind)
            )
        )
