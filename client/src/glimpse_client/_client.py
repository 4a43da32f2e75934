"""``Client`` and ``AsyncClient``: thin I/O layers over one request-building base."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from ._config import ClientConfig
from ._exceptions import (
    BadRequest,
    ClientError,
    NotFound,
    TaskFailed,
    TaskTimeout,
    TransportError,
    error_from_response,
)
from ._glance import error_body, started_task
from ._models import Image, Member, Task

PATCH_MEDIA_TYPE = "application/openstack-images-v2.1-json-patch"
CHUNK_SIZE = 64 * 1024
MAX_WAIT = 60
ACTIVE_TASK_STATES = frozenset({"pending", "processing"})
#: Sent by Glimpse on a watched task listing; a server that ignores ``changes-since`` sends nothing.
CHANGED_HEADER = "glimpse-tasks-changed"

ProgressCallback = Callable[[int, int | None], None]
TaskCallback = Callable[[Task], None]
DataSource = str | os.PathLike[str] | bytes | Iterable[bytes]
_CORE_FIELDS = frozenset(
    {
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "min_ram",
        "min_disk",
        "container_format",
        "disk_format",
        "tags",
    }
)


@dataclass
class _Call:
    """Everything needed to send one request, built without doing any I/O."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None


def _patch_ops(current: Image, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for key, value in changes.items():
        path = f"/{key}"
        if value is None:
            ops.append({"op": "remove", "path": path})
        elif key in _CORE_FIELDS or key in current.properties:
            ops.append({"op": "replace", "path": path, "value": value})
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops


def _import_body(
    method: str, uri: str | None, stores: list[str] | None, all_stores: bool, allow_failure: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"method": {"name": method}}
    if uri is not None:
        body["method"]["uri"] = uri
    if stores is not None:
        body["stores"] = stores
    if all_stores:
        body["all_stores"] = True
    body["all_stores_must_succeed"] = not allow_failure
    return body


def _latest(tasks: list[Task], since: str | None) -> str | None:
    stamps = [t.updated_at for t in tasks if t.updated_at] + ([since] if since else [])
    return max(stamps) if stamps else None


def _pending(tasks: list[Task]) -> bool:
    return any(t.status in ACTIVE_TASK_STATES for t in tasks)


def _path_size(data: DataSource) -> int | None:
    if isinstance(data, str | os.PathLike):
        return Path(data).stat().st_size
    if isinstance(data, bytes):
        return len(data)
    return None


def _chunks(data: DataSource, on_progress: ProgressCallback | None, total: int | None) -> Iterator[bytes]:
    done = 0
    if isinstance(data, str | os.PathLike):
        with Path(data).open("rb") as handle:
            while chunk := handle.read(CHUNK_SIZE):
                done += len(chunk)
                yield chunk
                if on_progress is not None:
                    on_progress(done, total)
        return
    source: Iterable[bytes] = [data] if isinstance(data, bytes) else data
    for chunk in source:
        done += len(chunk)
        yield chunk
        if on_progress is not None:
            on_progress(done, total)


def _total_from(response: httpx.Response, offset: int) -> int | None:
    length = response.headers.get("content-length")
    return int(length) + offset if length is not None else None


def _range(offset: int) -> dict[str, str]:
    return {"Range": f"bytes={offset}-"} if offset else {}


class _Cut:
    """Follows a data stream that starts at byte ``start`` of the image: drops what lies before
    ``offset`` (a server that ignored ``Range`` sends everything) and reports the position."""

    def __init__(
        self, offset: int, start: int, total: int | None, on_progress: ProgressCallback | None
    ) -> None:
        self.skip = max(offset - start, 0)
        self.position = start
        self.total = total
        self.on_progress = on_progress

    def __call__(self, chunk: bytes) -> bytes:
        self.position += len(chunk)
        if self.skip:
            dropped = min(self.skip, len(chunk))
            self.skip -= dropped
            chunk = chunk[dropped:]
        if self.on_progress is not None and chunk:
            self.on_progress(self.position, self.total)
        return chunk


def _existing_size(target: Path) -> int:
    return target.stat().st_size if target.exists() else 0


def _open_target(target: Path, offset: int) -> BinaryIO:
    return target.open("ab" if offset else "wb")


class _BaseClient:
    """Request building and response parsing shared by the sync and async clients."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        # What the server turned out to offer, learnt from its answers (None: not known yet).
        self._server_watches: bool | None = None
        self._single_task_route: bool | None = None

    def _client_args(self) -> dict[str, Any]:
        return {
            "base_url": self.config.endpoint.rstrip("/"),
            "headers": self.config.headers(),
            "timeout": self.config.timeout,
            "auth": self.config.auth,
            "verify": self.config.verify,
        }

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise error_from_response(response, error_body(response))
        return response

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        return response.json()

    def _build(self, call: _Call, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        timeout = call.timeout if call.timeout is not None else self.config.timeout
        return client.build_request(
            call.method, call.path, params=call.params, json=call.json, headers=call.headers, timeout=timeout
        )

    @staticmethod
    def _list_call(filters: Mapping[str, Any], page_size: int | None) -> _Call:
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()}
        if page_size is not None:
            params["limit"] = str(page_size)
        return _Call("GET", "/v2/images", params=params)

    def _watch_call(self, image_id: str, since: str | None, wait: float) -> _Call:
        """A watching listing; a plain one without ``since`` or once the server showed it cannot wait."""
        if since is None or self._server_watches is False:
            return _Call("GET", f"/v2/images/{image_id}/tasks")
        seconds = max(1, min(MAX_WAIT, int(wait)))
        return _Call(
            "GET",
            f"/v2/images/{image_id}/tasks",
            params={"changes-since": since, "wait": str(seconds)},
            timeout=self.config.timeout + seconds,
        )

    @staticmethod
    def _tasks(response: httpx.Response) -> list[Task]:
        return [Task.from_json(t) for t in response.json()["tasks"]]

    @staticmethod
    def _data_headers(data: DataSource, store: str | None) -> tuple[int | None, dict[str, str]]:
        """The size of ``data`` when known, and the headers of a data ``PUT``."""
        total = _path_size(data)
        headers = {"Content-Type": "application/octet-stream"}
        if total is not None:
            headers["Content-Length"] = str(total)
        if store is not None:
            headers["X-Image-Meta-Store"] = store
        return total, headers

    @staticmethod
    def _task_id(response: httpx.Response) -> str | None:
        return response.headers.get("openstack-image-import-task-id") or None

    def _request_ids(self, response: httpx.Response) -> set[str]:
        """The ids a server may have stored as the task's ``request_id`` for this request."""
        ids: set[str] = set()
        for value in (response.headers.get("x-openstack-request-id"), self.config.request_id):
            if value:
                ids.update({value, value.removeprefix("req-")})
        return ids

    def _saw_watch_answer(self, call: _Call, response: httpx.Response) -> bool:
        """Record whether the server honoured a watching call; False when it answered at once."""
        if call.params is None:
            return False
        self._server_watches = CHANGED_HEADER in response.headers
        return self._server_watches

    def _listed_task(self, tasks: list[Task], image_id: str, task_id: str) -> Task:
        for task in tasks:
            if task.id == task_id:
                return task
        raise NotFound(404, f"Task {task_id} of image {image_id} not found.", None, None)


def _follow(
    task: Task, last: str | None, on_progress: TaskCallback | None, deadline: float, timeout: float
) -> float | None:
    """One step of following a task, shared by the sync and async handles: report progress when the
    task changed, then None when it succeeded, else the seconds left to wait for its next change.
    Raises TaskFailed on failure and TaskTimeout once the deadline has passed."""
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


def _image_step(image: Image, deadline: float, timeout: float) -> float | None:
    """One step of waiting on an image's import, shared by both clients: None once no import is
    under way, else the seconds left. Raises TaskTimeout once the deadline has passed."""
    if not image.is_importing:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(f"image {image.id} still being imported after {timeout}s")
    return remaining


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

    def wait(self, timeout: float = 300.0, on_progress: TaskCallback | None = None) -> Task:
        """Follow the task until it ends. Only reads from the server, even on timeout."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            task = self.get()
            remaining = _follow(task, last, on_progress, deadline, timeout)
            if remaining is None:
                return task
            last = task.updated_at
            self.client._wait_for_change(self.image_id, task.updated_at, remaining)


class AsyncTaskHandle:
    """The async counterpart of :class:`TaskHandle`."""

    def __init__(self, client: AsyncClient, image_id: str, task_id: str, location: str | None) -> None:
        self.client = client
        self.image_id = image_id
        self.task_id = task_id
        self.location = location

    async def get(self) -> Task:
        return await self.client.get_task(self.image_id, self.task_id)

    # Same signature as the sync handle: the deadline spans many requests.
    async def wait(self, timeout: float = 300.0, on_progress: TaskCallback | None = None) -> Task:  # noqa: ASYNC109
        """Follow the task until it ends. Only reads from the server, even on timeout."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            task = await self.get()
            remaining = _follow(task, last, on_progress, deadline, timeout)
            if remaining is None:
                return task
            last = task.updated_at
            await self.client._wait_for_change(self.image_id, task.updated_at, remaining)


class Client(_BaseClient):
    """Synchronous client. Use as a context manager or call :meth:`close`."""

    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config)
        self._http = httpx.Client(transport=transport, **self._client_args())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> httpx.Response:
        try:
            response = self._http.send(self._build(call, self._http))
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc
        return self._check(response)

    # images
    def create_image(self, **fields: Any) -> Image:
        return Image.from_json(self._send(_Call("POST", "/v2/images", json=fields)).json())

    def get_image(self, image_id: str) -> Image:
        return Image.from_json(self._send(_Call("GET", f"/v2/images/{image_id}")).json())

    def list_images(self, *, page_size: int | None = None, **filters: Any) -> Iterator[Image]:
        """Every matching image, following ``next`` links page by page."""
        call: _Call | None = self._list_call(filters, page_size)
        while call is not None:
            body = self._send(call).json()
            for item in body["images"]:
                yield Image.from_json(item)
            nxt = body.get("next")
            call = _Call("GET", nxt) if nxt else None

    def update_image(self, image_id: str, changes: Mapping[str, Any]) -> Image:
        """Apply ``changes`` as a JSON patch; a ``None`` value removes the property."""
        ops = _patch_ops(self.get_image(image_id), changes)
        call = _Call("PATCH", f"/v2/images/{image_id}", json=ops, headers={"Content-Type": PATCH_MEDIA_TYPE})
        return Image.from_json(self._send(call).json())

    def delete_image(self, image_id: str) -> None:
        self._send(_Call("DELETE", f"/v2/images/{image_id}"))

    def add_tag(self, image_id: str, tag: str) -> None:
        self._send(_Call("PUT", f"/v2/images/{image_id}/tags/{tag}"))

    def remove_tag(self, image_id: str, tag: str) -> None:
        self._send(_Call("DELETE", f"/v2/images/{image_id}/tags/{tag}"))

    def deactivate_image(self, image_id: str) -> None:
        self._send(_Call("POST", f"/v2/images/{image_id}/actions/deactivate"))

    def reactivate_image(self, image_id: str) -> None:
        self._send(_Call("POST", f"/v2/images/{image_id}/actions/reactivate"))

    # members
    def add_member(self, image_id: str, member_id: str) -> Member:
        call = _Call("POST", f"/v2/images/{image_id}/members", json={"member": member_id})
        return Member.from_json(self._send(call).json())

    def list_members(self, image_id: str) -> list[Member]:
        body = self._send(_Call("GET", f"/v2/images/{image_id}/members")).json()
        return [Member.from_json(m) for m in body["members"]]

    def update_member(self, image_id: str, member_id: str, status: str) -> Member:
        call = _Call("PUT", f"/v2/images/{image_id}/members/{member_id}", json={"status": status})
        return Member.from_json(self._send(call).json())

    def remove_member(self, image_id: str, member_id: str) -> None:
        self._send(_Call("DELETE", f"/v2/images/{image_id}/members/{member_id}"))

    # data
    def _put_data(
        self, path: str, data: DataSource, on_progress: ProgressCallback | None, store: str | None = None
    ) -> None:
        total, headers = self._data_headers(data, store)
        try:
            response = self._http.put(path, content=_chunks(data, on_progress, total), headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc
        self._check(response)

    def upload(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        store: str | None = None,
    ) -> None:
        """Upload image data from a file path, bytes or an iterable of byte chunks; into ``store``
        (``X-Image-Meta-Store``) instead of the server's default store when given."""
        self._put_data(f"/v2/images/{image_id}/file", data, on_progress, store)

    def stage(self, image_id: str, data: DataSource, on_progress: ProgressCallback | None = None) -> None:
        """Stage data for a ``glance-direct`` import."""
        self._put_data(f"/v2/images/{image_id}/stage", data, on_progress)

    @contextmanager
    def _data(self, image_id: str, offset: int) -> Iterator[tuple[httpx.Response | None, int]]:
        """The image's data response asked from ``offset`` on, and the offset it really starts at (0
        when the server ignored ``Range``); no response when ``offset`` is at or past the end."""
        try:
            with self._http.stream("GET", f"/v2/images/{image_id}/file", headers=_range(offset)) as response:
                if response.status_code == 416:
                    yield None, offset
                    return
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                yield response, offset if response.status_code == 206 else 0
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc

    def iter_data(
        self, image_id: str, *, offset: int = 0, on_progress: ProgressCallback | None = None
    ) -> Iterator[bytes]:
        """The image's data as a stream of chunks, from byte ``offset`` on (with ``Range``); never
        held whole in memory. ``on_progress(position, total)`` follows the position in the image."""
        with self._data(image_id, offset) as (response, start):
            if response is None:
                return
            cut = _Cut(offset, start, _total_from(response, start), on_progress)
            for chunk in response.iter_bytes(CHUNK_SIZE):
                if piece := cut(chunk):
                    yield piece

    def download(
        self, image_id: str, path: str | os.PathLike[str], on_progress: ProgressCallback | None = None
    ) -> int:
        """Download into ``path``, resuming with ``Range`` when the file already holds a part."""
        target = Path(path)
        offset = _existing_size(target)
        with self._data(image_id, offset) as (response, start):
            if response is None:
                return offset
            cut = _Cut(start, start, _total_from(response, start), on_progress)
            with _open_target(target, start) as handle:
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    handle.write(cut(chunk))
        return cut.position

    # discovery
    def stores(self) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = self._send(_Call("GET", "/v2/info/stores")).json()["stores"]
        return stores

    def import_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._send(_Call("GET", "/v2/info/import")).json()
        return info

    # imports and tasks
    def import_image(
        self,
        image_id: str,
        method: str,
        uri: str | None = None,
        stores: list[str] | None = None,
        all_stores: bool = False,
        allow_failure: bool = False,
    ) -> TaskHandle | None:
        """Start an import; the handle follows its task, ``None`` when there is no task to follow.

        Glimpse names the task in the 202. Plain Glance does not: the task is then looked up among
        the image's tasks by the request id of the 202 (Glance stores it in the task). ``None`` means
        the server created no task (a copy to stores that all hold the image already) or offers no
        way to find it (a Glance older than API 2.12, without ``/v2/images/{id}/tasks``).
        """
        body = _import_body(method, uri, stores, all_stores, allow_failure)
        response = self._send(_Call("POST", f"/v2/images/{image_id}/import", json=body))
        task_id = self._task_id(response)
        if task_id is None:
            try:
                started = started_task(self.image_tasks(image_id), self._request_ids(response))
            except ClientError:
                return None
            if started is None:
                return None
            task_id = started.id
        return TaskHandle(self, image_id, task_id, response.headers.get("location"))

    def copy_image(
        self, image_id: str, stores: list[str] | None = None, all_stores: bool = False
    ) -> TaskHandle | None:
        return self.import_image(image_id, "copy-image", stores=stores, all_stores=all_stores)

    def wait_for_import(self, image_id: str, timeout: float = 300.0) -> Image:
        """Wait until no import or copy is under way on the image (:attr:`Image.is_importing`) and
        return the image; for a server that names no task to follow (Glance before API 2.12). The image is
        read every ``config.poll_interval`` seconds. Only reads; raises TaskTimeout when ``timeout``
        runs out."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.get_image(image_id)
            remaining = _image_step(image, deadline, timeout)
            if remaining is None:
                return image
            time.sleep(min(self.config.poll_interval, remaining))

    def image_tasks(self, image_id: str) -> list[Task]:
        return self._tasks(self._send(_Call("GET", f"/v2/images/{image_id}/tasks")))

    def get_task(self, image_id: str, task_id: str) -> Task:
        """One task of the image; picked from the image's task list on a server without
        ``/v2/images/{id}/tasks/{task_id}`` (plain Glance)."""
        if self._single_task_route is False:
            return self._listed_task(self.image_tasks(image_id), image_id, task_id)
        try:
            response = self._send(_Call("GET", f"/v2/images/{image_id}/tasks/{task_id}"))
        except NotFound:
            if self._single_task_route:
                raise
            task = self._listed_task(self.image_tasks(image_id), image_id, task_id)
            self._single_task_route = False
            return task
        self._single_task_route = True
        return Task.from_json(response.json())

    def _wait_for_change(self, image_id: str, since: str | None, remaining: float) -> None:
        call = self._watch_call(image_id, since, min(remaining, 30))
        if call.params is not None:
            try:
                if self._saw_watch_answer(call, self._send(call)):
                    return
            except BadRequest:  # a server that refuses the watch parameters
                self._server_watches = False
        time.sleep(min(self.config.poll_interval, remaining))

    def watch_image_tasks(
        self, image_id: str, since: str | None = None, wait: float = 30
    ) -> Iterator[list[Task]]:
        """Yield the image's tasks now and each time they change, until none is pending or processing.

        Glimpse answers when something changed (long polling); a server that ignores the watch
        parameters (plain Glance) is polled every ``config.poll_interval`` seconds instead, and only
        listings that differ from the last one are yielded.
        """
        tasks = self._tasks(self._send(self._watch_call(image_id, since, wait)))
        yield tasks
        since = _latest(tasks, since)
        while _pending(tasks):
            call = self._watch_call(image_id, since, wait)
            if call.params is None:
                time.sleep(self.config.poll_interval)
            try:
                response = self._send(call)
            except BadRequest:
                if call.params is None:
                    raise
                self._server_watches = False
                continue
            watched = self._saw_watch_answer(call, response)
            if watched and response.headers[CHANGED_HEADER] == "false":
                continue
            fresh = self._tasks(response)
            if not watched and fresh == tasks:
                continue
            tasks = fresh
            since = _latest(tasks, since)
            yield tasks


class AsyncClient(_BaseClient):
    """Asynchronous client. Use as an async context manager or await :meth:`aclose`."""

    def __init__(self, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(config)
        self._http = httpx.AsyncClient(transport=transport, **self._client_args())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        try:
            response = await self._http.send(self._build(call, self._http))
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc
        return self._check(response)

    # images
    async def create_image(self, **fields: Any) -> Image:
        return Image.from_json((await self._send(_Call("POST", "/v2/images", json=fields))).json())

    async def get_image(self, image_id: str) -> Image:
        return Image.from_json((await self._send(_Call("GET", f"/v2/images/{image_id}"))).json())

    async def list_images(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[Image]:
        """Every matching image, following ``next`` links page by page."""
        call: _Call | None = self._list_call(filters, page_size)
        while call is not None:
            body = (await self._send(call)).json()
            for item in body["images"]:
                yield Image.from_json(item)
            nxt = body.get("next")
            call = _Call("GET", nxt) if nxt else None

    async def update_image(self, image_id: str, changes: Mapping[str, Any]) -> Image:
        """Apply ``changes`` as a JSON patch; a ``None`` value removes the property."""
        ops = _patch_ops(await self.get_image(image_id), changes)
        call = _Call("PATCH", f"/v2/images/{image_id}", json=ops, headers={"Content-Type": PATCH_MEDIA_TYPE})
        return Image.from_json((await self._send(call)).json())

    async def delete_image(self, image_id: str) -> None:
        await self._send(_Call("DELETE", f"/v2/images/{image_id}"))

    async def add_tag(self, image_id: str, tag: str) -> None:
        await self._send(_Call("PUT", f"/v2/images/{image_id}/tags/{tag}"))

    async def remove_tag(self, image_id: str, tag: str) -> None:
        await self._send(_Call("DELETE", f"/v2/images/{image_id}/tags/{tag}"))

    async def deactivate_image(self, image_id: str) -> None:
        await self._send(_Call("POST", f"/v2/images/{image_id}/actions/deactivate"))

    async def reactivate_image(self, image_id: str) -> None:
        await self._send(_Call("POST", f"/v2/images/{image_id}/actions/reactivate"))

    # members
    async def add_member(self, image_id: str, member_id: str) -> Member:
        call = _Call("POST", f"/v2/images/{image_id}/members", json={"member": member_id})
        return Member.from_json((await self._send(call)).json())

    async def list_members(self, image_id: str) -> list[Member]:
        body = (await self._send(_Call("GET", f"/v2/images/{image_id}/members"))).json()
        return [Member.from_json(m) for m in body["members"]]

    async def update_member(self, image_id: str, member_id: str, status: str) -> Member:
        call = _Call("PUT", f"/v2/images/{image_id}/members/{member_id}", json={"status": status})
        return Member.from_json((await self._send(call)).json())

    async def remove_member(self, image_id: str, member_id: str) -> None:
        await self._send(_Call("DELETE", f"/v2/images/{image_id}/members/{member_id}"))

    # data
    async def _put_data(
        self, path: str, data: DataSource, on_progress: ProgressCallback | None, store: str | None = None
    ) -> None:
        total, headers = self._data_headers(data, store)

        async def body() -> AsyncIterator[bytes]:
            for chunk in _chunks(data, on_progress, total):
                yield chunk

        try:
            response = await self._http.put(path, content=body(), headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc
        self._check(response)

    async def upload(
        self,
        image_id: str,
        data: DataSource,
        on_progress: ProgressCallback | None = None,
        *,
        store: str | None = None,
    ) -> None:
        """Upload image data (see :meth:`Client.upload`)."""
        await self._put_data(f"/v2/images/{image_id}/file", data, on_progress, store)

    async def stage(
        self, image_id: str, data: DataSource, on_progress: ProgressCallback | None = None
    ) -> None:
        """Stage data for a ``glance-direct`` import."""
        await self._put_data(f"/v2/images/{image_id}/stage", data, on_progress)

    @asynccontextmanager
    async def _data(self, image_id: str, offset: int) -> AsyncIterator[tuple[httpx.Response | None, int]]:
        """The image's data response from ``offset`` on (see :meth:`Client._data`)."""
        try:
            async with self._http.stream(
                "GET", f"/v2/images/{image_id}/file", headers=_range(offset)
            ) as response:
                if response.status_code == 416:
                    yield None, offset
                    return
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                yield response, offset if response.status_code == 206 else 0
        except httpx.TransportError as exc:
            raise TransportError(str(exc) or type(exc).__name__) from exc

    async def iter_data(
        self, image_id: str, *, offset: int = 0, on_progress: ProgressCallback | None = None
    ) -> AsyncIterator[bytes]:
        """The image's data as a stream of chunks (see :meth:`Client.iter_data`)."""
        async with self._data(image_id, offset) as (response, start):
            if response is None:
                return
            cut = _Cut(offset, start, _total_from(response, start), on_progress)
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                if piece := cut(chunk):
                    yield piece

    async def download(
        self, image_id: str, path: str | os.PathLike[str], on_progress: ProgressCallback | None = None
    ) -> int:
        """Download into ``path``, resuming with ``Range`` when the file already holds a part."""
        target = Path(path)
        offset = _existing_size(target)
        async with self._data(image_id, offset) as (response, start):
            if response is None:
                return offset
            cut = _Cut(start, start, _total_from(response, start), on_progress)
            with _open_target(target, start) as handle:
                async for chunk in response.aiter_bytes(CHUNK_SIZE):
                    handle.write(cut(chunk))
        return cut.position

    # discovery
    async def stores(self) -> list[dict[str, Any]]:
        stores: list[dict[str, Any]] = (await self._send(_Call("GET", "/v2/info/stores"))).json()["stores"]
        return stores

    async def import_info(self) -> dict[str, Any]:
        info: dict[str, Any] = (await self._send(_Call("GET", "/v2/info/import"))).json()
        return info

    # imports and tasks
    async def import_image(
        self,
        image_id: str,
        method: str,
        uri: str | None = None,
        stores: list[str] | None = None,
        all_stores: bool = False,
        allow_failure: bool = False,
    ) -> AsyncTaskHandle | None:
        """Start an import; the handle follows its task, ``None`` when there is no task to follow
        (see :meth:`Client.import_image`)."""
        body = _import_body(method, uri, stores, all_stores, allow_failure)
        response = await self._send(_Call("POST", f"/v2/images/{image_id}/import", json=body))
        task_id = self._task_id(response)
        if task_id is None:
            try:
                started = started_task(await self.image_tasks(image_id), self._request_ids(response))
            except ClientError:
                return None
            if started is None:
                return None
            task_id = started.id
        return AsyncTaskHandle(self, image_id, task_id, response.headers.get("location"))

    async def copy_image(
        self, image_id: str, stores: list[str] | None = None, all_stores: bool = False
    ) -> AsyncTaskHandle | None:
        return await self.import_image(image_id, "copy-image", stores=stores, all_stores=all_stores)

    # Same signature as the sync client: the deadline spans many requests.
    async def wait_for_import(self, image_id: str, timeout: float = 300.0) -> Image:  # noqa: ASYNC109
        """Wait until no import or copy is under way on the image (see :meth:`Client.wait_for_import`)."""
        deadline = time.monotonic() + timeout
        while True:
            image = await self.get_image(image_id)
            remaining = _image_step(image, deadline, timeout)
            if remaining is None:
                return image
            await asyncio.sleep(min(self.config.poll_interval, remaining))

    async def image_tasks(self, image_id: str) -> list[Task]:
        return self._tasks(await self._send(_Call("GET", f"/v2/images/{image_id}/tasks")))

    async def get_task(self, image_id: str, task_id: str) -> Task:
        """One task of the image (see :meth:`Client.get_task`)."""
        if self._single_task_route is False:
            return self._listed_task(await self.image_tasks(image_id), image_id, task_id)
        try:
            response = await self._send(_Call("GET", f"/v2/images/{image_id}/tasks/{task_id}"))
        except NotFound:
            if self._single_task_route:
                raise
            task = self._listed_task(await self.image_tasks(image_id), image_id, task_id)
            self._single_task_route = False
            return task
        self._single_task_route = True
        return Task.from_json(response.json())

    async def _wait_for_change(self, image_id: str, since: str | None, remaining: float) -> None:
        call = self._watch_call(image_id, since, min(remaining, 30))
        if call.params is not None:
            try:
                if self._saw_watch_answer(call, await self._send(call)):
                    return
            except BadRequest:  # a server that refuses the watch parameters
                self._server_watches = False
        await asyncio.sleep(min(self.config.poll_interval, remaining))

    async def watch_image_tasks(
        self, image_id: str, since: str | None = None, wait: float = 30
    ) -> AsyncIterator[list[Task]]:
        """Yield the image's tasks now and each time they change (see :meth:`Client.watch_image_tasks`)."""
        tasks = self._tasks(await self._send(self._watch_call(image_id, since, wait)))
        yield tasks
        since = _latest(tasks, since)
        while _pending(tasks):
            call = self._watch_call(image_id, since, wait)
            if call.params is None:
                await asyncio.sleep(self.config.poll_interval)
            try:
                response = await self._send(call)
            except BadRequest:
                if call.params is None:
                    raise
                self._server_watches = False
                continue
            watched = self._saw_watch_answer(call, response)
            if watched and response.headers[CHANGED_HEADER] == "false":
                continue
            fresh = self._tasks(response)
            if not watched and fresh == tasks:
                continue
            tasks = fresh
            since = _latest(tasks, since)
            yield tasks
