"""The file store hands what it has written to the disk as it goes (Linux), without changing the bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpse.storage import filesystem
from glimpse.storage.filesystem import WRITEBACK_STEP, FilesystemStore


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_writeback_call_exists_on_linux(tmp_path: Path) -> None:
    start = filesystem._writeback_starter()
    assert start is not None
    with open(tmp_path / "f", "wb") as handle:
        handle.write(b"x" * 4096)
        handle.flush()
        start(handle.fileno(), 0, 4096)  # must not raise


def test_a_large_write_starts_writeback_in_steps_and_keeps_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        filesystem, "_start_writeback", lambda fd, offset, length: calls.append((offset, length))
    )
    block = os.urandom(1024 * 1024)
    blocks = 3 * WRITEBACK_STEP // len(block) + 5

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(blocks):
            yield block

    store = FilesystemStore("fast", tmp_path)
    stored = asyncio.run(store.write("img", chunks()))
    data = (tmp_path / "img").read_bytes()
    assert stored.size == len(data) == blocks * len(block)
    assert hashlib.sha256(data).digest() == hashlib.sha256(block * blocks).digest()
    # Consecutive ranges from the start, each at least one step, none past what was written.
    assert len(calls) == 3
    assert [offset for offset, _ in calls] == [0, calls[0][1], calls[0][1] + calls[1][1]]
    assert all(length >= WRITEBACK_STEP for _, length in calls)


def test_without_fsync_nothing_is_handed_to_the_disk_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        filesystem, "_start_writeback", lambda fd, offset, length: calls.append((offset, length))
    )
    block = bytes(1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2 * WRITEBACK_STEP // len(block)):
            yield block

    asyncio.run(FilesystemStore("fast", tmp_path, fsync=False).write("img", chunks()))
    assert calls == []
