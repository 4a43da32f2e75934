"""The orphan sweep (``glimpse.jobs.housekeeping.sweep_orphans``) on real stores: an object named for
an image that has no location (or no image), older than ``orphan_sweep_grace_time``, is removed; a
young one, the objects of an image that has data, an object of an image under import and a name
that is no image id stay; a store that cannot be listed is skipped."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from test_object_stores import make_store, make_swift_store
from test_runner_support import (
    OWNER,
    WrappedStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    stage,
    start_import,
    upload,
)
from test_store_contract import (
    _empty_and_remove_bucket,
    _remove_swift_containers,
    _s3_client,
    _swift_connection,
)

from glimpse.errors import StorageError
from glimpse.jobs.housekeeping import sweep_orphans
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore, StoreEntry
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService
from objectsupport import ObjectServer

DATA = payload(64 * 1024, seed=3)
HOUR = 3600


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def put(runtime: Runtime, store_id: str, key: str, *, age: float = 0) -> Path:
    """Write an object straight into a filesystem store (as a dead runner would have left it)."""
    store = runtime.stores.get(store_id)
    asyncio.run(store.write(key, one(DATA)))
    path = Path(store.datadir) / key  # type: ignore[attr-defined]
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def leftover(runtime: Runtime, store: ImageStore, *, age: float) -> Path:
    """The temporary file of a write to a filesystem store whose process was killed mid-way."""
    datadir = Path(store.datadir)  # type: ignore[attr-defined]
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / f".{uuid.uuid4()}.{uuid.uuid4().hex}.partial"
    path.write_bytes(DATA)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


class UnsweepableStore(WrappedStore):
    async def sweep_unfinished(self, older_than: datetime) -> list[str]:
        raise StorageError(f"store '{self.id}' could not remove unfinished writes: the service is down")


class UnlistableStore(WrappedStore):
    async def objects(self) -> list[StoreEntry]:
        raise StorageError(f"store '{self.id}' could not list the image data: the service is down")


def test_old_orphans_go_and_everything_else_stays(
    tmp_path: Path, migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, orphan_sweep_grace_time=HOUR)

    stored = create_image(runtime)  # its data: stays, however old
    asyncio.run(upload(runtime, stored, DATA, store="fast"))
    kept = [put(runtime, "fast", stored, age=2 * HOUR)]
    # A copy in another store of an image that has data: never judged (stores may share a place).
    kept.append(put(runtime, "cheap", stored, age=2 * HOUR))

    never_recorded = create_image(runtime)  # a write whose location was never recorded
    gone = [put(runtime, "cheap", never_recorded, age=2 * HOUR)]
    gone.append(put(runtime, "reliable", str(uuid.uuid4()), age=2 * HOUR))  # no such image at all

    deleted = create_image(runtime)  # deleted, but its data could not be removed then
    asyncio.run(upload(runtime, deleted, DATA, store="cheap"))
    asyncio.run(ImageDataService(runtime).delete_image(OWNER, deleted))
    gone.append(put(runtime, "cheap", deleted, age=2 * HOUR))

    young = create_image(runtime)  # inside the grace period: may still be on its way to a location
    kept.append(put(runtime, "cheap", young, age=HOUR - 60))

    importing = create_image(runtime)  # its import holds the lock: a task may be writing it
    asyncio.run(stage(runtime, importing, DATA))
    asyncio.run(start_import(runtime, importing, {"method": {"name": "glance-direct"}, "stores": ["cheap"]}))
    kept.append(put(runtime, "cheap", importing, age=2 * HOUR))

    kept.append(put(runtime, "reliable", "notes.txt", age=2 * HOUR))  # no image id: not ours to judge

    with caplog.at_level(logging.WARNING, logger="glimpse.jobs.housekeeping"):
        removed = asyncio.run(sweep_orphans(runtime))
    assert removed == {
        "cheap": sorted([never_recorded, deleted]),
        "reliable": [gone[1].name],
    }
    assert [path.exists() for path in gone] == [False, False, False]
    assert [path.exists() for path in kept] == [True] * 5
    assert image_of(runtime, stored).stores == ["fast"]
    assert sum("orphan sweep: removed the object of image" in r.getMessage() for r in caplog.records) == 3
    assert asyncio.run(sweep_orphans(runtime)) == {}  # nothing left to do
    runtime.close()


def test_the_leftovers_of_killed_writes_go_after_the_grace_time(
    tmp_path: Path, migrated_sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, wrap={"fast": UnsweepableStore}, orphan_sweep_grace_time=HOUR
    )
    cheap, staging = runtime.stores.get("cheap"), runtime.stores.staging
    gone = [leftover(runtime, cheap, age=2 * HOUR), leftover(runtime, staging, age=2 * HOUR)]
    young = leftover(runtime, cheap, age=HOUR - 60)  # a write that may still be going on
    with caplog.at_level(logging.WARNING, logger="glimpse.jobs.housekeeping"):
        assert asyncio.run(sweep_orphans(runtime)) == {}  # complete objects only
    assert [path.exists() for path in gone] == [False, False]
    assert young.exists()
    messages = [r.getMessage() for r in caplog.records]
    for path, store in zip(gone, ("cheap", staging.id), strict=True):
        assert (
            f"orphan sweep: removed from store {store} the leftover of a write that never finished: "
            f"{path.name}"
        ) in messages
    assert (
        "orphan sweep: the unfinished writes of store fast could not be swept, skipped: store 'fast' "
        "could not remove unfinished writes: the service is down"
    ) in messages
    runtime.close()


def test_a_store_that_cannot_be_listed_is_skipped(
    tmp_path: Path, migrated_sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(
        tmp_path, migrated_sqlite_url, wrap={"fast": UnlistableStore}, orphan_sweep_grace_time=HOUR
    )
    orphan = put(runtime, "cheap", str(uuid.uuid4()), age=2 * HOUR)
    with caplog.at_level(logging.WARNING, logger="glimpse.jobs.housekeeping"):
        assert asyncio.run(sweep_orphans(runtime)) == {"cheap": [orphan.name]}
    assert "orphan sweep: store fast cannot be listed, skipped: store 'fast' could not list" in caplog.text
    runtime.close()


def test_the_runner_sweeps_at_start_up(tmp_path: Path, migrated_sqlite_url: str) -> None:
    runtime = make_runtime(tmp_path, migrated_sqlite_url, orphan_sweep_grace_time=HOUR)
    orphan = put(runtime, "reliable", str(uuid.uuid4()), age=2 * HOUR)
    asyncio.run(TaskRunner(runtime, "sweeper").run_once())
    assert not orphan.exists()
    runtime.close()


@pytest.mark.objects
def test_the_sweep_on_s3_and_swift(tmp_path: Path, migrated_sqlite_url: str, s3_server: ObjectServer) -> None:
    """Object stores give no way to backdate an object: a grace of 1.5 s, and a young object written
    2.5 s after the old ones (S3 keeps whole seconds)."""
    name = f"glimpse-sweep-{uuid.uuid4().hex[:12]}"
    bucket, container = f"{name}-s3", f"{name}-swift"  # one account: distinct places
    s3 = make_store(s3_server, bucket, id="cheap")
    swift = make_swift_store(s3_server, container, id="reliable", create_container_on_put=True)
    stores: dict[str, ImageStore] = {"cheap": s3, "reliable": swift}
    runtime = make_runtime(
        tmp_path,
        migrated_sqlite_url,
        wrap={store_id: (lambda _, store=store: store) for store_id, store in stores.items()},
        orphan_sweep_grace_time=1.5,
    )

    async def keys(store: ImageStore) -> list[str]:
        return [entry.key for entry in await store.objects()]

    async def scenario() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        expected: dict[str, list[str]] = {}
        for store_id, store in stores.items():
            referenced = create_image(runtime)
            await upload(runtime, referenced, DATA, store=store_id)
            orphan = str(uuid.uuid4())
            await store.write(orphan, one(DATA))
            expected[store_id] = [orphan]
        await asyncio.sleep(2.5)
        young = {store_id: str(uuid.uuid4()) for store_id in stores}
        for store_id, store in stores.items():
            await store.write(young[store_id], one(DATA))
        removed = await sweep_orphans(runtime)
        assert removed == expected
        left = {store_id: await keys(store) for store_id, store in stores.items()}
        for store_id in stores:
            assert young[store_id] in left[store_id]
            assert expected[store_id][0] not in left[store_id]
            assert len(left[store_id]) == 2  # the referenced image's data and the young object
        return removed, left

    try:
        asyncio.run(scenario())
    finally:
        runtime.close()
        _empty_and_remove_bucket(_s3_client(s3_server), bucket)
        _remove_swift_containers(_swift_connection(s3_server), container, f"{container}_segments")
