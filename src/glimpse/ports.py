"""The ports: what the services and the task runner need from the rest of the process.

The services (``glimpse.services``) and the task runner (``glimpse.jobs``) import no database,
driver or runtime module. They get a :class:`Ports` (the process's :class:`~glimpse.runtime.Runtime`
fills it in) and work through the protocols here:

* :class:`Repositories`, handed to the function given to :meth:`Ports.run`, which runs it in one
  unit of work (one transaction, committed when the function returns): the SQL repositories of
  ``glimpse.db`` implement :class:`ImageRepository`, :class:`MemberRepository` and
  :class:`TaskRepository`.
* :class:`Notifier`, where events go (``glimpse.notifier`` sends them with oslo.messaging), and
  :class:`Outbox`, the events of one unit of work, sent only once it has committed.
* :class:`ImageStore`, the one interface every image store driver of ``glimpse.storage``
  implements (its contract suite is ``tests/integration/test_store_contract.py``), and
  :class:`StoreCatalog`, the configured stores of the process.
"""

from __future__ import annotations

import builtins
import enum
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from glimpse.config import Settings
from glimpse.domain.history import HistoryEntry
from glimpse.domain.idempotency import Claim, KeyRecord, StoredAnswer
from glimpse.domain.images import STAGE_HOST_PROPERTY, Image, ImageStatus, Location, MemberStatus
from glimpse.domain.members import ImageMember, Viewer
from glimpse.domain.metadefs import Association, Entry, EntryKind, Namespace, NamespaceQuery, ResourceType
from glimpse.domain.notifications import Event
from glimpse.domain.policy import Policy
from glimpse.domain.queries import ImageListQuery
from glimpse.domain.quotas import Limits, Resource, refusal
from glimpse.domain.tasks import CancelRequest, Task, TaskProgress, status_before_import
from glimpse.errors import OverQuota, StorageError, StoreMismatch

__all__ = [
    "Capabilities",
    "HistoryRepository",
    "IdempotencyRepository",
    "ImageRepository",
    "ImageStore",
    "LimitSource",
    "LocalFiles",
    "LockState",
    "MemberRepository",
    "MetadefRepository",
    "Notifier",
    "ObjectStat",
    "Outbox",
    "Ports",
    "QuotaRepository",
    "Repositories",
    "StoreCatalog",
    "StoreEntry",
    "StoredObject",
    "TaskRepository",
    "reserve_quota",
    "undo_import_request",
    "verify_write",
]

T = TypeVar("T")

log = logging.getLogger(__name__)


# -- image stores ------------------------------------------------------------------------------------


class Capabilities(enum.Flag):
    """Optional abilities of a store, checked by callers instead of the store's type."""

    NONE = 0
    WRITE = enum.auto()
    RANGE_READ = enum.auto()
    SERVER_SIDE_COPY = enum.auto()
    #: Objects are files on this node: the store is also :class:`LocalFiles`.
    LOCAL_FILES = enum.auto()


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a successful write produced: where the bytes are and how many there are."""

    location: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a store says about one object without reading its data: its size and, where the
    backend keeps it (the ETag of a plain S3 or Swift object), the md5 of its bytes in hex."""

    size: int
    md5: str | None = None

    def differences(self, size: int, md5: str) -> list[str]:
        """How this object differs from ``size`` bytes with ``md5`` (empty when it does not)."""
        found: list[str] = []
        if self.size != size:
            found.append(f"{self.size} bytes where {size} were written")
        if self.md5 is not None and self.md5 != md5:
            found.append(f"md5 {self.md5} where the data written has {md5}")
        return found


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """One complete object of a store listing: its key and when it was last written (UTC)."""

    key: str
    modified: datetime


