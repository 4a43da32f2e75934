"""``glimpse-server worker`` as a real process: killed mid-download (SIGKILL), the reaper of another runner
restores the image and removes the partial data; stopped (SIGTERM), it hands its task back cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runner_support import (
    MIB,
    STORES,
    WebServer,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    serve,
    staged_files,
    start_import,
    store_files,
    task_of,
    wait_for,
)

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus
from glimpse.jobs.housekeeping import reap_expired
from glimpse.runtime import Runtime
from livesupport import REPO_ROOT, venv_script
from secretcheck import watch_log

pytestmark = pytest.mark.live

DATA = payload(8 * MIB)


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 128 chunks of 64 KiB, 15 ms apart: about two seconds for the whole image.
    yield from serve({"/big.raw": DATA}, delay=0.015)


def worker_environ(tmp_path: Path, database_url: str, web: WebServer) -> dict[str, str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")},
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": database_url,
        "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{s}:file" for s in STORES),
        "GLIMPSE_TASK__TASK_LEASE_TIME": "1",
        "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
        "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.1",
        **web.filter_environ,
    }
    for store in STORES:
        env[f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_FSYNC"] = "false"
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    watch_log(log_path)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(venv_script("glimpse-server")), "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def begin_download(runtime: Runtime, web: WebServer) -> tuple[str, str]:
    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        body = {"method": {"name": "web-download", "uri": web.url("/big.raw")}, "stores": ["fast", "cheap"]}
        return image_id, await start_import(runtime, image_id, body)

    return asyncio.run(scenario())


def wait_until_downloading(
    runtime: Runtime, task_id: str, worker: subprocess.Popen[bytes], log: Path
) -> None:
    def downloading() -> bool:
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited early:\n{log.read_text(errors='replace')}")
        task = task_of(runtime, task_id)
        return task.status == TaskStatus.PROCESSING and task.progress.staged_bytes > 0

    # A worker process starts (imports, migration check) in about a second on an idle machine, but
    # well over 20 s on a loaded one: the wait ends as soon as the download has begun.
    asyncio.run(wait_for(downloading, within=90, what="the worker to start downloading"))


def test_sigkilled_worker_is_reaped_by_another_runner(
    tmp_path: Path, migrated_sqlite_url: str, slow_web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, environ=slow_web.filter_environ)
    image_id, task_id = begin_download(runtime, slow_web)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_environ(tmp_path, migrated_sqlite_url, slow_web), log)
    try:
        wait_until_downloading(runtime, task_id, worker, log)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    assert task_of(runtime, task_id).status == TaskStatus.PROCESSING  # nobody knows it died yet

    async def reap() -> list[tuple[str, str]]:
        await wait_for(
            lambda: task_of(runtime, task_id).lease_expires_at < runtime.clock(),  # type: ignore[operator]
            within=10,
            what="the lease to lapse",
        )
        return await reap_expired(runtime)

    assert asyncio.run(reap()) == [(task_id, "failed")]
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "The worker running this task stopped (lease expired at" in task.message
    assert task.expires_at is not None
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image.locations == []
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image.properties["os_glance_failed_import"] == "cheap,fast"
    # The killed write's hidden temporary file is the store's own business; no object is left.
    assert image_id not in staged_files(runtime)
    for store in ("fast", "cheap"):
        assert store_files(runtime, store) == []
    runtime.close()


def test_sigterm_hands_the_task_back_for_another_runner(
    tmp_path: Path, migrated_database_url: str, slow_web: WebServer
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=slow_web.filter_environ)
    image_id, task_id = begin_download(runtime, slow_web)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_environ(tmp_path, migrated_database_url, slow_web), log)
    try:
        wait_until_downloading(runtime, task_id, worker, log)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, log.read_text(errors="replace")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.PENDING, task.message
    assert task.claimed_by is None
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.IMPORTING
    assert image.import_task_id == task_id
    assert image.properties["os_glance_importing_to_stores"] == "cheap,fast"
    assert image_id not in staged_files(runtime)
    assert "queued again" in log.read_text() or "back to the queue" in log.read_text()

    slow_web.delay = 0
    runner = asyncio.run(run_all(runtime, "next"))
    assert runner.finished == {task_id: "success"}
    assert image_of(runtime, image_id).status == ImageStatus.ACTIVE
    runtime.close()
