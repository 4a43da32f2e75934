"""Runtime: the long-lived objects a process builds once from Settings and hands to every request."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, cast
from weakref import WeakKeyDictionary

import anyio.to_thread
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from glimpse.config import Settings
from glimpse.db.repositories import SqlRepositories
from glimpse.db.session import (
    ReadSession,
    make_engine,
    make_sessionmaker,
    ping,
    read_on,
    read_unit_of_work,
    reader_connection,
    unit_of_work,
)
from glimpse.domain.import_plugins import QEMU_IMG, ImportPlugin
from glimpse.domain.policy import Policy
from glimpse.domain.tasks import Clock, system_clock
from glimpse.errors import ConfigError, DatabaseUnavailable
from glimpse.limits import build_limits
from glimpse.notifier import NoopNotifier, QueuedNotifier, build_notifier
from glimpse.policy_file import load_policy
from glimpse.ports import LimitSource, Repositories
from glimpse.property_protection_file import load_protections
from glimpse.services.task_watch import TaskWatcher
from glimpse.storage.registry import StoreRegistry, build_stores

T = TypeVar("T")


def check_tools(settings: Settings) -> None:
    """The programs the configured import plugins run must be installed (ConfigError otherwise)."""
    if ImportPlugin.IMAGE_CONVERSION in settings.import_plugins and shutil.which(QEMU_IMG) is None:
        raise ConfigError(
            "[image_import_opts] image_import_plugins includes image_conversion, which runs "
            f"{QEMU_IMG}, but {QEMU_IMG} is not on the PATH; install it (Debian: apt-get install "
            "qemu-utils) or remove the plugin."
        )


def freeze_startup_heap() -> None:
    """Keep what start-up built (modules, the app, the runtime: some 150,000 objects) out of the
    garbage collector's full passes from now on.

    A full pass walks every tracked object; with the libraries the service loads that took 130-180 ms
    per pass, in which the process answered nothing: the slowest requests under load were those that
    happened to wait for one. Frozen objects are never freed, which is what the start-up's objects
    are anyway: they live as long as the process.
    """
    gc.collect()
    gc.freeze()


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Freed memory at the top of the heap that the allocator keeps for the next blocks.
KEEP_FREED_BYTES = 256 * 1024 * 1024
#: Blocks smaller than this come from the heap (and its freed memory) rather than from fresh mmaps.
HEAP_BLOCKS_BELOW = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Have glibc's allocator reuse freed memory for the next blocks of a stream instead of handing
    it back to the kernel at once; whether it took the settings (False where malloc is not glibc's).

    Uploads, downloads and copies allocate and free blocks of a MiB or more all the time. By
    default glibc gives the top of its heap back to the kernel as soon as a little more than the
    last large block is free, so the next block is faulted in page by page again (216 page faults
    per MiB allocated in ``tests/unit/test_allocator.py``'s pattern, 0 with these settings); on a
    virtual machine whose freed memory returns to the host, each of those pages costs a trip to the
    hypervisor. Measured with three 1 GiB ``PUT /file`` in a row on one server: page faults 28 ->
    1 per MiB, and the slowest of the three (360 MiB/s in every such run before) at 361-388 MiB/s.
    The process keeps at most :data:`KEEP_FREED_BYTES` unused, on top of what its streams hold.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCKS_BELOW)
    )


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    stores: StoreRegistry
    policy: Policy
    #: Where "now" comes from: tests inject a frozen or advanced clock (never sleep for an hour).
    clock: Clock = system_clock
    #: Called after a unit of work that created a pending task committed; the embedded runner
    #: replaces it to wake up at once (other processes find the task by polling).
    wake_runner: Callable[[], None] = field(default=lambda: None)
    #: Where events go ([oslo_messaging_notifications]); a unit of work's events once it commits.
    notifier: QueuedNotifier | NoopNotifier = field(default_factory=NoopNotifier)
    #: Where projects' quota limits come from; None: from the settings (:func:`build_limits`).
    limit_source: LimitSource | None = None
    limiter: anyio.CapacityLimiter = field(init=False)
    #: One task-watch hub per event loop (a served process has one loop, hence one hub and one poller).
    _watchers: WeakKeyDictionary[asyncio.AbstractEventLoop, TaskWatcher] = field(
        init=False, default_factory=WeakKeyDictionary
    )
    #: SQLite: the connection each event loop runs its reads on (see :meth:`read`).
    _loop_readers: dict[asyncio.AbstractEventLoop, Connection] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        # Few threads beat many: database work is mostly Python (SQLAlchemy) holding the GIL, and
        # every extra thread adds GIL hand-offs that the event loop pays for (measured in bench/).
        self.limiter = anyio.CapacityLimiter(self.settings.effective_database_threads)
        if self.limit_source is None:
            self.limit_source = build_limits(self.settings)

    @property
    def limits(self) -> LimitSource:
        assert self.limit_source is not None  # set by __post_init__
        return self.limit_source

    @classmethod
    def build(cls, settings: Settings, *, stores: StoreRegistry | None = None) -> Runtime:
        check_tools(settings)
        engine = make_engine(settings.database_connection, settings.database_timeouts)
        policy = load_policy(
            settings.policy_file,
            enforce_scope=settings.enforce_scope,
            protections=load_protections(
                settings.property_protection_file, settings.property_protection_rule_format
            ),
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            stores=stores or build_stores(settings),
            policy=policy,
            notifier=build_notifier(settings.notifications),
        )

    @contextmanager
    def uow(self, *, readonly: bool = False) -> Iterator[Session]:
        with unit_of_work(self.sessions, readonly=readonly) as session:
            yield session

    def _unit(self, fn: Callable[[Repositories], T], readonly: bool) -> T:
        """``fn`` in one transaction (blocking); the events it put into its outbox are handed to the
        notifier once the transaction has committed."""
        with self.uow(readonly=readonly) as session:
            repos = SqlRepositories(session, self.notifier.wants)
            result = fn(repos)
        self._notify(repos)
        return result

    def _read_unit(self, fn: Callable[[Repositories], T]) -> T:
        """``fn`` in one read-only transaction without the ORM (blocking; see ``ReadSession``)."""
        with read_unit_of_work(self.engine) as session:
            repos = self._read_repositories(session)
            result = fn(repos)
        self._notify(repos)
        return result

    def _loop_read(self, fn: Callable[[Repositories], T]) -> T:
        """``fn`` in one read-only transaction on the running loop's own connection (SQLite).

        The loop runs one read at a time, start to end, so the connection is never shared. One whose
        read failed in the database is closed, and the next read takes a new one.
        """
        loop = asyncio.get_running_loop()
        connection = self._loop_readers.get(loop)
        if connection is None:
            connection = self._loop_readers[loop] = reader_connection(self.engine)
        try:
            with read_on(connection) as session:
                repos = self._read_repositories(session)
                result = fn(repos)
        except (DBAPIError, DatabaseUnavailable):
            del self._loop_readers[loop]
            connection.close()
            raise
        self._notify(repos)
        return result

    def _read_repositories(self, session: ReadSession) -> SqlRepositories:
        # The repositories' reads use only what a ReadSession has (connection(), get_bind()).
        return SqlRepositories(cast(Session, session), self.notifier.wants)

    def _notify(self, repos: SqlRepositories) -> None:
        for event in repos.outbox.events:
            self.notifier.notify(event)

    async def run(self, fn: Callable[[Repositories], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in one transaction on a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(self._unit, fn, readonly, limiter=self.limiter)

    async def read(self, fn: Callable[[Repositories], T]) -> T:
        """A request's read: an image, a page of images, an image's tasks or members or history.

        It is a read-only unit of work without the ORM session (``glimpse.db.session.ReadSession``:
        Core statements on one connection, half the overhead). On SQLite it runs right here, on the
        event loop. It reads a local file through the page cache and, under WAL, never waits for a
        writer: the read takes tens of microseconds where the hand-off to the worker thread and
        back, and the GIL hand-offs between the two threads under load, cost more (measured over
        8 connections: +13 % GET /v2/images/{id}/tasks, +8 % GET /v2/images). The loop keeps one
        connection for these reads instead of taking one from the pool each time (50 µs less CPU
        a request; see :meth:`_loop_read`). A listing whose
        filter no index serves holds the loop while it scans, as it would hold that one thread.
        Any other database is across a network: there the read goes to a worker thread.
        """
        if self.engine.dialect.name == "sqlite":
            return self._loop_read(fn)
        return await anyio.to_thread.run_sync(self._read_unit, fn, limiter=self.limiter)

    def ping_database(self) -> None:
        """One trivial query (blocking; the health check runs it in a thread of its own)."""
        ping(self.engine)

    def task_watcher(self) -> TaskWatcher:
        """The hub that wakes requests watching an image's tasks, for the running event loop."""
        loop = asyncio.get_running_loop()
        hub = self._watchers.get(loop)
        if hub is None:
            hub = TaskWatcher(self._latest_task_updates, interval=self.settings.task_watch_interval)
            self._watchers[loop] = hub
        return hub

    def watching(self) -> int:
        """How many requests of this process wait for task changes now (for tests and diagnostics)."""
        return sum(hub.watching for hub in list(self._watchers.values()))

    def notify_task_change(self, image_id: str) -> None:
        """This process changed a task of ``image_id``: let its watchers know without waiting for a poll."""
        try:
            hub = self._watchers.get(asyncio.get_running_loop())
        except RuntimeError:
            return
        if hub is not None:
            hub.notify(image_id)

    async def close_task_watcher(self) -> None:
        """Stop the running loop's hub (its waiting requests answer as if their wait ran out)."""
        hub = self._watchers.pop(asyncio.get_running_loop(), None)
        if hub is not None:
            await hub.close()

    async def _latest_task_updates(self, image_ids: frozenset[str]) -> dict[str, datetime]:
        return await self.run(lambda repos: repos.tasks.latest_updates(image_ids), readonly=True)

    def close(self) -> None:
        self.notifier.close()
        for connection in self._loop_readers.values():
            connection.close()
        self._loop_readers.clear()
        self.engine.dispose()
