"""Request-scoped providers: the runtime, the caller's context, and JSON bodies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from fastapi import Request

from glimpse.context import RequestContext
from glimpse.domain.images import MAX_STRING, check_text
from glimpse.errors import InvalidInput, TooLarge, UnsupportedMediaType
from glimpse.runtime import Runtime

MAX_JSON_BODY = 1024 * 1024


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _header(request: Request, *names: str) -> str | None:
    for name in names:
        value = request.headers.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def _id_header(request: Request, *names: str) -> str | None:
    """A project or user id from the first of ``names`` sent; ids are kept in 255-character columns."""
    for name in names:
        value = (request.headers.get(name) or "").strip()
        if value:
            if len(value) > MAX_STRING:
                raise InvalidInput(f"Header {name} is longer than {MAX_STRING} characters.")
            return check_text(f"Header {name}", value)
    return None


def context(request: Request) -> RequestContext:
    """The caller's identity in no-auth mode: the headers keystonemiddleware would set, or the defaults."""
    rt = runtime(request)
    settings = rt.settings
    project = _id_header(request, "x-project-id", "x-tenant-id")
    user = _id_header(request, "x-user-id")
    roles_header = _header(request, "x-roles")
    if project is None and user is None and roles_header is None:
        project, user = settings.noauth_default_project, settings.noauth_default_user
        roles: tuple[str, ...] = settings.noauth_default_roles
    else:
        roles = tuple(r.strip().lower() for r in (roles_header or "").split(",") if r.strip())
    ctx = RequestContext(
        user_id=user, project_id=project, roles=roles, request_id=request.scope["state"]["request_id"]
    )
    # Who is an administrator is the policy's ``context_is_admin`` rule, so operators can redefine it.
    return replace(ctx, is_admin=rt.policy.is_admin(ctx))


async def json_body(
    request: Request, *, media_types: tuple[str, ...] = ("application/json",), required: bool = True
) -> Any:
    """Parse the body as JSON, with messages that say exactly what was wrong."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _limited_body(request)
    if not body:
        if required:
            raise InvalidInput("Body expected in request: send a JSON document.")
        return None
    if content_type and content_type not in media_types:
        raise UnsupportedMediaType(
            f"Content-Type '{content_type}' is not supported here; use {' or '.join(media_types)}."
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON in request body: {exc}.") from None


async def _limited_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise TooLarge(f"Request body is larger than {MAX_JSON_BODY} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise TooLarge(f"Request body is larger than {MAX_JSON_BODY} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def reject_body(request: Request) -> None:
    """Some GETs take no body; sending one is a client error, as in Glance."""
    if await _limited_body(request):
        raise InvalidInput("A body is not expected with this request.")
