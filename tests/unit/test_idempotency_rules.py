"""The rules of the Idempotency-Key header (glimpse.domain.idempotency), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from glimpse.domain.idempotency import (
    KeyRecord,
    StoredAnswer,
    Verdict,
    fingerprint,
    judge,
    key_scope,
    parse_key,
    retry_after,
)
from glimpse.errors import InvalidInput

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def record(
    *, answer: StoredAnswer | None, fp: str | None = "f" * 64, claimed: int = 60, ttl: int = 3600
) -> KeyRecord:
    return KeyRecord(
        scope="p",
        key="k",
        claim_id="c",
        fingerprint=fp,
        answer=answer,
        created_at=NOW,
        claimed_until=NOW + timedelta(seconds=claimed),
        expires_at=NOW + timedelta(seconds=ttl),
    )


DONE = StoredAnswer.of(
    202, [("Location", "/x"), ("Date", "today"), ("OpenStack-image-import-task-id", "t")], b""
)


@pytest.mark.parametrize(
    ("raw", "key"),
    [("abc", "abc"), ('"abc"', "abc"), (' "with space" ', "with space"), ("8e03978e-40d5", "8e03978e-40d5")],
)
def test_keys_are_tokens_or_quoted_strings(raw: str, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize("raw", ["", '""', "a b", '"a"b"', "é", "x" * 256, '"tab\there"'])
def test_malformed_keys_are_invalid_input(raw: str) -> None:
    with pytest.raises(InvalidInput, match="Malformed Idempotency-Key"):
        parse_key(raw)


def test_the_fingerprint_covers_method_path_headers_and_body() -> None:
    base = fingerprint("POST", "/v2/images/1/import", "d1", [("x-image-meta-store", "")])
    assert len(base) == 64
    assert base == fingerprint("post", "/v2/images/1/import", "d1", [("X-Image-Meta-Store", "")])
    others = {
        fingerprint("PUT", "/v2/images/1/import", "d1", [("x-image-meta-store", "")]),
        fingerprint("POST", "/v2/images/2/import", "d1", [("x-image-meta-store", "")]),
        fingerprint("POST", "/v2/images/1/import", "d2", [("x-image-meta-store", "")]),
        fingerprint("POST", "/v2/images/1/import", "d1", [("x-image-meta-store", "cheap")]),
    }
    assert base not in others
    assert len(others) == 4


def test_only_the_headers_that_matter_are_kept_and_only_successes() -> None:
    assert DONE.headers == (("location", "/x"), ("openstack-image-import-task-id", "t"))
    assert DONE.worth_keeping
    assert not StoredAnswer.of(409, [], b"{}").worth_keeping


def test_the_verdicts() -> None:
    fp = "f" * 64
    assert judge(record(answer=DONE), fp, NOW) is Verdict.REPLAY
    assert judge(record(answer=DONE), None, NOW) is Verdict.REPLAY
    assert judge(record(answer=DONE), "e" * 64, NOW) is Verdict.MISMATCH
    assert judge(record(answer=DONE), "e" * 64, NOW + timedelta(hours=2)) is Verdict.CLAIM
    assert judge(record(answer=None, fp=None), fp, NOW) is Verdict.IN_FLIGHT
    assert judge(record(answer=None, fp=None), fp, NOW + timedelta(seconds=61)) is Verdict.CLAIM


def test_retry_after_is_bounded() -> None:
    assert retry_after(record(answer=None, claimed=900), NOW) == 10
    assert retry_after(record(answer=None, claimed=3), NOW) == 3
    assert retry_after(record(answer=None, claimed=0), NOW) == 1


def test_the_scope_is_the_project_or_the_user() -> None:
    assert key_scope("p1", "u1") == "p1"
    assert key_scope(None, "u1") == "user:u1"
