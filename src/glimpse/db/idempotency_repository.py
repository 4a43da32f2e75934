"""SqlIdempotencyRepository: the ``Idempotency-Key`` records, claimed by an INSERT on their primary key."""

from __future__ import annotations

import json
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, delete, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.db.models import IdempotencyKeyRow
from glimpse.domain.idempotency import Claim, KeyRecord, StoredAnswer

_KEYS = cast(Table, IdempotencyKeyRow.__table__)


def _record_from(row: RowMapping) -> KeyRecord:
    answer = None
    if row["status_code"] is not None:
        headers = json.loads(row["response_headers"] or "[]")
        answer = StoredAnswer(
            status=row["status_code"],
            headers=tuple((str(name), str(value)) for name, value in headers),
            body=(row["response_body"] or "").encode(),
        )
    return KeyRecord(
        scope=row["scope"],
        key=row["idem_key"],
        claim_id=row["claim_id"],
        fingerprint=row["fingerprint"],
        answer=answer,
        created_at=row["created_at"],
        claimed_until=row["claimed_until"],
        expires_at=row["expires_at"],
    )


def _values(record: KeyRecord) -> dict[str, object]:
    answer = record.answer
    return {
        "claim_id": record.claim_id,
        "fingerprint": record.fingerprint,
        "status_code": None if answer is None else answer.status,
        "response_headers": None if answer is None else json.dumps([list(h) for h in answer.headers]),
        "response_body": None if answer is None else answer.body.decode(),
        "created_at": record.created_at,
        "claimed_until": record.claimed_until,
        "expires_at": record.expires_at,
    }


def _is(claim: Claim) -> ColumnElement[bool]:
    return and_(
        _KEYS.c.scope == claim.scope, _KEYS.c.idem_key == claim.key, _KEYS.c.claim_id == claim.claim_id
    )


class SqlIdempotencyRepository:
    """Implements :class:`glimpse.ports.IdempotencyRepository` over one session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def find(self, scope: str, key: str) -> KeyRecord | None:
        row = (
            self._session.connection()
            .execute(select(_KEYS).where(_KEYS.c.scope == scope, _KEYS.c.idem_key == key))
            .mappings()
            .first()
        )
        return None if row is None else _record_from(row)

    def claim(self, record: KeyRecord) -> KeyRecord | None:
        """Insert ``record``: None when this call claimed the key, else the record already there.

        The insert runs in a savepoint: on PostgreSQL and MariaDB a concurrent insert of the same key
        waits for the other transaction and then fails here; on SQLite writers are serialised."""
        try:
            with self._session.begin_nested():
                self._session.connection().execute(
                    _KEYS.insert().values(scope=record.scope, idem_key=record.key, **_values(record))
                )
        except IntegrityError:
            existing = self.find(record.scope, record.key)
            if existing is None:  # removed between the failed insert and the read: claim again
                return self.claim(record)
            return existing
        return None

    def take_over(self, previous: Claim, record: KeyRecord) -> bool:
        """Replace the record of ``previous`` (expired or abandoned) with ``record``, if nobody else did."""
        result = self._session.connection().execute(
            update(_KEYS).where(_is(previous)).values(**_values(record))
        )
        return int(result.rowcount) == 1

    def complete(self, claim: Claim, fingerprint: str, answer: StoredAnswer, expires_at: datetime) -> bool:
        """Record the answer of the claim's request; False when the claim was lost meanwhile."""
        result = self._session.connection().execute(
            update(_KEYS)
            .where(_is(claim))
            .values(
                fingerprint=fingerprint,
                status_code=answer.status,
                response_headers=json.dumps([list(h) for h in answer.headers]),
                response_body=answer.body.decode(),
                expires_at=expires_at,
            )
        )
        return int(result.rowcount) == 1

    def release(self, claim: Claim) -> bool:
        result = self._session.connection().execute(delete(_KEYS).where(_is(claim)))
        return int(result.rowcount) == 1

    def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` records whose expiry passed; returns how many."""
        doomed = select(_KEYS.c.scope, _KEYS.c.idem_key).where(_KEYS.c.expires_at <= now).limit(limit)
        rows = self._session.connection().execute(doomed).all()
        removed = 0
        for scope, key in rows:
            result = self._session.connection().execute(
                delete(_KEYS).where(
                    _KEYS.c.scope == scope, _KEYS.c.idem_key == key, _KEYS.c.expires_at <= now
                )
            )
            removed += int(result.rowcount)
        return removed
