"""The SQL repositories of one unit of work, as the services and the runner see them."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from sqlalchemy.orm import Session

from glimpse.db.history_repository import SqlHistoryRepository
from glimpse.db.idempotency_repository import SqlIdempotencyRepository
from glimpse.db.image_repository import SqlImageRepository
from glimpse.db.member_repository import SqlMemberRepository
from glimpse.db.metadef_repository import SqlMetadefRepository
from glimpse.db.quota_repository import SqlQuotaRepository
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.ports import Outbox

__all__ = ["SqlRepositories"]


class SqlRepositories:
    """Implements :class:`glimpse.ports.Repositories` over one session (one transaction)."""

    def __init__(self, session: Session, wants: Callable[[str], bool] | None = None) -> None:
        self.session = session
        self.outbox = Outbox(wants) if wants is not None else Outbox()

    @cached_property
    def images(self) -> SqlImageRepository:
        return SqlImageRepository(self.session)

    @cached_property
    def members(self) -> SqlMemberRepository:
        return SqlMemberRepository(self.session)

    @cached_property
    def tasks(self) -> SqlTaskRepository:
        return SqlTaskRepository(self.session)

    @cached_property
    def metadefs(self) -> SqlMetadefRepository:
        return SqlMetadefRepository(self.session)

    @cached_property
    def idempotency(self) -> SqlIdempotencyRepository:
        return SqlIdempotencyRepository(self.session)

    @cached_property
    def history(self) -> SqlHistoryRepository:
        return SqlHistoryRepository(self.session)

    @cached_property
    def quotas(self) -> SqlQuotaRepository:
        return SqlQuotaRepository(self.session)
