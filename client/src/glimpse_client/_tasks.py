"""Tasks of an image: read one (also from a server without the single-task route), watch them
change (long poll or polling), and follow one to its end with a :class:`TaskHandle`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from ._config import ClientConfig
from ._core import AsyncDriver, Call, Emit, Feed, Flow, SyncDriver, Traits, pause, request, single
from ._exceptions import BadRequest, NotFound, TaskFailed, TaskTimeout
from ._models import Task

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

MAX_WAIT = 60
ACTIVE_TASK_STATES = frozenset({"pending", "processing"})
#: Sent by Glimpse on a watched task listing; a server that ignores ``changes-since`` sends nothing.
CHANGED_HEADER = "glimpse-tasks-changed"

TaskCallback = Callable[[Task], None]


def _tasks(response: httpx.Response) -> list[Task]:
    return [Task.from_json(t) for t in response.json()["tasks"]]


def _latest(tasks: list[Task], since: str | None) -> str | None:
    stamps = [t.updated_at for t in tasks if t.updated_at] + ([since] if since else [])
    return max(stamps) if stamps else None


def _pending(tasks: list[Task]) -> bool:
    return any(t.status in ACTIVE_TASK_STATES for t in tasks)


def _listed_task(tasks: list[Task], image_id: str, task_id: str) -> Task:
    for task in tasks:
        if task.id == task_id:
            return task
    raise NotFound(404, f"Task {task_id} of image {image_id} not found.", None, None)


def image_tasks(image_id: str) -> Flow[list[Task]]:
    return single(Call("GET", f"/v2/images/{image_id}/tasks"), _tasks)


def cancel_task(image_id: str, task_id: str) -> Flow[Task]:
    """``DELETE /v2/images/{id}/tasks/{task_id}`` (Glimpse): the task as it is after the cancel."""
    return single(
        Call("DELETE", f"/v2/images/{image_id}/tasks/{task_id}"), lambda r: Task.from_json(r.json())
    )


def get_task(traits: Traits, image_id: str, task_id: str) -> Flow[Task]:
    """The single-task route, or the task picked from the image's task list once the route turned
    out to be missing (plain Glance)."""
    if traits.single_task_route is False:
        return _listed_task((yield from image_tasks(image_id)), image_id, task_id)
    try:
        response = yield from request(Call("GET", f"/v2/images/{image_id}/tasks/{task_id}"))
    except NotFound:
        if traits.single_task_route:
            raise
        task = _listed_task((yield from image_tasks(image_id)), image_id, task_id)
        traits.single_task_route = False
        return task
    traits.single_task_route = True
    return Task.from_json(response.json())


def _watch_call(config: ClientConfig, traits: Traits, image_id: str, since: str | None, wait: float) -> Call:
    """A watching listing; a plain one without ``since`` or once the server showed it cannot wait."""
    if since is None or traits.watches is False:
        return Call("GET", f"/v2/images/{image_id}/tasks")
    seconds = max(1, min(MAX_WAIT, int(wait)))
    return Call(
        "GET",
        f"/v2/images/{image_id}/tasks",
        params={"changes-since": since, "wait": str(seconds)},
        timeout=config.timeout + seconds,
    )


def _saw_watch_answer(traits: Traits, call: Call, response: httpx.Response) -> bool:
    """Record whether the server honoured a watching call; False when it answered at once."""
    if call.params is None:
        return False
    traits.watches = CHANGED_HEADER in response.headers
    return traits.watches


def watch_image_tasks(
    config: ClientConfig, traits: Traits, image_id: str, since: str | None, wait: float
) -> Feed[list[Task]]:
    """The image's tasks now and each time they change, until none is pending or processing."""
    tasks = _tasks((yield from request(_watch_call(config, traits, image_id, since, wait))))
    yield Emit(tasks)
    since = _latest(tasks, since)
    while _pending(tasks):
        call = _watch_call(config, traits, image_id, since, wait)
        if call.params is None:
            yield from pause(config.poll_interval)
        try:
            response = yield from request(call)
        except BadRequest:
            if call.params is None:
                raise
            traits.watches = False
            continue
        watched = _saw_watch_answer(traits, call, response)
        if watched and response.headers[CHANGED_HEADER] == "false":
            continue
        fresh = _tasks(response)
        if not watched and fresh == tasks:
            continue
        tasks = fresh
        since = _latest(tasks, since)
        yield Emit(tasks)


def _wait_for_change(
    config: ClientConfig, traits: Traits, image_id: str, since: str | None, remaining: float
) -> Flow[None]:
    """Until the image's tasks changed after ``since`` (long poll), or a poll interval passed."""
    call = _watch_call(config, traits, image_id, since, min(remaining, 30))
    if call.params is not None:
        try:
            if _saw_watch_answer(traits, call, (yield from request(call))):
                return
        except BadRequest:  # a server that refuses the watch parameters
            traits.watches = False
    yield from pause(min(config.poll_interval, remaining))


