"""``GET /v2/images/{id}/tasks`` with ``Accept: text/event-stream``: an image's tasks as server-sent events.

The stream is the long poll of ``changes-since``/``wait`` kept open: the same reads (visibility checked
and tasks filtered afresh for every event), the same process-wide TaskWatcher between them, so a
stream holds no database connection and no thread while nothing changes. Events:

* ``tasks``: ``{"tasks": [...]}`` as the JSON listing shows them, whenever one of them changed after
  the last event (at once on connect, unless ``changes-since`` or ``Last-Event-ID`` says the caller
  has seen them). Its ``id`` is the latest ``updated_at``, which a reconnecting client sends back as
  ``Last-Event-ID``.
* ``end``: after a ``tasks`` event in which no task is pending or processing; the stream closes.
* ``error``: ``{"message", "code"}`` when the image can no longer be read (deleted, or hidden from
  the caller, during the stream); the stream closes.

A comment line every ``KEEPALIVE`` seconds keeps proxies from closing an idle stream, and a stream
closes after ``MAX_STREAM`` seconds in any case; ``retry`` asks clients to reconnect two seconds later,
and a reconnection with ``Last-Event-ID`` waits for the next change instead of ending at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import orjson

from glimpse.api.v2.views import image_task_view
from glimpse.domain.tasks import Task, changed_after
from glimpse.errors import GlimpseError
from glimpse.services.task_watch import TaskWatcher
from glimpse.telemetry import metrics

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = 15.0
MAX_STREAM = 600.0
RETRY_MS = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The caller's tasks once the watcher reported a change (the latest ``updated_at`` it saw).
ReadAfterChange = Callable[[datetime], Awaitable[list[Task]]]
StatusOf = Callable[[BaseException], int]


def wants_events(accept: str | None) -> bool:
    """Whether the ``Accept`` header asks for the event stream."""
    return accept is not None and MEDIA_TYPE in accept.lower()


def _event(name: str, data: object, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _latest(tasks: list[Task], floor: datetime) -> datetime:
    return max((task.updated_at for task in tasks), default=floor)


async def task_events(
    image_id: str,
    first: list[Task],
    since: datetime | None,
    read_after: ReadAfterChange,
    watcher: TaskWatcher,
    status_of: StatusOf,
    *,
    keepalive: float = KEEPALIVE,
    max_stream: float = MAX_STREAM,
) -> AsyncIterator[bytes]:
    """The event stream of one request; ``first`` is the listing read before the response started
    (so that a missing or invisible image is a plain 404), ``read_after`` reads it again after a
    change."""
    loop = asyncio.get_running_loop()
    closes_at = loop.time() + max_stream
    tasks, seen = first, since or _EPOCH
    # What the watcher was last woken for; above ``seen`` when tasks the caller cannot see changed.
    threshold = seen
    show = since is None or changed_after(tasks, since)
    yield f"retry: {RETRY_MS}\n\n".encode()
    while True:
        if show:
            seen = _latest(tasks, seen)
            yield _event("tasks", {"tasks": [image_task_view(t) for t in tasks]}, seen.isoformat())
            if not any(task.is_active for task in tasks):
                yield _event("end", {})
                return
        remaining = closes_at - loop.time()
        if remaining <= 0:
            return
        changed = await watcher.wait(image_id, max(seen, threshold), min(keepalive, remaining))
        if changed is None:
            if watcher.closed:  # the process is shutting down
                return
            show = False
            yield b": keep-alive\n\n"
            continue
        try:
            tasks = await read_after(changed)
        except GlimpseError as error:
            yield _event("error", {"message": str(error), "code": status_of(error)})
            return
        threshold = max(threshold, changed)
        show = changed_after(tasks, seen)


async def watched(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``events``, counted as one connected watcher (``glimpse_task_watchers``) while it lasts."""
    with metrics().watching():
        async for event in events:
            yield event
