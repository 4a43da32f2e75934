"""Discovery (/v2/info/import, /v2/info/stores[/detail], /v2/info/usage) and DELETE /v2/stores/..."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse, empty
from glimpse.domain.policy import PolicyRule
from glimpse.domain.quotas import Resource
from glimpse.services.image_data import ImageDataService
from glimpse.services.quotas import usage_of, usage_report

router = APIRouter(prefix="/v2", tags=["discovery"])


@router.get("/info/import")
async def import_info(request: Request) -> Response:
    methods = list(deps.runtime(request).settings.offered_import_methods)
    return JSONResponse(
        {"import-methods": {"description": "Import methods available.", "type": "array", "value": methods}}
    )


def _store_entry(store_id: str, description: str, default: bool) -> dict[str, str]:
    entry = {"id": store_id}
    if description:
        entry["description"] = description
    if default:
        entry["default"] = "true"
    return entry


@router.get("/info/stores")
async def stores_info(request: Request) -> Response:
    stores = deps.runtime(request).stores
    return JSONResponse(
        {"stores": [_store_entry(s.id, s.description, s.id == stores.default.id) for s in stores.all()]}
    )


@router.get("/info/stores/detail")
async def stores_info_detail(request: Request) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    rt.policy.enforce(PolicyRule.STORES_INFO_DETAIL, ctx, {})
    entries = []
    for store in rt.stores.all():
        entry: dict[str, object] = dict(
            _store_entry(store.id, store.description, store.id == rt.stores.default.id)
        )
        entry.update({"type": store.type, "properties": dict(store.describe()), "weight": store.weight})
        entries.append(entry)
    return JSONResponse({"stores": entries})


@router.get("/info/usage")
async def usage_info(request: Request) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    if rt.settings.use_keystone_limits:
        return JSONResponse({"usage": await usage_report(rt, ctx.project_id)})
    used = await usage_of(rt, ctx.project_id, Resource.IMAGE_SIZE_TOTAL)
    quota = rt.settings.user_storage_quota
    return JSONResponse({"usage": {"image_size_total": {"limit": quota if quota else -1, "usage": used}}})


@router.delete("/stores/{store_id}/{image_id}", status_code=204)
async def delete_from_store(request: Request, store_id: str, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    await ImageDataService(rt).delete_from_store(ctx, image_id, store_id)
    return empty()
