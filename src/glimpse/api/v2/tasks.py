"""Tasks: ``/v2/images/{id}/tasks`` for anyone who can see the image; ``/v2/tasks`` for admins."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse
from glimpse.api.v2.views import image_task_view, task_summary_view, task_view
from glimpse.errors import InvalidInput, MethodNotAllowed
from glimpse.runtime import Runtime
from glimpse.services.images import ImageService
from glimpse.services.tasks import TASK_FILTERS, TaskService

router = APIRouter(prefix="/v2", tags=["tasks"])


def _service(rt: Runtime, session: Session) -> TaskService:
    return TaskService(session, ImageService(session, rt.settings, rt.policy), rt.clock)


@router.get("/images/{image_id}/tasks")
async def image_tasks(request: Request, image_id: str) -> Response:
    await deps.reject_body(request)
    rt, ctx = deps.runtime(request), deps.context(request)
    tasks = await rt.run(lambda s: _service(rt, s).image_tasks(ctx, image_id), readonly=True)
    return JSONResponse({"tasks": [image_task_view(task) for task in tasks]})


@router.get("/images/{image_id}/tasks/{task_id}")
async def image_task(request: Request, image_id: str, task_id: str) -> Response:
    await deps.reject_body(request)
    rt, ctx = deps.runtime(request), deps.context(request)
    task = await rt.run(lambda s: _service(rt, s).image_task(ctx, image_id, task_id), readonly=True)
    return JSONResponse(image_task_view(task))


@router.get("/tasks")
async def list_tasks(request: Request) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    params = request.query_params
    unknown = set(params) - {*TASK_FILTERS, "sort_key", "sort_dir", "limit", "marker"}
    if unknown:
        raise InvalidInput(f"Unknown task list parameter(s): {', '.join(sorted(unknown))}.")
    raw_limit = params.get("limit", str(rt.settings.limit_param_default))
    if not raw_limit.isdigit():
        raise InvalidInput(f"limit must be a non-negative integer, got {raw_limit!r}.")
    limit = min(int(raw_limit), rt.settings.api_limit_max)
    filters = {name: params[name] for name in TASK_FILTERS if name in params}
    tasks = await rt.run(
        lambda s: _service(rt, s).list_tasks(
            ctx,
            filters=filters,
            sort_key=params.get("sort_key", "created_at"),
            sort_dir=params.get("sort_dir", "desc"),
            limit=limit,
            marker=params.get("marker"),
        ),
        readonly=True,
    )
    kept = [(k, v) for k, v in params.multi_items() if k != "marker"]
    body: dict[str, Any] = {
        "tasks": [task_summary_view(t) for t in tasks],
        "first": "/v2/tasks" + (f"?{urlencode(kept)}" if kept else ""),
        "schema": "/v2/schemas/tasks",
    }
    if tasks and len(tasks) == limit:
        body["next"] = "/v2/tasks?" + urlencode([*kept, ("marker", tasks[-1].id)])
    return JSONResponse(body)


@router.get("/tasks/{task_id}")
async def show_task(request: Request, task_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    task = await rt.run(lambda s: _service(rt, s).get_task(ctx, task_id), readonly=True)
    return JSONResponse(task_view(task))


@router.delete("/tasks/{task_id}", include_in_schema=False)
async def delete_task(task_id: str) -> Response:
    raise MethodNotAllowed("Tasks cannot be deleted; they expire task_time_to_live hours after they finish.")
