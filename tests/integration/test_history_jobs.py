"""The image history written by the task runner and the housekeeping: how a task ended (success,
partial success, failure, cancel while running), with the bytes it moved, on every database backend;
and the purge of old entries by ``glimpse-server db purge``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from test_runner_support import (
    ADMIN,
    MIB,
    FailingStore,
    WebServer,
    create_image,
    make_runtime,
    payload,
    run_all,
    serve,
    sibling,
    stage,
    start_import,
    task_of,
    upload,
    wait_for,
)
from test_task_cancel import cancel

from glimpse.cli.main import main
from glimpse.db.history_repository import SqlHistoryRepository
from glimpse.db.models import ImageHistoryRow, ImageRow
from glimpse.domain.history import HistoryEntry
from glimpse.domain.tasks import TaskStatus
from glimpse.jobs.housekeeping import revert_silent_uploads
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime

DATA = payload(3 * MIB + 12345)


@pytest.fixture
def web() -> Iterator[WebServer]:
    # 64 KiB chunks 20 ms apart: about a second for the whole image, long enough to cancel in.
    yield from serve({"/image.raw": DATA}, delay=0.02)


def entries(runtime: Runtime, image_id: str) -> list[HistoryEntry]:
    with runtime.uow(readonly=True) as session:
        return SqlHistoryRepository(session).for_image(image_id, limit=100)


def summary(found: list[HistoryEntry]) -> list[tuple[str, str]]:
    return [(str(e.action), str(e.outcome)) for e in found]


def test_a_partly_failed_import_records_its_stores_and_bytes(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_database_url, wrap={"cheap": lambda s: FailingStore(s, after=MIB)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        body = {
            "method": {"name": "glance-direct"},
            "stores": ["fast", "cheap"],
            "all_stores_must_succeed": False,
        }
        task_id = await start_import(runtime, image_id, body)
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    assert task_of(runtime, task_id).status == TaskStatus.SUCCESS
    found = entries(runtime, image_id)
    assert summary(found) == [
        ("import", "success"),
        ("import", "accepted"),
        ("stage", "success"),
        ("create", "success"),
    ]
    done = found[0]
    assert done.task_id == task_id
    assert done.stores == ("fast", "cheap")  # as the request named them
    assert done.status == "active"
    assert done.message.startswith("Copied 3 MiB to fast. Failed: cheap (")
    assert "I/O error" in done.message
    # What it moved: the data once into "fast" and the first MiB or so into "cheap".
    assert len(DATA) < (done.bytes_moved or 0) < 2 * len(DATA)
    assert (done.user_id, done.project_id) == ("user-a", "project-a")
    assert found[2].bytes_moved == len(DATA)
    runtime.close()


def test_a_failed_web_download_records_why(
    tmp_path: Path, migrated_database_url: str, web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)

    async def scenario() -> str:
        image_id = create_image(runtime)
        body = {"method": {"name": "web-download", "uri": web.url("/missing.raw")}}
        await start_import(runtime, image_id, body)
        await run_all(runtime)
        return image_id

    image_id = asyncio.run(scenario())
    failed = entries(runtime, image_id)[0]
    assert (str(failed.action), str(failed.outcome)) == ("import", "failure")
    assert "404" in failed.message
    assert failed.status == "queued"
    assert failed.bytes_moved == 0
    runtime.close()


def test_a_cancel_of_a_running_task_is_two_entries(
    tmp_path: Path, migrated_database_url: str, web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=web.filter_environ)
    api = sibling(runtime)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        body = {"method": {"name": "web-download", "uri": web.url("/image.raw")}}
        task_id = await start_import(runtime, image_id, body)
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await wait_for(lambda: task_of(runtime, task_id).progress.staged_bytes > 0, what="the download")
        await cancel(api, image_id, task_id, ADMIN)
        await asyncio.wait_for(runner.wait_idle(), 30)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    found = entries(runtime, image_id)
    assert summary(found) == [
        ("import", "cancelled"),
        ("cancel", "requested"),
        ("import", "accepted"),
        ("create", "success"),
    ]
    ended, asked = found[0], found[1]
    assert (asked.user_id, asked.project_id, asked.task_id) == ("admin", "project-admin", task_id)
    assert (ended.user_id, ended.project_id) == ("user-a", "project-a")  # the task's own caller
    assert ended.status == "queued"
    assert 0 < (ended.bytes_moved or 0) < len(DATA)
    assert "admin" not in ended.message  # who cancelled is the cancel entry's, redacted there
    api.close()
    runtime.close()


def test_db_purge_removes_history_older_than_image_history_days(
    tmp_path: Path,
    migrated_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url)
    old, recent = create_image(runtime), create_image(runtime)
    asyncio.run(upload(runtime, recent, b"data"))
    with runtime.uow() as session:
        session.execute(
            update(ImageHistoryRow)
            .where(ImageHistoryRow.image_id == old)
            .values(created_at=runtime.clock() - timedelta(days=31))
        )
    for name in [n for n in os.environ if n.startswith("GLIMPSE_")]:
        monkeypatch.delenv(name)  # what other tests' commands left behind
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLIMPSE_DATABASE__CONNECTION", runtime.settings.database_connection)
    monkeypatch.setenv("GLIMPSE_ENABLED_BACKENDS", "fast:file,cheap:file,reliable:file")
    monkeypatch.setenv("GLIMPSE_IMAGE_HISTORY_DAYS", "30")
    assert main(["db", "purge", "--age_in_days", "0"]) == 0
    out = capsys.readouterr().out
    assert "purged 1 image history entries older than 30 day(s)" in out
    assert entries(runtime, old) == []
    assert summary(entries(runtime, recent)) == [("upload", "success"), ("create", "success")]
    runtime.close()


def test_an_upload_the_housekeeping_gave_up_on_is_recorded(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url)
    image_id = create_image(runtime)
    stale = runtime.clock() - timedelta(seconds=runtime.settings.upload_stale_after + 60)
    with runtime.uow() as session:
        session.execute(
            update(ImageRow).where(ImageRow.id == image_id).values(status="saving", updated_at=stale)
        )
    assert asyncio.run(revert_silent_uploads(runtime)) == [image_id]
    gave_up = entries(runtime, image_id)[0]
    assert (str(gave_up.action), str(gave_up.outcome), gave_up.status) == ("upload", "failure", "queued")
    assert gave_up.user_id is None
    assert "the housekeeping queued the image again" in gave_up.message
    runtime.close()
