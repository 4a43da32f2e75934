"""openstacksdk's image proxy (and the cloud layer over it) against a live Glimpse.

The SDK talks to the endpoint without Keystone, in the two usual ways: ``openstack.connect`` with
``auth_type="none"`` and an ``image_endpoint_override`` (acting as the server's default identity),
and a ``Connection`` over a keystoneauth session with the no-auth plugin that also sends identity
headers (to act as the member project or as an admin). Either way the SDK discovers the API version
from the server's root document. Results are compared with what the server reports over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openstack
import pytest
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from openstack import exceptions as sdk_exceptions
from openstack.connection import Connection

if TYPE_CHECKING:
    from livesupport import Server

pytestmark = [
    pytest.mark.live,
    # The SDK announces its own future API changes; they say nothing about the server.
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]


@pytest.fixture(scope="module")
def conn(owner: Server) -> Iterator[Connection]:
    """The usual way to reach an image endpoint without Keystone; acts as the server's default."""
    connection = openstack.connect(
        auth_type="none",
        image_endpoint_override=owner.url,
        load_yaml_config=False,
        load_envvars=False,
        app_name="glimpse-compat",
    )
    yield connection
    connection.close()


def connect_as(server: Server, headers: dict[str, str]) -> Connection:
    """A connection over a keystoneauth session that sends no-auth identity headers."""
    session = ks_session.Session(auth=noauth.NoAuth(), additional_headers=headers)
    return Connection(session=session, image_endpoint_override=server.url)


@pytest.fixture(scope="module")
def peer_conn(owner: Server, identity: dict[str, dict[str, str]]) -> Iterator[Connection]:
    connection = connect_as(owner, identity["peer"])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def admin_conn(owner: Server, identity: dict[str, dict[str, str]]) -> Iterator[Connection]:
    connection = connect_as(owner, identity["admin"])
    yield connection
    connection.close()


