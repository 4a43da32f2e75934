"""Sharing: members are added by the owner, answer for themselves, and see only their own row."""

from __future__ import annotations

from apitools import ADMIN, OTHER, OWNER, THIRD, new_image
from starlette.testclient import TestClient


def test_member_lifecycle(client: TestClient) -> None:
    image = new_image(client)["id"]
    base = f"/v2/images/{image}/members"
    added = client.post(base, json={"member": "project-b"})
    assert added.status_code == 200
    body = added.json()
    assert body["member_id"] == "project-b"
    assert body["image_id"] == image
    assert body["status"] == "pending"
    assert body["schema"] == "/v2/schemas/member"
    assert body["created_at"].endswith("Z")
    assert client.post(base, json={"member": "project-c"}).status_code == 200

    listing = client.get(base).json()
    assert [m["member_id"] for m in listing["members"]] == ["project-b", "project-c"]
    assert listing["schema"] == "/v2/schemas/members"
    assert [m["member_id"] for m in client.get(base, headers=OTHER).json()["members"]] == ["project-b"]

    assert client.get(f"/v2/images/{image}", headers=OTHER).status_code == 200
    assert client.get(f"{base}/project-b", headers=OTHER).json()["status"] == "pending"
    assert client.get(f"{base}/project-c", headers=OTHER).status_code == 404

    assert client.put(f"{base}/project-b", json={"status": "accepted"}).status_code == 403
    assert client.put(f"{base}/project-c", json={"status": "accepted"}, headers=OTHER).status_code == 404
    accepted = client.put(f"{base}/project-b", json={"status": "accepted"}, headers=OTHER)
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "accepted"
    assert client.put(f"{base}/project-b", json={"status": "bored"}, headers=OTHER).status_code == 400

    assert client.delete(f"{base}/project-b", headers=OTHER).status_code == 403
    assert client.delete(f"{base}/project-b").status_code == 204
    assert client.get(f"/v2/images/{image}", headers=OTHER).status_code == 404
    assert client.delete(f"{base}/project-b").status_code == 404


def test_members_only_for_shared_images(client: TestClient) -> None:
    private = new_image(client, visibility="private")["id"]
    response = client.post(f"/v2/images/{private}/members", json={"member": "project-b"})
    assert response.status_code == 403
    assert "shared" in response.json()["message"]
    assert client.get(f"/v2/images/{private}/members").status_code == 403


def test_duplicate_member_and_bad_bodies(client: TestClient) -> None:
    image = new_image(client)["id"]
    base = f"/v2/images/{image}/members"
    assert client.post(base, json={"member": "project-b"}).status_code == 200
    assert client.post(base, json={"member": "project-b"}).status_code == 409
    assert client.post(base, json={"who": "project-b"}).status_code == 400
    assert client.post(base, json={"member": 7}).status_code == 400
    assert client.post(base, json=[]).status_code == 400


def test_only_owner_adds_members(client: TestClient) -> None:
    image = new_image(client)["id"]
    client.post(f"/v2/images/{image}/members", json={"member": "project-b"})
    client.put(f"/v2/images/{image}/members/project-b", json={"status": "accepted"}, headers=OTHER)
    refused = client.post(f"/v2/images/{image}/members", json={"member": "project-c"}, headers=OTHER)
    assert refused.status_code == 403
    assert client.get(f"/v2/images/{image}", headers=THIRD).status_code == 404
    assert (
        client.post(f"/v2/images/{image}/members", json={"member": "project-c"}, headers=ADMIN).status_code
        == 200
    )


def test_member_quota(make_client: object) -> None:
    client = make_client(GLIMPSE_IMAGE_MEMBER_QUOTA="1")  # type: ignore[operator]
    image = new_image(client)["id"]
    assert (
        client.post(f"/v2/images/{image}/members", json={"member": "project-b"}, headers=OWNER).status_code
        == 200
    )
    assert client.post(f"/v2/images/{image}/members", json={"member": "project-c"}).status_code == 413
