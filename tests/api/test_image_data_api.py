"""Image data: upload, download with ranges, size cap and quota, failures that must leave no trace."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OCTET, OTHER, new_image, upload
from starlette.testclient import TestClient


def store_files(client: TestClient) -> list[Path]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    files: list[Path] = []
    for store in runtime.stores.all():
        if store.datadir.exists():
            files.extend(p for p in store.datadir.iterdir())
    return files


def test_upload_and_download_round_trip(client: TestClient) -> None:
    data = bytes(range(256)) * 9000 + b"tail"
    image = new_image(client)
    upload(client, image["id"], data)
    body = client.get(f"/v2/images/{image['id']}").json()
    assert body["status"] == "active"
    assert body["size"] == len(data) == body["virtual_size"]
    assert body["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum is md5
    assert body["os_hash_algo"] == "sha512"
    assert body["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert body["stores"] == "fast"
    response = client.get(f"/v2/images/{image['id']}/file")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-md5"] == body["checksum"]
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(data))


def test_chunked_upload_to_named_store(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for i in range(50):
            yield bytes([i]) * 10_000

    image = new_image(client)
    response = client.put(
        f"/v2/images/{image['id']}/file", content=chunks(), headers={**OCTET, "X-Image-Meta-Store": "cheap"}
    )
    assert response.status_code == 204, response.text
    body = client.get(f"/v2/images/{image['id']}").json()
    assert body["stores"] == "cheap"
    assert body["size"] == 500_000
    assert client.get(f"/v2/images/{image['id']}/file").content == b"".join(chunks())


def test_configurable_hash_algorithm(make_client: Any) -> None:
    client = make_client(GLIMPSE_HASHING_ALGORITHM="sha256")
    image = new_image(client)
    upload(client, image["id"], b"abc")
    body = client.get(f"/v2/images/{image['id']}").json()
    assert body["os_hash_algo"] == "sha256"
    assert body["os_hash_value"] == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("header", "status", "expected", "content_range"),
    [
        ("bytes=0-9", 206, b"0123456789", "bytes 0-9/100"),
        ("bytes=95-", 206, b"56789", "bytes 95-99/100"),
        ("bytes=-3", 206, b"789", "bytes 97-99/100"),
        ("bytes=90-200", 206, b"0123456789", "bytes 90-99/100"),
        ("bytes=100-", 416, None, "bytes */100"),
        ("bytes=-0", 416, None, "bytes */100"),
        ("bytes=5-2", 400, None, None),
        ("items=0-1", 400, None, None),
        ("bytes=0-1,5-6", 400, None, None),
    ],
)
def test_ranged_download(
    client: TestClient, header: str, status: int, expected: bytes | None, content_range: str | None
) -> None:
    image = new_image(client)
    upload(client, image["id"], b"0123456789" * 10)
    response = client.get(f"/v2/images/{image['id']}/file", headers={"Range": header})
    assert response.status_code == status, response.text
    if expected is not None:
        assert response.content == expected
        assert response.headers["content-length"] == str(len(expected))
        assert "content-md5" not in response.headers
    if content_range is not None:
        assert response.headers["content-range"] == content_range


def test_download_without_data_is_204(client: TestClient) -> None:
    image = new_image(client)
    response = client.get(f"/v2/images/{image['id']}/file")
    assert response.status_code == 204
    assert response.content == b""


def test_second_upload_is_refused(client: TestClient) -> None:
    image = new_image(client)
    upload(client, image["id"], b"one")
    again = client.put(f"/v2/images/{image['id']}/file", content=b"two", headers=OCTET)
    assert again.status_code == 409
    assert client.get(f"/v2/images/{image['id']}/file").content == b"one"


def test_upload_needs_formats_and_owner(client: TestClient) -> None:
    bare = client.post("/v2/images", json={"name": "no formats"}).json()
    response = client.put(f"/v2/images/{bare['id']}/file", content=b"x", headers=OCTET)
    assert response.status_code == 400
    assert "disk_format" in response.json()["message"]
    community = new_image(client, visibility="community")
    response = client.put(f"/v2/images/{community['id']}/file", content=b"x", headers={**OTHER, **OCTET})
    assert response.status_code == 403
    assert client.get(f"/v2/images/{community['id']}").json()["status"] == "queued"


def test_upload_rejects_wrong_media_type_and_unknown_store(client: TestClient) -> None:
    image = new_image(client)
    wrong = client.put(f"/v2/images/{image['id']}/file", content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    unknown = client.put(
        f"/v2/images/{image['id']}/file", content=b"x", headers={**OCTET, "X-Image-Meta-Store": "nowhere"}
    )
    assert unknown.status_code == 400
    assert "nowhere" in unknown.json()["message"]
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_size_cap_gives_413_and_leaves_nothing(make_client: Any) -> None:
    client = make_client(GLIMPSE_IMAGE_SIZE_CAP="1000")
    image = new_image(client)
    declared = client.put(f"/v2/images/{image['id']}/file", content=b"x" * 1001, headers=OCTET)
    assert declared.status_code == 413
    assert "1000" in declared.json()["message"]

    def chunks() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"x" * 600

    streamed = client.put(f"/v2/images/{image['id']}/file", content=chunks(), headers=OCTET)
    assert streamed.status_code == 413
    body = client.get(f"/v2/images/{image['id']}").json()
    assert body["status"] == "queued"
    assert body["size"] is None
    assert store_files(client) == []
    upload(client, image["id"], b"x" * 1000)
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "active"


def test_storage_quota_gives_413(make_client: Any) -> None:
    client = make_client(GLIMPSE_USER_STORAGE_QUOTA="1KB")
    first = new_image(client)
    upload(client, first["id"], b"x" * 700)
    second = new_image(client)
    response = client.put(f"/v2/images/{second['id']}/file", content=b"y" * 400, headers=OCTET)
    assert response.status_code == 413
    assert client.get(f"/v2/images/{second['id']}").json()["status"] == "queued"
    upload(client, second["id"], b"y" * 324)
    usage = client.get("/v2/info/usage").json()["usage"]["image_size_total"]
    assert usage == {"limit": 1024, "usage": 1024}
    other_project = new_image(client, headers=OTHER)
    upload(client, other_project["id"], b"z" * 1000, headers=OTHER)


def test_content_length_mismatch_stores_nothing(client: TestClient) -> None:
    image = new_image(client)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 10

    response = client.put(
        f"/v2/images/{image['id']}/file", content=chunks(), headers={**OCTET, "Content-Length": "20"}
    )
    assert response.status_code in (400, 413)
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert store_files(client) == []


def test_failing_body_stream_reverts_to_queued(client: TestClient) -> None:
    image = new_image(client)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        client.put(f"/v2/images/{image['id']}/file", content=chunks(), headers=OCTET)
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert store_files(client) == []
    upload(client, image["id"], b"second try")
    assert client.get(f"/v2/images/{image['id']}/file").content == b"second try"


def test_remove_last_store_copy_is_refused(client: TestClient) -> None:
    image = new_image(client)
    upload(client, image["id"], b"data")
    # delete_image_location is admin-only by default, as in Glance.
    assert client.delete(f"/v2/stores/fast/{image['id']}").status_code == 403
    last = client.delete(f"/v2/stores/fast/{image['id']}", headers=ADMIN)
    assert last.status_code == 409
    assert "last copy" in last.json()["message"]
    assert client.delete(f"/v2/stores/cheap/{image['id']}", headers=ADMIN).status_code == 404
    assert client.delete(f"/v2/stores/nowhere/{image['id']}", headers=ADMIN).status_code == 404
    assert client.delete(f"/v2/stores/fast/{image['id']}", headers=OTHER).status_code == 404


def test_remove_one_store_keeps_the_image(client: TestClient) -> None:
    image = new_image(client)
    upload(client, image["id"], b"data")
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    # A second copy as a later copy-image would leave it: bytes in "cheap" plus a location row.
    import asyncio

    from glimpse.db.image_repository import SqlImageRepository
    from glimpse.domain.images import Location

    async def _copy() -> Any:
        source = await runtime.stores.get("fast").open(
            f"file://{runtime.stores.get('fast').datadir / image['id']}"
        )
        return await runtime.stores.get("cheap").write(image["id"], source)

    stored = asyncio.run(_copy())
    with runtime.uow() as session:
        SqlImageRepository(session).add_location(image["id"], Location(store_id="cheap", url=stored.location))
    assert client.get(f"/v2/images/{image['id']}").json()["stores"] == "fast,cheap"
    assert client.delete(f"/v2/stores/fast/{image['id']}", headers=ADMIN).status_code == 204
    body = client.get(f"/v2/images/{image['id']}").json()
    assert body["stores"] == "cheap"
    assert body["status"] == "active"
    assert client.get(f"/v2/images/{image['id']}/file", headers=ADMIN).content == b"data"
    assert not (runtime.stores.get("fast").datadir / image["id"]).exists()
