"""``GET /metrics``: the node's Prometheus metrics (every process of the node, see
:mod:`glimpse.telemetry`), for whoever the ``get_metrics`` policy rule lets in (default: admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from glimpse.api import deps
from glimpse.domain.policy import PolicyRule
from glimpse.telemetry import metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    deps.runtime(request).policy.enforce(PolicyRule.GET_METRICS, deps.context(request), {})
    body, media_type = metrics().exposition()
    return Response(content=body, media_type=media_type)
