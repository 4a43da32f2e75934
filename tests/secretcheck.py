"""Secrets stay secret: a pytest plugin that fails the run when a known test secret reaches a log.

The secrets are the ones the suite itself hands out: the Keystone passwords and every token and
application-credential secret ``keystonesupport`` obtains, the object store keys of ``objectsupport``,
and the credentials the secrecy tests put into web-download URLs (:data:`URL_PASSWORD`,
:data:`URL_SIGNATURE`). Support code registers each with :func:`register_secret` as it comes to
exist.

Two kinds of log are watched:

* every log record of the test processes themselves (the in-process apps of the API tests, the
  runners the integration tests drive), through a handler on the root logger;
* every log file of a server process a test starts: ``livesupport.Server`` and the runners'
  ``glimpse-server worker`` register theirs with :func:`watch_log`; the new part of each file is read
  after every test.

A secret found fails the test during whose run (or teardown) it appeared, with the place and the
line; one found after the last test fails the session. Only the secret's name is shown, never the
secret.

(PYTEST_DONT_REWRITE: the support modules import this one before pytest loads it as a plugin, and it
has no assertions to rewrite.)
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from glimpse.redaction import redact_text

#: The password of the web-download URLs of the secrecy tests (``http://user:<password>@host/...``).
URL_PASSWORD = "url-password-7d1c5e9b"
#: The signature of the presigned URLs of the secrecy tests (``?X-Amz-Signature=<signature>``).
URL_SIGNATURE = "a9f3c0de51b7e2846f0d9c3ab5e71f28d6c4b09e3a7f15c2d8e06b94f1a3c57e"

_MIN_LENGTH = 6  # shorter values would match ordinary words


@dataclass
class _Registry:
    secrets: dict[str, str] = field(default_factory=dict)  # value -> what it is
    logs: dict[Path, int] = field(default_factory=dict)  # watched file -> bytes already read
    leaks: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pattern: re.Pattern[str] | None = None

    def find(self, text: str) -> list[str]:
        return self.find_new(text, 0)

    def find_new(self, text: str, seen: int) -> list[str]:
        """What the secrets in ``text`` are, counting only those that end after its first ``seen``
        characters (the part already looked at)."""
        pattern = self.pattern
        if pattern is None or not text:
            return []
        return sorted({self.secrets[m.group(0)] for m in pattern.finditer(text) if m.end() > seen})


_REGISTRY = _Registry()


def register_secret(value: str, what: str) -> None:
    """Watch for ``value`` (described as ``what`` in a failure) in every log from now on."""
    if len(value) < _MIN_LENGTH:
        raise ValueError(f"a test secret must have at least {_MIN_LENGTH} characters: {what}")
    with _REGISTRY.lock:
        if value in _REGISTRY.secrets:
            return
        _REGISTRY.secrets[value] = what
        # Longest first, so that a secret containing another is reported as itself.
        ordered = sorted(_REGISTRY.secrets, key=len, reverse=True)
        _REGISTRY.pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def watch_log(path: Path) -> None:
    """Read the log file ``path`` (of a server process a test started) for secrets after each test."""
    with _REGISTRY.lock:
        _REGISTRY.logs.setdefault(path, 0)


def leaks_in(text: str) -> list[str]:
    """What the known secrets found in ``text`` are (for tests that check an answer directly)."""
    return _REGISTRY.find(text)


register_secret(URL_PASSWORD, "the password of a web-download URL")
register_secret(URL_SIGNATURE, "the signature of a presigned URL")


class _RecordWatch(logging.Handler):
    """Looks at every record of this process as it is emitted and remembers where a secret appeared."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format; the format is what there is
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        # What Glimpse's handler writes: its filter redacts the URLs (glimpse.logs.RedactingFilter).
        found = _REGISTRY.find(redact_text(text))
        if found:
            _REGISTRY.leaks.append(f"log record of {record.name} ({record.levelname}): {', '.join(found)}")


def _scan_logs() -> None:
    """Read the part of every watched file not read yet; remember where a secret appeared."""
    overlap = max((len(secret) for secret in _REGISTRY.secrets), default=1) - 1
    for path, done in list(_REGISTRY.logs.items()):
        try:
            with path.open("rb") as log:
                start = max(0, done - overlap)
                log.seek(start)
                data = log.read()
        except OSError:
            continue  # not written yet, or removed with its test's directory after being read
        _REGISTRY.logs[path] = start + len(data)
        # The bytes before ``done`` were read already: re-read only so that a secret cut in two by the
        # previous read is seen whole, and reported only when it ends in the new part.
        fresh = done - start
        for line_start, line in _lines(data):
            if line_start + len(line) <= fresh:
                continue
            found = _REGISTRY.find_new(line.decode("latin-1"), fresh - line_start)  # one char a byte
            if found:
                _REGISTRY.leaks.append(f"{path.name}, byte {start + line_start}: {', '.join(found)}")


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) of every line of ``data``."""
    offset = 0
    for line in data.split(b"\n"):
        yield offset, line
        offset += len(line) + 1


def _take_leaks() -> list[str]:
    _scan_logs()
    leaks, _REGISTRY.leaks[:] = list(_REGISTRY.leaks), []
    return leaks


_HANDLER = _RecordWatch(level=logging.NOTSET)


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(_HANDLER)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_HANDLER)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """After a test's teardown: the leaks since the previous one fail this test's teardown report."""
    outcome = yield
    if call.when != "teardown":
        return
    leaks = _take_leaks()
    if not leaks:
        return
    report: pytest.TestReport = outcome.get_result()
    report.outcome = "failed"
    report.longrepr = "a test secret appeared in a log (redact it where it is written):\n  " + "\n  ".join(
        leaks
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = _take_leaks()
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "a test secret appeared in a log after the last test:\n  " + "\n  ".join(leaks)
            )
