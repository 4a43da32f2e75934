"""Log lines: the JSON format carries the request, caller, task and image the line is about."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys

import pytest

from glimpse.logs import JsonFormatter, configure_logging, log_fields


def _format(message: str, exc: BaseException | None = None) -> dict[str, object]:
    record = logging.LogRecord(
        "glimpse.test", logging.WARNING, __file__, 1, message, None, (type(exc), exc, None) if exc else None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_line_is_one_json_object_with_the_bound_fields() -> None:
    assert set(_format("plain")) == {"time", "level", "logger", "process", "message"}
    with log_fields(request_id="req-1", user_id="u", project_id=None):
        with log_fields(task_id="t", image_id="i"):
            inner = _format("inside")
        outer = _format("outside")
    assert inner["request_id"] == "req-1"
    assert (inner["task_id"], inner["image_id"], inner["user_id"]) == ("t", "i", "u")
    assert "project_id" not in inner
    assert "task_id" not in outer
    assert outer["request_id"] == "req-1"
    assert "request_id" not in _format("after")


def test_an_exception_is_kept_in_the_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError as exc:
        entry = _format("failed", exc)
    assert entry["message"] == "failed"
    assert "ValueError: boom" in str(entry["exception"])


def test_fields_belong_to_the_task_that_bound_them() -> None:
    async def worker(name: str) -> dict[str, object]:
        with log_fields(task_id=name):
            await asyncio.sleep(0.01)
            return _format(name)

    async def both() -> list[dict[str, object]]:
        return list(await asyncio.gather(worker("a"), worker("b")))

    first, second = asyncio.run(both())
    assert (first["task_id"], second["task_id"]) == ("a", "b")


def test_lines_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stderr replaced and closed after the set-up (a captured one) neither breaks logging nor
    swallows lines: the handler looks ``sys.stderr`` up for every record."""
    root = logging.getLogger()
    before = list(root.handlers), root.level
    for handler in before[0]:  # one set up by another test of this process
        root.removeHandler(handler)
    first, second = io.StringIO(), io.StringIO()
    try:
        monkeypatch.setattr(sys, "stderr", first)
        configure_logging("INFO")
        configure_logging("INFO")  # idempotent: one handler
        assert len(root.handlers) == 1
        logging.getLogger("glimpse.test").info("to the first")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("glimpse.test").info("to the second")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
    assert second.getvalue().endswith(" INFO glimpse.test to the second\n")
    assert "Logging error" not in second.getvalue()
