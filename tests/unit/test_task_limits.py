"""Time limits of a running task, as the heartbeat applies them with an injected clock: the deadline
(the import request's ``deadline`` or ``[task] task_max_duration``, the earlier one), stalls of a
byte-moving phase, and the ``eta_seconds`` and ``stalled_since`` every write carries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from glimpse.config import ConfigError, load_settings
from glimpse.domain.imports import ImportRequest
from glimpse.domain.tasks import StoreState, Task, TaskProgress, TaskStatus, TaskType
from glimpse.errors import InvalidInput
from glimpse.jobs.errors import DeadlineReached, Stalled
from glimpse.jobs.progress import Heartbeat, TaskLimits

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []

    async def __call__(self, progress: TaskProgress, message: str) -> None:
        self.writes.append(progress.to_dict())


def task(body: dict[str, Any]) -> Task:
    return Task(
        id="t",
        type=TaskType.API_IMAGE_IMPORT,
        status=TaskStatus.PROCESSING,
        owner="p",
        image_id="i",
        request_id=None,
        user_id=None,
        input={"import_req": body, "backend": ["fast"]},
        created_at=T0,
        updated_at=T0,
    )


DIRECT = {"method": {"name": "glance-direct"}}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the deadline ----------------------------------------------------------------------------------------


def test_the_earlier_limit_sets_the_deadline() -> None:
    own = TaskLimits.for_task(task({**DIRECT, "deadline": 600}), max_duration=3600, stall_timeout=0)
    assert own.deadline_at == T0 + timedelta(seconds=600)
    assert "within 600 seconds" in own.deadline_text
    site = TaskLimits.for_task(task({**DIRECT, "deadline": 7200}), max_duration=3600, stall_timeout=0)
    assert site.deadline_at == T0 + timedelta(seconds=3600)
    assert "task_max_duration" in site.deadline_text
    assert TaskLimits.for_task(task(DIRECT), max_duration=0, stall_timeout=0).deadline_at is None


def test_a_beat_past_the_deadline_raises_with_the_limit_and_the_times() -> None:
    clock, recorder = Clock(), Recorder()
    limits = TaskLimits.for_task(task({**DIRECT, "deadline": 60}), max_duration=0, stall_timeout=0)
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=2.0, limits=limits)
    heartbeat.start_phase("stores")
    clock.advance(59)
    run(heartbeat.beat())
    clock.advance(1)
    with pytest.raises(DeadlineReached) as raised:
        run(heartbeat.beat())
    assert raised.value.message == (
        "Deadline reached: the import request asked for the task to end within 60 seconds of "
        "2026-01-01T00:00:00Z, that is by 2026-01-01T00:01:00Z; it was stopped at "
        "2026-01-01T00:01:00Z in phase 'stores'."
    )


# -- stalls ----------------------------------------------------------------------------------------------


def staging_heartbeat(clock: Clock, recorder: Recorder, stall: float = 600) -> Heartbeat:
    limits = TaskLimits(stall_timeout=stall)
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=2.0, limits=limits)
    heartbeat.start_phase("staging")
    heartbeat.progress.staged_total = 1000
    return heartbeat


def test_a_phase_without_progress_for_the_stall_timeout_stalls() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = staging_heartbeat(clock, recorder)
    heartbeat.progress.staged_bytes = 100
    clock.advance(10)
    run(heartbeat.beat())  # bytes moved: the stall clock starts again here, at T0 + 10 s
    clock.advance(599)
    run(heartbeat.beat())
    clock.advance(1)
    with pytest.raises(Stalled) as raised:
        run(heartbeat.beat())
    assert raised.value.message == (
        "Stalled: no bytes moved for 600 seconds (the limit is 600, [task] task_stall_timeout) in "
        "step 'download' (the web-download into the staging area); the last progress was at "
        "2026-01-01T00:00:10Z, with 100 of 1000 bytes downloaded. It was stopped at 2026-01-01T00:10:10Z."
    )


def test_moving_bytes_never_stall_and_phases_without_bytes_are_not_watched() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = staging_heartbeat(clock, recorder, stall=10)
    for _ in range(20):
        clock.advance(9)
        heartbeat.progress.staged_bytes += 1
        run(heartbeat.beat())
    heartbeat.start_phase("pending")
    clock.advance(3600)
    run(heartbeat.beat())  # no byte-moving phase: nothing to stall


def test_off_means_never() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = staging_heartbeat(clock, recorder, stall=0)
    clock.advance(86400)
    run(heartbeat.beat())


# -- eta_seconds and stalled_since ------------------------------------------------------------------------


def test_eta_from_the_recent_rate_and_stalled_since_once_bytes_stop() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = staging_heartbeat(clock, recorder)
    run(heartbeat.beat(force=True))
    assert recorder.writes[-1]["eta_seconds"] is None  # no rate yet
    assert recorder.writes[-1]["stalled_since"] is None
    for _ in range(4):
        clock.advance(2)
        heartbeat.progress.staged_bytes += 100  # 50 bytes per second
        run(heartbeat.beat())
    assert recorder.writes[-1]["staged_total"] == 1000
    assert recorder.writes[-1]["eta_seconds"] == 12  # 600 bytes left at 50 per second
    clock.advance(2)
    run(heartbeat.beat())  # nothing moved for a whole interval
    assert recorder.writes[-1]["stalled_since"] == "2026-01-01T00:00:08.000000Z"
    assert recorder.writes[-1]["eta_seconds"] is None
    clock.advance(2)
    heartbeat.progress.staged_bytes += 100
    run(heartbeat.beat())
    assert recorder.writes[-1]["stalled_since"] is None
    assert recorder.writes[-1]["eta_seconds"] is not None


def test_eta_of_the_stores_waits_for_the_slowest_bytes() -> None:
    clock, recorder = Clock(), Recorder()
    heartbeat = Heartbeat(TaskProgress(), recorder, clock=clock, interval=1.0)
    for name in ("fast", "cheap"):
        heartbeat.store(name).bytes_total = 1000
        heartbeat.store(name).state = StoreState.COPYING
    heartbeat.start_phase("stores")
    for _ in range(5):
        clock.advance(1)
        heartbeat.store("fast").bytes_done += 100
        heartbeat.store("cheap").bytes_done += 100
        run(heartbeat.beat())
    # 1000 bytes left in all at 200 bytes per second in all
    assert recorder.writes[-1]["eta_seconds"] == 5
    progress = TaskProgress.from_dict(recorder.writes[-1])
    assert progress.eta_seconds == 5
    assert progress.stalled_since is None


# -- the request field and the options -------------------------------------------------------------------


@pytest.mark.parametrize("given", [0, -5, 1.5, "60", True, None, [60]])
def test_a_deadline_must_be_a_positive_integer(given: object) -> None:
    with pytest.raises(InvalidInput, match=r"'deadline' must be a positive integer"):
        ImportRequest.from_dict({**DIRECT, "deadline": given})


def test_a_deadline_goes_back_into_the_task_input() -> None:
    request = ImportRequest.from_dict({**DIRECT, "deadline": 90})
    assert request.deadline == 90
    assert request.to_dict() == {**DIRECT, "deadline": 90}
    assert ImportRequest.from_dict(DIRECT).to_dict() == DIRECT


def settings_with(tmp_path: Path, **task: str) -> Any:
    options = {f"GLIMPSE_TASK__{name.upper()}": value for name, value in task.items()}
    environ = {"GLIMPSE_DATA_DIR": str(tmp_path), **options}
    return load_settings(environ=environ)


def test_the_options_and_their_defaults(tmp_path: Path) -> None:
    default = settings_with(tmp_path)
    assert (default.task_max_duration, default.task_stall_timeout) == (0.0, 600.0)
    assert (default.web_download_connect_timeout, default.web_download_read_timeout) == (30.0, 60.0)
    assert default.web_download_retries == 3
    given = settings_with(
        tmp_path,
        task_max_duration="7200",
        task_stall_timeout="0",
        web_download_connect_timeout="5",
        web_download_read_timeout="20",
        web_download_retries="0",
    )
    assert (given.task_max_duration, given.task_stall_timeout) == (7200.0, 0.0)
    assert (given.web_download_connect_timeout, given.web_download_read_timeout) == (5.0, 20.0)
    assert given.web_download_retries == 0


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("task_stall_timeout", "-1", "task_stall_timeout = '-1' is not a number of seconds"),
        ("task_max_duration", "soon", "task_max_duration = 'soon' is not a number of seconds"),
        ("web_download_read_timeout", "0", "must be greater than 0"),
        ("web_download_retries", "-1", "web_download_retries"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, option: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings_with(tmp_path, **{option: value})
