"""The contract every image store driver must keep (see ``glimpse.storage.base.ImageStore``).

``TestStoreContract`` runs once per entry of ``DRIVERS``. Each entry builds a fresh, empty store and
says how to list everything the backend holds, temporary or partial data included, so a test can
prove that a failed write left nothing behind. To put a new driver under the contract, add one entry
(its factory may pull in fixtures such as a server on loopback through ``request.getfixturevalue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import hashlib
import json
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import pytest
import swiftclient.client
import swiftclient.exceptions

from glimpse.errors import StorageError, StoreFull, StoreNotFound, TooLarge
from glimpse.ports import Capabilities, ImageStore, LocalFiles, ObjectStat, StoredObject, StoreEntry
from glimpse.storage.filesystem import FilesystemStore
from glimpse.storage.memory import InMemoryStore
from glimpse.storage.s3 import S3Store
from glimpse.storage.swift import KeystoneAuth, SwiftStore
from objectsupport import KeystoneSwift, ObjectServer

T = TypeVar("T")
MiB = 1024 * 1024
ODD_CHUNK_SIZES = (1, 7919, 65537, 3, 1_000_003, 4093, 262_147)


@dataclass(frozen=True)
class Driver:
    """A store under test plus a way to look behind its back."""

    store: ImageStore
    contents: Callable[[], set[str]]  # every name the backend holds, temporary files included
    capabilities: Capabilities
    description_keys: frozenset[str]
    #: Which objects ``stat`` gives an md5 for: "never", "plain" (a single PUT, not a multipart or
    #: segmented one) or "always".
    md5: str = "never"
    #: Leaves, with the backend's own client, what a write of ``key`` killed mid-way (no clean-up
    #: run) leaves behind; None where such a write leaves nothing (the memory store).
    abandon: Callable[[str], None] | None = None


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    store = InMemoryStore("memory", chunk_size=64 * 1024)
    return Driver(
        store=store,
        contents=lambda: set(store.peek_keys()),
        capabilities=Capabilities.WRITE | Capabilities.RANGE_READ,
        description_keys=frozenset({"chunk_size"}),
        md5="always",
    )


def _filesystem(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    datadir = tmp_path / "store" / "fast"  # missing on purpose: the store creates it on first write
    store = FilesystemStore("fast", datadir, description="Fast disks", chunk_size=256 * 1024)
    return Driver(
        store=store,
        contents=lambda: set(os.listdir(datadir)) if datadir.exists() else set(),
        capabilities=Capabilities.WRITE | Capabilities.RANGE_READ | Capabilities.LOCAL_FILES,
        description_keys=frozenset({"data_dir", "chunk_size", "thin_provisioning"}),
        abandon=functools.partial(_abandon_file, datadir),
    )


def _abandon_file(datadir: Path, key: str) -> None:
    """A write's temporary file, as the write named it, with a few blocks in it."""
    datadir.mkdir(parents=True, exist_ok=True)
    (datadir / f".{key}.{uuid.uuid4().hex}.partial").write_bytes(payload(300 * 1024, seed=9))


@functools.cache
def _s3_client(server: ObjectServer) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.s3_endpoint_url,
        aws_access_key_id=server.s3_access_key,
        aws_secret_access_key=server.s3_secret_key,
        config=botocore.config.Config(region_name=server.s3_region, s3={"addressing_style": "path"}),
    )


def _s3_bucket_contents(client: Any, bucket: str) -> set[str]:
    """Every object of ``bucket`` plus ``upload:<key>`` for each multipart upload not finished."""
    try:
        objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return set()
        raise
    return {item["Key"] for item in objects} | {f"upload:{item['Key']}" for item in uploads}


def _empty_and_remove_bucket(client: Any, bucket: str) -> None:
    try:
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    """An S3 store on the test server, in a bucket of its own that its first write creates. Parts
    of 1 MiB (the test server's minimum) and a 1 MiB threshold make most tests go multipart."""
    server: ObjectServer = request.getfixturevalue("s3_server")
    bucket = f"glimpse-test-{uuid.uuid4().hex[:16]}"
    store = S3Store(
        "big",
        endpoint_url=server.s3_endpoint_url,
        access_key=server.s3_access_key,
        secret_key=server.s3_secret_key,
        bucket=bucket,
        region=server.s3_region,
        create_bucket_on_put=True,
        large_object_size=MiB,
        chunk_size=MiB,
        thread_pools=3,
        bucket_url_format="path",
        description="Object storage",
    )
    client = _s3_client(server)
    request.addfinalizer(lambda: _empty_and_remove_bucket(client, bucket))
    return Driver(
        store=store,
        contents=lambda: _s3_bucket_contents(client, bucket),
        capabilities=Capabilities.WRITE | Capabilities.RANGE_READ,
        description_keys=frozenset(
            {"bucket", "large_object_size", "large_object_chunk_size", "thread_pools"}
        ),
        md5="plain",
        abandon=functools.partial(_abandon_multipart_upload, client, bucket),
    )


