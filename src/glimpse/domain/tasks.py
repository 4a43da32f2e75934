"""Tasks: the durable record of one import or copy, its status machine, progress and the lock rules."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from glimpse.domain.images import ImageStatus
from glimpse.domain.imports import ImportMethod, ImportRequest
from glimpse.errors import InvalidInput, InvalidTransition
from glimpse.redaction import redact_url

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class TaskLost(Exception):
    """The runner no longer owns this task (its lease was taken over, or it was failed or busted)."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Who asked to cancel a task, and when: recorded in the task row, so every runner sees it."""

    at: datetime
    user_id: str | None
    project_id: str | None
    request_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "user_id": self.user_id,
            "project_id": self.project_id,
            "request_id": self.request_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CancelRequest:
        at = _parse(data.get("at"))
        return cls(
            at=at if at is not None else datetime.min.replace(tzinfo=UTC),
            user_id=_str_or_none(data.get("user_id")),
            project_id=_str_or_none(data.get("project_id")),
            request_id=_str_or_none(data.get("request_id")),
        )

    def describe(self) -> str:
        """``Cancelled by user U of project P at T (request R).``"""
        when = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        request = f" (request {self.request_id})" if self.request_id else ""
        return (
            f"Cancelled by user {self.user_id or 'unknown'} of project {self.project_id or 'unknown'} "
            f"at {when}{request}."
        )


class TaskCancelled(Exception):
    """Someone cancelled the task (``DELETE /v2/images/{id}/tasks/{task_id}``): the runner stops,
    undoes this run's work and ends the task ``failure``."""

    def __init__(self, task_id: str, request: CancelRequest) -> None:
        self.task_id = task_id
        self.request = request
        super().__init__(f"task {task_id}: {request.describe()}")


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILURE = "failure"


class TaskType(enum.StrEnum):
    IMPORT = "import"
    API_IMAGE_IMPORT = "api_image_import"


T = TaskStatus
#: The task status machine, as data; success and failure are terminal.
TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.PROCESSING, T.FAILURE}),
    T.PROCESSING: frozenset({T.SUCCESS, T.FAILURE, T.PENDING}),
    T.SUCCESS: frozenset(),
    T.FAILURE: frozenset(),
}
TERMINAL = frozenset({T.SUCCESS, T.FAILURE})
ACTIVE = frozenset({T.PENDING, T.PROCESSING})


def require_task_transition(current: TaskStatus, target: TaskStatus) -> None:
    if target not in TASK_TRANSITIONS[current]:
        raise InvalidTransition(f"Task status transition from '{current}' to '{target}' is not allowed.")


class StoreState(enum.StrEnum):
    """Where one target store of an import or copy stands."""

    PENDING = "pending"
    COPYING = "copying"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class StoreProgress:
    state: StoreState = StoreState.PENDING
    bytes_done: int = 0
    bytes_total: int | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    error: str | None = None

    @property
    def percent(self) -> float | None:
        if not self.bytes_total:
            return 100.0 if self.state == StoreState.DONE else None
        return round(min(100.0, 100.0 * self.bytes_done / self.bytes_total), 1)


#: The phases in which the staged data is transformed by an import plugin (not per store).
DATA_STEP_PHASES = frozenset({"decompressing", "converting"})


