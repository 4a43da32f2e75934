"""SqlMemberRepository: who an image is shared with, and each member's answer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.db.base import utcnow
from glimpse.db.models import ImageMemberRow
from glimpse.domain.images import MemberStatus
from glimpse.domain.members import ImageMember
from glimpse.errors import Duplicate, NotFound

#: The table itself: the reads are Core statements, which a read-only unit of work without the
#: ORM (``ReadSession``) can run too.
_MEMBERS = ImageMemberRow.__table__


def _to_domain(row: ImageMemberRow | Row[Any]) -> ImageMember:
    return ImageMember(
        image_id=row.image_id,
        member_id=row.member,
        status=MemberStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlMemberRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def find(self, image_id: str, member_id: str | None) -> ImageMember | None:
        if member_id is None:
            return None
        row = (
            self._session.connection()
            .execute(_MEMBERS.select().where(_MEMBERS.c.image_id == image_id, _MEMBERS.c.member == member_id))
            .one_or_none()
        )
        return None if row is None else _to_domain(row)

    def get(self, image_id: str, member_id: str) -> ImageMember:
        member = self.find(image_id, member_id)
        if member is None:
            raise NotFound(f"Member {member_id} of image {image_id} not found.")
        return member

    def list(self, image_id: str) -> list[ImageMember]:
        rows = self._session.connection().execute(
            _MEMBERS.select().where(_MEMBERS.c.image_id == image_id).order_by(_MEMBERS.c.id)
        )
        return [_to_domain(row) for row in rows]

    def count(self, image_id: str) -> int:
        count = select(func.count()).select_from(_MEMBERS).where(_MEMBERS.c.image_id == image_id)
        return int(self._session.connection().execute(count).scalar() or 0)

    def add(self, image_id: str, member_id: str) -> ImageMember:
        now = utcnow()
        row = ImageMemberRow(
            image_id=image_id,
            member=member_id,
            status=str(MemberStatus.PENDING),
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session.begin_nested():
                self._session.add(row)
        except IntegrityError:
            raise Duplicate(f"{member_id} is already a member of image {image_id}.") from None
        return _to_domain(row)

    def set_status(self, image_id: str, member_id: str, status: MemberStatus) -> ImageMember:
        result = self._session.execute(
            update(ImageMemberRow)
            .where(ImageMemberRow.image_id == image_id, ImageMemberRow.member == member_id)
            .values(status=str(status), updated_at=utcnow())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"Member {member_id} of image {image_id} not found.")
        return self.get(image_id, member_id)

    def remove(self, image_id: str, member_id: str) -> None:
        result = self._session.execute(
            delete(ImageMemberRow).where(
                ImageMemberRow.image_id == image_id, ImageMemberRow.member == member_id
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"Member {member_id} of image {image_id} not found.")

    def remove_all(self, image_id: str) -> None:
        self._session.execute(delete(ImageMemberRow).where(ImageMemberRow.image_id == image_id))
