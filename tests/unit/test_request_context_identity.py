"""The identity fields are declared once (``glimpse.context.Identity``) and a request's context takes
every one of them from the caller's identity (``RequestContext.of``)."""

from __future__ import annotations

import json
from dataclasses import fields

from glimpse.api.auth import identity_from_headers
from glimpse.context import IDENTITY_FIELDS, Identity, RequestContext

HEADERS = {
    "x-user-id": "u1",
    "x-project-id": "p1",
    "x-roles": "Member, reader",
    "x-user-name": "alice",
    "x-project-name": "demo",
    "x-user-domain-id": "default",
    "x-project-domain-id": "default",
    "x-domain-id": "d1",
    "openstack-system-scope": "all",
    "x-service-user-id": "nova-user",
    "x-service-project-id": "service",
    "x-service-roles": "service",
}


def test_every_identity_field_is_a_context_field_with_the_same_type_and_default() -> None:
    context_fields = {f.name: f for f in fields(RequestContext)}
    for field in fields(Identity):
        assert field.name in context_fields, field.name
        assert context_fields[field.name].type == field.type, field.name
        assert context_fields[field.name].default == field.default, field.name
    assert tuple(f.name for f in fields(Identity)) == IDENTITY_FIELDS
    # The context adds only the request's own fields.
    assert set(context_fields) - set(IDENTITY_FIELDS) == {"is_admin", "request_id"}


def test_a_context_carries_every_field_the_headers_gave() -> None:
    identity = identity_from_headers(HEADERS.get)
    assert all(getattr(identity, name) not in (None, ()) for name in IDENTITY_FIELDS)
    ctx = RequestContext.of(identity, request_id="req-1")
    assert ctx.identity == identity
    assert ctx.request_id == "req-1"
    assert ctx.is_admin is False
    assert ctx.roles == ("member", "reader")
    assert ctx.service_roles == ("service",)
    assert ctx.system_scope == "all"
    carried = ctx.to_dict()
    assert json.loads(json.dumps(carried)) == carried
    assert carried["roles"] == ["member", "reader"]
    assert set(carried) == {f.name for f in fields(RequestContext)}
    assert RequestContext.from_dict(carried) == ctx


def test_a_context_kept_by_an_older_release_reads_with_defaults() -> None:
    ctx = RequestContext.from_dict({"user_id": "u1", "project_id": "p1", "roles": ["reader"], "extra": 1})
    assert (ctx.user_id, ctx.project_id, ctx.roles) == ("u1", "p1", ("reader",))
    assert ctx.service_roles == ()
    assert ctx.user_name is None
    assert ctx.is_admin is False
    assert ctx.request_id.startswith("req-")


def test_an_identity_without_headers_is_nobody() -> None:
    identity = identity_from_headers({}.get)
    assert identity == Identity(user_id=None, project_id=None)
    assert RequestContext.of(identity, request_id="req-2", is_admin=True).is_admin is True
