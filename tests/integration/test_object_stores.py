"""What only the object store drivers (S3, Swift) promise, against the real Swift + s3api test
server: parts and segments, bucket and container handling and the translation of the services' errors."""

from __future__ import annotations

import asyncio
import functools
import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.config
import pytest
import swiftclient.exceptions

from glimpse.errors import StorageError, StoreNotFound, TooLarge
from glimpse.storage.s3 import S3Store
from glimpse.storage.swift import SwiftStore
from objectsupport import ObjectServer

pytestmark = pytest.mark.objects

MiB = 1024 * 1024


@functools.cache
def _client(server: ObjectServer) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.s3_endpoint_url,
        aws_access_key_id=server.s3_access_key,
        aws_secret_access_key=server.s3_secret_key,
        config=botocore.config.Config(region_name=server.s3_region, s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3_server: ObjectServer) -> Iterator[str]:
    """A fresh bucket name; the bucket and whatever is in it are removed after the test."""
    name = f"glimpse-s3-{uuid.uuid4().hex[:16]}"
    yield name
    client = _client(s3_server)
    try:
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for item in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
    except client.exceptions.NoSuchBucket:
        pass


def make_store(server: ObjectServer, bucket: str, **overrides: Any) -> S3Store:
    arguments: dict[str, Any] = {
        "endpoint_url": server.s3_endpoint_url,
        "access_key": server.s3_access_key,
        "secret_key": server.s3_secret_key,
        "bucket": bucket,
        "region": server.s3_region,
        "create_bucket_on_put": True,
        "large_object_size": MiB,
        "chunk_size": MiB,
        "thread_pools": 2,
        "bucket_url_format": "path",
    }
    arguments.update(overrides)
    return S3Store(arguments.pop("id", "big"), **arguments)


async def blocks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def test_large_objects_go_up_in_parts_and_small_ones_in_one_put(s3_server: ObjectServer, bucket: str) -> None:
    store = make_store(s3_server, bucket)
    large, small = random.Random(1).randbytes(3 * MiB + 5), b"tiny"

    async def scenario() -> None:
        await store.write("large", blocks(large))
        await store.write("small", blocks(small))

    asyncio.run(scenario())
    client = _client(s3_server)
    # A multipart object's ETag ends with "-<number of parts>".
    assert client.head_object(Bucket=bucket, Key="large")["ETag"].strip('"').endswith("-4")
    assert "-" not in client.head_object(Bucket=bucket, Key="small")["ETag"]
    assert client.get_object(Bucket=bucket, Key="large")["Body"].read() == large
    assert store.location_for("large") == f"s3+http://{s3_server.s3_endpoint_url[7:]}/{bucket}/large"


