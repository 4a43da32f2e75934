"""Metadata definitions: namespaces and their objects, properties, tags and resource types, with
Glance's status codes, visibility, protection and policy (admin writes; readers see public and own)."""

from __future__ import annotations

from typing import Any

import pytest
from apitools import ADMIN, OTHER, OWNER
from starlette.testclient import TestClient

NS = "/v2/metadefs/namespaces"
READER = {"X-Project-Id": "project-a", "X-User-Id": "reader-a", "X-Roles": "reader"}


def namespace(client: TestClient, name: str, **attrs: Any) -> dict[str, Any]:
    response = client.post(NS, json={"namespace": name, **attrs}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_namespace_lifecycle_with_contents(client: TestClient) -> None:
    created = namespace(
        client,
        "OS::Test::Cpu",
        display_name="CPU",
        description="CPU options",
        visibility="public",
        protected=True,
        resource_type_associations=[{"name": "OS::Glance::Image", "prefix": "hw_"}],
        properties={"cores": {"title": "Cores", "type": "integer", "minimum": 1}},
        objects=[
            {
                "name": "Topology",
                "required": ["sockets"],
                "properties": {"sockets": {"title": "Sockets", "type": "integer"}},
            }
        ],
        tags=[{"name": "fast"}],
    )
    assert created["self"] == f"{NS}/OS::Test::Cpu"
    assert created["schema"] == "/v2/schemas/metadefs/namespace"
    assert created["owner"] == "project-admin"
    assert created["created_at"].endswith("Z")
    shown = client.get(f"{NS}/OS::Test::Cpu", headers=OTHER).json()
    assert shown["properties"]["cores"] == {
        "name": "cores",
        "title": "Cores",
        "type": "integer",
        "minimum": 1,
    }
    assert shown["objects"][0]["required"] == ["sockets"]
    assert shown["tags"] == [{"name": "fast"}]
    assert [a["name"] for a in shown["resource_type_associations"]] == ["OS::Glance::Image"]
    # Properties as an associated resource type sees them: with the association's prefix.
    prefixed = client.get(f"{NS}/OS::Test::Cpu", params={"resource_type": "OS::Glance::Image"}).json()
    assert list(prefixed["properties"]) == ["hw_cores"]
    assert list(prefixed["objects"][0]["properties"]) == ["hw_sockets"]
    assert prefixed["objects"][0]["required"] == ["hw_sockets"]
    by_prefix = client.get(
        f"{NS}/OS::Test::Cpu/properties/hw_cores", params={"resource_type": "OS::Glance::Image"}
    )
    assert by_prefix.status_code == 200
    assert by_prefix.json()["name"] == "hw_cores"

    # Protected: neither the namespace nor anything in it can be deleted, even by an admin.
    refused = client.delete(f"{NS}/OS::Test::Cpu", headers=ADMIN)
    assert refused.status_code == 403
    assert "protected" in refused.json()["message"]
    assert client.delete(f"{NS}/OS::Test::Cpu/properties/cores", headers=ADMIN).status_code == 403
    assert client.delete(f"{NS}/OS::Test::Cpu/tags", headers=ADMIN).status_code == 403

    updated = client.put(
        f"{NS}/OS::Test::Cpu",
        json={"namespace": "OS::Test::Cpu", "visibility": "private", "protected": False},
        headers=ADMIN,
    )
    assert updated.status_code == 200
    assert updated.json()["visibility"] == "private"
    assert updated.json()["protected"] is False
    assert "display_name" not in updated.json()  # PUT replaces: unset attributes are cleared
    assert updated.json()["owner"] == "project-admin"
    assert client.get(f"{NS}/OS::Test::Cpu", headers=OTHER).status_code == 404
    assert client.delete(f"{NS}/OS::Test::Cpu", headers=ADMIN).status_code == 204
    assert client.get(f"{NS}/OS::Test::Cpu", headers=ADMIN).status_code == 404


def test_visibility_and_policy(client: TestClient) -> None:
    namespace(client, "public-ns", visibility="public")
    namespace(client, "mine", owner="project-a")
    namespace(client, "theirs", owner="project-b")
    listed = [n["namespace"] for n in client.get(NS, headers=OWNER).json()["namespaces"]]
    assert sorted(listed) == ["mine", "public-ns"]
    assert sorted(n["namespace"] for n in client.get(NS, headers=ADMIN).json()["namespaces"]) == [
        "mine",
        "public-ns",
        "theirs",
    ]
    assert client.get(f"{NS}/theirs", headers=OWNER).status_code == 404
    # Paging from a namespace one cannot see is refused like paging from one that does not exist.
    assert client.get(NS, params={"marker": "theirs"}, headers=OWNER).status_code == 400
    assert client.get(NS, params={"marker": "theirs"}, headers=ADMIN).status_code == 200
    assert client.get(f"{NS}/mine", headers=READER).status_code == 200
    # Writes are for metadef_admin (role admin): a member may not create or change, even their own.
    assert client.post(NS, json={"namespace": "nope"}, headers=OWNER).status_code == 403
    assert client.put(f"{NS}/mine", json={"namespace": "mine"}, headers=OWNER).status_code == 403
    assert client.post(f"{NS}/mine/tags/t", headers=OWNER).status_code == 403
    # ... and what they cannot see is 404, not 403.
    assert client.post(f"{NS}/theirs/tags/t", headers=OWNER).status_code == 404
    assert client.get(f"{NS}/theirs/objects", headers=OWNER).status_code == 404


def test_list_filters_sorting_and_paging(client: TestClient) -> None:
    for name in ("b-ns", "a-ns", "c-ns"):
        namespace(client, name, visibility="public")
    client.post(f"{NS}/a-ns/resource_types", json={"name": "OS::Nova::Flavor"}, headers=ADMIN)
    namespace(client, "private-ns")
    by_name = client.get(
        NS, params={"sort_key": "namespace", "sort_dir": "asc", "limit": 2}, headers=ADMIN
    ).json()
    assert [n["namespace"] for n in by_name["namespaces"]] == ["a-ns", "b-ns"]
    assert "marker=b-ns" in by_name["next"]
    rest = client.get(by_name["next"], headers=ADMIN).json()
    assert [n["namespace"] for n in rest["namespaces"]] == ["c-ns", "private-ns"]
    public = client.get(NS, params={"visibility": "public"}, headers=ADMIN).json()["namespaces"]
    assert sorted(n["namespace"] for n in public) == ["a-ns", "b-ns", "c-ns"]
    flavors = client.get(NS, params={"resource_types": "OS::Nova::Flavor,OS::Nope"}, headers=ADMIN).json()
    assert [n["namespace"] for n in flavors["namespaces"]] == ["a-ns"]
    assert flavors["namespaces"][0]["resource_type_associations"][0]["name"] == "OS::Nova::Flavor"
    for bad in ({"sort_key": "owner"}, {"sort_dir": "up"}, {"limit": "-1"}, {"marker": "missing"}):
        response = client.get(NS, params=bad, headers=ADMIN)
        assert response.status_code == 400, bad
        assert response.json()["message"]


def test_bad_namespace_documents(client: TestClient) -> None:
    namespace(client, "dup")
    assert client.post(NS, json={"namespace": "dup"}, headers=ADMIN).status_code == 409
    cases: list[tuple[object, int]] = [
        ({}, 400),
        ({"namespace": ""}, 400),
        ({"namespace": "x" * 81}, 400),
        ({"namespace": "a/b"}, 400),
        ({"namespace": "v", "visibility": "shared"}, 400),
        ({"namespace": "v", "protected": "yes"}, 400),
        ({"namespace": "v", "colour": "red"}, 400),
        ({"namespace": "v", "description": "nul \u0000 here"}, 400),
        ({"namespace": "v", "created_at": "2020-01-01T00:00:00Z"}, 403),
        ({"namespace": "v", "properties": {"p": {"type": "string"}}}, 400),
        ({"namespace": "v", "properties": {"p": {"title": "P", "type": "text"}}}, 400),
        ({"namespace": "v", "objects": [{"name": "o", "required": ["q"]}]}, 400),
        ([], 400),
    ]
    for body, status in cases:
        response = client.post(NS, json=body, headers=ADMIN)
        assert response.status_code == status, (body, response.text)
        assert response.json()["message"]
    assert client.get(f"{NS}/v", headers=ADMIN).status_code == 404  # nothing half-created
    # Renaming onto another namespace's name is a conflict.
    namespace(client, "other")
    assert client.put(f"{NS}/other", json={"namespace": "dup"}, headers=ADMIN).status_code == 409


def test_objects(client: TestClient) -> None:
    namespace(client, "objs")
    base = f"{NS}/objs/objects"
    obj = {"name": "Disk", "description": "d", "properties": {"bus": {"title": "Bus", "type": "string"}}}
    created = client.post(base, json=obj, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["self"] == f"{base}/Disk"
    assert created.json()["schema"] == "/v2/schemas/metadefs/object"
    assert client.post(base, json=obj, headers=ADMIN).status_code == 409
    listing = client.get(base, headers=ADMIN).json()
    assert [o["name"] for o in listing["objects"]] == ["Disk"]
    assert listing["schema"] == "/v2/schemas/metadefs/objects"
    renamed = client.put(
        f"{base}/Disk",
        json={"name": "Volume", "required": ["bus"], "properties": obj["properties"]},
        headers=ADMIN,
    )
    assert renamed.status_code == 200
    assert renamed.json()["required"] == ["bus"]
    assert "description" not in renamed.json()
    assert client.get(f"{base}/Disk", headers=ADMIN).status_code == 404
    assert client.get(f"{base}/Volume", headers=ADMIN).json()["properties"]["bus"]["title"] == "Bus"
    assert client.put(f"{base}/Nope", json={"name": "Nope"}, headers=ADMIN).status_code == 404
    assert client.delete(f"{base}/Volume", headers=ADMIN).status_code == 204
    assert client.delete(f"{base}/Volume", headers=ADMIN).status_code == 404
    client.post(base, json={"name": "A"}, headers=ADMIN)
    assert client.delete(base, headers=ADMIN).status_code == 204
    assert client.get(base, headers=ADMIN).json()["objects"] == []


def test_properties(client: TestClient) -> None:
    namespace(client, "props")
    base = f"{NS}/props/properties"
    prop = {"name": "hypervisor", "title": "Hypervisor", "type": "string", "enum": ["kvm", "qemu"]}
    created = client.post(base, json=prop, headers=ADMIN)
    assert created.status_code == 201
    assert created.json() == prop
    assert client.post(base, json=prop, headers=ADMIN).status_code == 409
    assert client.get(f"{base}/hypervisor", headers=ADMIN).json() == prop
    listing = client.get(base, headers=ADMIN).json()
    assert listing["properties"] == {"hypervisor": prop}
    assert listing["schema"] == "/v2/schemas/metadefs/properties"
    updated = client.put(f"{base}/hypervisor", json={**prop, "title": "HV"}, headers=ADMIN)
    assert updated.status_code == 200
    assert updated.json()["title"] == "HV"
    bad_properties: list[dict[str, object]] = [
        {"name": "x", "type": "string"},
        {"name": "x", "title": "X", "type": "string", "minimum": "1"},
        {"name": "x", "title": "X", "type": "string", "pattern": "("},
        {"title": "X", "type": "string"},
        {"name": "x", "title": "X", "type": "string", "size": 1},
    ]
    for bad in bad_properties:
        response = client.post(base, json=bad, headers=ADMIN)
        assert response.status_code == 400, bad
    assert client.delete(f"{base}/hypervisor", headers=ADMIN).status_code == 204
    assert client.get(f"{base}/hypervisor", headers=ADMIN).status_code == 404


def test_tags(client: TestClient) -> None:
    namespace(client, "tagged")
    base = f"{NS}/tagged/tags"
    created = client.post(base, json={"tags": [{"name": "a"}, {"name": "b"}]}, headers=ADMIN)
    assert created.status_code == 201
    assert created.json() == {"tags": [{"name": "a"}, {"name": "b"}]}
    # Without X-Openstack-Append the list replaces the tags; with it, they are added.
    client.post(base, json={"tags": [{"name": "c"}]}, headers=ADMIN)
    assert [t["name"] for t in client.get(base, headers=ADMIN).json()["tags"]] == ["c"]
    appended = client.post(
        base, json={"tags": [{"name": "d"}]}, headers={**ADMIN, "X-Openstack-Append": "True"}
    )
    assert appended.status_code == 201
    assert [t["name"] for t in client.get(base, headers=ADMIN).json()["tags"]] == ["c", "d"]
    duplicate = client.post(
        base, json={"tags": [{"name": "c"}]}, headers={**ADMIN, "X-Openstack-Append": "true"}
    )
    assert duplicate.status_code == 409
    assert [t["name"] for t in client.get(base, headers=ADMIN).json()["tags"]] == ["c", "d"]
    assert client.post(base, json={"tags": [{"name": "e"}, {"name": "e"}]}, headers=ADMIN).status_code == 400
    assert client.post(base, json={"tags": "e"}, headers=ADMIN).status_code == 400

    one = client.post(f"{base}/e", headers=ADMIN)
    assert one.status_code == 201
    assert one.json()["name"] == "e"
    assert client.post(f"{base}/e", headers=ADMIN).status_code == 409
    assert client.get(f"{base}/e", headers=ADMIN).json()["name"] == "e"
    renamed = client.put(f"{base}/e", json={"name": "f"}, headers=ADMIN)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "f"
    assert client.put(f"{base}/f", json={"name": "c"}, headers=ADMIN).status_code == 409
    assert client.delete(f"{base}/f", headers=ADMIN).status_code == 204
    assert client.get(f"{base}/f", headers=ADMIN).status_code == 404
    assert client.delete(base, headers=ADMIN).status_code == 204
    assert client.get(base, headers=ADMIN).json() == {"tags": []}


def test_resource_types_and_associations(client: TestClient) -> None:
    types = client.get("/v2/metadefs/resource_types", headers=READER).json()["resource_types"]
    names = [t["name"] for t in types]
    assert "OS::Glance::Image" in names
    assert "OS::Nova::Flavor" in names
    namespace(client, "assoc")
    base = f"{NS}/assoc/resource_types"
    created = client.post(base, json={"name": "OS::Cinder::Volume", "prefix": "vol_"}, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["prefix"] == "vol_"
    assert client.post(base, json={"name": "OS::Cinder::Volume"}, headers=ADMIN).status_code == 409
    # A resource type not known yet is created by its first association.
    assert client.post(base, json={"name": "OS::Custom::Thing"}, headers=ADMIN).status_code == 201
    assert "OS::Custom::Thing" in [
        t["name"] for t in client.get("/v2/metadefs/resource_types").json()["resource_types"]
    ]
    listed = client.get(base, headers=ADMIN).json()["resource_type_associations"]
    assert [a["name"] for a in listed] == ["OS::Cinder::Volume", "OS::Custom::Thing"]
    assert client.post(base, json={"prefix": "x"}, headers=ADMIN).status_code == 400
    assert client.delete(f"{base}/OS::Cinder::Volume", headers=ADMIN).status_code == 204
    assert client.delete(f"{base}/OS::Cinder::Volume", headers=ADMIN).status_code == 404
    assert [a["name"] for a in client.get(base, headers=ADMIN).json()["resource_type_associations"]] == [
        "OS::Custom::Thing"
    ]
    assert client.delete(f"{NS}/assoc", headers=ADMIN).status_code == 204


@pytest.mark.parametrize(
    "name", ["namespace", "namespaces", "object", "objects", "property", "properties", "tag", "tags",
             "resource_type", "resource_types"]
)  # fmt: skip
def test_metadefs_schemas_name_themselves(client: TestClient, name: str) -> None:
    expected = {"resource_type": "resource_type_association", "resource_types": "resource_type_associations"}
    body = client.get(f"/v2/schemas/metadefs/{name}", headers=READER).json()
    assert body["name"] == expected.get(name, name)
