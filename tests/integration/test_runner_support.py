"""Shared helpers of the task-runner tests (imported by the other ``test_runner_*`` modules).

Runtimes with small leases and intervals, store wrappers for faults that cannot be caused for real
(a store whose write fails, a throttled store), a local HTTP server for web-download, and short
ways to create, stage, upload and import images through the real services.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from glimpse.config import load_settings
from glimpse.context import RequestContext
from glimpse.db.image_repository import SqlImageRepository
from glimpse.db.repositories import SqlRepositories
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.images import Image
from glimpse.domain.tasks import Task
from glimpse.errors import StorageError
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore, ObjectStat, StoredObject, StoreEntry
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService
from glimpse.services.imports import ImportService
from glimpse.storage.registry import StoreRegistry, build_stores
from websupport import WebServer, serve  # noqa: F401 - imported from here by the runner tests

OWNER = RequestContext(user_id="user-a", project_id="project-a", roles=("member", "reader"))
ADMIN = RequestContext(
    user_id="admin", project_id="project-admin", roles=("admin", "member", "reader"), is_admin=True
)
MIB = 1024 * 1024
STORES = ("fast", "cheap", "reliable")

#: Small numbers so that a lease lapses in a second and progress is written every 0.1 s.
FAST_TASKS: Mapping[str, object] = {
    "task_lease_time": 1.0,
    "task_progress_interval": 0.1,
    "runner_poll_interval": 0.1,
}


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that do not repeat (so that a misplaced block shows)."""
    return random.Random(seed).randbytes(size)


# -- stores ------------------------------------------------------------------------------------------


class WrappedStore:
    """Delegates everything to ``inner``; subclasses change ``write``."""

    def __init__(self, inner: ImageStore) -> None:
        self.inner = inner
        self.id = inner.id
        self.type = inner.type
        self.description = inner.description
        self.weight = inner.weight
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        return await self.inner.write(key, chunks, max_size)

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return await self.inner.open(location, offset, length)

    async def delete(self, location: str) -> None:
        await self.inner.delete(location)

    async def stat(self, location: str) -> ObjectStat:
        return await self.inner.stat(location)

    async def objects(self) -> list[StoreEntry]:
        return await self.inner.objects()

    def describe(self) -> Mapping[str, object]:
        return self.inner.describe()

    def owns(self, location: str) -> bool:
        return self.inner.owns(location)


class FailingStore(WrappedStore):
    """A store whose write breaks after ``after`` bytes (a disk that dies mid-write)."""

    def __init__(self, inner: ImageStore, after: int = 0) -> None:
        super().__init__(inner)
        self.after = after

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def breaking() -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in chunks:
                seen += len(chunk)
                if seen > self.after:
                    raise StorageError(f"store '{self.id}' could not write the image data: I/O error")
                yield chunk

        return await self.inner.write(key, breaking(), max_size)


class CorruptingStore(WrappedStore):
    """A store that keeps other bytes than it is given (a fault no real store shows on demand):
    ``truncate`` drops the last byte, otherwise the first byte is flipped (same size)."""

    def __init__(self, inner: ImageStore, *, truncate: bool) -> None:
        super().__init__(inner)
        self.truncate = truncate

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def corrupted() -> AsyncIterator[bytes]:
            data = bytearray()
            async for chunk in chunks:
                data += chunk
            if self.truncate:
                del data[-1:]
            elif data:
                data[0] ^= 0xFF
            yield bytes(data)

        stored = await self.inner.write(key, corrupted(), max_size)
        return StoredObject(stored.location, stored.size + 1 if self.truncate else stored.size)


class SlowStore(WrappedStore):
    """A throttled store: sleeps ``delay`` seconds per chunk; ``started`` is set at the first chunk.
    With ``hold_last``, it takes every chunk but the last and then waits for ``release`` (so the
    source has been read to its end while this store's write is still open)."""

    def __init__(self, inner: ImageStore, delay: float, *, hold_last: bool = False) -> None:
        super().__init__(inner)
        self.delay = delay
        self.started = asyncio.Event()
        self.hold_last = hold_last
        self.release = asyncio.Event()

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def slow() -> AsyncIterator[bytes]:
            previous: bytes | None = None
            async for chunk in chunks:
                self.started.set()
                await asyncio.sleep(self.delay)
                if previous is not None:
                    yield previous
                previous = chunk
            if previous is not None:
                if self.hold_last:
                    await self.release.wait()
                yield previous

        return await self.inner.write(key, slow(), max_size)


