"""Tasks: ``/v2/images/{id}/tasks`` for anyone who can see the image; ``/v2/tasks`` for admins."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from glimpse.api import deps
from glimpse.api.errors import status_for
from glimpse.api.responses import JSONResponse
from glimpse.api.v2 import task_events, task_page
from glimpse.api.v2.views import image_task_view, task_summary_view, task_view
from glimpse.context import RequestContext
from glimpse.domain.history import HistoryEntry
from glimpse.domain.tasks import Task, changed_after
from glimpse.errors import Forbidden, GlimpseError, InvalidInput, MethodNotAllowed
from glimpse.ports import Repositories
from glimpse.runtime import Runtime
from glimpse.services.history import HistoryService
from glimpse.services.images import ImageService
from glimpse.services.imports import ImportService
from glimpse.services.tasks import TASK_FILTERS, TaskService

router = APIRouter(prefix="/v2", tags=["tasks"])

#: The longest a request may wait for an image's tasks to change (``wait``, seconds).
MAX_WATCH_WAIT = 60.0
CHANGED_HEADER = "Glimpse-Tasks-Changed"
#: A ``+hh:mm`` zone offset whose ``+`` arrived unencoded in the query string (decoded as a space).
_SPACED_OFFSET = re.compile(r"(T[0-9:.,]+) (\d\d(?::?\d\d)?)$")


def _service(rt: Runtime, repos: Repositories) -> TaskService:
    return TaskService(repos, ImageService(repos, rt.settings, rt.policy, rt.clock), rt.clock)


def _watch_params(params: Mapping[str, str]) -> tuple[datetime, float] | None:
    """``changes-since`` (aware UTC) and ``wait`` (seconds, 0 when absent), or None if not watching."""
    raw_since, raw_wait = params.get("changes-since"), params.get("wait")
    if raw_since is None:
        if raw_wait is not None:
            raise InvalidInput("wait needs changes-since: give the timestamp the tasks must change after.")
        return None
    try:
        since = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", raw_since.strip()))
    except ValueError:
        raise InvalidInput(
            f"changes-since must be an ISO 8601 timestamp such as 2026-11-25T14:12:35.983912 "
            f"(UTC when no zone is given), got {raw_since!r}."
        ) from None
    since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    if raw_wait is None:
        return since, 0.0
    try:
        wait = float(raw_wait)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait) or not 0 < wait <= MAX_WATCH_WAIT:
        raise InvalidInput(f"wait must be a number of seconds above 0 and at most 60, got {raw_wait!r}.")
    return since, wait


def _reader(rt: Runtime, ctx: RequestContext, image_id: str) -> Callable[[], Awaitable[list[Task]]]:
    """The caller's read of the image's tasks (visibility and redaction applied)."""

    async def read() -> list[Task]:
        return await rt.read(lambda s: _service(rt, s).image_tasks(ctx, image_id))

    return read


def _reader_after_change(
    rt: Runtime, ctx: RequestContext, image_id: str
) -> Callable[[datetime], Awaitable[list[Task]]]:
    """The read a request makes once the watcher woke it for a change (the latest ``updated_at`` it
    saw). Every request of the same caller identity woken by the same change makes the same read, so
    they share one (``TaskWatcher.reads``); the request id plays no part in what a caller sees."""
    read = _reader(rt, ctx, image_id)
    identity = replace(ctx, request_id="")

    async def read_after(change: datetime) -> list[Task]:
        return await rt.task_watcher().reads.read((image_id, identity, change), read)

    return read_after


async def _watch(
    rt: Runtime, ctx: RequestContext, image_id: str, since: datetime, wait: float
) -> tuple[list[Task], bool]:
    """The caller's tasks of the image once one of them changed after ``since``, or after ``wait``.

    Every read checks visibility and filters tasks afresh. While waiting the request holds only a
    registration with the process's TaskWatcher. A change to a task the caller cannot see wakes the
    hub but not the answer: the request waits on, for changes after the one it was shown.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    threshold = since
    read, read_after = _reader(rt, ctx, image_id), _reader_after_change(rt, ctx, image_id)
    tasks = await read()
    while True:
        changed = changed_after(tasks, since)
        remaining = deadline - loop.time()
        if changed or remaining <= 0:
            return tasks, changed
        seen = await rt.task_watcher().wait(image_id, threshold, remaining)
        if seen is None:
            tasks = await read()
            return tasks, changed_after(tasks, since)
        threshold = max(threshold, seen)
        tasks = await read_after(seen)


