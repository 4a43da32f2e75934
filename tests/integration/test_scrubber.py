"""Delayed delete and the scrubber (``glimpse.jobs.scrubber``) on real file stores, SQLite and
PostgreSQL: DELETE leaves an active image ``pending_delete`` with its data; a pass after
``scrub_time`` (an injected clock) removes the data from every store and deletes the image; two
scrubbers at once remove each object once; a store that fails is retried; restore brings it back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from test_runner_support import (
    ADMIN,
    OWNER,
    ManualClock,
    WrappedStore,
    create_image,
    make_runtime,
    payload,
    sibling,
    stored_bytes,
    upload,
)

from glimpse.cli.main import main
from glimpse.db.repositories import SqlRepositories
from glimpse.domain.images import ImageStatus, Location
from glimpse.domain.queries import ImageListQuery
from glimpse.domain.quotas import Resource
from glimpse.errors import Conflict, NotFound, StorageError
from glimpse.jobs.housekeeping import sweep_orphans
from glimpse.jobs.scrubber import SCRUB_LEASE, restore, scrub
from glimpse.ports import ImageStore
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService
from glimpse.services.quotas import usage_of
from livesupport import wait_until

DATA = payload(64 * 1024, seed=11)
HOUR = 3600


class CountingStore(WrappedStore):
    """Counts deletes, and fails them while ``down`` (a store that cannot be reached)."""

    def __init__(self, inner: ImageStore) -> None:
        super().__init__(inner)
        self.deletes = 0
        self.down = False

    async def delete(self, location: str) -> None:
        if self.down:
            raise StorageError(f"store '{self.id}' could not delete the object: the service is down")
        self.deletes += 1
        await self.inner.delete(location)


@pytest.fixture
def runtime(tmp_path: Path, migrated_database_url: str) -> Iterator[Runtime]:
    rt = make_runtime(
        tmp_path,
        migrated_database_url,
        wrap={"fast": CountingStore, "cheap": CountingStore},
        delayed_delete=True,
        scrub_time=HOUR,
        orphan_sweep_grace_time=0.0,
    )
    rt.clock = ManualClock()
    yield rt
    rt.close()


def clock(runtime: Runtime) -> ManualClock:
    assert isinstance(runtime.clock, ManualClock)
    return runtime.clock


def counting(runtime: Runtime, store_id: str) -> CountingStore:
    store = runtime.stores.get(store_id)
    assert isinstance(store, CountingStore)
    return store


def image_in_two_stores(runtime: Runtime, **attrs: object) -> str:
    """An active image with its data in ``fast`` (uploaded) and ``cheap`` (a second copy)."""
    image_id = create_image(runtime, **attrs)
    asyncio.run(upload(runtime, image_id, DATA, "fast"))
    cheap = runtime.stores.get("cheap")

    async def one() -> object:
        async def chunks() -> object:
            yield DATA

        return await cheap.write(image_id, chunks())  # type: ignore[arg-type]

    stored = asyncio.run(one())
    with runtime.uow() as session:
        SqlRepositories(session).images.add_location(
            image_id,
            Location(store_id="cheap", url=stored.location),  # type: ignore[attr-defined]
        )
    return image_id


def delete(runtime: Runtime, image_id: str) -> None:
    asyncio.run(ImageDataService(runtime).delete_image(OWNER, image_id))


def row(runtime: Runtime, image_id: str) -> tuple[str, bool, int, int]:
    """The image's status, deleted flag, and how many locations and properties it still has."""
    with runtime.uow(readonly=True) as session:
        found = session.execute(
            text(
                "SELECT status, deleted, "
                "(SELECT COUNT(*) FROM image_locations l WHERE l.image_id = i.id), "
                "(SELECT COUNT(*) FROM image_properties p WHERE p.image_id = i.id) "
                "FROM images i WHERE i.id = :id"
            ),
            {"id": image_id},
        ).one()
    return str(found[0]), bool(found[1]), int(found[2]), int(found[3])