def test_parts_in_flight_stay_within_thread_pools(
    s3_server: ObjectServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(s3_server, bucket, thread_pools=2)
    original = store._client.upload_part
    state = {"now": 0, "most": 0}

    def counting_upload_part(**kwargs: Any) -> Any:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        try:
            return original(**kwargs)
        finally:
            state["now"] -= 1

    monkeypatch.setattr(store._client, "upload_part", counting_upload_part)
    data = random.Random(2).randbytes(8 * MiB)

    async def scenario() -> None:
        await store.write("many-parts", blocks(data, 256 * 1024))

    asyncio.run(scenario())
    assert state["most"] == 2
    assert _client(s3_server).get_object(Bucket=bucket, Key="many-parts")["Body"].read() == data


def test_failure_after_parts_were_sent_aborts_the_upload(s3_server: ObjectServer, bucket: str) -> None:
    store = make_store(s3_server, bucket)

    async def failing() -> AsyncIterator[bytes]:
        async for block in blocks(random.Random(3).randbytes(4 * MiB)):
            yield block
        raise OSError("the client went away")

    async def scenario() -> None:
        with pytest.raises(OSError, match="went away"):
            await store.write("broken", failing())
        with pytest.raises(TooLarge):
            await store.write("too-big", blocks(random.Random(4).randbytes(4 * MiB)), max_size=3 * MiB)

    asyncio.run(scenario())
    client = _client(s3_server)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_missing_bucket_without_create_on_put(s3_server: ObjectServer, bucket: str) -> None:
    store = make_store(s3_server, bucket, create_bucket_on_put=False)

    async def scenario() -> None:
        with pytest.raises(StorageError, match="create it or set s3_store_create_bucket_on_put") as caught:
            await store.write("k", blocks(b"data"))
        assert bucket not in caught.value.message
        with pytest.raises(StoreNotFound):
            await store.open(store.location_for("k"))
        with pytest.raises(StoreNotFound):
            await store.stat(store.location_for("k"))
        assert await store.objects() == []

    asyncio.run(scenario())


def test_wrong_credentials_say_what_to_check(s3_server: ObjectServer, bucket: str) -> None:
    store = make_store(s3_server, bucket, secret_key="not-the-secret")

    async def scenario() -> None:
        with pytest.raises(StorageError) as caught:
            await store.write("k", blocks(b"data"))
        assert "check s3_store_access_key and s3_store_secret_key" in caught.value.message
        assert "not-the-secret" not in caught.value.message
        with pytest.raises(StorageError, match="refused the credentials"):
            await store.objects()

    asyncio.run(scenario())


def test_unreachable_service_is_a_storage_error(bucket: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    store = S3Store(
        "big",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key="a",
        secret_key="b",
        bucket=bucket,
        bucket_url_format="path",
    )

    async def scenario() -> None:
        with pytest.raises(StorageError, match=r"unreachable or failed .*check s3_store_host") as caught:
            await store.stat(store.location_for("k"))
        assert not isinstance(caught.value, StoreNotFound)
        with pytest.raises(StorageError, match="check s3_store_host"):
            await store.write("k", blocks(b"data"))

    asyncio.run(scenario())


# -- the Swift driver, on the same server's native API ---------------------------------------------


def make_swift_store(server: ObjectServer, container: str, **overrides: Any) -> SwiftStore:
    arguments: dict[str, Any] = {
        "auth_address": server.swift_auth_url,
        "user": server.swift_user,
        "key": server.swift_key,
        "container": container,
        "large_object_size": MiB,
        "chunk_size": MiB,
        "retries": 0,
    }
    arguments.update(overrides)
    return SwiftStore(arguments.pop("id", "reliable"), **arguments)


def test_swift_missing_container_without_create_on_put(s3_server: ObjectServer) -> None:
    store = make_swift_store(s3_server, f"missing-{uuid.uuid4().hex[:12]}")

    async def scenario() -> None:
        with pytest.raises(StorageError, match="create it or set swift_store_create_container_on_put"):
            await store.write("k", blocks(b"data"))
        with pytest.raises(StorageError, match="create it or set swift_store_create_container_on_put"):
            await store.write("big", blocks(random.Random(6).randbytes(3 * MiB)))
        with pytest.raises(StoreNotFound):
            await store.stat(store.location_for("k"))
        assert await store.objects() == []

    asyncio.run(scenario())


def test_swift_wrong_key_says_what_to_check(s3_server: ObjectServer) -> None:
    store = make_swift_store(s3_server, "glance", key="not-the-key", create_container_on_put=True)

    async def scenario() -> None:
        with pytest.raises(StorageError) as caught:
            await store.write("k", blocks(b"data"))
        assert "check swift_store_user and swift_store_key" in caught.value.message
        assert "not-the-key" not in caught.value.message

    asyncio.run(scenario())


def test_swift_unreachable_service_is_a_storage_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = SwiftStore(
        "reliable", auth_address=f"http://127.0.0.1:{port}/auth/v1.0", user="a:b", key="c", retries=0
    )

    async def scenario() -> None:
        with pytest.raises(StorageError, match="check swift_store_auth_address") as caught:
            await store.stat(store.location_for("k"))
        assert not isinstance(caught.value, StoreNotFound)

    asyncio.run(scenario())


class _HeadSaysMissing:
    """A Swift connection whose ``HEAD`` of one object answers 404 although the object is there:
    what a stale proxy cache or a lagging replica can answer, which the test server cannot be made
    to do on demand."""

    def __init__(self, connection: Any, key: str) -> None:
        self._connection = connection
        self._key = key

    def head_object(self, container: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == self._key:
            raise swiftclient.exceptions.ClientException("Object HEAD failed", http_status=404)
        return self._connection.head_object(container, name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_swift_sweep_keeps_the_segments_of_a_live_object_whose_head_says_missing(
    s3_server: ObjectServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_swift_store(s3_server, f"sweep-{uuid.uuid4().hex[:12]}", create_container_on_put=True)
    data = random.Random(7).randbytes(3 * MiB)
    real_connection = store._connection

    async def scenario() -> None:
        live = await store.write("live", blocks(data))
        with monkeypatch.context() as patch:
            patch.setattr(store, "_connection", lambda: _HeadSaysMissing(real_connection(), "live"))
            # The container listing still has the object: one 404 is not enough to delete its data.
            assert await store.sweep_unfinished(datetime.now(UTC) + timedelta(seconds=1)) == []
        chunks = [chunk async for chunk in await store.open(live.location)]
        assert b"".join(chunks) == data
        await store.delete(live.location)
        assert await store.objects() == []

    asyncio.run(scenario())
