"""``GET /v2/images/{id}/history``: what happened to an image, newest first (a Glimpse addition)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse
from glimpse.api.v2.openapi import HISTORY_PARAMETERS
from glimpse.api.v2.views import history_entry_view
from glimpse.errors import InvalidInput
from glimpse.runtime import Runtime
from glimpse.services.history import HistoryService
from glimpse.services.images import ImageService

router = APIRouter(prefix="/v2", tags=["history"])


def _limit(rt: Runtime, raw: str | None) -> int:
    if raw is None:
        return rt.settings.limit_param_default
    if not raw.isdigit():
        raise InvalidInput(f"limit must be a non-negative integer, got {raw!r}.")
    return min(int(raw), rt.settings.api_limit_max)


def _marker(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(
            f"Invalid marker {raw!r}: a marker is the id of the last history entry of the previous page "
            "(follow the 'next' link)."
        )
    return int(raw)


@router.get("/images/{image_id}/history", openapi_extra=HISTORY_PARAMETERS)
async def image_history(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    params = request.query_params
    unknown = set(params) - {"limit", "marker"}
    if unknown:
        raise InvalidInput(
            f"Unknown history parameter(s): {', '.join(sorted(unknown))}; use limit and marker."
        )
    limit, marker = _limit(rt, params.get("limit")), _marker(params.get("marker"))
    entries = await rt.read(
        lambda s: HistoryService(s, ImageService(s, rt.settings, rt.policy)).image_history(
            ctx, image_id, limit=limit, marker=marker
        )
    )
    path = f"/v2/images/{image_id}/history"
    kept = [(k, v) for k, v in params.multi_items() if k != "marker"]
    body: dict[str, Any] = {
        "history": [history_entry_view(entry) for entry in entries],
        "first": path + (f"?{urlencode(kept)}" if kept else ""),
    }
    if entries and len(entries) == limit:
        body["next"] = f"{path}?" + urlencode([*kept, ("marker", str(entries[-1].id))])
    return JSONResponse(body)
