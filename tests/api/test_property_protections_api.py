"""Property protections from Glance-format files (tests/data/property-protections/) through the API.

The ``roles`` file lets members touch ``x_owner_*``, keeps everything else (its ``[.*]`` section) to
administrators, and has sections that refuse one operation each. The ``policies`` file names a
rule of the policy file beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apitools import ADMIN, OWNER, PATCH, new_image
from starlette.testclient import TestClient

FILES = Path(__file__).resolve().parents[1] / "data" / "property-protections"
READER = {**OWNER, "X-Roles": "reader"}


def patch(client: TestClient, image_id: str, ops: list[dict[str, Any]], headers: dict[str, str]) -> Any:
    return client.patch(f"/v2/images/{image_id}", json=ops, headers={**headers, **PATCH})


def shown(client: TestClient, image_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"/v2/images/{image_id}", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def roles(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    return make_client(migrated_database_url, GLIMPSE_PROPERTY_PROTECTION_FILE=str(FILES / "roles.conf"))


@pytest.fixture
def policies(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    return make_client(
        migrated_database_url,
        GLIMPSE_PROPERTY_PROTECTION_FILE=str(FILES / "policies.conf"),
        GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT="policies",
        GLIMPSE_OSLO_POLICY__POLICY_FILE=str(FILES / "policies.yaml"),
    )


def test_create_needs_the_create_permission(roles: TestClient) -> None:
    image = new_image(roles, x_owner_colour="blue", x_anyone_note="hi", x_mixed_case="yes")
    assert (image["x_owner_colour"], image["x_anyone_note"], image["x_mixed_case"]) == ("blue", "hi", "yes")
    body = {"name": "img", "disk_format": "raw", "container_format": "bare", "os_distro": "cirros"}
    refused = roles.post("/v2/images", json=body, headers=OWNER)
    assert refused.status_code == 403, refused.text
    assert "Property 'os_distro' is protected: your roles may not create it" in refused.json()["message"]
    # Nobody may create x_nobody_*, administrators included; no image was left behind.
    refused = roles.post("/v2/images", json={"x_nobody_thing": "1"}, headers=ADMIN)
    assert refused.status_code == 403, refused.text
    listed = roles.get("/v2/images", headers=ADMIN).json()["images"]
    assert [i["id"] for i in listed] == [image["id"]]


def test_a_property_the_caller_may_not_read_is_hidden(roles: TestClient) -> None:
    owner = OWNER["X-Project-Id"]
    image = new_image(roles, ADMIN, owner=owner, os_distro="cirros", x_owner_colour="blue")
    assert image["os_distro"] == "cirros"  # the admin who created it reads it
    as_owner = shown(roles, image["id"], OWNER)
    assert ("os_distro" in as_owner, as_owner["x_owner_colour"]) == (False, "blue")
    # A reader of the owner project may see the image but none of these properties.
    as_reader = shown(roles, image["id"], READER)
    assert {"os_distro", "x_owner_colour"}.isdisjoint(as_reader)
    listed = roles.get("/v2/images", headers=OWNER).json()["images"]
    assert [("os_distro" in i, i.get("x_owner_colour")) for i in listed] == [(False, "blue")]
    assert shown(roles, image["id"], ADMIN)["os_distro"] == "cirros"


def test_patch_of_a_hidden_property_is_a_conflict_and_keeps_its_value(roles: TestClient) -> None:
    image = new_image(roles, ADMIN, owner=OWNER["X-Project-Id"], os_distro="cirros")
    for op in ({"op": "replace", "path": "/os_distro", "value": "x"}, {"op": "remove", "path": "/os_distro"}):
        response = patch(roles, image["id"], [op], OWNER)
        assert response.status_code == 409, response.text
        assert "Property os_distro does not exist." in response.json()["message"]
    # Adding it is creating it, which only administrators may do here.
    added = patch(roles, image["id"], [{"op": "add", "path": "/os_distro", "value": "x"}], OWNER)
    assert added.status_code == 403, added.text
    # An update of what the owner may change leaves the hidden value as it was.
    updated = patch(roles, image["id"], [{"op": "add", "path": "/x_owner_size", "value": "L"}], OWNER)
    assert updated.status_code == 200, updated.text
    assert ("os_distro" in updated.json(), updated.json()["x_owner_size"]) == (False, "L")
    assert shown(roles, image["id"], ADMIN)["os_distro"] == "cirros"


def test_update_and_delete_each_need_their_permission(roles: TestClient) -> None:
    image = new_image(roles, x_fixed="1", x_kept="2", x_owner_colour="blue")
    image_id = image["id"]
    replace_fixed = [{"op": "replace", "path": "/x_fixed", "value": "9"}]
    response = patch(roles, image_id, replace_fixed, OWNER)
    assert response.status_code == 403, response.text
    assert "may not update it" in response.json()["message"]
    # 'add' of a property the caller reads is an update too.
    assert patch(roles, image_id, [{"op": "add", "path": "/x_fixed", "value": "9"}], ADMIN).status_code == 403
    response = patch(roles, image_id, [{"op": "remove", "path": "/x_kept"}], ADMIN)
    assert response.status_code == 403, response.text
    assert "may not delete it" in response.json()["message"]
    # A refused operation changes nothing, not even the allowed ones of the same PATCH.
    both = [{"op": "replace", "path": "/x_owner_colour", "value": "red"}, *replace_fixed]
    assert patch(roles, image_id, both, OWNER).status_code == 403
    after = shown(roles, image_id, OWNER)
    assert (after["x_fixed"], after["x_kept"], after["x_owner_colour"]) == ("1", "2", "blue")
    assert patch(roles, image_id, [{"op": "remove", "path": "/x_fixed"}], ADMIN).status_code == 200
    assert "x_fixed" not in shown(roles, image_id, OWNER)


def test_base_attributes_and_service_properties_are_not_protected(roles: TestClient) -> None:
    image = new_image(roles, min_disk=1)
    ops = [{"op": "replace", "path": "/name", "value": "renamed"}]
    assert patch(roles, image["id"], ops, OWNER).json()["name"] == "renamed"
    # The reserved os_glance_* names stay refused to everyone, as without protections.
    reserved = patch(roles, image["id"], [{"op": "add", "path": "/os_glance_x", "value": "1"}], ADMIN)
    assert reserved.status_code == 403
    assert "Attribute 'os_glance_x' is reserved." in reserved.json()["message"]


def test_policies_format_checks_the_named_rule(policies: TestClient) -> None:
    refused = policies.post("/v2/images", json={"billing_code": "42"}, headers=OWNER)
    assert refused.status_code == 403, refused.text
    billing = {**OWNER, "X-Roles": "member,reader,billing"}
    image = new_image(policies, billing, billing_code="42", os_distro="cirros")
    assert shown(policies, image["id"], OWNER)["billing_code"] == "42"  # read = @
    ops = [{"op": "replace", "path": "/billing_code", "value": "43"}]
    assert patch(policies, image["id"], ops, OWNER).status_code == 403
    assert patch(policies, image["id"], ops, billing).json()["billing_code"] == "43"
    removed = patch(policies, image["id"], [{"op": "remove", "path": "/billing_code"}], ADMIN)
    assert removed.status_code == 403, removed.text  # delete = !


def test_an_import_task_may_not_create_a_protected_property(
    make_client: Callable[..., TestClient], migrated_database_url: str
) -> None:
    api = make_client(
        migrated_database_url,
        GLIMPSE_PROPERTY_PROTECTION_FILE=str(FILES / "roles.conf"),
        GLIMPSE_TASK__EMBEDDED_RUNNER="false",
    )
    body = {
        "type": "import",
        "input": {
            "import_from": "https://images.example.com/cirros.qcow2",
            "import_from_format": "qcow2",
            "image_properties": {
                "name": "cirros",
                "disk_format": "qcow2",
                "container_format": "bare",
                "x_nobody_flag": "1",
            },
        },
    }
    response = api.post("/v2/tasks", json=body, headers=ADMIN)
    assert response.status_code == 403, response.text
    assert "x_nobody_flag" in response.json()["message"]
    assert api.get("/v2/images", headers=ADMIN).json()["images"] == []
