"""SqlTaskRepository: task rows, claims with leases, heartbeats, and the expiry rules."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from glimpse.db.models import QuotaReservationRow, TaskRow
from glimpse.db.prepared import Prepared
from glimpse.domain.tasks import (
    ACTIVE,
    CancelRequest,
    Task,
    TaskCancelled,
    TaskLost,
    TaskProgress,
    TaskStatus,
    TaskType,
    require_task_transition,
)
from glimpse.errors import InvalidInput, NotFound

_TASKS = cast(Table, TaskRow.__table__)
TASK_SORT_KEYS = frozenset({"created_at", "updated_at", "id", "status", "type", "expires_at"})
#: The key of the ``result`` column under which a cancel request is kept. An active task has no
#: result, so a non-NULL ``result`` of an active task means "cancel requested": the guarded updates of
#: the runner (heartbeat, success) check ``result IS NULL`` and so see a cancel without another read.
CANCEL_KEY = "glimpse_cancel"
#: The key of the ``input`` column under which an active glance-download task keeps the caller's
#: token (``Task.credential``); read out of ``Task.input`` and removed when the task ends.
CREDENTIAL_KEY = "glimpse_credential"
#: The key of the ``input`` column under which an active glance-download task keeps the caller's
#: roles (``Task.roles``), read out of ``Task.input`` and removed with the credential.
ROLES_KEY = "glimpse_roles"


_RESERVATIONS = cast(Table, QuotaReservationRow.__table__)


def _result_and_cancel(raw: str | None) -> tuple[dict[str, Any] | None, CancelRequest | None]:
    if raw is None:
        return None, None
    result = json.loads(raw)
    if not isinstance(result, dict) or not isinstance(result.get(CANCEL_KEY), dict):
        return result, None
    cancel = CancelRequest.from_dict(result.pop(CANCEL_KEY))
    return result or None, cancel


def _input_and_credential(raw: str | None) -> tuple[dict[str, Any], str | None]:
    task_input, credential, _ = _input_credential_roles(raw)
    return task_input, credential


def _input_credential_roles(raw: str | None) -> tuple[dict[str, Any], str | None, tuple[str, ...]]:
    given = json.loads(raw or "{}")
    if not isinstance(given, dict):
        return given, None, ()
    credential = given.pop(CREDENTIAL_KEY, None)
    roles = given.pop(ROLES_KEY, None)
    kept_roles = tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else ()
    return given, credential if isinstance(credential, str) else None, kept_roles


def _task_from(row: Mapping[Any, Any]) -> Task:
    result, cancel = _result_and_cancel(row["result"])
    task_input, credential, roles = _input_credential_roles(row["input"])
    return Task(
        id=row["id"],
        type=TaskType(row["type"]),
        status=TaskStatus(row["status"]),
        owner=row["owner"],
        image_id=row["image_id"],
        request_id=row["request_id"],
        user_id=row["user_id"],
        input=task_input,
        result=result,
        message=row["message"] or "",
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted=row["deleted"],
        deleted_at=row["deleted_at"],
        claimed_by=row["claimed_by"],
        lease_expires_at=row["lease_expires_at"],
        heartbeat_at=row["heartbeat_at"],
        attempt=row["attempt"],
        progress=TaskProgress.from_dict(json.loads(row["progress"] or "{}")),
        stage_host=row["stage_host"],
        cancel=cancel,
        credential=credential,
        roles=roles,
    )


def _not_expired(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return and_(_TASKS.c.deleted.is_(False), or_(_TASKS.c.expires_at.is_(None), _TASKS.c.expires_at > now))


def _claimable_by(node: str | None) -> ColumnElement[bool]:
    """Tasks a runner of ``node`` may claim: those bound to no node, and those bound to ``node``."""
    if node is None:
        return _TASKS.c.stage_host.is_(None)
    return or_(_TASKS.c.stage_host.is_(None), _TASKS.c.stage_host == node)


#: The read behind ``GET /v2/images/{id}/tasks``, built once (see the image repository's statements).
_OF_IMAGE = Prepared(
    select(_TASKS)
    .where(_TASKS.c.image_id == bindparam("image_id"), _not_expired(bindparam("now")))
    .order_by(_TASKS.c.created_at, _TASKS.c.id)
)


class SqlTaskRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _select(self, *where: ColumnElement[bool]) -> list[Task]:
        rows = self._session.connection().execute(select(_TASKS).where(*where)).mappings()
        return [_task_from(row) for row in rows]

    # -- reads -------------------------------------------------------------------------------------
    def find(self, task_id: str) -> Task | None:
        found = self._select(_TASKS.c.id == task_id)
        return found[0] if found else None

    def get(self, task_id: str, now: datetime) -> Task:
        found = self._select(_TASKS.c.id == task_id, _not_expired(now))
        if not found:
            raise NotFound(f"Task with the given id {task_id} not found")
        return found[0]

    def for_image(self, image_id: str, now: datetime) -> list[Task]:
        """Every task of the image that has not expired, oldest first (pending and processing too)."""
        rows = _OF_IMAGE.rows(self._session.connection(), {"image_id": image_id, "now": now})
        return [_task_from(row) for row in rows]

    def latest_updates(self, image_ids: Collection[str]) -> dict[str, datetime]:
        """The latest ``updated_at`` of each given image that has task rows (one query for all)."""
        if not image_ids:
            return {}
        rows = self._session.connection().execute(
            select(_TASKS.c.image_id, func.max(_TASKS.c.updated_at))
            .where(_TASKS.c.image_id.in_(sorted(image_ids)))
            .group_by(_TASKS.c.image_id)
        )
        return {image_id: latest for image_id, latest in rows if latest is not None}

    def search(
        self,
        now: datetime,
        *,
        filters: dict[str, str],
        sort_key: str,
        sort_dir: str,
        limit: int,
        marker: str | None,
    ) -> list[Task]:
        if sort_key not in TASK_SORT_KEYS:
            raise InvalidInput(
                f"Unknown sort key {sort_key!r}; tasks sort by {', '.join(sorted(TASK_SORT_KEYS))}."
            )
        column = _TASKS.c[sort_key]
        stmt = select(_TASKS).where(_not_expired(now))
        for name, value in filters.items():
            stmt = stmt.where(_TASKS.c[name] == value)
        if marker is not None:
            anchor = (
                self._session.connection()
                .execute(select(column, _TASKS.c.id).where(_TASKS.c.id == marker))
                .first()
            )
            if anchor is None:
                raise InvalidInput(f"Invalid marker: task {marker} could not be found.")
            value, anchor_id = anchor
            if sort_dir == "asc":
                stmt = stmt.where(or_(column > value, and_(column == value, _TASKS.c.id > anchor_id)))
            else:
                stmt = stmt.where(or_(column < value, and_(column == value, _TASKS.c.id < anchor_id)))
        order = (
            (column.asc(), _TASKS.c.id.asc()) if sort_dir == "asc" else (column.desc(), _TASKS.c.id.desc())
        )
        rows = self._session.connection().execute(stmt.order_by(*order).limit(limit)).mappings()
        return [_task_from(row) for row in rows]

    # -- writes ------------------------------------------------------------------------------------
    def add(self, task: Task) -> None:
        stored_input = dict(task.input)
        if task.credential is not None and task.is_active:
            stored_input[CREDENTIAL_KEY] = task.credential
        if task.roles and task.is_active:
            stored_input[ROLES_KEY] = list(task.roles)
        self._session.connection().execute(
            _TASKS.insert().values(
                id=task.id,
                type=str(task.type),
                status=str(task.status),
                owner=task.owner,
                image_id=task.image_id,
                request_id=task.request_id,
                user_id=task.user_id,
                input=json.dumps(stored_input),
                result=None if task.result is None else json.dumps(task.result),
                message=task.message,
                progress=json.dumps(task.progress.to_dict()),
                expires_at=task.expires_at,
                created_at=task.created_at,
                updated_at=task.updated_at,
                deleted=False,
                attempt=task.attempt,
                stage_host=task.stage_host,
            )
        )

    def _transition(
        self,
        task_id: str,
        expected: Sequence[TaskStatus],
        target: TaskStatus,
        *extra_where: ColumnElement[bool],
        **values: Any,
    ) -> bool:
        for current in expected:
            require_task_transition(current, target)
        result = self._session.connection().execute(
            update(_TASKS)
            .where(_TASKS.c.id == task_id, _TASKS.c.status.in_([str(s) for s in expected]), *extra_where)
            .values(status=str(target), **values)
        )
        changed = bool(result.rowcount == 1)
        if changed and target not in ACTIVE:
            self._forget_credential(task_id)
            # An ended task holds no quota: what it wrote counts through the image's locations
            # (committed by now), what it did not write is given back.
            self._session.connection().execute(delete(_RESERVATIONS).where(_RESERVATIONS.c.holder == task_id))
        return changed

    def _forget_credential(self, task_id: str) -> None:
        """An ended task keeps no token: drop the one a glance-download kept in its input."""
        connection = self._session.connection()
        raw = connection.execute(select(_TASKS.c.input).where(_TASKS.c.id == task_id)).scalar_one_or_none()
        if raw is None or (CREDENTIAL_KEY not in raw and ROLES_KEY not in raw):
            return
        kept, _ = _input_and_credential(raw)
        connection.execute(update(_TASKS).where(_TASKS.c.id == task_id).values(input=json.dumps(kept)))

    def claim(
        self, task_id: str, worker: str, now: datetime, lease: timedelta, *, node: str | None = None
    ) -> bool:
        """pending → processing for ``worker`` (a runner of ``node``), with a lease; True if this caller
        won the claim. A task bound to another node's staged data is never claimed."""
        return self._transition(
            task_id,
            [TaskStatus.PENDING],
            TaskStatus.PROCESSING,
            _claimable_by(node),
            claimed_by=worker,
            lease_expires_at=now + lease,
            heartbeat_at=now,
            updated_at=now,
            attempt=_TASKS.c.attempt + 1,
        )

    def pending_ids(self, limit: int, *, node: str | None = None) -> list[str]:
        """Pending tasks a runner of ``node`` may claim, oldest first."""
        rows = self._session.connection().execute(
            select(_TASKS.c.id)
            .where(
                _TASKS.c.status == str(TaskStatus.PENDING), _TASKS.c.deleted.is_(False), _claimable_by(node)
            )
            .order_by(_TASKS.c.created_at)
            .limit(limit)
        )
        return [row.id for row in rows]

    def heartbeat(
        self, task_id: str, worker: str, now: datetime, lease: timedelta, progress: TaskProgress, message: str
    ) -> None:
        """Record progress and renew the lease; TaskLost if the task is no longer ours and running,
        TaskCancelled if someone asked to cancel it."""
        result = self._session.connection().execute(
            update(_TASKS)
            .where(
                _TASKS.c.id == task_id,
                _TASKS.c.status == str(TaskStatus.PROCESSING),
                _TASKS.c.claimed_by == worker,
                _TASKS.c.result.is_(None),
            )
            .values(
                progress=json.dumps(progress.to_dict()),
                message=message,
                heartbeat_at=now,
                lease_expires_at=now + lease,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            self._raise_stopped(task_id, worker)

    def _raise_stopped(self, task_id: str, worker: str) -> None:
        """Why a guarded write of ``worker`` changed nothing: TaskCancelled or TaskLost."""
        task = self.find(task_id)
        if (
            task is not None
            and task.cancel is not None
            and task.status == TaskStatus.PROCESSING
            and task.claimed_by == worker
        ):
            raise TaskCancelled(task_id, task.cancel)
        raise TaskLost(task_id)

    def request_cancel(self, task_id: str, request: CancelRequest, now: datetime) -> bool:
        """Record a cancel request on an active task that has none yet; True if this call did."""
        result = self._session.connection().execute(
            update(_TASKS)
            .where(
                _TASKS.c.id == task_id,
                _TASKS.c.status.in_([str(s) for s in ACTIVE]),
                _TASKS.c.result.is_(None),
            )
            .values(result=json.dumps({CANCEL_KEY: request.to_dict()}), updated_at=now)
        )
        return bool(result.rowcount == 1)

    def cancel_pending(
        self, task_id: str, request: CancelRequest, now: datetime, ttl: timedelta, message: str
    ) -> bool:
        """pending → failure for a cancel (no runner has it); True if this call did it."""
        return self._transition(
            task_id,
            [TaskStatus.PENDING],
            TaskStatus.FAILURE,
            result=json.dumps({CANCEL_KEY: request.to_dict()}),
            message=message,
            expires_at=now + ttl,
            updated_at=now,
            lease_expires_at=None,
        )

    def succeed(
        self,
        task_id: str,
        worker: str,
        now: datetime,
        ttl: timedelta,
        result: dict[str, Any],
        progress: TaskProgress,
        message: str,
    ) -> bool:
        return self._transition(
            task_id,
            [TaskStatus.PROCESSING],
            TaskStatus.SUCCESS,
            _TASKS.c.claimed_by == worker,
            _TASKS.c.result.is_(None),  # not once a cancel was requested
            result=json.dumps(result),
            progress=json.dumps(progress.to_dict()),
            message=message,
            expires_at=now + ttl,
            updated_at=now,
            heartbeat_at=now,
            lease_expires_at=None,
        )

    def fail(
        self,
        task_id: str,
        now: datetime,
        ttl: timedelta,
        message: str,
        *,
        worker: str | None = None,
        progress: TaskProgress | None = None,
        lease_expired_by: datetime | None = None,
        silent_since: datetime | None = None,
    ) -> bool:
        """Any active task → failure (only if still held by ``worker``, only if its lease ran out
        before ``lease_expired_by``, and only if it gave no sign of life after ``silent_since``, when
        they are given)."""
        extra = [] if worker is None else [_TASKS.c.claimed_by == worker]
        if lease_expired_by is not None:
            extra.append(_TASKS.c.lease_expires_at < lease_expired_by)
        if silent_since is not None:
            extra.append(func.coalesce(_TASKS.c.heartbeat_at, _TASKS.c.updated_at) <= silent_since)
        values: dict[str, Any] = {
            "message": message,
            "expires_at": now + ttl,
            "updated_at": now,
            "lease_expires_at": None,
        }
        if progress is not None:
            values["progress"] = json.dumps(progress.to_dict())
        return self._transition(task_id, sorted(ACTIVE), TaskStatus.FAILURE, *extra, **values)

    def requeue(
        self,
        task_id: str,
        worker: str,
        now: datetime,
        *,
        message: str | None = None,
        lease_expired_by: datetime | None = None,
    ) -> bool:
        """processing → pending (a lease that expired before any side effect): another runner retries.

        ``message``, when given, replaces the task's message. With ``lease_expired_by``, only while the
        lease is still run out at that time (the reaper's case).
        """
        values: dict[str, Any] = {} if message is None else {"message": message}
        extra = [] if lease_expired_by is None else [_TASKS.c.lease_expires_at < lease_expired_by]
        return self._transition(
            task_id,
            [TaskStatus.PROCESSING],
            TaskStatus.PENDING,
            _TASKS.c.claimed_by == worker,
            *extra,
            claimed_by=None,
            lease_expires_at=None,
            updated_at=now,
            **values,
        )

    def expired_leases(self, now: datetime, limit: int = 50) -> list[Task]:
        rows = (
            self._session.connection()
            .execute(
                select(_TASKS)
                .where(_TASKS.c.status == str(TaskStatus.PROCESSING), _TASKS.c.lease_expires_at < now)
                .limit(limit)
            )
            .mappings()
        )
        return [_task_from(row) for row in rows]

    def stranded(self, before: datetime, limit: int = 20) -> list[Task]:
        """Pending tasks bound to one node (``stage_host``) that have not changed since ``before``."""
        rows = (
            self._session.connection()
            .execute(
                select(_TASKS)
                .where(
                    _TASKS.c.status == str(TaskStatus.PENDING),
                    _TASKS.c.deleted.is_(False),
                    _TASKS.c.stage_host.is_not(None),
                    _TASKS.c.updated_at < before,
                )
                .order_by(_TASKS.c.updated_at)
                .limit(limit)
            )
            .mappings()
        )
        return [_task_from(row) for row in rows]

    def fail_stranded(
        self, task_id: str, before: datetime, now: datetime, ttl: timedelta, message: str
    ) -> bool:
        """pending → failure, only if the task is still pending and has not changed since ``before``."""
        return self._transition(
            task_id,
            [TaskStatus.PENDING],
            TaskStatus.FAILURE,
            _TASKS.c.updated_at < before,
            message=message,
            expires_at=now + ttl,
            updated_at=now,
        )

    def purge_expired(self, now: datetime, older_than: timedelta = timedelta(0)) -> int:
        """Hard-delete tasks whose expiry passed (at least ``older_than`` ago); returns how many."""
        result = self._session.connection().execute(
            delete(_TASKS).where(_TASKS.c.expires_at.is_not(None), _TASKS.c.expires_at <= now - older_than)
        )
        return int(result.rowcount)