def test_delete_leaves_the_image_pending_delete_with_its_data(runtime: Runtime) -> None:
    image_id = image_in_two_stores(runtime, os_distro="cirros")
    delete(runtime, image_id)
    assert row(runtime, image_id) == ("pending_delete", True, 2, 1)
    assert stored_bytes(runtime, "fast", image_id) == DATA
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    # Hidden as a deleted image is, from its owner and from an administrator.
    with runtime.uow(readonly=True) as session:
        service = ImageService(SqlRepositories(session), runtime.settings, runtime.policy)
        with pytest.raises(NotFound):
            service.get(ADMIN, image_id)
        assert service.list_images(ADMIN, ImageListQuery(visibility="all")) == []
    # The orphan sweep leaves the data of a pending_delete image alone, however old.
    assert asyncio.run(sweep_orphans(runtime)) == {}
    # Before scrub_time, the scrubber leaves it too.
    clock(runtime).advance(HOUR - 60)
    assert asyncio.run(scrub(runtime)).scrubbed == []
    assert stored_bytes(runtime, "fast", image_id) == DATA
    clock(runtime).advance(120)
    report = asyncio.run(scrub(runtime))
    assert (report.scrubbed, report.retry) == ([image_id], {})
    assert stored_bytes(runtime, "fast", image_id) is None
    assert stored_bytes(runtime, "cheap", image_id) is None
    assert row(runtime, image_id) == ("deleted", True, 0, 0)
    assert asyncio.run(scrub(runtime)).scrubbed == []


def test_images_without_data_and_delayed_delete_off_are_deleted_at_once(
    runtime: Runtime, tmp_path: Path, migrated_database_url: str
) -> None:
    queued = create_image(runtime)
    delete(runtime, queued)
    assert row(runtime, queued)[:2] == ("deleted", True)
    at_once = make_runtime(tmp_path / "off", migrated_database_url)
    try:
        image_id = create_image(at_once)
        asyncio.run(upload(at_once, image_id, DATA, "fast"))
        delete(at_once, image_id)
        assert row(at_once, image_id) == ("deleted", True, 0, 0)
        assert stored_bytes(at_once, "fast", image_id) is None
    finally:
        at_once.close()


def test_two_scrubbers_at_once_remove_each_object_once(runtime: Runtime) -> None:
    images = [image_in_two_stores(runtime) for _ in range(4)]
    for image_id in images:
        delete(runtime, image_id)
    clock(runtime).advance(HOUR + 60)
    other = sibling(runtime, clock=runtime.clock)
    try:

        async def both() -> list[list[str]]:
            reports = await asyncio.gather(scrub(runtime), scrub(other))
            return [report.scrubbed for report in reports]

        first, second = asyncio.run(both())
    finally:
        other.close()
    assert sorted(first + second) == sorted(images)  # each image scrubbed by exactly one of them
    assert counting(runtime, "fast").deletes == len(images)
    assert counting(runtime, "cheap").deletes == len(images)
    assert {row(runtime, image_id) for image_id in images} == {("deleted", True, 0, 0)}


def test_a_store_that_fails_is_tried_again_on_the_next_pass(runtime: Runtime) -> None:
    image_id = image_in_two_stores(runtime)
    delete(runtime, image_id)
    clock(runtime).advance(HOUR + 60)
    counting(runtime, "cheap").down = True
    report = asyncio.run(scrub(runtime))
    assert (report.scrubbed, report.retry) == ([], {image_id: ["cheap"]})
    # The removed copy's location is gone, the other kept; the claim was given back.
    assert row(runtime, image_id) == ("pending_delete", True, 1, 0)
    assert stored_bytes(runtime, "fast", image_id) is None
    assert stored_bytes(runtime, "cheap", image_id) == DATA
    counting(runtime, "cheap").down = False
    report = asyncio.run(scrub(runtime))
    assert (report.scrubbed, report.retry) == ([image_id], {})
    assert stored_bytes(runtime, "cheap", image_id) is None
    assert row(runtime, image_id) == ("deleted", True, 0, 0)


def test_a_pending_delete_images_data_counts_in_image_size_total_until_scrubbed(runtime: Runtime) -> None:
    project = OWNER.project_id
    assert project is not None

    def used() -> int:
        return asyncio.run(usage_of(runtime, project, Resource.IMAGE_SIZE_TOTAL))

    image_id = image_in_two_stores(runtime)
    assert used() == 2 * len(DATA)
    delete(runtime, image_id)
    # Deleted for the API, but both copies are still in the stores: they still count.
    assert used() == 2 * len(DATA)
    clock(runtime).advance(HOUR + 60)
    counting(runtime, "cheap").down = True
    assert asyncio.run(scrub(runtime)).retry == {image_id: ["cheap"]}
    assert used() == len(DATA)  # the copy in cheap is still there
    counting(runtime, "cheap").down = False
    assert asyncio.run(scrub(runtime)).scrubbed == [image_id]
    assert used() == 0