@pytest.fixture
def make_image(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    def make(**attrs: Any) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", "name": f"sdk-{uuid.uuid4().hex[:8]}"}
        response = api.post("/v2/images", json={**body, **attrs})
        assert response.status_code == 201, response.text
        image: dict[str, Any] = response.json()
        return image

    return make


def server_image(api: httpx.Client, image_id: str) -> dict[str, Any]:
    response = api.get(f"/v2/images/{image_id}")
    assert response.status_code == 200, response.text
    image: dict[str, Any] = response.json()
    return image


def test_create_upload_get_and_download(conn: Connection, api: httpx.Client, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum is MD5
    sha512 = hashlib.sha512(data).hexdigest()
    name = f"sdk-data-{uuid.uuid4().hex[:8]}"
    created = conn.image.create_image(
        name=name,
        data=data,
        disk_format="raw",
        container_format="bare",
        visibility="private",
        compat_case="sdk-upload",
    )
    assert created.id
    assert created.name == name

    image = conn.image.get_image(created.id)
    assert image.status == "active"
    assert image.size == len(data)
    assert image.checksum == md5
    assert (image.hash_algo, image.hash_value) == ("sha512", sha512)
    assert image.visibility == "private"
    assert image.owner == "compat-owner"
    assert image.disk_format == "raw"
    assert image.properties["compat_case"] == "sdk-upload"
    on_server = server_image(api, created.id)
    assert on_server["size"] == len(data)
    assert on_server["checksum"] == md5
    assert on_server["owner_specified.openstack.object"] == f"images/{name}"

    # The SDK checks the bytes against os_hash_value while it downloads.
    downloaded = conn.image.download_image(image)
    assert downloaded.content == data
    assert hashlib.md5(downloaded.content).hexdigest() == md5  # noqa: S324
    target = tmp_path / "download.raw"
    conn.image.download_image(image, output=str(target))
    assert target.read_bytes() == data
    streamed = conn.image.download_image(image, stream=True)
    try:
        assert b"".join(streamed.iter_content(chunk_size=64 * 1024)) == data
    finally:
        streamed.close()


def test_cloud_layer_create_image_from_file(conn: Connection, api: httpx.Client, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    source = tmp_path / "cloud.raw"
    source.write_bytes(data)
    name = f"sdk-cloud-{uuid.uuid4().hex[:8]}"
    image = conn.create_image(
        name,
        filename=str(source),
        disk_format="raw",
        container_format="bare",
        wait=True,
        timeout=60,
        validate_checksum=True,
        meta={"compat_case": "cloud-layer"},
    )
    assert image.status == "active"
    assert image.size == len(data)
    on_server = server_image(api, image.id)
    assert on_server["disk_format"] == "raw"
    assert on_server["compat_case"] == "cloud-layer"
    # With validate_checksum the SDK hashes the file, records the hashes as properties (to recognise
    # the same upload later) and compares them with what the server computed.
    assert on_server["owner_specified.openstack.md5"] == hashlib.md5(data).hexdigest()  # noqa: S324
    assert on_server["owner_specified.openstack.sha256"] == hashlib.sha256(data).hexdigest()
    assert on_server["checksum"] == on_server["owner_specified.openstack.md5"]

    found = conn.get_image(name)
    assert found is not None
    assert found.id == image.id


def test_images_listing_with_filters_and_paging(
    conn: Connection, make_image: Callable[..., dict[str, Any]]
) -> None:
    batch = f"batch-{uuid.uuid4().hex[:10]}"
    images = [
        make_image(
            name=f"{batch}-{index}",
            tags=[batch],
            visibility="private" if index == 1 else "shared",
        )
        for index in range(5)
    ]
    hidden = make_image(name=f"{batch}-hidden", tags=[batch], os_hidden=True)
    expected = [image["id"] for image in images]

    paged = list(conn.image.images(tag=batch, limit=2, sort_key="name", sort_dir="asc"))
    assert [image.id for image in paged] == expected
    assert hidden["id"] not in {image.id for image in paged}

    descending = list(conn.image.images(tag=batch, sort="name:desc"))
    assert [image.id for image in descending] == expected[::-1]

    private = list(conn.image.images(tag=batch, visibility="private"))
    assert [image.id for image in private] == [images[1]["id"]]

    by_name = list(conn.image.images(name=f"{batch}-3"))
    assert [image.id for image in by_name] == [images[3]["id"]]

    only_hidden = list(conn.image.images(tag=batch, is_hidden=True))
    assert [image.id for image in only_hidden] == [hidden["id"]]
    assert only_hidden[0].is_hidden is True

    found = conn.image.find_image(f"{batch}-2", ignore_missing=False)
    assert found.id == images[2]["id"]


def test_update_image_and_properties(
    conn: Connection, api: httpx.Client, make_image: Callable[..., dict[str, Any]]
) -> None:
    created = make_image(keep_me="1", drop_me="x")
    image = conn.image.get_image(created["id"])

    renamed = conn.image.update_image(image, name="sdk-renamed", min_ram=512, is_protected=False)
    assert renamed.name == "sdk-renamed"
    assert renamed.min_ram == 512
    on_server = server_image(api, created["id"])
    assert (on_server["name"], on_server["min_ram"]) == ("sdk-renamed", 512)
    assert on_server["keep_me"] == "1"

    # update_image_properties merges with what is there (a bare update_image with unknown
    # attributes would replace the whole property set).
    changed = conn.image.update_image_properties(
        conn.image.get_image(created["id"]), meta={"hw_disk_bus": "scsi"}, min_disk=4
    )
    assert changed is True
    on_server = server_image(api, created["id"])
    assert on_server["hw_disk_bus"] == "scsi"
    assert on_server["min_disk"] == 4
    assert on_server["keep_me"] == "1"

    current = conn.image.get_image(created["id"])
    remaining = {k: v for k, v in current.properties.items() if k != "drop_me"}
    conn.image.update_image(current, **remaining)
    on_server = server_image(api, created["id"])
    assert "drop_me" not in on_server
    assert (on_server["keep_me"], on_server["hw_disk_bus"]) == ("1", "scsi")


def test_tags(conn: Connection, api: httpx.Client, make_image: Callable[..., dict[str, Any]]) -> None:
    image = conn.image.get_image(make_image()["id"])
    conn.image.add_tag(image, "red")
    conn.image.add_tag(image, "blue")
    conn.image.add_tag(image, "red")  # adding an existing tag is not an error
    assert sorted(server_image(api, image.id)["tags"]) == ["blue", "red"]
    conn.image.remove_tag(image, "red")
    assert conn.image.get_image(image.id).tags == ["blue"]
    with pytest.raises(sdk_exceptions.NotFoundException):
        conn.image.remove_tag(image, "red")


def test_members(
    conn: Connection,
    peer_conn: Connection,
    api: httpx.Client,
    identity: dict[str, dict[str, str]],
    make_image: Callable[..., dict[str, Any]],
) -> None:
    image = conn.image.get_image(make_image(visibility="shared")["id"])
    member_project = identity["peer"]["X-Project-Id"]

    member = conn.image.add_member(image, member=member_project)
    assert member.member_id == member_project
    assert member.status == "pending"
    assert [(m.member_id, m.status) for m in conn.image.members(image)] == [(member_project, "pending")]
    # Pending: visible by id to the member, but not in its listings until accepted.
    assert peer_conn.image.get_image(image.id).id == image.id
    assert image.id not in {i.id for i in peer_conn.image.images(visibility="shared")}
    assert image.id in {i.id for i in peer_conn.image.images(member_status="pending")}

    accepted = peer_conn.image.update_member(member_project, image.id, status="accepted")
    assert accepted.status == "accepted"
    assert conn.image.get_member(member_project, image).status == "accepted"
    assert image.id in {i.id for i in peer_conn.image.images(visibility="shared")}
    server_member = api.get(f"/v2/images/{image.id}/members/{member_project}")
    assert server_member.json()["status"] == "accepted"

    with pytest.raises(sdk_exceptions.ForbiddenException):
        conn.image.update_member(member_project, image.id, status="rejected")

    conn.image.remove_member(member_project, image)
    assert list(conn.image.members(image)) == []
    with pytest.raises(sdk_exceptions.NotFoundException):
        peer_conn.image.get_image(image.id)


def test_stores_and_import_info(conn: Connection, admin_conn: Connection) -> None:
    stores = list(conn.image.stores())
    assert [(s.id, s.description, bool(s.is_default)) for s in stores] == [
        ("fast", "fast-local-disk", True),
        ("cheap", "cheap-bulk-disk", False),
    ]
    with pytest.raises(sdk_exceptions.ForbiddenException):
        list(conn.image.stores(details=True))
    detailed = list(admin_conn.image.stores(details=True))
    assert [s.id for s in detailed] == ["fast", "cheap"]
    assert all(isinstance(s.properties, dict) for s in detailed)

    info = conn.image.get_import_info()
    assert info.import_methods["value"] == ["glance-direct", "web-download", "copy-image"]


def test_delete_image(conn: Connection, api: httpx.Client, make_image: Callable[..., dict[str, Any]]) -> None:
    image_id = make_image()["id"]
    upload = api.put(
        f"/v2/images/{image_id}/file", content=b"bytes", headers={"Content-Type": "application/octet-stream"}
    )
    assert upload.status_code == 204
    conn.image.delete_image(image_id)
    assert api.get(f"/v2/images/{image_id}").status_code == 404
    with pytest.raises(sdk_exceptions.NotFoundException) as missing:
        conn.image.get_image(image_id)
    assert image_id in str(missing.value)
    with pytest.raises(sdk_exceptions.NotFoundException):
        conn.image.delete_image(image_id, ignore_missing=False)
    conn.image.delete_image(image_id, ignore_missing=True)
