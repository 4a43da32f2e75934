"""SqlHistoryRepository: the entries of the images' history (``image_history``)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from glimpse.db.models import ImageHistoryRow
from glimpse.domain.history import HistoryAction, HistoryEntry, HistoryOutcome
from glimpse.errors import InvalidInput

_HISTORY = cast(Table, ImageHistoryRow.__table__)
#: Built once: every create, status change and task end adds an entry.
_INSERT = insert(_HISTORY)


def _entry_from(row: RowMapping) -> HistoryEntry:
    return HistoryEntry(
        id=row["id"],
        image_id=row["image_id"],
        at=row["created_at"],
        action=HistoryAction(row["action"]),
        outcome=HistoryOutcome(row["outcome"]),
        user_id=row["user_id"],
        project_id=row["project_id"],
        request_id=row["request_id"],
        task_id=row["task_id"],
        stores=tuple(s for s in (row["stores"] or "").split(",") if s),
        bytes_moved=row["bytes_moved"],
        status=row["status"],
        message=row["message"] or "",
    )


class SqlHistoryRepository:
    """Implements :class:`glimpse.ports.HistoryRepository` over one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, entry: HistoryEntry) -> None:
        self._session.connection().execute(
            _INSERT,
            {
                "image_id": entry.image_id,
                "created_at": entry.at,
                "action": str(entry.action),
                "outcome": str(entry.outcome),
                "user_id": entry.user_id,
                "project_id": entry.project_id,
                "request_id": entry.request_id,
                "task_id": entry.task_id,
                "stores": ",".join(entry.stores) or None,
                "bytes_moved": entry.bytes_moved,
                "status": entry.status,
                "message": entry.message or None,
            },
        )

    def for_image(self, image_id: str, *, limit: int, marker: int | None = None) -> list[HistoryEntry]:
        query = select(_HISTORY).where(_HISTORY.c.image_id == image_id)
        if marker is not None:
            found = self._session.connection().execute(
                select(_HISTORY.c.id).where(_HISTORY.c.image_id == image_id, _HISTORY.c.id == marker)
            )
            if found.first() is None:
                raise InvalidInput(
                    f"Invalid marker {marker}: image {image_id} has no history entry with that id; "
                    "start again from the first page."
                )
            query = query.where(_HISTORY.c.id < marker)
        rows = self._session.connection().execute(query.order_by(_HISTORY.c.id.desc()).limit(limit))
        return [_entry_from(row) for row in rows.mappings()]

    def purge_older(self, before: datetime, limit: int = 1000) -> int:
        ids = select(_HISTORY.c.id).where(_HISTORY.c.created_at < before).order_by(_HISTORY.c.id).limit(limit)
        found = list(self._session.connection().execute(ids).scalars())
        if not found:
            return 0
        result = self._session.connection().execute(delete(_HISTORY).where(_HISTORY.c.id.in_(found)))
        return int(result.rowcount)
