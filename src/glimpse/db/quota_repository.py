"""SqlQuotaRepository: a project's usage of the four quota resources, its reservations, and the row
lock that makes a check and the write it allows one step on every node.

Usage counts what the images table says (sizes of the stored copies, those of ``pending_delete``
images too until scrubbed, staged sizes, counts by status)
plus the live reservations of data still being written. A check takes the project's row in
``quota_projects`` with ``SELECT ... FOR UPDATE`` (PostgreSQL, MariaDB) before it counts, so a second
check for the same project waits until the first one's transaction commits and then counts what it
added; on SQLite every writing transaction begins ``IMMEDIATE``, which serialises them anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.db.models import ImageLocationRow, ImageRow, QuotaProjectRow, QuotaReservationRow
from glimpse.domain.images import ImageStatus
from glimpse.domain.quotas import STAGED_STATUSES, UPLOADING_STATUSES, Resource

_PROJECTS = cast(Table, QuotaProjectRow.__table__)
PENDING_DELETE = str(ImageStatus.PENDING_DELETE)
_RESERVATIONS = cast(Table, QuotaReservationRow.__table__)


class SqlQuotaRepository:
    """Implements :class:`glimpse.ports.QuotaRepository` over one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def lock_project(self, project: str, now: datetime) -> None:
        """Hold ``project``'s quota row until the transaction ends (created on first use)."""
        connection = self._session.connection()
        stmt = select(_PROJECTS.c.project).where(_PROJECTS.c.project == project).with_for_update()
        if connection.dialect.name in ("mysql", "mariadb"):
            # InnoDB: transactions that each failed to insert the row hold a shared lock on it
            # from the duplicate-key check, and then all wait for the exclusive one (a deadlock).
            # The row is made in a transaction of its own instead, which keeps no lock.
            exists = select(_PROJECTS.c.project).where(_PROJECTS.c.project == project)
            if connection.execute(exists).first() is None:
                with connection.engine.connect() as apart:
                    apart.execute(
                        _PROJECTS.insert().prefix_with("IGNORE").values(project=project, created_at=now)
                    )
                    apart.commit()
            connection.execute(stmt).first()
            return
        if connection.execute(stmt).first() is not None:
            return
        try:
            with self._session.begin_nested():  # its SAVEPOINT comes with the connection asked inside
                self._session.connection().execute(_PROJECTS.insert().values(project=project, created_at=now))
        except IntegrityError:  # another transaction inserted it first: wait for its lock instead
            pass
        connection.execute(stmt).first()

    def usage(self, project: str, resource: Resource, now: datetime) -> int:
        """What ``project`` uses of ``resource`` now: its images plus its live reservations.

        One statement, hence one snapshot even under READ COMMITTED: an upload that finishes
        meanwhile (its location added and its reservation dropped in one commit) counts once,
        never zero times."""
        stmt = select(
            self._from_images(project, resource).scalar_subquery()
            + self._reserved(project, resource, now).scalar_subquery()
        )
        return int(self._session.connection().execute(stmt).scalar() or 0)

    def reserved(self, project: str, resource: Resource, now: datetime) -> int:
        return int(self._session.connection().execute(self._reserved(project, resource, now)).scalar() or 0)

    @staticmethod
    def _reserved(project: str, resource: Resource, now: datetime) -> Select[Any]:
        return select(func.coalesce(func.sum(_RESERVATIONS.c.amount), 0)).where(
            _RESERVATIONS.c.project == project,
            _RESERVATIONS.c.resource == resource.value,
            _RESERVATIONS.c.expires_at > now,
        )

    @staticmethod
    def _from_images(project: str, resource: Resource) -> Select[Any]:
        mine = (ImageRow.owner == project, ImageRow.deleted.is_(False))
        if resource is Resource.IMAGE_SIZE_TOTAL:
            # A pending_delete image (delayed_delete: a deleted row) still has its data in the
            # stores until the scrubber removes it, location by location: those bytes count.
            return (
                select(func.coalesce(func.sum(ImageRow.size), 0))
                .select_from(ImageLocationRow)
                .join(ImageRow, ImageRow.id == ImageLocationRow.image_id)
                .where(
                    ImageRow.owner == project,
                    or_(ImageRow.deleted.is_(False), ImageRow.status == PENDING_DELETE),
                )
            )
        if resource is Resource.IMAGE_STAGE_TOTAL:
            return select(func.coalesce(func.sum(ImageRow.size), 0)).where(
                *mine, ImageRow.status.in_(STAGED_STATUSES)
            )
        if resource is Resource.IMAGE_COUNT_TOTAL:
            return select(func.count()).select_from(ImageRow).where(*mine)
        return (
            select(func.count()).select_from(ImageRow).where(*mine, ImageRow.status.in_(UPLOADING_STATUSES))
        )

    def held(self, resource: Resource, holder: str, now: datetime) -> int:
        """The live reservation of ``holder`` for ``resource`` (0 when it has none)."""
        stmt = select(_RESERVATIONS.c.amount).where(
            _RESERVATIONS.c.resource == resource.value,
            _RESERVATIONS.c.holder == holder,
            _RESERVATIONS.c.expires_at > now,
        )
        return int(self._session.connection().execute(stmt).scalar() or 0)

    def hold(
        self, project: str, resource: Resource, holder: str, amount: int, now: datetime, expires_at: datetime
    ) -> None:
        """Make ``holder``'s reservation for ``resource`` exactly ``amount`` (the caller checked it
        under :meth:`lock_project`)."""
        connection = self._session.connection()
        where = (_RESERVATIONS.c.resource == resource.value, _RESERVATIONS.c.holder == holder)
        result = connection.execute(
            update(_RESERVATIONS)
            .where(*where)
            .values(project=project, amount=amount, expires_at=expires_at, created_at=now)
        )
        if int(result.rowcount) == 0:
            connection.execute(
                _RESERVATIONS.insert().values(
                    resource=resource.value,
                    holder=holder,
                    project=project,
                    amount=amount,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def renew(self, holder: str, expires_at: datetime) -> None:
        """Push back the expiry of ``holder``'s reservations (its write is still alive)."""
        self._session.connection().execute(
            update(_RESERVATIONS).where(_RESERVATIONS.c.holder == holder).values(expires_at=expires_at)
        )

    def give_back(self, holder: str, resource: Resource, amount: int) -> None:
        """Shrink ``holder``'s reservation of ``resource`` by ``amount``, not below zero."""
        held = _RESERVATIONS.c.amount
        self._session.connection().execute(
            update(_RESERVATIONS)
            .where(_RESERVATIONS.c.resource == resource.value, _RESERVATIONS.c.holder == holder)
            .values(amount=case((held > amount, held - amount), else_=0))
        )

    def release(self, holder: str, resource: Resource | None = None) -> None:
        """Drop ``holder``'s reservations (of one resource, or all)."""
        stmt = delete(_RESERVATIONS).where(_RESERVATIONS.c.holder == holder)
        if resource is not None:
            stmt = stmt.where(_RESERVATIONS.c.resource == resource.value)
        self._session.connection().execute(stmt)

    def purge_expired(self, now: datetime) -> int:
        """Delete the reservations whose expiry passed (their process died); returns how many."""
        result = self._session.connection().execute(
            delete(_RESERVATIONS).where(_RESERVATIONS.c.expires_at <= now)
        )
        return int(result.rowcount)