def test_restore_brings_a_pending_delete_image_back(runtime: Runtime) -> None:
    image_id = image_in_two_stores(runtime, os_distro="cirros", tags=["t1"])
    delete(runtime, image_id)
    asyncio.run(restore(runtime, image_id))
    with runtime.uow(readonly=True) as session:
        image = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).get(OWNER, image_id)
    assert (image.status, image.properties["os_distro"], image.tags) == (ImageStatus.ACTIVE, "cirros", ["t1"])
    assert sorted((loc.store_id, loc.status) for loc in image.locations) == [
        ("cheap", "active"),
        ("fast", "active"),
    ]
    assert stored_bytes(runtime, "fast", image_id) == DATA
    # An active image is not pending deletion: nothing to restore, and the scrubber leaves it.
    with pytest.raises(NotFound, match="only an image in 'pending_delete' can be restored"):
        asyncio.run(restore(runtime, image_id))
    clock(runtime).advance(2 * HOUR)
    assert asyncio.run(scrub(runtime)).scrubbed == []
    assert stored_bytes(runtime, "fast", image_id) == DATA


def test_restore_waits_for_a_scrubber_that_holds_the_image(runtime: Runtime) -> None:
    image_id = image_in_two_stores(runtime)
    delete(runtime, image_id)
    now = clock(runtime)() + timedelta(hours=2)
    with runtime.uow() as session:
        images = SqlRepositories(session).images
        assert images.claim_scrub(image_id, now, now - SCRUB_LEASE, now)
    with pytest.raises(Conflict, match="A scrubber is removing the data of image"):
        asyncio.run(restore(runtime, image_id))
    # A second claim fails while the first holds it.
    with runtime.uow() as session:
        later = now + timedelta(seconds=1)
        assert not SqlRepositories(session).images.claim_scrub(image_id, later, later - SCRUB_LEASE, later)


def test_the_scrubber_command(
    tmp_path: Path,
    migrated_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": migrated_database_url,
        "GLIMPSE_DELAYED_DELETE": "true",
        "GLIMPSE_SCRUB_TIME": "0",
    }
    for name in [n for n in os.environ if n.startswith("GLIMPSE_") and n != "GLIMPSE_TEST_PG_PORT"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = dict(os.environ)
    runtime = make_runtime(tmp_path, migrated_database_url, environ=env)
    try:
        kept, scrubbed = image_in_two_stores(runtime), image_in_two_stores(runtime)
        delete(runtime, kept)
        delete(runtime, scrubbed)
        assert main(["scrubber", "--restore", kept]) == 0
        assert f"image {kept} restored to active" in capsys.readouterr().out
        assert main(["scrubber", "--restore", kept]) == 1
        assert "only an image in 'pending_delete' can be restored" in capsys.readouterr().err
        assert main(["scrubber", "--once"]) == 0
        assert f"image {scrubbed}: data removed, image deleted" in capsys.readouterr().out
        assert row(runtime, scrubbed)[0] == "deleted"
        assert row(runtime, kept)[0] == "active"
        assert stored_bytes(runtime, "fast", kept) == DATA
    finally:
        runtime.close()
        os.environ.clear()
        os.environ.update(before)


def test_the_scrubber_process_makes_a_pass_every_wakeup_time_and_stops_on_sigterm(
    tmp_path: Path, migrated_sqlite_url: str
) -> None:
    # The loop and the signal, in a real process; the database side is the tests' above, on each.
    migrated_database_url = migrated_sqlite_url
    env = {
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": migrated_database_url,
        "GLIMPSE_DELAYED_DELETE": "true",
        "GLIMPSE_SCRUB_TIME": "0",
        "GLIMPSE_WAKEUP_TIME": "1",
    }
    runtime = make_runtime(tmp_path, migrated_database_url, environ=env)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "glimpse.cli.main", "scrubber"],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        image_id = image_in_two_stores(runtime)
        delete(runtime, image_id)  # after the scrubber's first pass, or before: either finds it
        wait_until(
            lambda: row(runtime, image_id)[0] == "deleted",
            lambda: f"image {image_id} still {row(runtime, image_id)}",
            within=60,
        )
        assert stored_bytes(runtime, "fast", image_id) is None
        assert stored_bytes(runtime, "cheap", image_id) is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "scrubber: stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        runtime.close()
