"""How the command line words what servers send."""

from __future__ import annotations

import pytest

from glimpse_client import Task
from glimpse_client.cli._text import plugin_states, progress_line, utc_time


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("2026-11-25T14:12:36.217770", "2026-11-25T14:12:36Z"),  # a Glance task: no zone means UTC
        ("2026-11-25T14:12:36.217770Z", "2026-11-25T14:12:36Z"),  # a Glimpse task
        ("2026-11-25T14:13:20Z", "2026-11-25T14:13:20Z"),  # an image, as it is shown
        ("2026-11-25T15:12:36+01:00", "2026-11-25T14:12:36Z"),
        ("yesterday", "yesterday"),  # unreadable: as sent
        (None, ""),
    ],
)
def test_task_times_are_shown_as_image_times(sent: str | None, shown: str) -> None:
    assert utc_time(sent) == shown


def _task(progress: dict[str, object]) -> Task:
    return Task(id="t1", status="processing", message="Copied 0 MiB", progress=progress)


@pytest.mark.parametrize(
    ("progress", "line"),
    [
        ({"phase": "converting", "percent": 42.4, "stores": {}}, "task t1 processing: converting, 42%"),
        ({"phase": "decompressing", "percent": None, "stores": {}}, "task t1 processing: decompressing"),
        ({"phase": "some_new_step"}, "task t1 processing: some_new_step"),
        ({"phase": "staging", "staged_bytes": 2048}, "task t1 processing: downloading, 2.0 KiB so far"),
    ],
)
def test_a_step_of_its_own_is_shown_by_name_and_percent(progress: dict[str, object], line: str) -> None:
    assert progress_line(_task(progress)) == line


def test_plugin_states_are_read_from_the_progress() -> None:
    task = _task(
        {"phase": "stores", "plugins": {"image_decompression": "done", "image_conversion": "skipped"}}
    )
    assert plugin_states(task) == {"image_decompression": "done", "image_conversion": "skipped"}
    assert plugin_states(_task({"phase": "stores"})) == {}
