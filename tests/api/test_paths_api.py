"""Empty and malformed ids, trailing slashes, and the fixed order of an image's ``stores``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from apitools import ADMIN, OWNER, PATCH, new_image, upload
from starlette.testclient import TestClient

from glimpse.db.image_repository import SqlImageRepository
from glimpse.domain.images import Location

REPLACE_NAME = [{"op": "replace", "path": "/name", "value": "x"}]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/images/"),
        ("DELETE", "/v2/images/"),
        ("PATCH", "/v2/images/"),
        ("PUT", "/v2/images/"),
        ("POST", "/v2/images/"),
        ("GET", "/v2/images//tasks"),
        ("PUT", "/v2/images//file"),
        ("GET", "/v2/tasks/"),
        ("POST", "/v2/tasks/"),
        ("GET", "/v2/images//members"),
    ],
)
def test_an_empty_id_is_not_found(client: TestClient, method: str, path: str) -> None:
    """Glance's router has no route for an empty id: 404, never the collection or a 405."""
    new_image(client)
    body = REPLACE_NAME if method == "PATCH" else None
    response = client.request(method, path, json=body, headers={**OWNER, **PATCH})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "404 Not Found"
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "image_id",
    ["not-a-uuid", "0" * 37, "00000000-0000-0000-0000-00000000000g", "%20", "..%2F..%2Fetc"],
)
def test_a_malformed_id_is_not_found(client: TestClient, image_id: str) -> None:
    for method in ("GET", "DELETE", "PATCH"):
        body = REPLACE_NAME if method == "PATCH" else None
        response = client.request(method, f"/v2/images/{image_id}", json=body, headers={**OWNER, **PATCH})
        assert response.status_code == 404, (method, response.text)
    assert client.get(f"/v2/images/{image_id}/tasks").status_code == 404
    assert client.get(f"/v2/tasks/{image_id}", headers=ADMIN).status_code == 404


def test_a_trailing_slash_is_another_path(client: TestClient) -> None:
    """Glance answers 404 for a known path with a slash added; Glimpse does not redirect either."""
    image_id = new_image(client)["id"]
    for path in (
        f"/v2/images/{image_id}/",
        f"/v2/images/{image_id}/tasks/",
        f"/v2/images/{image_id}/members/",
        f"/v2/images/{image_id}/tags/",
        "/v2/info/import/",
        "/v2/schemas/image/",
    ):
        response = client.get(path, headers=ADMIN, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code, response.text)
    assert client.delete(f"/v2/images/{image_id}/").status_code == 404
    assert client.get("/v2/", follow_redirects=False).status_code == 404
    # Glance's version negotiation serves /versions/ as /versions
    versions = client.get("/versions/", follow_redirects=False)
    assert versions.status_code == 200
    assert versions.json() == client.get("/versions").json()
    assert client.get(f"/v2/images/{image_id}").status_code == 200  # still there
    # the collections without the slash are as they were
    assert client.get("/v2/images").status_code == 200
    assert client.delete("/v2/images").status_code == 405


def _copied(client: TestClient, image_id: str, *stores: str) -> None:
    """Locations added as copies would add them, in the order the copies finished."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.uow() as session:
        for store_id in stores:
            location = Location(store_id=store_id, url=f"file:///nowhere/{store_id}/{image_id}")
            SqlImageRepository(session).add_location(image_id, location)


def test_stores_are_listed_in_the_configured_order(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    """``stores`` follows enabled_backends (fast, cheap, reliable), whatever order the copies
    finished in; a store that is no longer configured comes last. direct_url is the first."""
    client = make_client(
        migrated_database_url,
        GLIMPSE_ENABLED_BACKENDS="fast:file,cheap:file,reliable:file",
        GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND="reliable",
        GLIMPSE_SHOW_IMAGE_DIRECT_URL="true",
    )
    image_id = new_image(client)["id"]
    upload(client, image_id, b"data")  # to the default store, reliable
    _copied(client, image_id, "retired", "cheap", "fast")
    image = client.get(f"/v2/images/{image_id}").json()
    assert image["stores"] == "fast,cheap,reliable,retired"
    assert image["direct_url"] == f"file:///nowhere/fast/{image_id}"
    listed = client.get("/v2/images").json()["images"]
    assert [i["stores"] for i in listed if i["id"] == image_id] == ["fast,cheap,reliable,retired"]
