"""Request-scoped providers: the runtime, the caller's context (see ``glimpse.api.auth``), JSON bodies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from fastapi import Request

from glimpse.context import Identity, RequestContext
from glimpse.errors import InvalidInput, TooLarge, Unauthenticated, UnsupportedMediaType
from glimpse.runtime import Runtime

MAX_JSON_BODY = 1024 * 1024


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def context(request: Request) -> RequestContext:
    """The caller's context: the identity :func:`glimpse.api.auth.authenticate` found, and the request id.

    ``is_admin`` is the policy's ``context_is_admin`` rule, so operators can redefine who is an admin.
    """
    identity: Identity | None = getattr(request.state, "identity", None)
    if identity is None:  # a route outside the authenticated routers: never run it as anyone
        raise Unauthenticated("The request you have made requires authentication.")
    ctx = RequestContext.of(identity, request_id=request.scope["state"]["request_id"])
    return replace(ctx, is_admin=runtime(request).policy.is_admin(ctx))


async def json_body(
    request: Request,
    *,
    media_types: tuple[str, ...] = ("application/json",),
    required: bool = True,
    raw: bytes | None = None,
) -> Any:
    """Parse the body (``raw`` when it was read already) as JSON, with messages that say exactly what
    was wrong."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await limited_body(request) if raw is None else raw
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


async def limited_body(request: Request) -> bytes:
    """The whole body of a request that carries a JSON document: 413 beyond 1 MiB."""
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
