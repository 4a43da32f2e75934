"""Safe retries of requests: the rules of the ``Idempotency-Key`` header.

A client that sends ``Idempotency-Key: <key>`` on ``POST /v2/images``, ``PUT /v2/images/{id}/stage``
or ``POST /v2/images/{id}/import`` may send the same request again (after a timeout, a dropped
connection) and get the first answer back instead of a second image, a second stage or a 409.
The key is the client's; what the server keeps under it, per project, is a :class:`KeyRecord`:

* the request's *fingerprint* (:func:`fingerprint`, a SHA-256 of the method, the path, the headers
  that change the request's meaning and a digest of its body), so that the same key sent with
  another request is refused instead of answered with someone else's result;
* while the first request runs, a claim (``claim_id``, ``claimed_until``); a retry then learns that
  the request is still in flight;
* once it succeeded, its :class:`StoredAnswer` (status, the headers that matter, body), kept until
  ``expires_at``.

:func:`judge` decides what a request that finds a record gets. Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from glimpse.errors import InvalidInput

#: The longest key accepted (the draft leaves it to the server; a UUID needs 36).
KEY_MAX_LENGTH: Final = 255
#: The bounds of the ``Retry-After`` given to a retry of a request still in flight, in seconds.
RETRY_AFTER_MIN: Final = 1
RETRY_AFTER_MAX: Final = 10
#: The headers of a successful answer that a replay repeats (lower case); others (dates, request
#: ids) belong to the request that carries them.
KEPT_HEADERS: Final = frozenset(
    {
        "content-type",
        "location",
        "openstack-image-import-task-id",
        "openstack-image-store-ids",
        "openstack-image-import-methods",
    }
)


def parse_key(raw: str) -> str:
    """The key of an ``Idempotency-Key`` header; ``InvalidInput`` (400) when it is malformed.

    The draft makes the value a structured-field string (``"8e03978e-..."``); a bare token of the same
    characters is accepted too, as most clients send one. The key is 1 to :data:`KEY_MAX_LENGTH`
    printable ASCII characters (no quote or backslash; spaces only inside quotes).
    """
    value = raw.strip()
    quoted = len(value) >= 2 and value[0] == '"' and value[-1] == '"'
    key = value[1:-1] if quoted else value
    allowed_low = 0x20 if quoted else 0x21
    problem = None
    if not key:
        problem = "it is empty"
    elif len(key) > KEY_MAX_LENGTH:
        problem = f"it has {len(key)} characters, more than {KEY_MAX_LENGTH}"
    elif any(not (allowed_low <= ord(c) <= 0x7E) or c in '"\\' for c in key):
        problem = "it may hold only printable ASCII characters, without quotes, backslashes or spaces"
    if problem is not None:
        raise InvalidInput(
            f"Malformed Idempotency-Key header: {problem}. Send a fresh unique value for each new "
            'request, such as a UUID: Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324".'
        )
    return key


def key_scope(project_id: str | None, user_id: str | None) -> str:
    """Keys belong to a project (a caller with no project, a system-scoped admin, has its own)."""
    if project_id:
        return project_id
    return f"user:{user_id or ''}"


def fingerprint(method: str, path: str, body_digest: str, headers: Iterable[tuple[str, str]] = ()) -> str:
    """The SHA-256 (hex) that identifies a request: what a retry must repeat exactly."""
    parts = [method.upper(), path, *(f"{name.lower()}: {value}" for name, value in headers), body_digest]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The answer of the first request, repeated to its retries."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> StoredAnswer:
        kept = tuple((name.lower(), value) for name, value in headers if name.lower() in KEPT_HEADERS)
        return cls(status, kept, body)

    @property
    def worth_keeping(self) -> bool:
        """Only successes are kept: a refused or failed request changed nothing and may be retried
        (with the same key) once the client has fixed what the error said."""
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to run the request of a key, held by one request (its ``claim_id``)."""

    scope: str
    key: str
    claim_id: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is kept under a key. ``fingerprint`` is None while a request whose body is hashed as it
    streams (``PUT /stage``) runs; ``answer`` is None while the request runs."""

    scope: str
    key: str
    claim_id: str
    fingerprint: str | None
    answer: StoredAnswer | None
    created_at: datetime
    claimed_until: datetime
    expires_at: datetime

    @property
    def claim(self) -> Claim:
        return Claim(self.scope, self.key, self.claim_id)


class Verdict(enum.Enum):
    #: The record no longer counts (expired, or its request was abandoned): claim the key anew.
    CLAIM = "claim"
    #: Answer with the stored answer.
    REPLAY = "replay"
    #: The key was used for another request (422).
    MISMATCH = "mismatch"
    #: The first request still runs (409, retry later).
    IN_FLIGHT = "in_flight"


def judge(record: KeyRecord, request_fingerprint: str | None, now: datetime) -> Verdict:
    """What a request with ``request_fingerprint`` (None: known only once its body has streamed)
    gets from the record it found under its key."""
    if record.expires_at <= now:
        return Verdict.CLAIM
    if record.answer is None:
        return Verdict.CLAIM if record.claimed_until <= now else Verdict.IN_FLIGHT
    if request_fingerprint is not None and request_fingerprint != record.fingerprint:
        return Verdict.MISMATCH
    return Verdict.REPLAY


def retry_after(record: KeyRecord, now: datetime) -> int:
    """Seconds a retry of a request in flight should wait before trying again."""
    remaining = int((record.claimed_until - now).total_seconds())
    return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, remaining))


MISMATCH_MESSAGE: Final = (
    "This Idempotency-Key was already used for another request (other method, path, headers or "
    "body) from this project within the last {hours} hours. Use a new key for a new request; reuse a "
    "key only to retry exactly the same request."
)
IN_FLIGHT_MESSAGE: Final = (
    "The first request with this Idempotency-Key is still being processed. Retry the same request "
    "with the same key after {seconds} seconds to get its answer."
)