def _follow(
    task: Task, last: str | None, on_progress: TaskCallback | None, deadline: float, timeout: float
) -> float | None:
    """One step of following a task: report progress when the task changed, then None when it
    succeeded, else the seconds left to wait for its next change. Raises TaskFailed on failure and
    TaskTimeout once the deadline has passed."""
    if on_progress is not None and task.updated_at != last:
        on_progress(task)
    if task.status == "success":
        return None
    if task.status == "failure":
        raise TaskFailed(task)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(f"task {task.id} still {task.status} after {timeout}s")
    return remaining


def follow_task(
    config: ClientConfig,
    traits: Traits,
    image_id: str,
    task_id: str,
    timeout: float,
    on_progress: TaskCallback | None,
) -> Flow[Task]:
    """Read the task after each change until it ends. Only reads from the server, even on timeout."""
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        task = yield from get_task(traits, image_id, task_id)
        remaining = _follow(task, last, on_progress, deadline, timeout)
        if remaining is None:
            return task
        last = task.updated_at
        yield from _wait_for_change(config, traits, image_id, task.updated_at, remaining)


class TaskHandle:
    """A task started by an import: named by the ``OpenStack-image-import-task-id`` header of the 202
    (Glimpse), or found among the image's tasks by the request id (plain Glance, where ``location`` is
    ``None``)."""

    def __init__(self, client: Client, image_id: str, task_id: str, location: str | None) -> None:
        self.client = client
        self.image_id = image_id
        self.task_id = task_id
        self.location = location

    def get(self) -> Task:
        return self.client.get_task(self.image_id, self.task_id)

    def cancel(self) -> Task:
        """Cancel the task (see :meth:`Client.cancel_task`); :meth:`wait` then sees it end."""
        return self.client.cancel_task(self.image_id, self.task_id)

    def wait(self, timeout: float = 300.0, on_progress: TaskCallback | None = None) -> Task:
        """Follow the task until it ends. Only reads from the server, even on timeout."""
        client = self.client
        return client._run(
            follow_task(client.config, client._traits, self.image_id, self.task_id, timeout, on_progress)
        )


class AsyncTaskHandle:
    """The async counterpart of :class:`TaskHandle`."""

    def __init__(self, client: AsyncClient, image_id: str, task_id: str, location: str | None) -> None:
        self.client = client
        self.image_id = image_id
        self.task_id = task_id
        self.location = location

    async def get(self) -> Task:
        return await self.client.get_task(self.image_id, self.task_id)

    async def cancel(self) -> Task:
        """Cancel the task (see :meth:`Client.cancel_task`)."""
        return await self.client.cancel_task(self.image_id, self.task_id)

    # Same signature as the sync handle: the deadline spans many requests.
    async def wait(self, timeout: float = 300.0, on_progress: TaskCallback | None = None) -> Task:  # noqa: ASYNC109
        """Follow the task until it ends. Only reads from the server, even on timeout."""
        client = self.client
        return await client._run(
            follow_task(client.config, client._traits, self.image_id, self.task_id, timeout, on_progress)
        )


class SyncTasks(SyncDriver):
    def image_tasks(self, image_id: str) -> list[Task]:
        return self._run(image_tasks(image_id))

    def get_task(self, image_id: str, task_id: str) -> Task:
        """One task of the image; picked from the image's task list on a server without
        ``/v2/images/{id}/tasks/{task_id}`` (plain Glance)."""
        return self._run(get_task(self._traits, image_id, task_id))

    def cancel_task(self, image_id: str, task_id: str) -> Task:
        """Cancel a pending or running import or copy of the image (Glimpse only).

        A pending task comes back ``failure`` at once; a running one comes back ``processing`` with
        its ``cancel_request`` set, and ends ``failure`` at its runner's next heartbeat. Cancelling a
        cancelled task again answers the same; :class:`Conflict` when the task ended otherwise,
        :class:`NotFound` when the caller cannot see it, :class:`Forbidden` when it may not cancel it.
        """
        return self._run(cancel_task(image_id, task_id))

    def watch_image_tasks(
        self, image_id: str, since: str | None = None, wait: float = 30
    ) -> Iterator[list[Task]]:
        """Yield the image's tasks now and each time they change, until none is pending or processing.

        Glimpse answers when something changed (long polling); a server that ignores the watch
        parameters (plain Glance) is polled every ``config.poll_interval`` seconds instead, and only
        listings that differ from the last one are yielded.
        """
        yield from self._stream(watch_image_tasks(self.config, self._traits, image_id, since, wait))


class AsyncTasks(AsyncDriver):
    async def image_tasks(self, image_id: str) -> list[Task]:
        return await self._run(image_tasks(image_id))

    async def get_task(self, image_id: str, task_id: str) -> Task:
        """One task of the image (see :meth:`Client.get_task`)."""
        return await self._run(get_task(self._traits, image_id, task_id))

    async def cancel_task(self, image_id: str, task_id: str) -> Task:
        """Cancel a pending or running import or copy (see :meth:`Client.cancel_task`)."""
        return await self._run(cancel_task(image_id, task_id))

    async def watch_image_tasks(
        self, image_id: str, since: str | None = None, wait: float = 30
    ) -> AsyncIterator[list[Task]]:
        """Yield the image's tasks now and each time they change (see :meth:`Client.watch_image_tasks`)."""
        async for tasks in self._stream(watch_image_tasks(self.config, self._traits, image_id, since, wait)):
            yield tasks
