"""Cross-cutting behaviour: versions, request ids, identity, discovery, schemas, error bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OWNER, new_image
from starlette.testclient import TestClient

from glimpse.api import schemas


def test_versions(client: TestClient) -> None:
    response = client.get("/versions")
    assert response.status_code == 200
    versions = response.json()["versions"]
    assert versions[0] == {
        "id": "v2.12",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": "http://testserver/v2/"}],
    }
    assert [v["id"] for v in versions] == [f"v2.{n}" for n in range(12, -1, -1)]
    assert all(v["status"] == "SUPPORTED" for v in versions[1:])
    root = client.get("/")
    assert root.status_code == 300
    assert root.json() == response.json()


def test_versioned_url_prefixes(client: TestClient) -> None:
    image = new_image(client)
    assert client.get(f"/v2.12/images/{image['id']}").json()["id"] == image["id"]
    assert client.get("/v2.0/images").status_code == 200
    assert client.get("/v2.13/images").status_code == 404


def test_request_id_generated_and_echoed(client: TestClient) -> None:
    generated = client.get("/v2/images").headers["x-openstack-request-id"]
    assert generated.startswith("req-")
    assert len(generated) == 40
    given = client.get("/v2/images", headers={"X-OpenStack-Request-ID": "req-abc-123"})
    assert given.headers["x-openstack-request-id"] == "req-abc-123"
    bare = client.get("/v2/images", headers={"X-OpenStack-Request-ID": "abc"})
    assert bare.headers["x-openstack-request-id"] == "req-abc"
    missing = client.get("/v2/images/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("value", [b"x" * 65, b"has space", "caf\u00e9".encode()])
def test_bad_request_id_is_400(client: TestClient, value: bytes) -> None:
    response = client.get("/v2/images", headers={"X-OpenStack-Request-ID": value})  # type: ignore[dict-item]
    assert response.status_code == 400
    assert "x-openstack-request-id" in response.json()["message"]
    assert response.headers["x-openstack-request-id"].startswith("req-")


def test_default_identity_without_headers(make_client: object) -> None:
    client = make_client(GLIMPSE_AUTH__NOAUTH_DEFAULT_PROJECT="dev-project")  # type: ignore[operator]
    response = client.post(
        "/v2/images", json={"name": "x"}, headers={"X-Project-Id": "", "X-User-Id": "", "X-Roles": ""}
    )
    assert response.status_code == 201
    assert response.json()["owner"] == "dev-project"


def test_tenant_header_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/v2/images",
        json={},
        headers={"X-Project-Id": "", "X-Tenant-Id": "tenant-t", "X-User-Id": "u", "X-Roles": "member"},
    )
    assert response.json()["owner"] == "tenant-t"


def test_discovery(client: TestClient) -> None:
    assert client.get("/v2/info/import").json() == {
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": ["glance-direct", "web-download", "copy-image"],
        }
    }
    stores = client.get("/v2/info/stores").json()["stores"]
    assert [s["id"] for s in stores] == ["fast", "cheap", "reliable"]
    assert stores[0]["default"] == "true"
    assert "default" not in stores[1]
    assert client.get("/v2/info/stores/detail").status_code == 403
    detail = client.get("/v2/info/stores/detail", headers=ADMIN).json()["stores"]
    assert detail[0]["type"] == "file"
    assert set(detail[0]["properties"]) == {"data_dir", "chunk_size", "thin_provisioning"}
    assert client.request("GET", "/v2/info/import", content=b"{}").status_code == 400


def test_import_methods_follow_configuration(make_client: object) -> None:
    client = make_client(GLIMPSE_ENABLED_IMPORT_METHODS="web-download")  # type: ignore[operator]
    assert client.get("/v2/info/import").json()["import-methods"]["value"] == ["web-download"]
    response = client.post("/v2/images", json={})
    assert response.headers["openstack-image-import-methods"] == "web-download"


def test_glance_download_is_neither_offered_nor_accepted_without_keystone(make_client: object) -> None:
    """No-auth mode has no token whose catalog could name the other region: the method is left out of
    the discovery and a request for it is a 400 that says why, even when enabled_import_methods lists it."""
    client = make_client(  # type: ignore[operator]
        GLIMPSE_ENABLED_IMPORT_METHODS="web-download,glance-download"
    )
    assert client.get("/v2/info/import").json()["import-methods"]["value"] == ["web-download"]
    image = new_image(client)
    assert client.post("/v2/images", json={}).headers["openstack-image-import-methods"] == "web-download"
    body = {
        "method": {
            "name": "glance-download",
            "glance_image_id": "36d4b546-64a2-4bb9-bdd0-ba676aa48f2c",
            "glance_region": "RegionTwo",
        }
    }
    response = client.post(f"/v2/images/{image['id']}/import", json=body, headers=OWNER)
    assert response.status_code == 400
    assert "auth_strategy = noauth" in response.json()["message"]
    assert client.get(f"/v2/images/{image['id']}", headers=OWNER).json()["status"] == "queued"
    assert client.get(f"/v2/images/{image['id']}/tasks", headers=OWNER).json()["tasks"] == []
    # Not enabled at all: the method is unknown, as in Glance.
    default = make_client()  # type: ignore[operator]
    other = new_image(default)
    response = default.post(f"/v2/images/{other['id']}/import", json=body, headers=OWNER)
    assert response.status_code == 400
    assert response.json()["message"] == "Unknown import method name 'glance-download'."


@pytest.mark.parametrize("name", sorted(schemas.SCHEMA_NAMES))
def test_schemas_are_served(client: TestClient, name: str) -> None:
    response = client.get(f"/v2/schemas/{name}")
    assert response.status_code == 200
    assert response.json()["name"]


def test_unknown_schema_and_route(client: TestClient) -> None:
    assert client.get("/v2/schemas/nope").status_code == 404
    missing = client.get("/v2/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "404 Not Found"
    wrong_method = client.put("/v2/images")
    assert wrong_method.status_code == 405


def test_error_body_follows_accept(client: TestClient) -> None:
    url = "/v2/images/00000000-0000-0000-0000-000000000000"
    as_json = client.get(url, headers={"Accept": "application/json"})
    assert as_json.json() == {
        "message": "No image found with ID 00000000-0000-0000-0000-000000000000",
        "code": "404 Not Found",
        "title": "Not Found",
    }
    as_html = client.get(url, headers={"Accept": "*/*"})
    assert as_html.headers["content-type"].startswith("text/html")
    assert "No image found" in as_html.text


def test_policy_file_overrides_defaults(make_client: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('get_image: "!"\nadd_image: "role:creator"\n')
    client = make_client(GLIMPSE_OSLO_POLICY__POLICY_FILE=str(policy))
    refused = client.post("/v2/images", json={"name": "x"})
    assert refused.status_code == 403
    assert "add_image" in refused.json()["message"]
    creator = {"X-Project-Id": "project-a", "X-User-Id": "u", "X-Roles": "creator"}
    image = client.post("/v2/images", json={"name": "x"}, headers=creator).json()
    # get_image "!" hides every image, even from its owner: invisible means 404, never 403.
    assert client.get(f"/v2/images/{image['id']}", headers=creator).status_code == 404
