"""/v2/images/{id}/members: sharing an image with other projects."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse, empty
from glimpse.api.v2.openapi import MEMBER_BODY, MEMBER_STATUS_BODY
from glimpse.api.v2.views import member_view
from glimpse.errors import InvalidInput
from glimpse.runtime import Runtime
from glimpse.services.images import ImageService
from glimpse.services.members import MemberService

router = APIRouter(prefix="/v2/images/{image_id}/members", tags=["members"])


def _members(rt: Runtime, session: object) -> MemberService:
    return MemberService(ImageService(session, rt.settings, rt.policy))  # type: ignore[arg-type]


async def _field(request: Request, name: str) -> object:
    body = await deps.json_body(request)
    if not isinstance(body, dict) or name not in body:
        raise InvalidInput(f"The request body must be a JSON object with a '{name}' member.")
    return body[name]


@router.post("", openapi_extra=MEMBER_BODY)
async def add_member(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    member_id = await _field(request, "member")
    member = await rt.run(lambda s: _members(rt, s).add(ctx, image_id, member_id))
    return JSONResponse(member_view(member))


@router.get("")
async def list_members(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    members = await rt.read(lambda s: _members(rt, s).list_members(ctx, image_id))
    return JSONResponse({"members": [member_view(m) for m in members], "schema": "/v2/schemas/members"})


@router.get("/{member_id}")
async def show_member(request: Request, image_id: str, member_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    member = await rt.read(lambda s: _members(rt, s).get(ctx, image_id, member_id))
    return JSONResponse(member_view(member))


@router.put("/{member_id}", openapi_extra=MEMBER_STATUS_BODY)
async def update_member(request: Request, image_id: str, member_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    status = await _field(request, "status")
    member = await rt.run(lambda s: _members(rt, s).set_status(ctx, image_id, member_id, status))
    return JSONResponse(member_view(member))


@router.delete("/{member_id}", status_code=204)
async def delete_member(request: Request, image_id: str, member_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await rt.run(lambda s: _members(rt, s).remove(ctx, image_id, member_id))
    return empty()