@dataclass(slots=True)
class TaskProgress:
    """Structured progress: a phase (``staging``, ``decompressing``, ``converting``, ``stores``...),
    per-store state, the overall rate, and for the plugin phases how far they are."""

    phase: str = "pending"
    staged_bytes: int = 0
    stores: dict[str, StoreProgress] = field(default_factory=dict)
    bytes_per_second: float | None = None
    #: How far the current plugin phase is (decompressing, converting), 0-100; None otherwise.
    percent: float | None = None
    #: Bytes the current plugin phase has written to the staging area so far.
    processed_bytes: int = 0
    #: Each configured import plugin → ``pending``, ``running``, ``done``, ``skipped`` or ``failed``.
    plugins: dict[str, str] = field(default_factory=dict)
    #: The size the web server announced for a web-download (None: not announced, or no download).
    staged_total: int | None = None
    #: Seconds the current phase still needs at the recent rate; None when that is unknown.
    eta_seconds: int | None = None
    #: When the last byte moved, while none has moved for a while (a stall); None while bytes move.
    stalled_since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "staged_bytes": self.staged_bytes,
            "bytes_per_second": self.bytes_per_second,
            "percent": self.percent,
            "processed_bytes": self.processed_bytes,
            "plugins": dict(self.plugins),
            "staged_total": self.staged_total,
            "eta_seconds": self.eta_seconds,
            "stalled_since": _iso(self.stalled_since),
            "stores": {
                store: {
                    "state": str(p.state),
                    "bytes_done": p.bytes_done,
                    "bytes_total": p.bytes_total,
                    "percent": p.percent,
                    "started_at": _iso(p.started_at),
                    "updated_at": _iso(p.updated_at),
                    "error": p.error,
                }
                for store, p in self.stores.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TaskProgress:
        if not data:
            return cls()
        stores = {
            name: StoreProgress(
                state=StoreState(raw.get("state", "pending")),
                bytes_done=int(raw.get("bytes_done") or 0),
                bytes_total=raw.get("bytes_total"),
                started_at=_parse(raw.get("started_at")),
                updated_at=_parse(raw.get("updated_at")),
                error=raw.get("error"),
            )
            for name, raw in (data.get("stores") or {}).items()
        }
        percent = data.get("percent")
        plugins = data.get("plugins") or {}
        staged_total, eta = data.get("staged_total"), data.get("eta_seconds")
        return cls(
            phase=str(data.get("phase") or "pending"),
            staged_bytes=int(data.get("staged_bytes") or 0),
            stores=stores,
            bytes_per_second=data.get("bytes_per_second"),
            percent=float(percent) if isinstance(percent, int | float) else None,
            processed_bytes=int(data.get("processed_bytes") or 0),
            plugins={str(k): str(v) for k, v in plugins.items()} if isinstance(plugins, Mapping) else {},
            staged_total=staged_total if isinstance(staged_total, int) else None,
            eta_seconds=eta if isinstance(eta, int) else None,
            stalled_since=_parse(data.get("stalled_since")),
        )

    def end(self, phase: str) -> None:
        """Enter a final phase (``done``, ``failed``): nothing is left to wait for or to stall."""
        self.phase = phase
        self.eta_seconds = None
        self.stalled_since = None

    def bytes_moved(self) -> int:
        """Every byte moved so far (staging, plugin output, each store): the basis of ``bytes_per_second``."""
        return self.staged_bytes + self.processed_bytes + sum(p.bytes_done for p in self.stores.values())

    def bytes_copied(self) -> int:
        """The image bytes copied so far, counted once (see ``copied_message``)."""
        if self.phase == "staging" or self.phase in DATA_STEP_PHASES:
            return self.staged_bytes
        return max((p.bytes_done for p in self.stores.values()), default=self.staged_bytes)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def copied_message(progress: TaskProgress) -> str:
    """Glance's heartbeat message, with Glance's meaning: whole MiB of the image copied so far.

    While downloading into staging that is the staged bytes; while writing stores it is how far the
    store writes have got (they run side by side, so the most advanced one). It never adds stores up:
    a finished import of a 3 MiB image says "Copied 3 MiB" however many stores it went to.
    """
    return f"Copied {progress.bytes_copied() // (1024 * 1024)} MiB"


@dataclass(slots=True)
class Task:
    id: str
    type: TaskType
    status: TaskStatus
    owner: str | None
    image_id: str | None
    request_id: str | None
    user_id: str | None
    input: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None = None
    message: str = ""
    expires_at: datetime | None = None
    deleted: bool = False
    deleted_at: datetime | None = None
    claimed_by: str | None = None
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    attempt: int = 0
    progress: TaskProgress = field(default_factory=TaskProgress)
    #: The node whose runners alone may claim the task (the data was staged there); None: any node.
    stage_host: str | None = None
    #: Who asked to cancel the task, once someone did (the task then ends ``failure``).
    cancel: CancelRequest | None = None
    #: glance-download: the caller's Keystone token, which the runner needs to read the service
    #: catalog and the remote image. Kept with the task row only while the task is active (never
    #: in ``input``, never shown, never logged); None for every other task and once it has ended.
    credential: str | None = field(default=None, repr=False)
    #: glance-download: the caller's roles (its service token's too), which the property
    #: protections judge the copied properties by. Kept with the task row while it is active, never
    #: shown; empty for every other task.
    roles: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def stores(self) -> list[str]:
        """The target stores named in the task input (Glance's ``backend`` list)."""
        return [s for s in self.input.get("backend") or [] if isinstance(s, str)]

    @property
    def import_request(self) -> ImportRequest | None:
        """The import request the task runs, or None when its input holds no valid one.

        A task of type ``import`` (``POST /v2/tasks``) runs as a web-download of its ``import_from``.
        """
        try:
            if self.type == TaskType.IMPORT:
                return web_download_request(self.input.get("import_from"))
            return ImportRequest.from_dict(self.input.get("import_req"))
        except InvalidInput:
            return None

    @property
    def method(self) -> ImportMethod | None:
        request = self.import_request
        return None if request is None else request.method

    @property
    def shown_input(self) -> dict[str, Any]:
        """:attr:`input` as the API shows it: the URL to import from without its credentials."""
        shown: dict[str, Any] = _without_credentials(self.input)
        return shown


#: Keys of a task input whose value is a URL to import from (``import_req.method.uri``, ``import_from``).
_URL_KEYS: Final = frozenset({"uri", "import_from"})


def _without_credentials(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _without_credentials(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    if isinstance(value, str) and key in _URL_KEYS:
        return redact_url(value)
    return value


# -- tasks of type import (POST /v2/tasks) ------------------------------------------------------------

#: What the input of an ``import`` task holds (Glance's names); ``backend`` is optional.
IMPORT_TASK_FIELDS: Final = ("import_from", "import_from_format", "image_properties")
_IMPORT_TASK_EXAMPLE: Final = (
    '{"type": "import", "input": {"import_from": "https://example.com/cirros.qcow2", '
    '"import_from_format": "qcow2", "image_properties": {"name": "cirros", "disk_format": "qcow2", '
    '"container_format": "bare"}}}'
)


def web_download_request(uri: object, stores: tuple[str, ...] | None = None) -> ImportRequest:
    """The web-download import request an ``import`` task runs as (400 when ``uri`` is no string)."""
    body: dict[str, Any] = {"method": {"name": str(ImportMethod.WEB_DOWNLOAD), "uri": uri}}
    if stores is not None:
        body["stores"] = list(stores)
    return ImportRequest.from_dict(body)


@dataclass(frozen=True, slots=True)
class ImportTaskRequest:
    """A ``POST /v2/tasks`` body: Glance's old ``import`` task, which creates an image with
    ``image_properties`` and fills it from the URL ``import_from``. Glimpse runs it as a
    web-download of that image, so the same URL filtering, progress, lock and revert apply."""

    import_from: str
    import_from_format: str
    image_properties: dict[str, Any]
    #: The store to import to (``backend`` in the input); None: the default store.
    backend: str | None = None

    @classmethod
    def from_body(cls, body: object) -> ImportTaskRequest:
        """Parse and check the body with Glance's messages where Glance has them (all 400)."""
        if body is None:
            raise InvalidInput("Body expected in request.")
        if not isinstance(body, Mapping):
            raise InvalidInput(f"The request body must be a JSON object such as {_IMPORT_TASK_EXAMPLE}.")
        for name in ("type", "input"):
            if name not in body:
                raise InvalidInput(f"Task '{name}' is required")
        task_type = body["type"]
        if task_type != TaskType.IMPORT:
            hint = (
                " Imports of type api_image_import are started with POST /v2/images/{image_id}/import."
                if task_type == TaskType.API_IMAGE_IMPORT
                else ""
            )
            raise InvalidInput(f"Task type {task_type!r} cannot be created; only 'import' can.{hint}")
        extra = set(body) - {"type", "input"}
        if extra:
            raise InvalidInput(f"Unknown task attribute(s): {', '.join(sorted(extra))}.")
        given = body["input"]
        if not isinstance(given, Mapping):
            raise InvalidInput(f"Task 'input' must be an object, e.g. {_IMPORT_TASK_EXAMPLE}.")
        for name in IMPORT_TASK_FIELDS:
            if name not in given:
                raise InvalidInput(f"Input does not contain '{name}' field")
        unknown = set(given) - {*IMPORT_TASK_FIELDS, "backend"}
        if unknown:
            raise InvalidInput(
                f"Unknown field(s) in the input of an import task: {', '.join(sorted(unknown))}; it "
                f"takes {', '.join(IMPORT_TASK_FIELDS)} and optionally backend."
            )
        uri, source_format = given["import_from"], given["import_from_format"]
        if not isinstance(uri, str) or not uri:
            raise InvalidInput("'import_from' must be the http or https URL of the image data.")
        if uri.startswith(("file:", "filesystem:")):
            raise InvalidInput(
                "File based imports are not allowed. Please use a non-local source of image data."
            )
        if not isinstance(source_format, str) or not source_format:
            raise InvalidInput("'import_from_format' must be the disk format of the data, e.g. 'qcow2'.")
        properties = given["image_properties"]
        if not isinstance(properties, Mapping):
            raise InvalidInput("'image_properties' must be an object of image attributes.")
        for attr in ("container_format", "disk_format"):
            if not properties.get(attr):
                raise InvalidInput(
                    f"'image_properties' must set '{attr}': the image is imported as soon as it is "
                    "created, and an import needs both formats."
                )
        backend = given.get("backend")
        if backend is not None and (not isinstance(backend, str) or not backend):
            raise InvalidInput("'backend' must be the id of one store (GET /v2/info/stores lists them).")
        return cls(
            import_from=uri,
            import_from_format=source_format,
            image_properties=dict(properties),
            backend=backend,
        )

    def import_request(self) -> ImportRequest:
        return web_download_request(self.import_from, None if self.backend is None else (self.backend,))

    def task_input(self, stores: Iterable[str]) -> dict[str, Any]:
        """The input the task keeps: what was given, with ``backend`` the list of target stores."""
        return {
            "import_from": self.import_from,
            "import_from_format": self.import_from_format,
            "image_properties": dict(self.image_properties),
            "backend": list(stores),
        }


def status_before_import(method: ImportMethod | None) -> ImageStatus | None:
    """The image status an import of ``method`` started from, which a cancel restores: a staged
    image (glance-direct) keeps its data, a web-download starts again from ``queued``; a copy leaves
    the (active) image alone (None)."""
    if method is ImportMethod.GLANCE_DIRECT:
        return ImageStatus.UPLOADING
    if method in (ImportMethod.WEB_DOWNLOAD, ImportMethod.GLANCE_DOWNLOAD):
        return ImageStatus.QUEUED
    return None


def cancelled_outcome(method: ImportMethod | None, image_id: str) -> str:
    """What a cancelled task left behind and how to start again."""
    if method is ImportMethod.GLANCE_DIRECT:
        return (
            f"Image {image_id} is back to 'uploading' with its staged data kept; import it again "
            "(glance-direct) to start over."
        )
    if method in (ImportMethod.WEB_DOWNLOAD, ImportMethod.GLANCE_DOWNLOAD):
        return (
            f"Image {image_id} is back to 'queued' and the data downloaded for it was removed; "
            "import it again to start over."
        )
    if method is ImportMethod.COPY_IMAGE:
        return (
            f"Image {image_id} is unchanged and the partial copies were removed; copy it again to start over."
        )
    return "Nothing was changed."


def waiting_message(stage_host: str | None) -> str:
    """The message of a pending task that only the runners of ``stage_host`` may claim ("" for any)."""
    if stage_host is None:
        return ""
    return (
        f"Waiting for a task runner on node {stage_host}, where the image data was staged; the task "
        "stays pending while no runner of that node is running."
    )


def changed_after(tasks: Iterable[Task], moment: datetime) -> bool:
    """Whether one of ``tasks`` was updated after ``moment`` (what a watcher waits for)."""
    return any(task.updated_at > moment for task in tasks)


# -- the import lock -----------------------------------------------------------------------------

#: A lock whose holder has not heart-beaten for this long may be broken (Glance: 60 minutes) ...
DEFAULT_LOCK_STALE_AFTER = timedelta(minutes=60)


def lock_stale_after(task: Task | None, stale_after: timedelta) -> timedelta:
    """... and twice as long while the holder is still pending (Glance's rule)."""
    if task is not None and task.status == TaskStatus.PENDING:
        return stale_after * 2
    return stale_after


def lock_breakable_at(task: Task | None, stale_after: timedelta) -> datetime | None:
    """When the lock held by ``task`` may be broken; None when it may be broken now (no such task)."""
    if task is None:
        return None
    last_sign_of_life = task.heartbeat_at or task.updated_at
    return last_sign_of_life + lock_stale_after(task, stale_after)


def lock_is_stale(task: Task | None, now: datetime, stale_after: timedelta) -> bool:
    breakable = lock_breakable_at(task, stale_after)
    return breakable is None or now >= breakable


EXPIRED_LOCK_MESSAGE = "Expired lock preempted"
