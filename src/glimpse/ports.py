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
from glimpse.domain.images import Image, ImageStatus, Location, MemberStatus
from glimpse.domain.members import ImageMember, Viewer
from glimpse.domain.notifications import Event
from glimpse.domain.policy import Policy
from glimpse.domain.queries import ImageListQuery
from glimpse.domain.tasks import Task, TaskProgress
from glimpse.errors import StorageError, StoreMismatch

__all__ = [
    "Capabilities",
    "ImageRepository",
    "ImageStore",
    "LocalFiles",
    "LockState",
    "MemberRepository",
    "Notifier",
    "ObjectStat",
    "Outbox",
    "Ports",
    "Repositories",
    "StoreCatalog",
    "StoreEntry",
    "StoredObject",
    "TaskRepository",
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
      behind and the error propagates (backend failures as ``StorageError``). ``max_size`` makes the
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

    def storage_used(self, owner: str) -> int: ...

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
    ) -> None: ...

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
    ) -> bool:
        """Any active task → failure, guarded in the same UPDATE: still held by ``worker`` and with its
        lease run out before ``lease_expired_by``, when given. True if this call made the change."""
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


class Outbox:
    """The events of one unit of work: :meth:`Ports.run` hands them to the notifier once the unit
    of work has committed, and drops them when it fails (nothing is announced that did not happen)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)


class Notifier(Protocol):
    """Sends events. ``notify`` never blocks and never raises: it queues the event for a background
    sender (or drops it, counted and logged, when the queue is full or notifications are off)."""

    def notify(self, event: Event) -> None: ...


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


# -- the process -------------------------------------------------------------------------------------


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
