"""Metadata definitions through the real clients: the ``glance md-*`` commands (python-glanceclient, which
validates every answer against the schemas it downloads from the server) and openstacksdk's image proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from openstack import exceptions as sdk_exceptions
from openstack.connection import Connection
from test_glance_cli import Glance, properties, table

if TYPE_CHECKING:
    from livesupport import Server

pytestmark = [pytest.mark.live, pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack")]


@pytest.fixture(scope="module")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Glance:
    return Glance(tmp_path_factory.mktemp("glance-metadefs-home"))


@pytest.fixture(scope="module")
def admin_conn(owner: Server, identity: dict[str, dict[str, str]]) -> Iterator[Connection]:
    session = ks_session.Session(auth=noauth.NoAuth(), additional_headers=identity["admin"])
    connection = Connection(session=session, image_endpoint_override=owner.url)
    yield connection
    connection.close()


def test_glance_md_commands(glance: Glance, admin: Server, api: httpx.Client) -> None:
    name = f"Compat::Cli{uuid.uuid4().hex[:8]}"
    created = properties(glance.run(admin, "md-namespace-create", name, "--visibility", "public").stdout)
    assert created["namespace"] == name
    assert created["owner"] == "compat-admin"
    glance.run(
        admin, "md-property-create", name, "--name", "speed", "--title", "Speed", "--type", "integer",
        "--schema", '{"type": "integer", "minimum": 1}',
    )  # fmt: skip
    glance.run(
        admin, "md-object-create", name, "--name", "Disk",
        "--schema", '{"properties": {"bus": {"title": "Bus", "type": "string"}}, "required": ["bus"]}',
    )  # fmt: skip
    glance.run(admin, "md-resource-type-associate", name, "--name", "OS::Glance::Image", "--prefix", "c_")
    glance.run(admin, "md-tag-create-multiple", name, "--names", "a,b", "--delim", ",")
    shown = properties(glance.run(admin, "md-namespace-show", name).stdout)
    assert shown["properties"] == '["speed"]'
    assert shown["objects"] == '["Disk"]'
    assert shown["tags"] == '["a", "b"]'
    assert shown["resource_type_associations"] == '["OS::Glance::Image"]'
    assert properties(glance.run(admin, "md-property-show", name, "speed").stdout)["minimum"] == "1"
    assert properties(glance.run(admin, "md-object-show", name, "Disk").stdout)["required"] == '["bus"]'
    assert name in [row["namespace"] for row in table(glance.run(admin, "md-namespace-list").stdout)]
    assert "OS::Nova::Flavor" in [
        row["name"] for row in table(glance.run(admin, "md-resource-type-list").stdout)
    ]
    # The member project (the owner server's default identity) reads a public namespace but cannot write.
    assert api.get(f"/v2/metadefs/namespaces/{name}/properties/speed").json()["title"] == "Speed"
    assert api.post(f"/v2/metadefs/namespaces/{name}/tags/c").status_code == 403
    glance.run(admin, "md-namespace-update", name, "--protected", "true")
    refused = glance.run(admin, "md-namespace-delete", name, expect_ok=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    glance.run(admin, "md-namespace-update", name, "--protected", "false")
    glance.run(admin, "md-namespace-delete", name)
    assert api.get(f"/v2/metadefs/namespaces/{name}").status_code == 404


def test_openstacksdk_metadefs(admin_conn: Connection, api: httpx.Client) -> None:
    image = admin_conn.image
    name = f"Compat::Sdk{uuid.uuid4().hex[:8]}"
    namespace = image.create_metadef_namespace(namespace=name, display_name="SDK", visibility="public")
    assert namespace.owner == "compat-admin"
    image.create_metadef_property(name, name="mode", title="Mode", type="string", enum=["a", "b"])
    image.create_metadef_object(name, name="Pair", properties={"x": {"title": "X", "type": "integer"}})
    image.create_metadef_resource_type_association(name, name="OS::Cinder::Volume", prefix="v_")
    image.add_tag_to_metadef_namespace(namespace, "fast")
    assert image.get_metadef_property("mode", name).enum == ["a", "b"]
    assert [o.name for o in image.metadef_objects(name)] == ["Pair"]
    assert [a.name for a in image.metadef_resource_type_associations(name)] == ["OS::Cinder::Volume"]
    assert image.get_metadef_namespace(name).tags == [{"name": "fast"}]
    assert name in [n.namespace for n in image.metadef_namespaces()]
    assert image.get_metadef_properties_schema().name == "properties"
    # A member may read it (public) but not delete it.
    assert api.delete(f"/v2/metadefs/namespaces/{name}").status_code == 403
    image.remove_tags_from_metadef_namespace(namespace)
    # (Checked over HTTP: the SDK's add_tag appends to a default list its resources share.)
    assert api.get(f"/v2/metadefs/namespaces/{name}/tags").json() == {"tags": []}
    image.delete_metadef_namespace(name)
    with pytest.raises(sdk_exceptions.NotFoundException):
        image.get_metadef_namespace(name)
