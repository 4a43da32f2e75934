"""The token a glance-download task keeps: stored with the active task, never part of its input,
gone from the row as soon as the task ends (success, failure, a cancel while pending)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from test_runner_support import make_runtime

from glimpse.domain.tasks import CancelRequest, Task, TaskProgress, TaskStatus, TaskType
from glimpse.ports import Repositories
from glimpse.runtime import Runtime

T = TypeVar("T")

TOKEN = "gAAAAAB-not-a-real-token-" + "x" * 40
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


def _task(credential: str | None) -> Task:
    return Task(
        id=str(uuid.uuid4()),
        type=TaskType.API_IMAGE_IMPORT,
        status=TaskStatus.PENDING,
        owner="p",
        image_id=None,
        request_id="req-1",
        user_id="u",
        input={"import_req": {"method": {"name": "glance-download"}}, "backend": ["fast"]},
        created_at=NOW,
        updated_at=NOW,
        credential=credential,
    )


def _raw_input(runtime: Runtime, task_id: str) -> str:
    with runtime.uow(readonly=True) as session:
        return str(session.execute(sa.text("SELECT input FROM tasks WHERE id = :i"), {"i": task_id}).scalar())


@pytest.mark.parametrize("ending", ["success", "failure", "cancel"])
def test_the_token_is_kept_while_the_task_is_active_and_only_then(
    tmp_path: Path, migrated_database_url: str, ending: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url)
    task, other = _task(TOKEN), _task(None)

    def run(fn: Callable[[Repositories], T]) -> T:
        return asyncio.run(runtime.run(fn))

    def add(repos: Repositories) -> None:
        repos.tasks.add(task)
        repos.tasks.add(other)

    run(add)
    found, plain = run(lambda repos: (repos.tasks.find(task.id), repos.tasks.find(other.id)))
    assert found is not None
    assert plain is not None
    assert found.credential == TOKEN
    assert TOKEN not in repr(found)
    assert found.input == task.input  # the token is not part of the input anyone sees
    assert plain.credential is None
    assert TOKEN in _raw_input(runtime, task.id)

    def end(repos: Repositories) -> bool:
        tasks = repos.tasks
        if ending == "cancel":
            request = CancelRequest(at=NOW, user_id="u", project_id="p", request_id="req-2")
            return tasks.cancel_pending(task.id, request, NOW, TTL, "cancelled")
        assert tasks.claim(task.id, "w", NOW, TTL)
        if ending == "success":
            return tasks.succeed(task.id, "w", NOW, TTL, {"image_id": "i"}, TaskProgress(), "done")
        return tasks.fail(task.id, NOW, TTL, "failed", worker="w")

    assert run(end)
    ended = run(lambda repos: repos.tasks.find(task.id))
    assert ended is not None
    assert ended.credential is None
    assert ended.input == task.input
    assert TOKEN not in _raw_input(runtime, task.id)
