"""How the command line words what servers send."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from glimpse_client import Task
from glimpse_client.cli._text import plugin_states, progress_line, utc_time
from glimpse_client.cli.progress import _LiveView


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


def test_the_live_view_has_a_bar_per_import_plugin() -> None:
    view = _LiveView(Console(file=io.StringIO(), width=120))
    progress = {
        "phase": "converting",
        "percent": 42.0,
        "plugins": {"image_decompression": "done", "image_conversion": "running"},
        "stores": {"fast": {"state": "pending", "bytes_done": 0, "bytes_total": 100}},
    }
    view.update(_task(progress))
    rows = {row.description: row for row in view.progress.tasks}
    assert rows["image_decompression"].completed == 100
    assert rows["image_conversion"].completed == 42.0
    assert "converting" in rows["image_conversion"].fields["note"]
    assert rows["fast"].completed == 0
    view.update(
        _task({**progress, "phase": "stores", "percent": None, "plugins": {"image_conversion": "done"}})
    )
    assert rows["image_conversion"].completed == 100


@pytest.mark.parametrize(
    ("progress", "line"),
    [
        (
            {"phase": "staging", "staged_bytes": 2048, "eta_seconds": 83},
            "task t1 processing: downloading, 2.0 KiB so far, eta 0:01:23",
        ),
        (
            {"phase": "staging", "staged_bytes": 2048, "stalled_since": "2026-12-06T08:00:12.000000Z"},
            "task t1 processing: downloading, 2.0 KiB so far, stalled since 2026-12-06T08:00:12Z",
        ),
        (
            {
                "phase": "stores",
                "eta_seconds": 3725,
                "stores": {
                    "fast": {"state": "copying", "bytes_done": 1024, "bytes_total": 4096, "percent": 25.0}
                },
            },
            "task t1 processing: fast 25% (1.0 KiB/4.0 KiB), eta 1:02:05",
        ),
        (
            {"phase": "converting", "percent": 10.0, "eta_seconds": None},
            "task t1 processing: converting, 10%",
        ),
    ],
)
def test_lines_show_the_servers_eta_or_the_stall(progress: dict[str, object], line: str) -> None:
    assert progress_line(_task(progress)) == line


def test_a_finished_task_and_a_glance_task_show_no_eta() -> None:
    done = Task(id="t1", status="success", progress={"phase": "done", "eta_seconds": 5, "stores": {}})
    assert done.eta_seconds == 5
    assert "eta" not in progress_line(done)
    glance = Task(id="t1", status="processing", message="Copied 0 MiB")
    assert (glance.eta_seconds, glance.stalled_since) == (None, None)
    assert progress_line(glance) == "task t1 processing: Copied 0 MiB"


def test_the_live_bars_show_the_servers_eta_and_stalls() -> None:
    console = Console(file=io.StringIO(), width=160)
    view = _LiveView(console)
    progress = {
        "phase": "staging",
        "staged_bytes": 1024,
        "staged_total": 4096,
        "eta_seconds": 83,
        "stores": {"fast": {"state": "pending", "bytes_done": 0, "bytes_total": None}},
    }
    view.update(_task(progress))
    rows = {row.description: row for row in view.progress.tasks}
    assert rows["download"].total == 4096
    assert rows["download"].fields["eta"] == 83
    console.print(view.progress.make_tasks_table(view.progress.tasks))
    assert "eta 0:01:23" in console.file.getvalue()  # type: ignore[attr-defined]
    view.update(_task({**progress, "eta_seconds": None, "stalled_since": "2026-12-06T08:00:12Z"}))
    console.print(view.progress.make_tasks_table(view.progress.tasks))
    assert rows["download"].fields["stalled"] is True
    assert "stalled" in console.file.getvalue()  # type: ignore[attr-defined]