def stored_bytes(runtime: Runtime, store_id: str, key: str) -> bytes | None:
    path = Path(runtime.stores.get(store_id).datadir) / key  # type: ignore[attr-defined]
    return path.read_bytes() if path.exists() else None


def store_files(runtime: Runtime, store_id: str) -> list[str]:
    """Every file in a store's directory, hidden temporary files included."""
    datadir = Path(runtime.stores.get(store_id).datadir)  # type: ignore[attr-defined]
    return sorted(p.name for p in datadir.iterdir()) if datadir.exists() else []


def staged_files(runtime: Runtime) -> list[str]:
    datadir = Path(runtime.stores.staging.datadir)  # type: ignore[attr-defined]
    return sorted(p.name for p in datadir.iterdir()) if datadir.exists() else []


# -- runtimes ----------------------------------------------------------------------------------------


class ManualClock:
    """A clock tests move by hand (starts at the real now)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_runtime(
    tmp_path: Path,
    database_url: str,
    *,
    wrap: Mapping[str, Callable[[ImageStore], ImageStore]] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> Runtime:
    env = {
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": database_url,
        "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{s}:file" for s in STORES),
        **(environ or {}),
    }
    for store in STORES:
        env[f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_FSYNC"] = "false"
    settings = load_settings(environ=env).with_overrides(**{**FAST_TASKS, **overrides})
    registry = build_stores(settings)
    if wrap:  # keys are store ids, the staging store's (os_glance_staging_store) included
        staging = registry.staging
        registry = StoreRegistry(
            [wrap[s.id](s) if s.id in wrap else s for s in registry.all()],
            settings.default_backend,
            wrap[staging.id](staging) if staging.id in wrap else staging,
        )
    return Runtime.build(settings, stores=registry)


def sibling(runtime: Runtime, *, clock: Callable[[], datetime] | None = None) -> Runtime:
    """Another process's view of the same database and stores (its own engine and clock)."""
    other = Runtime.build(runtime.settings, stores=runtime.stores)
    if clock is not None:
        other.clock = clock
    return other


# -- images and imports ------------------------------------------------------------------------------


def create_image(runtime: Runtime, ctx: RequestContext = OWNER, **attrs: object) -> str:
    body = {"name": "img", "disk_format": "raw", "container_format": "bare", **attrs}
    with runtime.uow() as session:
        image = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).create(ctx, body)
    return image.id


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def stage(runtime: Runtime, image_id: str, data: bytes, ctx: RequestContext = OWNER) -> None:
    await ImportService(runtime).stage(
        ctx,
        image_id,
        chunks_of(data),
        media_type="application/octet-stream",
        content_length=len(data),
        declared_size=None,
    )


async def upload(runtime: Runtime, image_id: str, data: bytes, store: str = "fast") -> None:
    await ImageDataService(runtime).upload(
        OWNER, image_id, chunks_of(data), content_length=len(data), store_id=store
    )


async def start_import(
    runtime: Runtime, image_id: str, body: dict[str, Any], ctx: RequestContext = OWNER
) -> str:
    started = await ImportService(runtime).start_import(ctx, image_id, body)
    assert started.task_id is not None
    return started.task_id


def image_of(runtime: Runtime, image_id: str) -> Image:
    with runtime.uow(readonly=True) as session:
        return SqlImageRepository(session).get(image_id)


def task_of(runtime: Runtime, task_id: str) -> Task:
    with runtime.uow(readonly=True) as session:
        task = SqlTaskRepository(session).find(task_id)
    assert task is not None
    return task


async def run_all(runtime: Runtime, worker_id: str = "runner-1") -> TaskRunner:
    """One runner pass that claims what is pending, then wait for those tasks to end."""
    runner = TaskRunner(runtime, worker_id)
    await runner.run_once()
    await runner.wait_idle()
    return runner


async def wait_for(predicate: Callable[[], bool], *, within: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (a database read, say) until it holds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
