"""/v2/schemas/*: the JSON-schema documents clients (glanceclient) fetch and cache."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse
from glimpse.api.schemas import SCHEMA_NAMES
from glimpse.errors import NotFound

router = APIRouter(prefix="/v2/schemas", tags=["schemas"])


@router.get("/{name:path}")
async def get_schema(request: Request, name: str) -> Response:
    builder = SCHEMA_NAMES.get(name)
    if builder is None:
        raise NotFound(f"No schema named '{name}'; known schemas: {', '.join(sorted(SCHEMA_NAMES))}.")
    settings = deps.runtime(request).settings
    return JSONResponse(builder(settings.disk_formats, settings.container_formats))
