"""Process-wide logging set-up: text lines or one JSON object per line, with the request's context.

The fields that say which request, caller, task and image a line is about (``request_id``,
``user_id``, ``project_id``, ``task_id``, ``image_id``) are bound to the running asyncio task with
:func:`log_fields` (the HTTP middleware and authentication for requests, the runner for tasks); the
JSON format adds them to every line logged inside, the text format is unchanged.

Credentials never reach a log line: every URL in a message or a traceback is written without its user
information and without the values of its credential-carrying query parameters
(:func:`glimpse.redaction.redact_url`),
whoever logged it (Glimpse itself, or a library such as httpx that logs each request's URL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TextIO

from glimpse.redaction import redact_text

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"

_FIELDS: ContextVar[Mapping[str, str]] = ContextVar("glimpse_log_fields", default=MappingProxyType({}))


def bind_log_fields(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add ``fields`` (those not ``None``) to the lines logged from here on in this context."""
    given = {name: value for name, value in fields.items() if value is not None}
    return _FIELDS.set({**_FIELDS.get(), **given})


def reset_log_fields(token: Token[Mapping[str, str]]) -> None:
    _FIELDS.reset(token)


@contextlib.contextmanager
def log_fields(**fields: str | None) -> Iterator[None]:
    """``fields`` on every line logged inside the block (in this asyncio task and what it awaits)."""
    token = bind_log_fields(**fields)
    try:
        yield
    finally:
        reset_log_fields(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, the bound fields, and the
    traceback of an exception as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for name, value in _FIELDS.get().items():
            entry.setdefault(name, value)
        if record.exc_text:  # already formatted (and redacted) by RedactingFilter
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, not to the stream it was when the
    handler was made (which may be closed by then: a replaced or captured stderr)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


class RedactingFilter(logging.Filter):
    """Redacts the URLs of a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: the handler reports that itself
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def configure_logging(level: str, use_json: bool = False) -> None:
    """Log to stderr at ``level``; idempotent, so the parent and each worker process can call it."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(FORMAT))
    root.setLevel(level)
    # Neither format shows the caller's file and line or the thread: logging need not look them up
    # for each record (the logging HOWTO's "Optimization"); the access log writes one per request.
    logging._srcfile = None
    logging.logThreads = False
