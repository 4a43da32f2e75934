"""Images in a Swift store that authenticates with Keystone v3, through the API (in process), against
the object test server's Keystone-validating proxy (``swift_keystone``)."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator

import pytest
import swiftclient.exceptions
from apitools import ADMIN, OCTET, new_image
from starlette.testclient import TestClient

from objectsupport import KeystoneSwift

pytestmark = pytest.mark.objects

MiB = 1024 * 1024


@pytest.fixture
def container(swift_keystone: KeystoneSwift) -> Iterator[str]:
    name = f"glimpse-api-{uuid.uuid4().hex[:16]}"
    yield name
    connection = swift_keystone.connection()
    for each in (name, f"{name}_segments"):
        try:
            _, objects = connection.get_container(each, full_listing=True)
        except swiftclient.exceptions.ClientException:
            continue
        for item in objects:
            connection.delete_object(each, item["name"])
        connection.delete_container(each)


def keystone_settings(swift: KeystoneSwift, container: str, **extra: str) -> dict[str, str]:
    """Glance's options for a single-tenant Swift store behind Keystone (auth version 3)."""
    return {
        "GLIMPSE_ENABLED_BACKENDS": "fast:file,reliable:swift",
        "GLIMPSE_RELIABLE__SWIFT_STORE_AUTH_VERSION": "3",
        "GLIMPSE_RELIABLE__SWIFT_STORE_AUTH_ADDRESS": swift.auth_url,
        "GLIMPSE_RELIABLE__SWIFT_STORE_USER": swift.user,
        "GLIMPSE_RELIABLE__SWIFT_STORE_KEY": swift.key,
        "GLIMPSE_RELIABLE__SWIFT_STORE_REGION": swift.region,
        "GLIMPSE_RELIABLE__SWIFT_STORE_ENDPOINT_TYPE": "internalURL",
        "GLIMPSE_RELIABLE__SWIFT_STORE_CONTAINER": container,
        "GLIMPSE_RELIABLE__SWIFT_STORE_CREATE_CONTAINER_ON_PUT": "true",
        "GLIMPSE_RELIABLE__SWIFT_STORE_LARGE_OBJECT_SIZE": "2",
        "GLIMPSE_RELIABLE__SWIFT_STORE_LARGE_OBJECT_CHUNK_SIZE": "2",
        **extra,
    }


def test_upload_download_and_delete_through_keystone(
    make_client: Callable[..., TestClient], swift_keystone: KeystoneSwift, container: str
) -> None:
    api = make_client(
        **keystone_settings(swift_keystone, container, GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND="reliable")
    )
    data = random.Random(7).randbytes(5 * MiB + 11)  # over 2 MB: a large object of 3 segments

    image = new_image(api)["id"]
    response = api.put(f"/v2/images/{image}/file", content=data, headers=OCTET)
    assert response.status_code == 204, response.text

    shown = api.get(f"/v2/images/{image}", headers=ADMIN).json()
    assert shown["stores"] == "reliable"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    # The object is in the account of the glance user's project, which Swift found in the token.
    connection = swift_keystone.connection()
    headers = connection.head_object(container, image)
    assert int(headers["content-length"]) == len(data)
    assert headers["x-static-large-object"] == "True"
    assert connection.url.endswith(f"/AUTH_{swift_keystone.project_id}")

    assert api.get(f"/v2/images/{image}/file").content == data
    ranged = api.get(f"/v2/images/{image}/file", headers={"Range": "bytes=3145720-3145739"})
    assert ranged.status_code == 206
    assert ranged.content == data[3145720:3145740]

    assert api.delete(f"/v2/images/{image}").status_code == 204
    _, left = connection.get_container(container)
    assert left == []


def test_a_refused_password_is_a_503_that_names_the_options(
    make_client: Callable[..., TestClient], swift_keystone: KeystoneSwift, container: str
) -> None:
    api = make_client(
        **keystone_settings(swift_keystone, container, GLIMPSE_RELIABLE__SWIFT_STORE_KEY="wrong-pw")
    )
    image = new_image(api)["id"]

    response = api.put(
        f"/v2/images/{image}/file", content=b"x" * 1000, headers={**OCTET, "X-Image-Meta-Store": "reliable"}
    )

    assert response.status_code == 503, response.text
    assert "Keystone refused the store's credentials" in response.text
    assert "[reliable] swift_store_user and swift_store_key" in response.text
    assert "wrong-pw" not in response.text
    assert api.get(f"/v2/images/{image}").json()["status"] == "queued"
