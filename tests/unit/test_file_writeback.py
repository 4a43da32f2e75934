"""The file store makes what it has written durable in the background as it goes, without changing
the bytes, and an error of that background sync fails the write."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpse.errors import StorageError
from glimpse.storage import filesystem
from glimpse.storage.filesystem import SYNC_STEP, FilesystemStore

BLOCK = 1024 * 1024


async def _blocks(count: int, block: bytes) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield block


def test_a_large_write_is_synced_in_the_background_and_keeps_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []

    def record(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)  # what the file held when the sync was asked for
        os.fdatasync(fd)

    monkeypatch.setattr(filesystem, "_sync_data", record)
    block = os.urandom(BLOCK)
    count = 3 * SYNC_STEP // BLOCK + 5
    stored = asyncio.run(FilesystemStore("fast", tmp_path).write("img", _blocks(count, block)))
    data = (tmp_path / "img").read_bytes()
    assert stored.size == len(data) == count * BLOCK
    assert hashlib.sha256(data).digest() == hashlib.sha256(block * count).digest()
    # Asked for at least every SYNC_STEP while the data arrived (fewer when one was still running),
    # each after more had been written than at the one before.
    assert 1 <= len(synced) <= 3
    assert synced == sorted(synced)
    assert all(size >= SYNC_STEP for size in synced)


def test_without_fsync_nothing_is_synced_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(filesystem, "_sync_data", synced.append)
    asyncio.run(
        FilesystemStore("fast", tmp_path, fsync=False).write(
            "img", _blocks(2 * SYNC_STEP // BLOCK, bytes(BLOCK))
        )
    )
    assert synced == []


def test_a_failed_background_sync_fails_the_write_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(filesystem, "_sync_data", broken)
    store = FilesystemStore("fast", tmp_path)
    with pytest.raises(StorageError):
        asyncio.run(store.write("img", _blocks(2 * SYNC_STEP // BLOCK + 1, bytes(BLOCK))))
    assert list(tmp_path.iterdir()) == []  # no object, no temporary file