def _abandon_multipart_upload(client: Any, bucket: str, key: str) -> None:
    """A multipart upload with one part sent, never completed nor aborted."""
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=payload(MiB, seed=9)
    )


def _abandon_segments(connection: swiftclient.client.Connection, segments: str, key: str) -> None:
    """Two segments of a large object, named as a write names them, and no manifest."""
    connection.put_container(segments)
    prefix = f"{key}/{uuid.uuid4().hex}/"
    for number in (1, 2):
        connection.put_object(segments, f"{prefix}{number:08d}", payload(64 * 1024, seed=number))


def _swift_connection(server: ObjectServer) -> swiftclient.client.Connection:
    return swiftclient.client.Connection(
        authurl=server.swift_auth_url, user=server.swift_user, key=server.swift_key, retries=1
    )


def _swift_container_contents(connection: swiftclient.client.Connection, container: str) -> list[str]:
    try:
        _, objects = connection.get_container(container, full_listing=True)
    except swiftclient.exceptions.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [item["name"] for item in objects]


def _remove_swift_containers(connection: swiftclient.client.Connection, *containers: str) -> None:
    for container in containers:
        for name in _swift_container_contents(connection, container):
            connection.delete_object(container, name)
        with contextlib.suppress(swiftclient.exceptions.ClientException):
            connection.delete_container(container)


def _swift_contents(connection: swiftclient.client.Connection, container: str, segments: str) -> set[str]:
    """The container's objects plus ``segment:<name>`` for every segment no manifest refers to."""
    names = _swift_container_contents(connection, container)
    used: set[str] = set()
    for name in names:
        with contextlib.suppress(swiftclient.exceptions.ClientException):  # gone meanwhile
            headers, manifest = connection.get_object(container, name, query_string="multipart-manifest=get")
            if headers.get("x-static-large-object") == "True":
                used |= {entry["name"].split("/", 2)[2] for entry in json.loads(manifest)}
    orphans = set(_swift_container_contents(connection, segments)) - used
    return set(names) | {f"segment:{name}" for name in orphans}


def _swift(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    """A Swift store on the test server (tempauth), in a container of its own that its first write
    creates; 1 MiB segments and threshold, so that most tests write a Static Large Object."""
    server: ObjectServer = request.getfixturevalue("s3_server")
    container = f"glimpse-test-{uuid.uuid4().hex[:16]}"
    store = SwiftStore(
        "reliable",
        auth_address=server.swift_auth_url,
        user=server.swift_user,
        key=server.swift_key,
        container=container,
        create_container_on_put=True,
        large_object_size=MiB,
        chunk_size=MiB,
        thread_pools=3,
        description="Swift",
    )
    connection = _swift_connection(server)
    segments = f"{container}_segments"
    request.addfinalizer(lambda: _remove_swift_containers(connection, container, segments))
    return Driver(
        store=store,
        contents=lambda: _swift_contents(connection, container, segments),
        capabilities=Capabilities.WRITE | Capabilities.RANGE_READ,
        description_keys=frozenset({"container", "large_object_size", "large_object_chunk_size"}),
        md5="plain",
        abandon=functools.partial(_abandon_segments, connection, segments),
    )


def _swift_keystone(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    """The same as ``_swift``, through the proxy that validates Keystone tokens: the store
    authenticates with Keystone v3 and finds its storage URL in the token's catalog."""
    swift: KeystoneSwift = request.getfixturevalue("swift_keystone")
    container = f"glimpse-test-{uuid.uuid4().hex[:16]}"
    project, _, user = swift.user.partition(":")
    store = SwiftStore(
        "reliable",
        auth_address=swift.auth_url,
        user=user,
        key=swift.key,
        keystone=KeystoneAuth(project_name=project, region=swift.region),
        container=container,
        create_container_on_put=True,
        large_object_size=MiB,
        chunk_size=MiB,
        thread_pools=3,
        description="Swift behind Keystone",
    )
    connection = swift.connection()
    segments = f"{container}_segments"
    request.addfinalizer(lambda: _remove_swift_containers(connection, container, segments))
    return Driver(
        store=store,
        contents=lambda: _swift_contents(connection, container, segments),
        capabilities=Capabilities.WRITE | Capabilities.RANGE_READ,
        description_keys=frozenset({"container", "large_object_size", "large_object_chunk_size"}),
        md5="plain",
        abandon=functools.partial(_abandon_segments, connection, segments),
    )


DRIVERS: Mapping[str, Callable[[pytest.FixtureRequest, Path], Driver]] = {
    "memory": _memory,
    "filesystem": _filesystem,
    "s3": _s3,
    "swift": _swift,
    "swift-keystone": _swift_keystone,
}
MARKS: Mapping[str, tuple[pytest.MarkDecorator, ...]] = {
    "s3": (pytest.mark.objects,),
    "swift": (pytest.mark.objects,),
    "swift-keystone": (pytest.mark.objects,),
}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name, ())) for name in DRIVERS])
def store_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Driver:
    return DRIVERS[request.param](request, tmp_path)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def chunked(
    data: bytes, sizes: Iterable[int] = ODD_CHUNK_SIZES, pause: bool = False
) -> AsyncIterator[bytes]:
    """Yield ``data`` in pieces whose sizes cycle through ``sizes``."""
    cycle = list(sizes)
    position, turn = 0, 0
    while position < len(data):
        size = cycle[turn % len(cycle)]
        yield data[position : position + size]
        position += size
        turn += 1
        if pause:
            await asyncio.sleep(0)


