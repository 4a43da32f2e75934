"""Uploads whose process died: the image is left ``saving``; the housekeeping puts it back to ``queued``
once the upload has been silent for ``upload_stale_after`` seconds, and the owner can upload again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from test_runner_support import OWNER, create_image

from glimpse.config import load_settings
from glimpse.db.models import ImageRow
from glimpse.domain.images import ImageStatus
from glimpse.jobs.housekeeping import revert_silent_uploads, sweep_orphans
from glimpse.runtime import Runtime
from glimpse.services import image_data
from glimpse.services.imports import ImportService
from livesupport import Server, free_port, wait_until

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader"}
#: Seconds a starting server may take to answer: a restart on a loaded 2-core machine takes tens.
START_ON_A_BUSY_MACHINE = 90.0
OCTETS = {"Content-Type": "application/octet-stream"}


def runtime_for(tmp_path: Path, database_url: str) -> Runtime:
    return Runtime.build(
        load_settings(
            environ={
                "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
                "GLIMPSE_DATABASE__CONNECTION": database_url,
                "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
            }
        )
    )


def saving_image(
    runtime: Runtime, updated_at: datetime, status: ImageStatus = ImageStatus.SAVING, size: int | None = None
) -> str:
    image_id = create_image(runtime)
    with runtime.uow() as session:
        session.execute(
            update(ImageRow)
            .where(ImageRow.id == image_id)
            .values(status=str(status), size=size, updated_at=updated_at)
        )
    return image_id


def status_of(runtime: Runtime, image_id: str) -> str:
    return asyncio.run(runtime.run(lambda repos: repos.images.get(image_id), readonly=True)).status


def test_only_silent_uploads_are_put_back(tmp_path: Path, migrated_database_url: str) -> None:
    runtime = runtime_for(tmp_path, migrated_database_url)
    try:
        now = datetime.now(UTC)
        silent = saving_image(runtime, now - timedelta(minutes=17))
        live = saving_image(runtime, now - timedelta(minutes=14))  # touched within upload_stale_after
        # A stage under way has no size yet; a finished one keeps its staged size until it is imported.
        stage = saving_image(runtime, now - timedelta(minutes=16), ImageStatus.UPLOADING)
        staged = saving_image(runtime, now - timedelta(days=3), ImageStatus.UPLOADING, size=1024)
        assert asyncio.run(revert_silent_uploads(runtime)) == [silent, stage]
        assert status_of(runtime, silent) == ImageStatus.QUEUED
        assert status_of(runtime, stage) == ImageStatus.QUEUED
        assert status_of(runtime, live) == ImageStatus.SAVING
        assert status_of(runtime, staged) == ImageStatus.UPLOADING
        assert asyncio.run(revert_silent_uploads(runtime)) == []
    finally:
        runtime.close()


@pytest.mark.parametrize("kind", ["upload", "stage"])
def test_a_live_upload_or_stage_touches_its_image(
    tmp_path: Path, migrated_sqlite_url: str, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(image_data, "UPLOAD_TOUCH_INTERVAL", 0.05)
    runtime = runtime_for(tmp_path, migrated_sqlite_url)
    seen: list[datetime] = []

    def updated_at(image_id: str) -> datetime:
        image = asyncio.run(runtime.run(lambda repos: repos.images.get(image_id), readonly=True))
        return image.updated_at

    async def slow_body(image_id: str) -> AsyncIterator[bytes]:
        for _ in range(6):  # about 2.4 s: the column keeps whole seconds on some databases
            await asyncio.sleep(0.4)
            seen.append(await runtime.run(lambda repos: repos.images.get(image_id).updated_at, readonly=True))
            yield b"x" * 1024

    try:
        image_id = create_image(runtime)
        if kind == "upload":
            service = image_data.ImageDataService(runtime)
            asyncio.run(
                service.upload(OWNER, image_id, slow_body(image_id), content_length=None, store_id=None)
            )
        else:
            asyncio.run(
                ImportService(runtime).stage(
                    OWNER,
                    image_id,
                    slow_body(image_id),
                    media_type="application/octet-stream",
                    content_length=None,
                    declared_size=None,
                )
            )
        assert seen[-1] > seen[0], seen  # the row moved while the bytes were still coming
        assert updated_at(image_id) >= seen[-1]
    finally:
        runtime.close()


@pytest.mark.live
def test_an_upload_whose_server_was_killed_can_be_done_again(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
        }
    )
    server = Server(name="killed", port=free_port(), log_path=tmp_path / "server.log")
    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    data = os.urandom(4 * 1024 * 1024)
    image_id = httpx.post(
        f"{server.url}/v2/images", json={"disk_format": "raw", "container_format": "bare"}, headers=HEADERS
    ).json()["id"]
    with socket.create_connection(("127.0.0.1", server.port)) as upload:
        head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        upload.sendall(
            (
                f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: x\r\n{head}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[: len(data) // 2]
        )
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/v2/images/{image_id}", headers=HEADERS).json()["status"] != "saving":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)

    runtime = runtime_for(tmp_path, migrated_sqlite_url)
    try:
        assert status_of(runtime, image_id) == ImageStatus.SAVING  # what the killed process left
        # The housekeeping of any runner, once upload_stale_after (15 minutes) has passed.
        runtime.clock = lambda: datetime.now(UTC) + timedelta(minutes=16)
        assert asyncio.run(revert_silent_uploads(runtime)) == [image_id]
    finally:
        runtime.close()

    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            assert http.get(f"/v2/images/{image_id}").json()["status"] == "queued"
            again = http.put(
                f"/v2/images/{image_id}/file",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert again.status_code == 204, again.text
            assert http.get(f"/v2/images/{image_id}/file").content == data
    finally:
        server.stop()


def _partial_request(port: int, method_path: str, data: bytes, sent: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    connection.sendall(
        (
            f"{method_path} HTTP/1.1\r\nHost: x\r\n{head}"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:sent]
    )
    return connection


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.live
def test_a_server_killed_during_uploads_and_stages_leaves_only_what_users_can_act_on(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
            "GLIMPSE_ENABLED_BACKENDS": "fast:file",
            "GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC": "false",
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
        }
    )
    fast = tmp_path / "data" / "stores" / "fast"
    staging = tmp_path / "data" / "staging"
    data = os.urandom(4 * 1024 * 1024)
    server = Server(name="crashed", port=free_port(), log_path=tmp_path / "server.log")
    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:

            def create() -> str:
                image_id: str = http.post(
                    "/v2/images", json={"disk_format": "raw", "container_format": "bare"}
                ).json()["id"]
                return image_id

            def status(image_id: str) -> str:
                return str(http.get(f"/v2/images/{image_id}").json()["status"])

            active, staged, uploaded, staging_now = create(), create(), create(), create()
            # Done before the crash: an active image, and a finished stage waiting for its import.
            assert http.put(f"/v2/images/{active}/file", content=data).status_code == 204
            assert http.put(f"/v2/images/{staged}/stage", content=data, headers=OCTETS).status_code == 204
            # Under way at the crash: an upload and a stage, half their bytes in.
            upload = _partial_request(server.port, f"PUT /v2/images/{uploaded}/file", data, len(data) // 2)
            stage = _partial_request(server.port, f"PUT /v2/images/{staging_now}/stage", data, len(data) // 2)
            wait_until(lambda: status(uploaded) == "saving", server.log, within=30)
            wait_until(lambda: status(staging_now) == "uploading", server.log, within=30)
            # The halves are in the store's hidden temporary files before the process dies.
            wait_until(lambda: len(_files(fast)) == 2 and len(_files(staging)) == 2, server.log, within=30)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        server.stop()  # only when the test failed before the kill
    upload.close()
    stage.close()
    assert len(_files(fast)) == 2, _files(fast)  # the active image's file and the upload's partial one
    assert len(_files(staging)) == 2, _files(staging)

    # The housekeeping of any runner: once upload_stale_after has passed, the two images whose data
    # stopped coming are queued again; once orphan_sweep_grace_time has, the partial files go.
    runtime = runtime_for(tmp_path, migrated_sqlite_url)
    try:
        assert status_of(runtime, uploaded) == ImageStatus.SAVING
        assert status_of(runtime, staging_now) == ImageStatus.UPLOADING
        runtime.clock = lambda: datetime.now(UTC) + timedelta(minutes=16)
        assert sorted(asyncio.run(revert_silent_uploads(runtime))) == sorted([uploaded, staging_now])
        runtime.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
        asyncio.run(sweep_orphans(runtime))
    finally:
        runtime.close()
    assert _files(fast) == [active]
    assert _files(staging) == [staged]

    server = Server(name="restarted", port=free_port(), log_path=tmp_path / "restarted.log")
    server.start(env)
    server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
    try:
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
            assert http.get(f"/v2/images/{active}/file").content == data
            assert http.get(f"/v2/images/{uploaded}").json()["status"] == "queued"
            assert http.get(f"/v2/images/{staging_now}").json()["status"] == "queued"
            assert http.get(f"/v2/images/{staged}").json()["status"] == "uploading"
            assert http.put(f"/v2/images/{uploaded}/file", content=data).status_code == 204
            assert (
                http.put(f"/v2/images/{staging_now}/stage", content=data, headers=OCTETS).status_code == 204
            )
            assert http.get(f"/v2/images/{uploaded}/file").content == data
    finally:
        server.stop()
