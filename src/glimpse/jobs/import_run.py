"""One execution of one import task: what its steps share (:class:`ImportRun`) and the names of
the progress phases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from glimpse.context import RequestContext, new_request_id
from glimpse.domain.images import Image
from glimpse.domain.imports import ExpectedDigest, ImportMethod, ImportRequest
from glimpse.domain.quotas import Resource
from glimpse.domain.tasks import StoreState, Task, TaskProgress
from glimpse.jobs.errors import ImageDeleted
from glimpse.jobs.image_state import hold_lock, lock_holder
from glimpse.jobs.progress import Heartbeat
from glimpse.ports import ImageStore, Ports, Repositories

T = TypeVar("T")

#: Progress phases, in order.
PHASE_PENDING: Final = "pending"
PHASE_STAGING: Final = "staging"
PHASE_DECOMPRESSING: Final = "decompressing"
PHASE_CONVERTING: Final = "converting"
PHASE_STORES: Final = "stores"
PHASE_DONE: Final = "done"
PHASE_FAILED: Final = "failed"

#: The per-store error of a store whose data was removed because the task as a whole failed.
NOT_KEPT: Final = "not kept: the task failed (its message says why)"


@dataclass
class ImportRun:
    """Everything one execution of one task knows; the steps share it."""

    ports: Ports
    task: Task
    worker_id: str
    heartbeat: Heartbeat
    context: RequestContext
    image_id: str
    #: The import request the task input holds; None when it holds no valid one (the flow fails).
    request: ImportRequest | None
    targets: list[str]
    must_succeed: bool
    image: Image | None = None
    #: Bytes of the image data (staged, downloaded or read from the source location).
    size: int | None = None
    #: The virtual size the inspection of the data found (None when the format does not tell).
    virtual_size: int | None = None
    #: The staging location this run wrote (web-download).
    staged: str | None = None
    #: The disk format of the data the stores get (an import plugin may convert it); None until
    #: the image is loaded.
    disk_format: str | None = None
    #: The staging objects the import plugins wrote, in order; the last one is what the stores get.
    derived: list[str] = field(default_factory=list)
    #: Whether a copy read the data the import left in the staging area (a retry of failed stores).
    reused_staging: bool = False
    #: Whether the client's ``validation_data`` was already checked (on the data as it came in,
    #: before a plugin changed it).
    validated: bool = False
    #: Objects this run committed to target stores: store id → location.
    written: dict[str, str] = field(default_factory=dict)
    #: Stores whose location row this run added.
    recorded: list[str] = field(default_factory=list)
    #: Stores that failed while the flow went on (all_stores_must_succeed = false): id → reason.
    failed: dict[str, str] = field(default_factory=dict)
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    #: glance-download: the digest the remote image records, which the downloaded data must have.
    remote_digest: ExpectedDigest | None = None
    #: glance-download: the formats and properties the remote image's replaced, for the revert.
    metadata_undo: dict[str, Any] | None = None

    @classmethod
    def for_task(cls, ports: Ports, task: Task, worker_id: str, heartbeat: Heartbeat) -> ImportRun:
        request = task.import_request
        copying = request is not None and request.method is ImportMethod.COPY_IMAGE
        return cls(
            ports=ports,
            task=task,
            worker_id=worker_id,
            heartbeat=heartbeat,
            # The caller's identity travels with the task; copy-image changes image metadata with
            # admin rights, as Glance does (an admin may copy any image it can see).
            context=RequestContext(
                user_id=task.user_id,
                project_id=task.owner,
                roles=("admin",) if copying else (),
                is_admin=copying,
                request_id=task.request_id or new_request_id(),
            ),
            image_id=task.image_id or str(task.input.get("image_id") or ""),
            request=request,
            targets=list(dict.fromkeys(task.stores)),
            must_succeed=request is None or request.all_stores_must_succeed,
        )

    @property
    def method(self) -> ImportMethod | None:
        return None if self.request is None else self.request.method

    @property
    def expected_digest(self) -> ExpectedDigest | None:
        """The digest the data must have before any store keeps it (the client's
        ``validation_data``, else the remote image's for glance-download); None once checked."""
        if self.validated:
            return None
        given = None if self.request is None else self.request.validation_data
        return given or self.remote_digest

    @property
    def brings_data(self) -> bool:
        """Whether this run fills a queued image with new data (glance-direct, web-download,
        glance-download)."""
        return self.request is not None and self.request.method.brings_data

    @property
    def progress(self) -> TaskProgress:
        return self.heartbeat.progress

    @property
    def staging(self) -> ImageStore:
        return self.ports.stores.staging

    @property
    def staged_source(self) -> str:
        """The staging location whose data the stores get: the last plugin's output, or the data
        as staged or downloaded."""
        if self.derived:
            return self.derived[-1]
        return self.staged or self.staging.location_for(self.image_id)

    async def data_limit(self, *, staging: bool = False) -> int:
        """The most bytes the image may have: ``image_size_cap``, or less when what the owner's
        ``image_size_total`` limit (``user_storage_quota`` or Keystone's) leaves is less, as
        counted when the step starts; with ``staging`` (a download into the staging area) also what
        ``image_stage_total`` leaves. What this task itself reserved when it was created is room it
        has, not usage."""
        settings = self.ports.settings
        image = self.image
        if image is None or image.owner is None:
            return settings.image_size_cap
        owner = image.owner
        limits = await self.ports.limits.limits(owner)
        resources = [Resource.IMAGE_SIZE_TOTAL] + ([Resource.IMAGE_STAGE_TOTAL] if staging else [])
        bounded = [(r, quota) for r in resources if (quota := limits.limit(r)) is not None]
        if not bounded:
            return settings.image_size_cap
        now = self.ports.clock()
        holder = self.task.id

        def left(repos: Repositories) -> int:
            room = settings.image_size_cap
            for resource, quota in bounded:
                used = repos.quotas.usage(owner, resource, now) - repos.quotas.held(resource, holder, now)
                room = min(room, max(0, quota - used))
            return room

        return await self.ports.run(left, readonly=True)

    async def locked(self, fn: Callable[[Repositories], T]) -> T:
        """Run ``fn`` in one unit of work that first re-asserts this task's hold on the lock."""

        def unit(repos: Repositories) -> T:
            hold_lock(repos, self.image_id, self.task.id)
            return fn(repos)

        return await self.ports.run(unit)

    async def image_is_gone(self) -> bool:
        def look(repos: Repositories) -> bool:
            try:
                lock_holder(repos, self.image_id)
            except ImageDeleted:
                return True
            return False

        return await self.ports.run(look, readonly=True)

    def mark_failed_stores(self, reason: str) -> None:
        """After a revert: every target that does not hold the data shows as failed."""
        for store_id in self.targets:
            progress = self.heartbeat.store(store_id)
            if store_id in self.recorded and store_id in self.written:
                continue
            if progress.state != StoreState.FAILED:
                progress.state = StoreState.FAILED
                progress.error = progress.error or reason
                progress.updated_at = self.ports.clock()