async def read_all(store: ImageStore, location: str, offset: int = 0, length: int | None = None) -> bytes:
    parts = [chunk async for chunk in await store.open(location, offset, length)]
    assert all(isinstance(part, bytes) for part in parts)
    return b"".join(parts)


async def keys(store: ImageStore) -> list[str]:
    return [entry.key for entry in await store.objects()]


async def failing_source(data: bytes, error: BaseException) -> AsyncIterator[bytes]:
    async for chunk in chunked(data):
        yield chunk
    raise error


class TestStoreContract:
    def test_it_is_an_image_store(self, store_driver: Driver) -> None:
        store = store_driver.store
        assert isinstance(store, ImageStore)
        assert isinstance(store.id, str)
        assert store.id
        assert isinstance(store.type, str)
        assert isinstance(store.description, str)
        assert isinstance(store.weight, int)

    def test_capabilities(self, store_driver: Driver) -> None:
        assert isinstance(store_driver.store.capabilities, Capabilities)
        assert store_driver.store.capabilities == store_driver.capabilities
        assert Capabilities.WRITE in store_driver.store.capabilities

    def test_describe_shape(self, store_driver: Driver) -> None:
        description = store_driver.store.describe()
        assert isinstance(description, Mapping)
        assert set(description) == store_driver.description_keys
        assert all(isinstance(key, str) for key in description)
        json.dumps(dict(description))  # the /v2/info/stores/detail handler serialises it as is

    def test_round_trip_in_odd_chunks(self, store_driver: Driver) -> None:
        data = payload(5 * MiB + 12345)

        async def scenario() -> None:
            stored = await store_driver.store.write("image-1", chunked(data))
            assert isinstance(stored, StoredObject)
            assert isinstance(stored.location, str)
            assert stored.size == len(data)
            assert (await store_driver.store.stat(stored.location)).size == len(data)
            assert await read_all(store_driver.store, stored.location) == data

        run(scenario())
        assert store_driver.contents() == {"image-1"}

    def test_location_for_names_what_a_write_returns(self, store_driver: Driver) -> None:
        store = store_driver.store
        predicted = store.location_for("named-1")
        assert store.owns(predicted)

        async def scenario() -> str:
            with pytest.raises(StoreNotFound):
                await store.stat(predicted)
            stored = await store.write("named-1", chunked(b"abc"))
            return stored.location

        assert run(scenario()) == predicted
        assert store.location_for("named-2") != predicted
        for bad in ("", ".hidden", "a/b", "../up", "x" * 201):
            with pytest.raises(ValueError, match="not valid"):
                store.location_for(bad)

    def test_keys_lists_complete_objects_only(self, store_driver: Driver) -> None:
        store = store_driver.store
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"partial"
            started.set()
            await release.wait()
            yield b" and the rest"

        async def scenario() -> tuple[list[str], list[str], list[str]]:
            empty = await keys(store)
            for key in ("b-2", "a-1", "c-3"):
                await store.write(key, chunked(b"x"))
            writing = asyncio.create_task(store.write("d-4", slow()))
            await started.wait()
            during = await keys(store)
            release.set()
            await writing
            await store.delete(store.location_for("a-1"))
            return empty, during, await keys(store)

        empty, during, after = run(scenario())
        assert empty == []
        assert during == ["a-1", "b-2", "c-3"]
        assert after == ["b-2", "c-3", "d-4"]

    def test_stat_gives_the_size_and_the_md5_where_the_backend_keeps_it(self, store_driver: Driver) -> None:
        small, large = payload(1000, seed=1), payload(2 * MiB + 17, seed=2)  # large: past 1 MiB parts

        async def scenario() -> tuple[ObjectStat, ObjectStat]:
            one = await store_driver.store.write("small-1", chunked(small))
            two = await store_driver.store.write("large-1", chunked(large))
            return await store_driver.store.stat(one.location), await store_driver.store.stat(two.location)

        small_stat, large_stat = run(scenario())
        assert isinstance(small_stat, ObjectStat)
        assert (small_stat.size, large_stat.size) == (len(small), len(large))
        md5 = {data: hashlib.md5(data, usedforsecurity=False).hexdigest() for data in (small, large)}
        expected_small = md5[small] if store_driver.md5 in ("plain", "always") else None
        expected_large = md5[large] if store_driver.md5 == "always" else None
        assert (small_stat.md5, large_stat.md5) == (expected_small, expected_large)
        assert small_stat.differences(len(small), md5[small]) == []
        if small_stat.md5 is not None:
            assert small_stat.differences(len(small), md5[large]) == [
                f"md5 {md5[small]} where the data written has {md5[large]}"
            ]

    def test_objects_lists_each_key_with_its_write_time(self, store_driver: Driver) -> None:
        store = store_driver.store
        # Backends keep whole seconds (S3 rounds up): allow a second and a bit either way.
        before = datetime.now(UTC) - timedelta(seconds=1.5)

        async def scenario() -> list[StoreEntry]:
            for key in ("k-2", "k-1"):
                await store.write(key, chunked(b"x" * 10))
            return await store.objects()

        entries = run(scenario())
        after = datetime.now(UTC) + timedelta(seconds=1.5)
        assert [entry.key for entry in entries] == ["k-1", "k-2"]
        for entry in entries:
            assert isinstance(entry, StoreEntry)
            assert entry.modified.utcoffset() == timedelta(0)
            assert before <= entry.modified <= after

    def test_empty_object_and_empty_chunks(self, store_driver: Driver) -> None:
        async def nothing() -> AsyncIterator[bytes]:
            yield b""
            yield b""

        async def scenario() -> None:
            stored = await store_driver.store.write("empty", nothing())
            assert stored.size == 0
            assert (await store_driver.store.stat(stored.location)).size == 0
            assert await read_all(store_driver.store, stored.location) == b""

        run(scenario())

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            pytest.param(0, 1000, slice(0, 1000), id="start"),
            pytest.param(0, None, slice(0, None), id="everything"),
            pytest.param(1_234_567, 700_001, slice(1_234_567, 1_934_568), id="middle"),
            pytest.param(1_500_000, None, slice(1_500_000, None), id="offset-to-end"),
            pytest.param(3 * MiB - 10, 10, slice(3 * MiB - 10, None), id="end"),
            pytest.param(3 * MiB - 10, 5000, slice(3 * MiB - 10, None), id="length-past-end"),
            pytest.param(3 * MiB, None, slice(0, 0), id="offset-at-size"),
            pytest.param(3 * MiB, 10, slice(0, 0), id="offset-at-size-with-length"),
            pytest.param(3 * MiB + 99, None, slice(0, 0), id="offset-past-size"),
            pytest.param(100, 0, slice(0, 0), id="zero-length"),
        ],
    )
    def test_ranged_reads(
        self, store_driver: Driver, offset: int, length: int | None, expected: slice
    ) -> None:
        if Capabilities.RANGE_READ not in store_driver.store.capabilities:
            pytest.skip("this store cannot read byte ranges")
        data = payload(3 * MiB, seed=1)

        async def scenario() -> bytes:
            stored = await store_driver.store.write("ranged", chunked(data))
            return await read_all(store_driver.store, stored.location, offset, length)

        assert run(scenario()) == data[expected]

    def test_negative_range_is_refused(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            stored = await store_driver.store.write("ranged", chunked(b"abc"))
            with pytest.raises(ValueError, match="offset"):
                await store_driver.store.open(stored.location, -1)
            with pytest.raises(ValueError, match="length"):
                await store_driver.store.open(stored.location, 0, -1)

        run(scenario())

    def test_missing_object_is_store_not_found(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            stored = await store_driver.store.write("gone", chunked(b"short-lived"))
            await store_driver.store.delete(stored.location)
            assert store_driver.contents() == set()
            with pytest.raises(StoreNotFound):
                await store_driver.store.open(stored.location)
            with pytest.raises(StoreNotFound):
                await store_driver.store.open(stored.location, 3, 2)
            with pytest.raises(StoreNotFound):
                await store_driver.store.stat(stored.location)
            with pytest.raises(StoreNotFound):
                await store_driver.store.delete(stored.location)

        run(scenario())

    def test_foreign_location_is_store_not_found(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            for location in ("file:///etc/passwd", "memory://elsewhere/key", "s3://bucket/key", "nonsense"):
                with pytest.raises(StoreNotFound):
                    await store_driver.store.stat(location)
                with pytest.raises(StoreNotFound):
                    await store_driver.store.open(location)
                with pytest.raises(StoreNotFound):
                    await store_driver.store.delete(location)

        run(scenario())

    def test_store_not_found_is_a_storage_error(self) -> None:
        assert issubclass(StoreNotFound, StorageError)
        assert issubclass(StoreFull, StorageError)

    def test_overwrite_replaces_the_object(self, store_driver: Driver) -> None:
        first, second = payload(MiB + 1, seed=2), payload(300_000, seed=3)

        async def scenario() -> None:
            one = await store_driver.store.write("same", chunked(first))
            two = await store_driver.store.write("same", chunked(second))
            assert one.location == two.location
            assert two.size == len(second)
            assert (await store_driver.store.stat(two.location)).size == len(second)
            assert await read_all(store_driver.store, two.location) == second

        run(scenario())
        assert store_driver.contents() == {"same"}

    def test_failing_source_leaves_nothing(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            with pytest.raises(RuntimeError, match="client went away"):
                await store_driver.store.write(
                    "broken", failing_source(payload(2 * MiB), RuntimeError("client went away"))
                )

        run(scenario())
        assert store_driver.contents() == set()

    def test_source_os_error_is_not_mistaken_for_a_store_error(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            with pytest.raises(ConnectionResetError):
                await store_driver.store.write("broken", failing_source(payload(MiB), ConnectionResetError()))

        run(scenario())
        assert store_driver.contents() == set()

    def test_failed_overwrite_keeps_the_previous_object(self, store_driver: Driver) -> None:
        original = payload(MiB, seed=4)

        async def scenario() -> None:
            stored = await store_driver.store.write("keep", chunked(original))
            with pytest.raises(RuntimeError):
                await store_driver.store.write("keep", failing_source(payload(2 * MiB), RuntimeError("boom")))
            assert await read_all(store_driver.store, stored.location) == original

        run(scenario())
        assert store_driver.contents() == {"keep"}

    def test_max_size_exceeded_is_too_large_and_leaves_nothing(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            with pytest.raises(TooLarge, match="1048576 bytes"):
                await store_driver.store.write("big", chunked(payload(MiB + 1)), max_size=MiB)

        run(scenario())
        assert store_driver.contents() == set()

    def test_max_size_stops_an_endless_source(self, store_driver: Driver) -> None:
        async def endless() -> AsyncIterator[bytes]:
            block = b"x" * 65536
            while True:
                yield block

        async def scenario() -> None:
            with pytest.raises(TooLarge):
                await store_driver.store.write("endless", endless(), max_size=2 * MiB)

        run(scenario())
        assert store_driver.contents() == set()

    def test_max_size_reached_exactly_is_fine(self, store_driver: Driver) -> None:
        data = payload(MiB, seed=5)

        async def scenario() -> StoredObject:
            return await store_driver.store.write("exact", chunked(data), max_size=len(data))

        assert run(scenario()).size == len(data)
        assert store_driver.contents() == {"exact"}

    def test_cancelled_write_leaves_nothing(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            stalled = asyncio.Event()

            async def stalling_source() -> AsyncIterator[bytes]:
                async for chunk in chunked(payload(3 * MiB)):
                    yield chunk
                stalled.set()
                await asyncio.Event().wait()  # a client that stops sending
                yield b"never"

            task = asyncio.create_task(store_driver.store.write("cancelled", stalling_source()))
            await stalled.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(scenario())
        assert store_driver.contents() == set()

    @pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610])
    def test_cancellation_at_any_moment_leaves_no_partial_object(
        self, store_driver: Driver, ticks: int
    ) -> None:
        data = payload(2 * MiB + 17, seed=6)

        async def scenario() -> None:
            task = asyncio.create_task(store_driver.store.write("racy", chunked(data, pause=True)))
            for _ in range(ticks):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Even a write cancelled while its last request ran (the object already in place)
                # leaves nothing: its caller will never record the object.
                assert store_driver.contents() == set()
            else:
                assert store_driver.contents() == {"racy"}
                assert await read_all(store_driver.store, store_driver.store.location_for("racy")) == data

        run(scenario())

    @pytest.mark.parametrize("size", [1000, 2 * MiB], ids=["one-request", "in-parts"])
    def test_a_write_cancelled_as_its_data_ends_leaves_nothing(self, store_driver: Driver, size: int) -> None:
        """The cancellation reaches the write at its first wait after the last block, which is its
        publishing request for a single-request object: that request completes (a thread cannot be
        stopped), yet the caller is told the write was cancelled, so the object must go again."""
        data = payload(size, seed=8)

        async def scenario() -> None:
            async def source() -> AsyncIterator[bytes]:
                async for chunk in chunked(data, sizes=[MiB]):
                    yield chunk
                writing.cancel()

            writing = asyncio.create_task(store_driver.store.write("cut", source()))
            with pytest.raises(asyncio.CancelledError):
                await writing

        run(scenario())
        assert store_driver.contents() == set()

    def test_concurrent_writes_of_different_keys(self, store_driver: Driver) -> None:
        blobs = {f"image-{n}": payload(300_000 + n * 7919, seed=n) for n in range(8)}

        async def scenario() -> None:
            results = await asyncio.gather(
                *(store_driver.store.write(key, chunked(data, pause=True)) for key, data in blobs.items())
            )
            assert len({result.location for result in results}) == len(blobs)
            for (_key, data), stored in zip(blobs.items(), results, strict=True):
                assert stored.size == len(data)
                assert await read_all(store_driver.store, stored.location) == data

        run(scenario())
        assert store_driver.contents() == set(blobs)

    def test_concurrent_reads_of_one_object(self, store_driver: Driver) -> None:
        data = payload(2 * MiB, seed=7)

        async def scenario() -> None:
            stored = await store_driver.store.write("shared", chunked(data))
            reads = await asyncio.gather(
                *(read_all(store_driver.store, stored.location, n * 1000) for n in range(6))
            )
            assert reads == [data[n * 1000 :] for n in range(6)]

        run(scenario())

    def test_delete_then_write_again(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            stored = await store_driver.store.write("again", chunked(b"first"))
            await store_driver.store.delete(stored.location)
            stored = await store_driver.store.write("again", chunked(b"second"))
            assert await read_all(store_driver.store, stored.location) == b"second"

        run(scenario())
        assert store_driver.contents() == {"again"}

    def test_abandoned_read_can_be_closed(self, store_driver: Driver) -> None:
        async def scenario() -> None:
            stored = await store_driver.store.write("partial-read", chunked(payload(2 * MiB)))
            reader = await store_driver.store.open(stored.location)
            first = await anext(reader)
            assert first
            close = getattr(reader, "aclose", None)
            if close is not None:
                await close()
            await store_driver.store.delete(stored.location)

        run(scenario())
        assert store_driver.contents() == set()

    @pytest.mark.parametrize(
        "key", ["", "a/b", "..", ".", ".hidden", "../escape", "x" * 201, "sp ace", "nul\x00"]
    )
    def test_unsafe_keys_are_refused(self, store_driver: Driver, key: str) -> None:
        async def scenario() -> None:
            with pytest.raises(ValueError, match="not valid"):
                await store_driver.store.write(key, chunked(b"data"))

        run(scenario())
        assert store_driver.contents() == set()

    def test_sweep_unfinished_removes_what_killed_writes_left_and_nothing_else(
        self, store_driver: Driver
    ) -> None:
        store = store_driver.store
        data = payload(3 * MiB, seed=5)  # a multipart upload or a segmented object where there are
        live = run(store.write("live", chunked(data, sizes=[MiB // 2])))
        complete = store_driver.contents()
        if store_driver.abandon is not None:
            # A killed write of a new key, and a killed rewrite of the live one.
            store_driver.abandon("gone")
            store_driver.abandon("live")
        leftovers = store_driver.contents() - complete
        assert len(leftovers) == (0 if store_driver.abandon is None else 2 + 2 * (store.type == "swift"))
        assert run(keys(store)) == ["live"]

        # Written after the cut-off: a write that may still be going on, so it stays.
        assert run(store.sweep_unfinished(datetime.now(UTC) - timedelta(hours=1))) == []
        assert store_driver.contents() == complete | leftovers

        removed = run(store.sweep_unfinished(datetime.now(UTC) + timedelta(seconds=1)))
        assert len(removed) == (0 if store_driver.abandon is None else 2)
        assert sum("gone" in what for what in removed) == (store_driver.abandon is not None)
        assert store_driver.contents() == complete
        assert run(read_all(store, live.location)) == data
        assert run(store.sweep_unfinished(datetime.now(UTC) + timedelta(seconds=1))) == []

    def test_probe_passes_before_and_after_writes_and_changes_nothing(self, store_driver: Driver) -> None:
        store = store_driver.store

        async def scenario() -> None:
            await store.probe()  # nothing written yet: the first write would create what is missing
            assert store_driver.contents() == set()
            await store.write("probed", chunked(b"data"))
            await store.probe()

        run(scenario())
        assert store_driver.contents() == {"probed"}


def _unusable_filesystem(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ImageStore, str]:
    datadir = tmp_path / "not-a-directory"
    datadir.write_bytes(b"a file where the store's directory should be")
    return FilesystemStore("fast", datadir), "could not reach its data directory: its data directory is not"


def _unusable_s3(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ImageStore, str]:
    server: ObjectServer = request.getfixturevalue("s3_server")
    store = S3Store(
        "big",
        endpoint_url=server.s3_endpoint_url,
        access_key=server.s3_access_key,
        secret_key=server.s3_secret_key,
        bucket=f"missing-{uuid.uuid4().hex[:12]}",
        region=server.s3_region,
        bucket_url_format="path",
    )
    return (
        store,
        "could not reach its bucket: it does not exist; create it or set s3_store_create_bucket_on_put",
    )


def _unreachable_s3(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ImageStore, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    store = S3Store(
        "big", endpoint_url=f"http://127.0.0.1:{port}", access_key="a", secret_key="b", bucket="b"
    )
    return store, "could not reach its bucket: the object store is unreachable or failed"


def _unusable_swift(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ImageStore, str]:
    server: ObjectServer = request.getfixturevalue("s3_server")
    store = SwiftStore(
        "reliable",
        auth_address=server.swift_auth_url,
        user=server.swift_user,
        key=server.swift_key,
        container=f"missing-{uuid.uuid4().hex[:12]}",
    )
    return store, "could not reach its container: its container does not exist; create it or set"


def _swift_wrong_key(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ImageStore, str]:
    server: ObjectServer = request.getfixturevalue("s3_server")
    store = SwiftStore(
        "reliable", auth_address=server.swift_auth_url, user=server.swift_user, key="not-the-key"
    )
    return store, "Swift refused the credentials (401); check swift_store_user and swift_store_key"


UNUSABLE: Mapping[str, Callable[[pytest.FixtureRequest, Path], tuple[ImageStore, str]]] = {
    "filesystem": _unusable_filesystem,
    "s3-missing-bucket": _unusable_s3,
    "s3-unreachable": _unreachable_s3,
    "swift-missing-container": _unusable_swift,
    "swift-wrong-key": _swift_wrong_key,
}
UNUSABLE_MARKS: Mapping[str, tuple[pytest.MarkDecorator, ...]] = {
    "s3-missing-bucket": (pytest.mark.objects,),
    "swift-missing-container": (pytest.mark.objects,),
    "swift-wrong-key": (pytest.mark.objects,),
}


@pytest.mark.parametrize(
    "case", [pytest.param(name, marks=UNUSABLE_MARKS.get(name, ())) for name in UNUSABLE]
)
def test_probe_of_an_unusable_store_says_what_to_check(
    case: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store, expected = UNUSABLE[case](request, tmp_path)

    async def scenario() -> None:
        with pytest.raises(StorageError) as caught:
            await store.probe()
        assert expected in caught.value.message
        assert not isinstance(caught.value, StoreNotFound)

    run(scenario())


class TestFilesystemStoreSpecifics:
    """What only the filesystem driver promises: its layout and how OS errors are translated."""

    def test_location_is_a_file_uri_inside_the_datadir(self, tmp_path: Path) -> None:
        store = FilesystemStore("fast", tmp_path / "d", fsync=False)

        async def scenario() -> StoredObject:
            return await store.write("abc", chunked(b"hello"))

        stored = run(scenario())
        assert stored.location == f"file://{tmp_path / 'd' / 'abc'}"
        assert (tmp_path / "d" / "abc").read_bytes() == b"hello"
        assert store.owns(stored.location)
        assert not store.owns(f"file://{tmp_path / 'd' / 'sub' / 'abc'}")
        assert not store.owns(f"file://{tmp_path / 'd' / '..' / 'abc'}")
        assert not store.owns(f"file://{tmp_path / 'd' / '.abc.partial'}")

    def test_relative_datadir_is_made_absolute(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        store = FilesystemStore("fast", "rel")
        assert store.describe() == {
            "data_dir": str(tmp_path / "rel"),
            "chunk_size": 4 * 1048576,
            "thin_provisioning": False,
        }

    def test_out_of_space_is_store_full_and_cleans_up(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilesystemStore("fast", tmp_path, chunk_size=65536)

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr("glimpse.storage.filesystem.os.fsync", no_space)

        async def scenario() -> None:
            with pytest.raises(StoreFull, match="'fast' has no space left"):
                await store.write("full", chunked(payload(MiB)))

        run(scenario())
        assert os.listdir(tmp_path) == []

    def test_other_os_errors_are_storage_errors_naming_what_failed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilesystemStore("fast", tmp_path, fsync=False)

        def broken_replace(src: object, dst: object) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))

        monkeypatch.setattr("glimpse.storage.filesystem.os.replace", broken_replace)

        async def scenario() -> None:
            with pytest.raises(StorageError) as caught:
                await store.write("bad", chunked(payload(MiB)))
            assert type(caught.value) is StorageError
            assert caught.value.message == (
                f"store 'fast' could not save the image data: {os.strerror(errno.EIO)}"
            )
            assert str(tmp_path) not in caught.value.message
            assert isinstance(caught.value.__cause__, OSError)

        run(scenario())
        assert os.listdir(tmp_path) == []

    @pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
    def test_abandoned_readers_release_their_file(self, tmp_path: Path) -> None:
        store = FilesystemStore("fast", tmp_path, chunk_size=1024)

        def open_files() -> int:
            # Only this object's file: other tests of the same process may close their own files
            # (sockets, pools) during gc.collect(), which a plain count would mistake for ours.
            target = str(tmp_path / "k")
            count = 0
            for fd in os.listdir("/proc/self/fd"):
                try:
                    count += os.readlink(f"/proc/self/fd/{fd}") == target
                except OSError:
                    continue
            return count

        async def scenario() -> None:
            stored = await store.write("k", chunked(payload(10_000)))
            before = open_files()
            unread = await store.open(stored.location)
            started = await store.open(stored.location, 10)
            assert len(await anext(started)) == 1024
            assert open_files() == before + 2
            del unread, started
            gc.collect()
            assert open_files() == before
            empty = await store.open(stored.location, 10_000)
            assert open_files() == before
            assert [chunk async for chunk in empty] == []

        run(scenario())

    def test_temporary_file_is_hidden_and_unique(self, tmp_path: Path) -> None:
        store = FilesystemStore("fast", tmp_path, chunk_size=1024)
        seen: list[list[str]] = []

        async def scenario() -> None:
            async def source() -> AsyncIterator[bytes]:
                yield b"a" * 4096
                seen.append(await asyncio.to_thread(os.listdir, tmp_path))
                yield b"b" * 4096

            await asyncio.gather(store.write("k", source()), store.write("k", source()))

        run(scenario())
        for listing in seen:
            assert all(name.startswith(".k.") and name.endswith(".partial") for name in listing)
        assert len({name for listing in seen for name in listing}) >= 2
        assert os.listdir(tmp_path) == ["k"]

    def test_local_files_for_programs_that_need_a_file(self, tmp_path: Path) -> None:
        """``LocalFiles``: the object's file, a hidden scratch path no listing shows, and adopting
        a scratch file as an object (replacing the old one atomically)."""
        store = FilesystemStore("staging", tmp_path / "s", fsync=True)
        assert isinstance(store, LocalFiles)
        assert Capabilities.LOCAL_FILES in store.capabilities

        async def scenario() -> None:
            stored = await store.write("k", chunked(b"old"))
            assert store.local_path(stored.location) == str(tmp_path / "s" / "k")
            with pytest.raises(StoreNotFound):
                store.local_path(f"file://{tmp_path / 'elsewhere' / 'k'}")
            scratch = store.scratch_path("k.out")
            assert scratch != store.scratch_path("k.out")
            await asyncio.to_thread(Path(scratch).write_bytes, b"converted")
            assert [entry.key for entry in await store.objects()] == ["k"]
            adopted = await store.adopt(scratch, "k.out")
            assert adopted == StoredObject(location=store.location_for("k.out"), size=9)
            assert [entry.key for entry in await store.objects()] == ["k", "k.out"]
            with pytest.raises(ValueError, match="is not a scratch path"):
                await store.adopt(str(tmp_path / "s" / "k"), "k2")

        run(scenario())
        assert sorted(os.listdir(tmp_path / "s")) == ["k", "k.out"]