@runtime_checkable
class ImageStore(Protocol):
    """A place image bytes live in. A driver moves bytes and nothing else: it knows no images,
    statuses or hashes, and translates its backend's errors into the ``StorageError`` tree.

    Contract (checked for every driver by ``tests/integration/test_store_contract.py``):

    * ``write(key, chunks)`` consumes the whole iterator and returns the object's location and size.
      The object becomes visible under its location only once the write has succeeded; if the
      iterator raises, the task is cancelled or the backend fails, no partial object is left
      behind and the error propagates (backend failures as ``StorageError``). That holds even when
      the cancellation arrives while the publishing request runs (it cannot be stopped): an object
      published by a write that then raises is deleted again, since its caller never records it.
      ``max_size`` makes the
      write fail with ``glimpse.errors.TooLarge`` as soon as more than that many bytes arrive.
      Writing the same key again replaces the object atomically.
    * ``await open(location, offset, length)`` returns an async iterator of the bytes from ``offset``
      (``length`` bytes, or to the end when ``None``). A missing object raises ``StoreNotFound`` from
      the ``await``, before any chunk is produced, so an HTTP handler can still answer 404.
    * ``delete(location)`` removes the object; a missing object raises ``StoreNotFound``.
    * ``stat(location)`` returns an :class:`ObjectStat`: the stored size and, when the backend keeps
      it and gives it without reading the data, the md5 of the bytes (else None); missing →
      ``StoreNotFound``.
    * ``location_for(key)`` is the location an object written under ``key`` has (whether or not it
      exists), so callers never build a store's locations themselves; a bad key raises ``ValueError``.
    * ``await objects()`` lists the complete objects of the store as :class:`StoreEntry` (key and
      last write time), sorted by key; data of writes still in progress or abandoned is not among
      them, and neither are names that are no valid key.
    * ``owns(location)`` tells whether a location belongs to this store.
    * ``describe()`` returns the type-specific ``properties`` of ``GET /v2/info/stores/detail``.
    * ``await probe()`` is a cheap check that the backend can be reached and written to now (a
      directory's permissions, S3 ``HeadBucket``, a Swift container ``HEAD``); it changes nothing and
      raises ``StorageError`` saying what to check. A bucket or container the first write would create
      (``*_create_*_on_put``) counts as usable. The health check calls it on the default store.
    * ``await sweep_unfinished(older_than)`` removes the leftovers of writes that never finished (a
      process killed mid-write skips the write's own clean-up): temporary files, multipart uploads
      never completed, segments no manifest refers to. Only leftovers last written before
      ``older_than`` are touched, so a write in progress elsewhere is safe as long as it lasts less
      than the caller's margin; complete objects never are. Returns a description of each leftover
      removed, for the log; a backend that fails raises ``StorageError``.
    """

    id: str
    type: str
    description: str
    weight: int
    capabilities: Capabilities

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject: ...

    async def open(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def delete(self, location: str) -> None: ...

    async def stat(self, location: str) -> ObjectStat: ...

    async def objects(self) -> list[StoreEntry]: ...

    def location_for(self, key: str) -> str: ...

    def describe(self) -> Mapping[str, object]: ...

    def owns(self, location: str) -> bool: ...

    async def probe(self) -> None: ...

    async def sweep_unfinished(self, older_than: datetime) -> list[str]: ...


@runtime_checkable
class LocalFiles(Protocol):
    """What a store whose objects are files on this node (the filesystem store) also offers, for
    programs that need a file rather than a stream (``qemu-img``).

    * ``local_path(location)`` is the path of the object's file; ``StoreNotFound`` when the
      location is not this store's.
    * ``scratch_path(key)`` is a fresh path in the store's directory for a temporary file that
      ``keys()`` never lists; the caller creates it and removes it (or adopts it).
    * ``await adopt(path, key)`` moves a file made at a ``scratch_path`` into the store as the
      object ``key`` (atomically, replacing any object of that key) and returns it.
    """

    def local_path(self, location: str) -> str: ...

    def scratch_path(self, key: str) -> str: ...

    async def adopt(self, path: str, key: str) -> StoredObject: ...


class StoreCatalog(Protocol):
    """The configured stores in their configured order, the default one and the staging store."""

    def __contains__(self, store_id: object) -> bool: ...

    def get(self, store_id: str) -> ImageStore:
        """The store called ``store_id``; ``glimpse.errors.UnknownStore`` otherwise."""
        ...

    @property
    def default(self) -> ImageStore: ...

    @property
    def staging(self) -> ImageStore: ...

    def all(self) -> tuple[ImageStore, ...]: ...

    def ids(self) -> tuple[str, ...]: ...

    def for_location(self, location: str) -> ImageStore: ...


async def verify_write(store: ImageStore, stored: StoredObject, *, size: int, md5: str) -> None:
    """Check a finished write against the bytes that were sent (``size`` bytes with ``md5``): the
    store's size and, where it gives one, its md5. A store that kept other bytes, or whose object
    cannot be looked at right after the write, fails: the object is deleted and
    :class:`~glimpse.errors.StoreMismatch` names the store and what differs."""
    try:
        found = await store.stat(stored.location)
    except StorageError as exc:
        problems = [f"the object could not be looked at after the write ({exc.message})"]
    else:
        problems = found.differences(size, md5)
    if not problems:
        return
    log.error("store %s kept other bytes at %s: %s", store.id, stored.location, "; ".join(problems))
    try:
        await store.delete(stored.location)
    except StorageError as exc:
        log.warning(
            "could not remove %s from store %s: %s; it is an orphan now", stored.location, store.id, exc
        )
    raise StoreMismatch(
        f"store '{store.id}' did not keep the bytes it was given: {'; '.join(problems)}; "
        "its copy was deleted (check the store's health before using it again)."
    )


# -- repositories ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockState:
    """Just enough of an image row to decide whether its staged data, or an object named for it in
    a store, is still wanted: its status, lock, and the stores holding its data."""

    id: str
    status: ImageStatus
    deleted: bool
    import_task_id: str | None
    location_stores: frozenset[str] = frozenset()


class ImageRepository(Protocol):
    """Images, their properties, locations and import lock. Status writes are compare-and-swap:
    ``NotFound`` when the image is gone, ``Conflict`` when it is in another status."""

    def get(self, image_id: str, *, details: bool = True) -> Image: ...

    def exists_ever(self, image_id: str) -> bool: ...

    def list(self, query: ImageListQuery, viewer: Viewer) -> list[Image]: ...

    def add(self, image: Image) -> None: ...

    def save(
        self, image: Image, *, expected_status: ImageStatus | Sequence[ImageStatus] | None = None
    ) -> None: ...

    def set_status(
        self, image_id: str, expected: Iterable[ImageStatus], target: ImageStatus, **fields: object
    ) -> None: ...

    def add_location(self, image_id: str, location: Location) -> None: ...

    def remove_location(self, image_id: str, store_id: str) -> None: ...

    def mark_deleted(self, image_id: str, expected: Iterable[ImageStatus]) -> None: ...

    def take_lock(self, image_id: str, task_id: str, *, replacing: str | None = None) -> bool: ...

    def release_lock(self, image_id: str, task_id: str) -> bool: ...

    def hold_lock(self, image_id: str, task_id: str) -> bool:
        """Whether ``task_id`` holds the lock; if so, nobody can take it until this unit of work ends."""
        ...

    def lock_holder(self, image_id: str) -> str | None:
        """The task holding the image's lock; ``NotFound`` when the image is deleted or missing."""
        ...

    def lock_states(self, image_ids: Collection[str]) -> builtins.list[LockState]: ...

    def get_property(self, image_id: str, name: str) -> str | None: ...

    def set_property(self, image_id: str, name: str, value: str) -> None: ...

    def touch(self, image_id: str) -> datetime: ...

    def silent_uploads(self, before: datetime, limit: int = 20) -> builtins.list[str]:
        """Ids of images in ``saving``, or ``uploading`` with no size (a stage under way), not updated
        since ``before``: an upload or stage that stopped touching them."""
        ...

    def revert_silent_upload(self, image_id: str, before: datetime) -> bool:
        """``saving`` (or ``uploading`` with no size) → ``queued`` if the image was still not updated
        since ``before`` (one UPDATE)."""
        ...

    # Delayed delete (see SqlImageRepository): a pending_delete image's ``updated_at`` is its scrub
    # claim, equal to ``deleted_at`` while nobody holds it.
    def mark_pending_delete(self, image_id: str) -> None:
        """``active`` → ``pending_delete``: hidden as deleted, data and everything else kept."""
        ...

    def pending_delete_locations(self, image_id: str) -> builtins.list[Location]: ...

    def scrub_due(self, deleted_before: datetime, limit: int) -> builtins.list[str]: ...

    def claim_scrub(
        self, image_id: str, deleted_before: datetime, claim_expired_before: datetime, stamp: datetime
    ) -> bool: ...

    def renew_scrub(self, image_id: str, stamp: datetime, new_stamp: datetime) -> bool: ...

    def release_scrub(self, image_id: str, stamp: datetime) -> bool: ...

    def drop_scrubbed_location(self, image_id: str, store_id: str) -> None: ...

    def finish_scrub(self, image_id: str, stamp: datetime) -> bool: ...

    def restore_pending_delete(self, image_id: str, claim_expired_before: datetime) -> None: ...


class MemberRepository(Protocol):
    def find(self, image_id: str, member_id: str | None) -> ImageMember | None: ...

    def get(self, image_id: str, member_id: str) -> ImageMember: ...

    def list(self, image_id: str) -> list[ImageMember]: ...

    def count(self, image_id: str) -> int: ...

    def add(self, image_id: str, member_id: str) -> ImageMember: ...

    def set_status(self, image_id: str, member_id: str, status: MemberStatus) -> ImageMember: ...

    def remove(self, image_id: str, member_id: str) -> None: ...

    def remove_all(self, image_id: str) -> None: ...


class TaskRepository(Protocol):
    """Task rows: claims with leases, heartbeats and ends. A write by a runner that no longer owns
    the task raises ``glimpse.domain.tasks.TaskLost``."""

    def find(self, task_id: str) -> Task | None: ...

    def get(self, task_id: str, now: datetime) -> Task: ...

    def for_image(self, image_id: str, now: datetime) -> list[Task]: ...

    def latest_updates(self, image_ids: Collection[str]) -> dict[str, datetime]: ...

    def search(
        self,
        now: datetime,
        *,
        filters: dict[str, str],
        sort_key: str,
        sort_dir: str,
        limit: int,
        marker: str | None,
    ) -> list[Task]: ...

    def add(self, task: Task) -> None: ...

    def claim(
        self, task_id: str, worker: str, now: datetime, lease: timedelta, *, node: str | None = None
    ) -> bool:
        """pending → processing, atomically; never for a task bound to another node than ``node``."""
        ...

    def pending_ids(self, limit: int, *, node: str | None = None) -> list[str]:
        """Pending tasks, oldest first, that a runner of ``node`` may claim."""
        ...

    def heartbeat(
        self, task_id: str, worker: str, now: datetime, lease: timedelta, progress: TaskProgress, message: str
    ) -> None:
        """Progress and a renewed lease; ``TaskCancelled`` once a cancel was requested."""
        ...

    def request_cancel(self, task_id: str, request: CancelRequest, now: datetime) -> bool:
        """Record a cancel request on an active task that has none yet; True if this call did."""
        ...

    def cancel_pending(
        self, task_id: str, request: CancelRequest, now: datetime, ttl: timedelta, message: str
    ) -> bool:
        """pending → failure with the cancel request recorded; True if this call did it."""
        ...

    def succeed(
        self,
        task_id: str,
        worker: str,
        now: datetime,
        ttl: timedelta,
        result: dict[str, Any],
        progress: TaskProgress,
        message: str,
    ) -> bool: ...

    def fail(
        self,
        task_id: str,
        now: datetime,
        ttl: timedelta,
        message: str,
        *,
        worker: str | None = None,
        progress: TaskProgress | None = None,
        lease_expired_by: datetime | None = None,
        silent_since: datetime | None = None,
    ) -> bool:
        """Any active task → failure, guarded in the same UPDATE: still held by ``worker``, with its
        lease run out before ``lease_expired_by``, and with no sign of life (heartbeat, else update)
        after ``silent_since``, when given. True if this call made the change."""
        ...

    def requeue(
        self,
        task_id: str,
        worker: str,
        now: datetime,
        *,
        message: str | None = None,
        lease_expired_by: datetime | None = None,
    ) -> bool:
        """processing → pending while ``worker`` holds it (and its lease ran out before
        ``lease_expired_by``, when given), in one guarded UPDATE; ``message`` replaces the task's
        message. True if this call made the change."""
        ...

    def expired_leases(self, now: datetime, limit: int = 50) -> list[Task]: ...

    def stranded(self, before: datetime, limit: int = 20) -> list[Task]:
        """Pending tasks bound to one node (``stage_host``) that have not changed since ``before``."""
        ...

    def fail_stranded(
        self, task_id: str, before: datetime, now: datetime, ttl: timedelta, message: str
    ) -> bool:
        """pending → failure, only if the task is still pending and has not changed since ``before``."""
        ...

    def purge_expired(self, now: datetime, older_than: timedelta = timedelta(0)) -> int: ...


class MetadefRepository(Protocol):
    """Metadata definitions: namespaces, their entries (objects, properties, tags) and resource types.

    Names are the keys (a namespace by its name, an entry by namespace, kind and name). Writes raise
    ``NotFound`` for a missing namespace or entry and ``Duplicate`` for a name already taken; none of
    them checks visibility or policy, which is the service's business.
    """

    def find_namespace(self, name: str) -> Namespace | None: ...

    def list_namespaces(
        self, query: NamespaceQuery, *, project_id: str | None, admin: bool
    ) -> list[Namespace]:
        """One page of the namespaces the caller may see (all for ``admin``; else public and own);
        an unknown ``marker`` is ``InvalidInput``."""
        ...

    def add_namespace(self, namespace: Namespace) -> Namespace: ...

    def update_namespace(self, name: str, namespace: Namespace) -> Namespace:
        """Replace the attributes of ``name`` (which may be renamed to ``namespace.namespace``)."""
        ...

    def delete_namespace(self, name: str) -> None:
        """Remove the namespace with its entries and associations."""
        ...

    def associations(self, names: Sequence[str]) -> dict[str, list[Association]]:
        """namespace name -> its resource type associations, for each of ``names``."""
        ...

    def add_association(self, namespace: str, association: Association) -> Association:
        """Associate; a resource type not known yet is created (unprotected)."""
        ...

    def remove_association(self, namespace: str, resource_type: str) -> None: ...

    def resource_types(self) -> list[ResourceType]: ...

    def entries(self, namespace: str, kind: EntryKind) -> list[Entry]: ...

    def find_entry(self, namespace: str, kind: EntryKind, name: str) -> Entry | None: ...

    def add_entry(self, namespace: str, kind: EntryKind, name: str, body: Mapping[str, Any]) -> Entry: ...

    def replace_entry(
        self, namespace: str, kind: EntryKind, name: str, new_name: str, body: Mapping[str, Any]
    ) -> Entry: ...

    def remove_entry(self, namespace: str, kind: EntryKind, name: str) -> None: ...

    def remove_entries(self, namespace: str, kind: EntryKind) -> None: ...


class IdempotencyRepository(Protocol):
    """The ``Idempotency-Key`` records (see :mod:`glimpse.domain.idempotency`), one per (scope, key).
    Every write but :meth:`claim` is guarded by the writer's ``claim_id``."""

    def find(self, scope: str, key: str) -> KeyRecord | None: ...

    def claim(self, record: KeyRecord) -> KeyRecord | None:
        """Insert ``record`` atomically: None when this call claimed the key, else the record found."""
        ...

    def take_over(self, previous: Claim, record: KeyRecord) -> bool:
        """Replace the record of ``previous`` with ``record``; False when someone else did first."""
        ...

    def complete(self, claim: Claim, fingerprint: str, answer: StoredAnswer, expires_at: datetime) -> bool:
        """Keep the claim's answer until ``expires_at``; False when the claim was lost meanwhile."""
        ...

    def release(self, claim: Claim) -> bool:
        """Remove the claim's record (its request failed): the key may be used again."""
        ...

    def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; returns how many."""
        ...


class HistoryRepository(Protocol):
    """The images' history (:mod:`glimpse.domain.history`). Entries are added in the unit of work of
    the change they record, so a change is never committed without its entry."""

    def add(self, entry: HistoryEntry) -> None: ...

    def for_image(self, image_id: str, *, limit: int, marker: int | None = None) -> list[HistoryEntry]:
        """Up to ``limit`` entries of the image, newest first, older than the entry ``marker`` when
        given (``InvalidInput`` when the image has no entry ``marker``)."""
        ...

    def purge_older(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` entries (the oldest first) made before ``before``; returns how many."""
        ...


def _every_event(event_type: str) -> bool:
    return True


class Outbox:
    """The events of one unit of work: :meth:`Ports.run` hands them to the notifier once the unit
    of work has committed, and drops them when it fails (nothing is announced that did not happen).

    ``wants(event_type)`` tells whether anybody will send such an event (the notifier's answer), so
    a caller skips the reads a payload needs when notifications are off; ``add`` keeps only those."""

    def __init__(self, wants: Callable[[str], bool] = _every_event) -> None:
        self.events: list[Event] = []
        self.wants = wants

    def add(self, event: Event) -> None:
        if self.wants(event.event_type):
            self.events.append(event)


class Notifier(Protocol):
    """Sends events. ``notify`` never blocks and never raises: it queues the event for a background
    sender (or drops it, counted and logged, when the queue is full or notifications are off).
    ``wants`` is false for events that would be dropped anyway (driver noop, disabled_notifications)."""

    def notify(self, event: Event) -> None: ...

    def wants(self, event_type: str) -> bool: ...


class QuotaRepository(Protocol):
    """A project's usage of the quota resources and its reservations (``glimpse.db.quota_repository``).

    A check calls :meth:`lock_project` first: until its unit of work ends, every other check for the
    project (on any node) waits, so what it counts and what it then adds are one step.
    """

    def lock_project(self, project: str, now: datetime) -> None: ...

    def usage(self, project: str, resource: Resource, now: datetime) -> int:
        """The images' usage of ``resource`` plus the live reservations."""
        ...

    def held(self, resource: Resource, holder: str, now: datetime) -> int: ...

    def hold(
        self, project: str, resource: Resource, holder: str, amount: int, now: datetime, expires_at: datetime
    ) -> None: ...

    def renew(self, holder: str, expires_at: datetime) -> None: ...

    def give_back(self, holder: str, resource: Resource, amount: int) -> None:
        """Shrink ``holder``'s reservation of ``resource`` by ``amount`` (not below zero): that much
        of it counts through the images now (an import task's store recorded)."""
        ...

    def release(self, holder: str, resource: Resource | None = None) -> None: ...

    def purge_expired(self, now: datetime) -> int: ...


class Repositories(Protocol):
    """The repositories of one unit of work, and its outbox."""

    @property
    def outbox(self) -> Outbox: ...

    @property
    def images(self) -> ImageRepository: ...

    @property
    def members(self) -> MemberRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def metadefs(self) -> MetadefRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def history(self) -> HistoryRepository: ...

    @property
    def quotas(self) -> QuotaRepository: ...


def reserve_quota(
    repos: Repositories,
    limits: Limits,
    project: str,
    resource: Resource,
    holder: str,
    *,
    needed: int,
    wanted: int,
    now: datetime,
    expires_at: datetime,
) -> int | None:
    """Inside a unit of work: grow ``holder``'s reservation of ``resource`` by at least ``needed``
    (bytes or a count) and at most ``wanted``, as far as the limit allows, under the project's quota
    row lock; returns the reservation's new total (None: unlimited, nothing reserved). Raises
    :class:`OverQuota` when not even ``needed`` fits. The uploads (``glimpse.services.quotas``) and
    the import runner's store step both reserve through it."""
    limit = limits.limit(resource)
    if limit is None:
        return None
    quotas = repos.quotas
    quotas.lock_project(project, now)
    usage = quotas.usage(project, resource, now)
    held = quotas.held(resource, holder, now)
    available = limit - usage
    if available < needed:
        raise OverQuota(resource.value, refusal(resource, project, limit, usage, needed))
    total = held + min(max(wanted, needed), available)
    quotas.hold(project, resource, holder, total, now, expires_at)
    return total


def undo_import_request(repos: Repositories, task: Task) -> bool:
    """Put the image back as it was before the import request that created ``task`` and release the
    lock, when ``task`` still holds it (False otherwise: the image is someone else's business now).

    What a cancel does to the image, from the API (a pending task) or from the runner that stopped
    the task (after undoing its own objects): the status the import started from (a glance-direct
    image goes back to ``uploading`` and keeps its staged data and the node that holds it; a
    web-download one to ``queued``; a copy leaves the active image alone), the task's stores off
    ``os_glance_importing_to_stores``.
    """
    image_id = task.image_id
    images = repos.images
    if image_id is None or not images.hold_lock(image_id, task.id):
        return False
    before = status_before_import(task.method)
    if before is ImageStatus.UPLOADING:
        images.set_status(image_id, [ImageStatus.IMPORTING], before)
        if task.stage_host is not None:
            images.set_property(image_id, STAGE_HOST_PROPERTY, task.stage_host)
    elif before is not None:
        images.set_status(image_id, [ImageStatus.IMPORTING], before, size=None, virtual_size=None)
    importing = (images.get_property(image_id, _IMPORTING_PROPERTY) or "").split(",")
    images.set_property(
        image_id, _IMPORTING_PROPERTY, ",".join(s for s in importing if s and s not in task.stores)
    )
    images.release_lock(image_id, task.id)
    return True


_IMPORTING_PROPERTY = "os_glance_importing_to_stores"


# -- the process -------------------------------------------------------------------------------------


class LimitSource(Protocol):
    """Where a project's quota limits come from: ``user_storage_quota`` or Keystone's unified limits
    (``glimpse.limits``). ``limits`` runs off the event loop and may raise
    :class:`~glimpse.errors.LimitsUnavailable` (Keystone cannot be reached)."""

    async def limits(self, project: str) -> Limits: ...


class Ports(Protocol):
    """Everything the services and the task runner use: settings, policy, stores, the notifier, the
    clock, units of work, and the two signals about tasks."""

    @property
    def settings(self) -> Settings: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def stores(self) -> StoreCatalog: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def limits(self) -> LimitSource: ...

    def clock(self) -> datetime:
        """Now (tests inject a frozen or advanced clock)."""
        ...

    async def run(self, fn: Callable[[Repositories], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in one unit of work on a worker thread, off the event loop."""
        ...

    def wake_runner(self) -> None:
        """A pending task was committed: let this process's runner look at once."""
        ...

    def notify_task_change(self, image_id: str) -> None:
        """A task of ``image_id`` changed: wake this process's watchers without waiting for a poll."""
        ...
