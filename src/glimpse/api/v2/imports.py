"""Interoperable import: PUT /v2/images/{id}/stage and POST /v2/images/{id}/import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps, idempotency
from glimpse.api.responses import empty
from glimpse.api.v2.image_data import content_length, expected_digests
from glimpse.api.v2.openapi import IDEMPOTENCY_KEY
from glimpse.errors import InvalidInput
from glimpse.services.imports import ImportService

router = APIRouter(prefix="/v2/images", tags=["import"])

_STRING: dict[str, Any] = {"type": "string"}
#: The request headers that change what a stage or an import does: part of an Idempotency-Key's
#: request fingerprint, beside the method, path and body.
STAGE_MEANING: Final = ("x-openstack-image-size",)
IMPORT_MEANING: Final = ("x-image-meta-store",)


STAGE_BODY: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-openstack-image-size",
            "in": "header",
            "required": False,
            "schema": _STRING,
            "description": "The number of bytes sent; a body of another size is refused (400).",
        },
        IDEMPOTENCY_KEY,
    ],
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {"204": {"description": "The data is staged; import it with method glance-direct."}},
}

IMPORT_BODY: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-image-meta-store",
            "in": "header",
            "required": False,
            "schema": _STRING,
            "description": "The one store to import to (instead of 'stores' or 'all_stores').",
        },
        IDEMPOTENCY_KEY,
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["method"],
                    "properties": {
                        "method": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {
                                    "type": "string",
                                    "enum": ["glance-direct", "web-download", "copy-image"],
                                },
                                "uri": {"type": "string"},
                            },
                        },
                        "stores": {"type": "array", "items": _STRING},
                        "all_stores": {"type": "boolean"},
                        "all_stores_must_succeed": {"type": "boolean"},
                        "validation_data": {
                            "type": "object",
                            "description": "The digest the imported data must have.",
                            "required": ["os_hash_algo", "os_hash_value"],
                            "properties": {"os_hash_algo": _STRING, "os_hash_value": _STRING},
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "202": {
            "description": "The import task was created (no task when a copy had nothing left to do).",
            "headers": {
                "Location": {
                    "description": "The task: /v2/images/{image_id}/tasks/{task_id}.",
                    "required": False,
                    "schema": _STRING,
                },
                "OpenStack-image-import-task-id": {
                    "description": "The id of the import task.",
                    "required": False,
                    "schema": _STRING,
                },
            },
        }
    },
}


def _declared_size(request: Request) -> int | None:
    raw = request.headers.get("x-openstack-image-size")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise InvalidInput(f"Invalid x-openstack-image-size {raw!r}: give the number of bytes sent.")
    return int(raw)


@router.put("/{image_id}/stage", status_code=204, response_class=Response, openapi_extra=STAGE_BODY)
async def stage_image_data(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    raw_type = request.headers.get("content-type")
    media_type = raw_type.split(";")[0].strip().lower() if raw_type is not None else None
    service = ImportService(rt)
    service.check_stage_request(media_type)
    declared, length, expected = _declared_size(request), content_length(request), expected_digests(request)

    async def stage(chunks: AsyncIterator[bytes]) -> Response:
        await service.stage(
            ctx,
            image_id,
            chunks,
            media_type=media_type,
            content_length=length,
            declared_size=declared,
            expected=expected,
        )
        return empty()

    return await idempotency.stage_once(request, ctx, stage, headers=STAGE_MEANING)


@router.post("/{image_id}/import", status_code=202, response_class=Response, openapi_extra=IMPORT_BODY)
async def import_image(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    raw = await deps.limited_body(request)

    async def start() -> Response:
        body = await deps.json_body(request, required=False, raw=raw)
        started = await ImportService(rt).start_import(
            ctx,
            image_id,
            body,
            store_header=request.headers.get("x-image-meta-store"),
            auth_token=(request.headers.get("x-auth-token") or "").strip() or None,
        )
        if started.task_id is None:
            return empty(202)
        return empty(
            202,
            {
                "Location": f"/v2/images/{image_id}/tasks/{started.task_id}",
                "OpenStack-image-import-task-id": started.task_id,
            },
        )

    return await idempotency.once(request, ctx, raw, start, headers=IMPORT_MEANING)
