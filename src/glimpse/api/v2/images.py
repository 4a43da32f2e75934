"""/v2/images: create, list, show, JSON-patch update, delete, deactivate/reactivate, tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps, idempotency
from glimpse.api.responses import JSONResponse, empty
from glimpse.api.v2.image_params import parse_list_query
from glimpse.api.v2.openapi import IMAGE_BODY, LIST_PARAMETERS, PATCH_BODY
from glimpse.api.v2.views import image_view
from glimpse.errors import InvalidInput, UnsupportedMediaType
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService, PatchOp, new_owners, owner_of
from glimpse.services.quotas import limits_for

router = APIRouter(prefix="/v2/images", tags=["images"])

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"


def _absolute(request: Request, path: str) -> str:
    settings = deps.runtime(request).settings
    base = settings.public_endpoint or str(request.base_url).rstrip("/")
    return f"{base}{path}"


@router.post("", status_code=201, openapi_extra=IMAGE_BODY)
async def create_image(request: Request) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    raw = await deps.limited_body(request)

    async def create() -> Response:
        body = await deps.json_body(request, raw=raw)
        if not isinstance(body, dict):
            raise InvalidInput("The request body must be a JSON object of image attributes.")
        limits = await limits_for(rt, owner_of(ctx, body))
        image = await rt.run(
            lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).create(ctx, body, limits)
        )
        headers = {
            "Location": _absolute(request, f"/v2/images/{image.id}"),
            "OpenStack-image-store-ids": ",".join(rt.stores.ids()),
        }
        if rt.settings.offered_import_methods:
            headers["OpenStack-image-import-methods"] = ",".join(rt.settings.offered_import_methods)
        return JSONResponse(image_view(image, rt.settings), status_code=201, headers=headers)

    return await idempotency.once(request, ctx, raw, create)


@router.get("", openapi_extra=LIST_PARAMETERS)
async def list_images(request: Request) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    query = parse_list_query(request.query_params, rt.settings)
    images = await rt.read(
        lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).list_images(ctx, query)
    )
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    first = "/v2/images" + (f"?{urlencode(params)}" if params else "")
    body: dict[str, Any] = {
        "images": [image_view(i, rt.settings) for i in images],
        "first": first,
        "schema": "/v2/schemas/images",
    }
    if images and len(images) == query.limit:
        body["next"] = "/v2/images?" + urlencode([*params, ("marker", images[-1].id)])
    return JSONResponse(body)


@router.get("/{image_id}")
async def show_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    image = await rt.read(lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).get(ctx, image_id))
    return JSONResponse(image_view(image, rt.settings))


def _patch_ops(body: object, media_type: str) -> list[PatchOp]:
    if not isinstance(body, list):
        raise InvalidInput("A JSON-patch body must be a list of operations.")
    ops: list[PatchOp] = []
    for raw in body:
        if not isinstance(raw, dict):
            raise InvalidInput("Each JSON-patch operation must be an object.")
        if media_type == PATCH_V21:
            op, path = raw.get("op"), raw.get("path")
        else:
            names = [k for k in ("add", "replace", "remove") if k in raw]
            if len(names) != 1:
                raise InvalidInput("Each operation needs exactly one of 'add', 'replace' or 'remove'.")
            op, path = names[0], raw[names[0]]
        if not isinstance(op, str) or not isinstance(path, str):
            raise InvalidInput("Each JSON-patch operation needs string 'op' and 'path' members.")
        ops.append(PatchOp(op=op, path=path, value=raw.get("value"), has_value="value" in raw))
    return ops


@router.patch("/{image_id}", openapi_extra=PATCH_BODY)
async def update_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await deps.json_body(request, media_types=(PATCH_V21, PATCH_V20))
    if media_type not in (PATCH_V21, PATCH_V20):
        raise UnsupportedMediaType(f"Content-Type must be {PATCH_V21} (or {PATCH_V20}).")
    ops = _patch_ops(body, media_type)
    # An image given to another project counts against that project's quotas (checked in the
    # update's unit of work; the limits are read before it, Keystone's off the event loop).
    owner_limits = {owner: await limits_for(rt, owner) for owner in new_owners(ops)}
    image = await rt.run(
        lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).update(ctx, image_id, ops, owner_limits)
    )
    return JSONResponse(image_view(image, rt.settings))


@router.delete("/{image_id}", status_code=204)
async def delete_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await ImageDataService(rt).delete_image(ctx, image_id)
    return empty()


@router.post("/{image_id}/actions/deactivate", status_code=204)
async def deactivate_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await rt.run(lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).deactivate(ctx, image_id))
    return empty()


@router.post("/{image_id}/actions/reactivate", status_code=204)
async def reactivate_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await rt.run(lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).reactivate(ctx, image_id))
    return empty()


@router.put("/{image_id}/tags/{tag}", status_code=204)
async def add_tag(request: Request, image_id: str, tag: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await rt.run(lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).add_tag(ctx, image_id, tag))
    return empty()


@router.delete("/{image_id}/tags/{tag}", status_code=204)
async def remove_tag(request: Request, image_id: str, tag: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await rt.run(lambda s: ImageService(s, rt.settings, rt.policy, rt.clock).remove_tag(ctx, image_id, tag))
    return empty()
