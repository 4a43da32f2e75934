"""Compare-and-swap status changes under real concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from glimpse.config import load_settings
from glimpse.context import RequestContext
from glimpse.db.repositories import SqlRepositories
from glimpse.domain.images import ImageStatus
from glimpse.errors import Conflict
from glimpse.runtime import Runtime
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService

CTX = RequestContext(user_id="u", project_id="p", roles=("member", "reader"))


@pytest.fixture
def runtime(tmp_path: Path, migrated_database_url: str) -> Iterator[Runtime]:
    settings = load_settings(
        environ={"GLIMPSE_DATA_DIR": str(tmp_path), "GLIMPSE_DATABASE__CONNECTION": migrated_database_url}
    )
    rt = Runtime.build(settings)
    yield rt
    rt.close()


def create(rt: Runtime) -> str:
    with rt.uow() as session:
        image = ImageService(SqlRepositories(session), rt.settings, rt.policy).create(
            CTX, {"name": "x", "disk_format": "raw", "container_format": "bare"}
        )
    return image.id


async def slow_body(tag: bytes, blocks: int = 5) -> AsyncIterator[bytes]:
    for _ in range(blocks):
        await asyncio.sleep(0.02)
        yield tag * 100_000


def test_concurrent_uploads_one_wins(runtime: Runtime) -> None:
    image_id = create(runtime)
    service = ImageDataService(runtime)

    async def race() -> list[BaseException | None]:
        return await asyncio.gather(
            *(
                service.upload(CTX, image_id, slow_body(bytes([65 + i])), content_length=None, store_id=None)
                for i in range(6)
            ),
            return_exceptions=True,
        )

    results = asyncio.run(race())
    winners = [r for r in results if r is None]
    losers = [r for r in results if r is not None]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in losers), losers
    with runtime.uow() as session:
        image = ImageService(SqlRepositories(session), runtime.settings, runtime.policy).get(CTX, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.size == 500_000
    stored = list(runtime.stores.default.datadir.iterdir())  # type: ignore[attr-defined]
    assert [p.name for p in stored] == [image_id]


def test_delete_during_upload_discards_the_data(runtime: Runtime) -> None:
    image_id = create(runtime)
    service = ImageDataService(runtime)

    async def scenario() -> BaseException | None:
        upload = asyncio.create_task(
            service.upload(CTX, image_id, slow_body(b"z", 10), content_length=None, store_id=None)
        )
        await asyncio.sleep(0.05)
        await service.delete_image(CTX, image_id)
        try:
            await upload
        except BaseException as exc:
            return exc
        return None

    outcome = asyncio.run(scenario())
    assert outcome is not None
    assert "deleted" in str(outcome)
    assert list(runtime.stores.default.datadir.iterdir()) == []  # type: ignore[attr-defined]
