"""Every store write is checked against the bytes sent (size, and md5 where the store keeps one): a
store that kept other bytes fails, its object is deleted, and the message names the store and what
differs. A store that corrupts data on demand does not exist, so ``CorruptingStore`` (a wrapper over
a real store) plays it; the stores, database and checks are otherwise real."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_object_stores import make_store
from test_runner_support import (
    ADMIN,
    MIB,
    CorruptingStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    upload,
)
from test_store_contract import _empty_and_remove_bucket, _s3_bucket_contents, _s3_client

from glimpse.api.app import create_app
from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus
from glimpse.errors import StoreMismatch
from objectsupport import ObjectServer

DATA = payload(2 * MIB + 4321, seed=11)
TRUNCATED = f"{len(DATA) - 1} bytes where {len(DATA)} were written"


def test_a_copy_to_a_store_that_keeps_other_bytes_fails_that_store_only(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_database_url, wrap={"cheap": lambda s: CorruptingStore(s, truncate=True)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        task_id = await start_import(
            runtime,
            image_id,
            {
                "method": {"name": "copy-image"},
                "stores": ["cheap", "reliable"],
                "all_stores_must_succeed": False,
            },
            ctx=ADMIN,
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    cheap = task.progress.stores["cheap"]
    assert cheap.state == "failed"
    assert f"store 'cheap' did not keep the bytes it was given: {TRUNCATED}" in (cheap.error or "")
    assert "its copy was deleted" in (cheap.error or "")
    image = image_of(runtime, image_id)
    assert sorted(image.stores) == ["fast", "reliable"]
    assert image.properties["os_glance_failed_import"] == "cheap"
    assert store_files(runtime, "cheap") == []
    assert stored_bytes(runtime, "reliable", image_id) == DATA
    runtime.close()


def test_an_import_that_must_succeed_everywhere_keeps_nothing(
    tmp_path: Path, migrated_database_url: str
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_database_url, wrap={"cheap": lambda s: CorruptingStore(s, truncate=True)}
    )

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"]}
        )
        await run_all(runtime)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "The import to store 'cheap' failed (store 'cheap' did not keep the bytes" in (task.message or "")
    assert TRUNCATED in (task.message or "")
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.stores == []
    assert store_files(runtime, "fast") == []
    assert store_files(runtime, "cheap") == []
    assert staged_files(runtime) == []
    runtime.close()


def test_an_upload_to_a_store_that_keeps_other_bytes_is_503_and_keeps_nothing(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, wrap={"fast": lambda s: CorruptingStore(s, truncate=True)}
    )
    headers = {"X-Project-Id": "project-a", "X-User-Id": "user-a", "X-Roles": "member,reader"}
    client = TestClient(create_app(runtime), headers={**headers, "Accept": "application/json"})
    image_id = client.post(
        "/v2/images", json={"name": "x", "disk_format": "raw", "container_format": "bare"}
    ).json()["id"]
    response = client.put(
        f"/v2/images/{image_id}/file", content=DATA, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    assert f"store 'fast' did not keep the bytes it was given: {TRUNCATED}" in message
    assert message.endswith("Nothing was stored and the image is still queued; upload again.")
    assert client.get(f"/v2/images/{image_id}").json()["status"] == "queued"
    assert store_files(runtime, "fast") == []
    client.close()
    runtime.close()


@pytest.mark.objects
def test_a_flipped_byte_is_caught_by_the_s3_etag(
    tmp_path: Path, migrated_sqlite_url: str, s3_server: ObjectServer
) -> None:
    """Same size, other bytes: only the md5 (a single-part object's ETag) can tell, and does."""
    bucket = f"glimpse-verify-{uuid.uuid4().hex[:12]}"
    client = _s3_client(s3_server)

    def s3(_: object) -> CorruptingStore:  # one PutObject: its ETag is the md5
        return CorruptingStore(
            make_store(s3_server, bucket, id="cheap", large_object_size=64 * MIB), truncate=False
        )

    runtime = make_runtime(tmp_path, migrated_sqlite_url, wrap={"cheap": s3})
    try:
        image_id = create_image(runtime)
        with pytest.raises(StoreMismatch) as caught:
            asyncio.run(upload(runtime, image_id, DATA, store="cheap"))
        flipped = bytes([DATA[0] ^ 0xFF]) + DATA[1:]
        md5 = {data: hashlib.md5(data, usedforsecurity=False).hexdigest() for data in (DATA, flipped)}
        assert (
            f"store 'cheap' did not keep the bytes it was given: md5 {md5[flipped]} where the data "
            f"written has {md5[DATA]}"
        ) in caught.value.message
        assert image_of(runtime, image_id).status == ImageStatus.QUEUED
        assert _s3_bucket_contents(client, bucket) == set()
    finally:
        runtime.close()
        _empty_and_remove_bucket(client, bucket)
