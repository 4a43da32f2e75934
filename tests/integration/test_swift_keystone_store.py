"""What only the Keystone-authenticated Swift driver promises, against the object test server's
Keystone-validating proxy: its errors say which option to check, and a reference of
``swift_store_config_file`` gives the same store as the options it stands for."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import swiftclient.exceptions

from glimpse.config import StoreSettings
from glimpse.errors import StorageError
from glimpse.storage.registry import build_store
from glimpse.storage.swift import SwiftStore
from livesupport import free_port
from objectsupport import PROXY_TOKEN_CACHE_TIME, KeystoneSwift


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def read_all(store: SwiftStore, location: str) -> bytes:
    return b"".join([chunk async for chunk in await store.open(location)])


def build(**options: str) -> SwiftStore:
    store = build_store(StoreSettings("reliable", "swift", options=options))
    assert isinstance(store, SwiftStore)
    return store


def direct_options(swift: KeystoneSwift, container: str, **extra: str) -> dict[str, str]:
    return {
        "swift_store_auth_version": "3",
        "swift_store_auth_address": swift.auth_url,
        "swift_store_user": swift.user,
        "swift_store_key": swift.key,
        "swift_store_region": swift.region,
        "swift_store_container": container,
        "swift_store_create_container_on_put": "true",
        **extra,
    }


@pytest.fixture
def container(swift_keystone: KeystoneSwift) -> Iterator[str]:
    name = f"glimpse-ks-{uuid.uuid4().hex[:16]}"
    yield name
    connection = swift_keystone.connection()
    try:
        _, objects = connection.get_container(name, full_listing=True)
    except swiftclient.exceptions.ClientException:
        return
    for item in objects:
        connection.delete_object(name, item["name"])
    connection.delete_container(name)


@pytest.mark.objects
def test_a_config_file_reference_is_the_same_store_as_the_options(
    swift_keystone: KeystoneSwift, container: str, tmp_path: Path
) -> None:
    project, _, user = swift_keystone.user.partition(":")
    reference = tmp_path / "glance-swift-store.conf"
    reference.write_text(
        "[ref1]\nuser = nobody:nobody\nkey = x\nauth_address = http://127.0.0.1:9/v3\n"
        f"[swift1]\nuser = {project}:{user}\nkey = {swift_keystone.key}\n"
        f"auth_address = {swift_keystone.auth_url}\nauth_version = 3\n"
        "user_domain_name = Default\nproject_domain_id = default\n"
    )
    direct = build(**direct_options(swift_keystone, container))
    from_file = build(
        swift_store_config_file=str(reference),
        default_swift_reference="swift1",
        swift_store_region=swift_keystone.region,
        swift_store_container=container,
        swift_store_create_container_on_put="true",
    )

    stored = asyncio.run(direct.write("image-a", one_chunk(b"written with the options")))

    assert stored.location == from_file.location_for("image-a")
    assert from_file.owns(stored.location)
    assert asyncio.run(read_all(from_file, stored.location)) == b"written with the options"
    asyncio.run(from_file.delete(stored.location))
    assert asyncio.run(direct.objects()) == []


@pytest.mark.objects
def test_a_wrong_password_names_the_options_to_check(swift_keystone: KeystoneSwift, container: str) -> None:
    store = build(**direct_options(swift_keystone, container, swift_store_key="not-the-password"))

    with pytest.raises(StorageError) as caught:
        asyncio.run(store.write("image-a", one_chunk(b"data")))

    message = caught.value.message
    assert "Keystone refused the store's credentials (401)" in message
    assert "check [reliable] swift_store_user and swift_store_key" in message
    assert "not-the-password" not in message


@pytest.mark.objects
def test_a_wrong_password_in_a_reference_names_the_file(
    swift_keystone: KeystoneSwift, container: str, tmp_path: Path
) -> None:
    reference = tmp_path / "swift.conf"
    reference.write_text(
        f"[ref1]\nuser = {swift_keystone.user}\nkey = wrong\nauth_address = {swift_keystone.auth_url}\n"
        "auth_version = 3\n"
    )
    store = build(swift_store_config_file=str(reference), swift_store_container=container)

    with pytest.raises(
        StorageError, match="check user and key of \\[ref1\\] of swift_store_config_file"
    ) as caught:
        asyncio.run(store.objects())
    assert str(reference) in caught.value.message


@pytest.mark.objects
def test_no_endpoint_in_the_catalog_names_the_catalog_options(
    swift_keystone: KeystoneSwift, container: str
) -> None:
    store = build(**direct_options(swift_keystone, container, swift_store_service_type="no-such-service"))

    with pytest.raises(StorageError) as caught:
        asyncio.run(store.objects())

    assert "Keystone's catalog has no 'no-such-service' endpoint of type publicURL in region 'RegionOne'" in (
        caught.value.message
    )
    assert (
        "check swift_store_service_type, swift_store_endpoint_type and swift_store_region"
        in caught.value.message
    )


def test_keystone_unreachable_names_the_auth_address() -> None:
    closed = free_port()  # nothing listens there
    store = build(
        swift_store_auth_version="3",
        swift_store_auth_address=f"http://127.0.0.1:{closed}/v3",
        swift_store_user="service:glance",
        swift_store_key="pw",
    )

    with pytest.raises(StorageError) as caught:
        asyncio.run(store.stat(store.location_for("image-a")))

    assert "Keystone cannot be reached (ConnectFailure)" in caught.value.message
    assert "check [reliable] swift_store_auth_address" in caught.value.message


@pytest.mark.objects
def test_a_token_swift_refuses_is_replaced_by_a_new_one(
    swift_keystone: KeystoneSwift, container: str
) -> None:
    store = build(**direct_options(swift_keystone, container))
    stored = asyncio.run(store.write("image-a", one_chunk(b"before the revocation")))
    assert store._session is not None
    first = store._session.get_token()
    swift_keystone.keystone.revoke(first)
    time.sleep(PROXY_TOKEN_CACHE_TIME + 0.5)  # the proxy no longer believes its earlier validation

    # Swift answers 401 to the revoked token; the store gets a new one and the read goes through.
    assert asyncio.run(read_all(store, stored.location)) == b"before the revocation"
    assert store._session.get_token() != first
    asyncio.run(store.delete(stored.location))
