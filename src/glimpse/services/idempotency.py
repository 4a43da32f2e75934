"""IdempotencyService: claiming an ``Idempotency-Key``, answering its retries, keeping its answer.

A request sent with a key calls :meth:`IdempotencyService.begin` before doing anything. In one unit
of work the key's record is inserted (the primary key makes the claim atomic across processes and
nodes) or, when one is there already, judged (:func:`glimpse.domain.idempotency.judge`):

* no record, an expired one, or the claim of a request that never answered (older than
  ``idempotency_claim_timeout``): the request runs, holding the claim;
* the answer of the same request: the request gets it back (a :class:`~glimpse.domain.idempotency.KeyRecord`
  with its answer) and runs nothing;
* the answer of another request: ``KeyReused`` (422);
* a claim still held: ``RequestInFlight`` (409 with ``Retry-After``).

Once the request has run, :meth:`finish` keeps a successful answer for ``idempotency_key_ttl`` hours;
:meth:`abandon` removes the claim of a request that failed, so that the key may be used again once
the client has fixed what the error said.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from glimpse.context import RequestContext
from glimpse.domain.idempotency import (
    IN_FLIGHT_MESSAGE,
    MISMATCH_MESSAGE,
    Claim,
    KeyRecord,
    StoredAnswer,
    Verdict,
    judge,
    key_scope,
    retry_after,
)
from glimpse.errors import DatabaseUnavailable, KeyReused, RequestInFlight
from glimpse.ports import Ports, Repositories

log = logging.getLogger(__name__)


class IdempotencyService:
    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self.settings.idempotency_key_ttl)

    async def begin(self, ctx: RequestContext, key: str, fingerprint: str | None) -> Claim | KeyRecord:
        """The claim to run the request, or the record whose answer to repeat (see the module doc).

        ``fingerprint`` is None when the request's body is hashed only as it streams: a record with an
        answer is then returned whatever its fingerprint, for the caller to compare (:meth:`check`).
        """
        scope = key_scope(ctx.project_id, ctx.user_id)
        now = self.ports.clock()
        record = KeyRecord(
            scope=scope,
            key=key,
            claim_id=str(uuid.uuid4()),
            fingerprint=fingerprint,
            answer=None,
            created_at=now,
            claimed_until=now + timedelta(seconds=self.settings.idempotency_claim_timeout),
            expires_at=now + self.ttl,
        )

        def claim(repos: Repositories) -> Claim | KeyRecord:
            keys = repos.idempotency
            found = keys.claim(record)
            if found is None:
                return record.claim
            verdict = judge(found, fingerprint, now)
            if verdict is Verdict.CLAIM and keys.take_over(found.claim, record):
                return record.claim
            if verdict is Verdict.REPLAY:
                return found
            if verdict is Verdict.MISMATCH:
                raise self.reused()
            holder = keys.find(scope, key) or found
            wait = retry_after(holder, now)
            raise RequestInFlight(IN_FLIGHT_MESSAGE.format(seconds=wait), retry_after=wait)

        return await self.ports.run(claim)

    def reused(self) -> KeyReused:
        return KeyReused(MISMATCH_MESSAGE.format(hours=self.settings.idempotency_key_ttl))

    def check(self, record: KeyRecord, fingerprint: str) -> StoredAnswer:
        """The answer to repeat to a request whose fingerprint is now known; ``KeyReused`` when the
        record is another request's."""
        if record.answer is None or judge(record, fingerprint, self.ports.clock()) is not Verdict.REPLAY:
            raise self.reused()
        return record.answer

    async def finish(self, claim: Claim, fingerprint: str, answer: StoredAnswer) -> None:
        """Keep a successful answer for the key's retries; forget the claim of any other."""
        if not answer.worth_keeping:
            await self.abandon(claim)
            return
        expires_at = self.ports.clock() + self.ttl
        try:
            kept = await self.ports.run(
                lambda repos: repos.idempotency.complete(claim, fingerprint, answer, expires_at)
            )
        except DatabaseUnavailable:
            log.warning(
                "could not keep the answer of Idempotency-Key %r: the database is unavailable", claim.key
            )
            return
        if not kept:
            log.warning("Idempotency-Key %r was taken over before its first request answered", claim.key)

    async def abandon(self, claim: Claim) -> None:
        """The claim's request failed: remove the claim, so that a retry runs the request again."""
        try:
            await self.ports.run(lambda repos: repos.idempotency.release(claim))
        except DatabaseUnavailable:
            log.warning(
                "could not release Idempotency-Key %r: the database is unavailable; retries get 409 "
                "until idempotency_claim_timeout passes",
                claim.key,
            )