async def _event_stream(
    rt: Runtime,
    ctx: RequestContext,
    image_id: str,
    request: Request,
    watch: tuple[datetime, float] | None,
) -> Response:
    """The tasks as server-sent events (see ``task_events``); ``wait`` does not apply to a stream.
    ``Last-Event-ID`` (a reconnecting client's) counts as ``changes-since``."""
    last_id = request.headers.get("last-event-id")
    if last_id:
        watch = _watch_params({"changes-since": last_id})

    first = await _reader(rt, ctx, image_id)()  # a missing or invisible image: 404 before the stream
    events = task_events.task_events(
        image_id,
        first,
        watch[0] if watch else None,
        _reader_after_change(rt, ctx, image_id),
        rt.task_watcher(),
        status_for,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(task_events.watched(events), media_type=task_events.MEDIA_TYPE, headers=headers)


def _page_data(rt: Runtime, ctx: RequestContext, image_id: str, repos: Repositories) -> task_page.PageData:
    """What the task page shows, read in one unit of work with the API's visibility rules."""
    stale_after = timedelta(minutes=rt.settings.import_lock_stale_after)
    work = _service(rt, repos).image_work(ctx, image_id, stale_after)
    fields = work.lock
    lock = None
    if fields is not None:
        lock = task_page.LockView(
            task_id=str(fields["task_id"]),
            status=_text(fields["status"]),
            user_id=_text(fields["user_id"]),
            request_id=_text(fields["request_id"]),
            seconds_since_heartbeat=_number(fields["seconds_since_heartbeat"]),
            breakable_at=_text(fields["breakable_at"]),
        )
    try:
        history: list[HistoryEntry] | None = HistoryService(
            repos, ImageService(repos, rt.settings, rt.policy)
        ).image_history(ctx, image_id, limit=task_page.HISTORY_ON_PAGE, marker=None)
    except Forbidden:
        history = None
    return task_page.PageData(
        image=work.image,
        tasks=work.tasks,
        store_ids=rt.stores.ids(),
        lock=lock,
        stale_after_minutes=rt.settings.import_lock_stale_after,
        now=work.now,
        history=history,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> int | None:
    return value if isinstance(value, int) else None


async def _page(rt: Runtime, ctx: RequestContext, image_id: str) -> Response:
    """The task page for a browser; an error (an image the caller cannot see: 404) as a page too."""
    try:
        data = await rt.read(lambda s: _page_data(rt, ctx, image_id, s))
    except GlimpseError as error:
        status = status_for(error)
        return HTMLResponse(task_page.render_error(status, error.message), status, task_page.PAGE_HEADERS)
    return HTMLResponse(task_page.render_page(data), headers=task_page.PAGE_HEADERS)


@router.get("/images/{image_id}/tasks")
async def image_tasks(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    accept = request.headers.get("accept")
    if task_page.wants_page(accept) and not task_events.wants_events(accept):
        return await _page(rt, ctx, image_id)
    watch = _watch_params(request.query_params)
    if task_events.wants_events(accept):
        return await _event_stream(rt, ctx, image_id, request, watch)
    if watch is None:
        tasks = await _reader(rt, ctx, image_id)()
        return JSONResponse({"tasks": [image_task_view(task) for task in tasks]})
    tasks, changed = await _watch(rt, ctx, image_id, *watch)
    return JSONResponse(
        {"tasks": [image_task_view(task) for task in tasks]},
        headers={CHANGED_HEADER: "true" if changed else "false"},
    )


@router.get("/images/{image_id}/tasks/{task_id}")
async def image_task(request: Request, image_id: str, task_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    task = await rt.read(lambda s: _service(rt, s).image_task(ctx, image_id, task_id))
    return JSONResponse(image_task_view(task))


@router.delete("/images/{image_id}/tasks/{task_id}")
async def cancel_image_task(request: Request, image_id: str, task_id: str) -> Response:
    """Cancel a pending or running import or copy (a Glimpse addition): 202 with the task."""
    rt, ctx = deps.runtime(request), deps.context(request)
    ttl = timedelta(hours=rt.settings.task_time_to_live)
    task = await rt.run(lambda s: _service(rt, s).cancel_image_task(ctx, image_id, task_id, ttl))
    rt.notify_task_change(image_id)
    return JSONResponse(image_task_view(task), status_code=202)


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


@router.post("/tasks", status_code=201)
async def create_task(request: Request) -> Response:
    """Glance's old ``import`` task (admins, ``tasks_api_access`` and ``add_task``): an image
    created from ``image_properties`` and filled by a web-download of ``import_from``."""
    rt, ctx = deps.runtime(request), deps.context(request)
    service = ImportService(rt)
    service.authorize_task_creation(ctx)  # 403 before the body is read, as in Glance
    body = await deps.json_body(request, required=False)
    task = await service.create_import_task(ctx, body)
    return JSONResponse(task_view(task), status_code=201)


@router.get("/tasks/{task_id}")
async def show_task(request: Request, task_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    task = await rt.read(lambda s: _service(rt, s).get_task(ctx, task_id))
    return JSONResponse(task_view(task))


@router.delete("/tasks/{task_id}", include_in_schema=False)
async def delete_task(task_id: str) -> Response:
    raise MethodNotAllowed(
        "Tasks cannot be deleted; they expire task_time_to_live hours after they finish. To cancel an "
        "image's pending or running import or copy, use DELETE /v2/images/{image_id}/tasks/{task_id}."
    )
