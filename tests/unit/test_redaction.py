"""URLs without their credentials (glimpse.redaction), and the log filter that applies it to every line."""

from __future__ import annotations

import io
import logging

import pytest

from glimpse.logs import RedactingFilter
from glimpse.redaction import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw-1@host/x.raw", "http://***@host/x.raw"),
        ("https://token-only@host:8443/x?a=1", "https://***@host:8443/x?a=1"),
        (
            "https://b.s3.example.com/k.qcow2?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F1"
            "&X-Amz-Date=20261206T000000Z&X-Amz-Expires=60&X-Amz-Security-Token=st&X-Amz-Signature=ab12",
            "https://b.s3.example.com/k.qcow2?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
            "&X-Amz-Date=20261206T000000Z&X-Amz-Expires=60&X-Amz-Security-Token=***&X-Amz-Signature=***",
        ),
        (
            "https://s3/k?AWSAccessKeyId=AK&Signature=s&Expires=1",
            "https://s3/k?AWSAccessKeyId=***&Signature=***&Expires=1",
        ),
        (
            "http://swift/v1/a/c/o?temp_url_sig=d4&temp_url_expires=9",
            "http://swift/v1/a/c/o?temp_url_sig=***&temp_url_expires=9",
        ),
        ("http://h/x?access_token=t;page=2#top", "http://h/x?access_token=***;page=2#top"),
        ("http://h/a@b/c.raw?size=3", "http://h/a@b/c.raw?size=3"),  # an @ in the path is no user
        ("http://h/plain.raw", "http://h/plain.raw"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_redacts_every_url_of_a_line() -> None:
    line = 'GET http://u:p@a/x then "https://b/y?sig=s" and rabbit://guest:guest@mq:5672/ ok'
    assert redact_text(line) == 'GET http://***@a/x then "https://b/y?sig=***" and rabbit://***@mq:5672/ ok'


def test_the_log_filter_redacts_message_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("glimpse.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("HTTP Request: GET %s", "http://h/x?X-Amz-Signature=deadbeef")
        try:
            raise ValueError("fetching http://user:hunter2@h/x failed")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert "X-Amz-Signature=***" in text
    assert "http://***@h/x failed" in text
    assert "deadbeef" not in text
    assert "hunter2" not in text
