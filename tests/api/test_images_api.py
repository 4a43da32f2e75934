"""Image metadata through the ASGI app: create, show, update (JSON patch), delete, tags, status actions."""

from __future__ import annotations

import uuid

import pytest
from apitools import ADMIN, OTHER, PATCH, new_image, upload
from starlette.testclient import TestClient


def test_create_returns_glance_shape_and_headers(client: TestClient) -> None:
    response = client.post(
        "/v2/images",
        json={"name": "cirros", "disk_format": "qcow2", "container_format": "bare", "os_distro": "cirros"},
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"].endswith(f"/v2/images/{body['id']}")
    assert response.headers["openstack-image-import-methods"] == "glance-direct,web-download,copy-image"
    assert response.headers["openstack-image-store-ids"] == "fast,cheap,reliable"
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert body["status"] == "queued"
    assert body["visibility"] == "shared"
    assert body["owner"] == "project-a"
    assert body["os_distro"] == "cirros"
    assert body["size"] is None
    assert body["checksum"] is None
    assert body["self"] == f"/v2/images/{body['id']}"
    assert body["file"] == f"/v2/images/{body['id']}/file"
    assert body["schema"] == "/v2/schemas/image"
    assert body["created_at"].endswith("Z")
    assert len(body["created_at"]) == 20
    assert "stores" not in body


def test_create_with_given_id_and_duplicate(client: TestClient) -> None:
    image_id = str(uuid.uuid4())
    assert new_image(client, id=image_id)["id"] == image_id
    again = client.post("/v2/images", json={"id": image_id})
    assert again.status_code == 409
    assert image_id in again.json()["message"]


def test_deleted_image_id_is_never_reused(client: TestClient) -> None:
    image = new_image(client)
    assert client.delete(f"/v2/images/{image['id']}").status_code == 204
    assert client.post("/v2/images", json={"id": image["id"]}).status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"status": "active"}, 403, "read-only"),
        ({"checksum": "abc"}, 403, "read-only"),
        ({"os_glance_import_task": "x"}, 403, "reserved"),
        ({"deleted": True}, 403, "reserved"),
        ({"locations": []}, 403, "locations"),
        ({"disk_format": "floppy"}, 400, "disk_format"),
        ({"visibility": "everyone"}, 400, "visibility"),
        ({"min_ram": -1}, 400, "min_ram"),
        ({"min_ram": True}, 400, "min_ram"),
        ({"protected": "yes"}, 400, "protected"),
        ({"name": "x" * 256}, 400, "255"),
        ({"custom": 5}, 400, "strings"),
        ({"tags": "a,b"}, 400, "tags"),
        ({"id": "not-a-uuid"}, 400, "UUID"),
        ({"owner": "someone-else"}, 403, "someone-else"),
        ({"visibility": "public"}, 403, "publicize_image"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, body: dict[str, object], status: int, fragment: str
) -> None:
    response = client.post("/v2/images", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert fragment in error["message"]
    assert error["code"].startswith(str(status))
    assert client.get("/v2/images").json()["images"] == []


def test_create_rejects_malformed_bodies(client: TestClient) -> None:
    bad_json = client.post("/v2/images", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert "Malformed JSON" in bad_json.json()["message"]
    not_object = client.post("/v2/images", json=["a"])
    assert not_object.status_code == 400
    empty = client.post("/v2/images", content=b"", headers={"Content-Type": "application/json"})
    assert empty.status_code == 400
    wrong_type = client.post("/v2/images", content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_admin_may_create_public_and_for_other_projects(client: TestClient) -> None:
    image = new_image(client, headers=ADMIN, visibility="public", owner="project-z")
    assert image["visibility"] == "public"
    assert image["owner"] == "project-z"


def test_show_hides_private_images_of_other_projects(client: TestClient) -> None:
    image = new_image(client, visibility="private")
    assert client.get(f"/v2/images/{image['id']}").status_code == 200
    hidden = client.get(f"/v2/images/{image['id']}", headers=OTHER)
    assert hidden.status_code == 404
    assert client.get(f"/v2/images/{image['id']}", headers=ADMIN).status_code == 200
    assert client.get("/v2/images/not-a-uuid").status_code == 404


def test_community_image_visible_to_everyone(client: TestClient) -> None:
    image = new_image(client, visibility="community")
    assert client.get(f"/v2/images/{image['id']}", headers=OTHER).status_code == 200


@pytest.mark.parametrize("media_type", ["v2.1", "v2.0"])
def test_patch_both_media_types(client: TestClient, media_type: str) -> None:
    image = new_image(client, os_distro="cirros")
    if media_type == "v2.1":
        ops: list[dict[str, object]] = [
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
            {"op": "remove", "path": "/os_distro"},
            {"op": "replace", "path": "/tags", "value": ["a", "b", "a"]},
            {"op": "replace", "path": "/min_ram", "value": 512},
        ]
    else:
        ops = [
            {"replace": "/name", "value": "renamed"},
            {"add": "/hw_disk_bus", "value": "scsi"},
            {"remove": "/os_distro"},
            {"replace": "/tags", "value": ["a", "b", "a"]},
            {"replace": "/min_ram", "value": 512},
        ]
    response = client.patch(
        f"/v2/images/{image['id']}",
        json=ops,
        headers={"Content-Type": f"application/openstack-images-{media_type}-json-patch"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "renamed"
    assert body["hw_disk_bus"] == "scsi"
    assert "os_distro" not in body
    assert body["tags"] == ["a", "b"]
    assert body["min_ram"] == 512
    assert client.get(f"/v2/images/{image['id']}").json() == body


@pytest.mark.parametrize(
    ("ops", "status", "fragment"),
    [
        ([{"op": "replace", "path": "/missing", "value": "x"}], 409, "does not exist"),
        ([{"op": "remove", "path": "/missing"}], 409, "does not exist"),
        ([{"op": "remove", "path": "/name"}], 403, "cannot be removed"),
        ([{"op": "replace", "path": "/status", "value": "active"}], 403, "read-only"),
        ([{"op": "add", "path": "/os_glance_import_task", "value": "x"}], 403, "reserved"),
        ([{"op": "replace", "path": "/id", "value": str(uuid.uuid4())}], 403, "read-only"),
        ([{"op": "move", "path": "/name", "value": "x"}], 400, "move"),
        ([{"op": "replace", "path": "/name"}], 400, "value"),
        ([{"op": "replace", "path": "name", "value": "x"}], 400, "JSON pointer"),
        ([{"op": "replace", "path": "/a/b", "value": "x"}], 400, "JSON pointer"),
        ([{"op": "replace", "path": "/visibility", "value": "public"}], 403, "publicize_image"),
        ([{"op": "replace", "path": "/owner", "value": "project-b"}], 403, "administrator"),
        ({"op": "replace"}, 400, "list"),
    ],
)
def test_patch_rejects(client: TestClient, ops: object, status: int, fragment: str) -> None:
    image = new_image(client)
    response = client.patch(f"/v2/images/{image['id']}", json=ops, headers=PATCH)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]
    assert client.get(f"/v2/images/{image['id']}").json() == image


def test_patch_needs_patch_media_type(client: TestClient) -> None:
    image = new_image(client)
    response = client.patch(
        f"/v2/images/{image['id']}", json=[{"op": "replace", "path": "/name", "value": "x"}]
    )
    assert response.status_code == 415


def test_patch_by_non_owner(client: TestClient) -> None:
    private = new_image(client, visibility="private")
    ops = [{"op": "replace", "path": "/name", "value": "x"}]
    assert (
        client.patch(f"/v2/images/{private['id']}", json=ops, headers={**OTHER, **PATCH}).status_code == 404
    )
    community = new_image(client, visibility="community")
    response = client.patch(f"/v2/images/{community['id']}", json=ops, headers={**OTHER, **PATCH})
    assert response.status_code == 403


def test_property_quota(make_client: object) -> None:
    client = make_client(GLIMPSE_IMAGE_PROPERTY_QUOTA="2")  # type: ignore[operator]
    image = new_image(client, a="1", b="2")
    response = client.patch(
        f"/v2/images/{image['id']}", json=[{"op": "add", "path": "/c", "value": "3"}], headers=PATCH
    )
    assert response.status_code == 413
    assert client.post("/v2/images", json={"a": "1", "b": "2", "c": "3"}).status_code == 413


def test_delete_image_removes_data(client: TestClient, tmp_path: object) -> None:
    image = new_image(client)
    upload(client, image["id"], b"abc" * 1000)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    stored = runtime.stores.default.datadir / image["id"]
    assert stored.exists()
    assert client.delete(f"/v2/images/{image['id']}").status_code == 204
    assert not stored.exists()
    assert client.get(f"/v2/images/{image['id']}").status_code == 404
    assert client.delete(f"/v2/images/{image['id']}").status_code == 404


def test_protected_image_cannot_be_deleted(client: TestClient) -> None:
    image = new_image(client, protected=True)
    response = client.delete(f"/v2/images/{image['id']}")
    assert response.status_code == 403
    assert "protected" in response.json()["message"]
    client.patch(
        f"/v2/images/{image['id']}",
        json=[{"op": "replace", "path": "/protected", "value": False}],
        headers=PATCH,
    )
    assert client.delete(f"/v2/images/{image['id']}").status_code == 204


def test_only_owner_deletes(client: TestClient) -> None:
    image = new_image(client, visibility="community")
    assert client.delete(f"/v2/images/{image['id']}", headers=OTHER).status_code == 403
    assert client.get(f"/v2/images/{image['id']}").status_code == 200


def test_tags(client: TestClient) -> None:
    image = new_image(client)
    assert client.put(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    assert client.put(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    assert client.put(f"/v2/images/{image['id']}/tags/red").status_code == 204
    assert client.get(f"/v2/images/{image['id']}").json()["tags"] == ["blue", "red"]
    assert client.delete(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    assert client.delete(f"/v2/images/{image['id']}/tags/blue").status_code == 404
    assert client.get(f"/v2/images/{image['id']}").json()["tags"] == ["red"]


def test_deactivate_and_reactivate(client: TestClient) -> None:
    image = new_image(client, visibility="community")
    assert client.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 400
    upload(client, image["id"], b"data")
    assert client.post(f"/v2/images/{image['id']}/actions/deactivate", headers=OTHER).status_code == 403
    assert client.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert client.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert client.get(f"/v2/images/{image['id']}").json()["status"] == "deactivated"
    blocked = client.get(f"/v2/images/{image['id']}/file", headers=OTHER)
    assert blocked.status_code == 403
    assert "deactivated" in blocked.json()["message"]
    assert client.get(f"/v2/images/{image['id']}/file", headers=ADMIN).content == b"data"
    assert client.post(f"/v2/images/{image['id']}/actions/reactivate", headers=OTHER).status_code == 403
    assert client.post(f"/v2/images/{image['id']}/actions/reactivate").status_code == 204
    assert client.get(f"/v2/images/{image['id']}/file").content == b"data"
