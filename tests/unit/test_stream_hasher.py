"""StreamHasher: each digest in a lane of its own, in order, with bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from collections.abc import AsyncIterator

import pytest

from glimpse.streaming import ContentInspector, ContentReport, StreamHasher, _Lane


async def _chunks(data: bytes, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        size = rng.choice((1, 100, 65536, 1048576, 3 * 1048576 + 7))
        yield data[at : at + size]
        at += size


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_digests_match_hashlib_whatever_the_chunking(seed: int) -> None:
    data = random.Random(seed).randbytes(9 * 1048576 + 12345)

    async def run() -> tuple[StreamHasher, bytes]:
        hasher = StreamHasher("sha512", also="sha256")
        out = b"".join([block async for block in hasher.wrap(_chunks(data, seed))])
        return hasher, out

    hasher, out = asyncio.run(run())
    assert out == data
    assert hasher.size == len(data)
    assert hasher.checksum == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert hasher.multihash == hashlib.sha512(data).hexdigest()
    assert hasher.digest("sha256") == hashlib.sha256(data).hexdigest()


def test_a_lane_holds_at_most_its_depth_and_keeps_order() -> None:
    release = threading.Event()
    seen: list[bytes] = []

    def slow(block: bytes) -> None:
        release.wait(5)
        seen.append(block)

    async def run() -> int:
        lane = _Lane("test", depth=2)
        try:
            await lane.submit(slow, b"1")
            await lane.submit(slow, b"2")
            third = asyncio.ensure_future(lane.submit(slow, b"3"))
            await asyncio.sleep(0.05)
            waited = 0 if third.done() else 1  # the lane is full: the third waits for the first
            release.set()
            await third
            await lane.drain()
            return waited
        finally:
            await lane.close()

    assert asyncio.run(run()) == 1
    assert seen == [b"1", b"2", b"3"]


def test_refused_content_fails_before_the_next_block_is_handed_on() -> None:
    def judge(report: ContentReport) -> None:
        if report.formats:
            raise ValueError("refused")

    qcow2_header = b"QFI\xfb" + b"\x00\x00\x00\x03" + bytes(1048576 - 8)
    handed: list[int] = []

    async def source() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield qcow2_header

    async def run() -> None:
        hasher = StreamHasher("sha512", ContentInspector(judge))
        async for block in hasher.wrap(source()):
            handed.append(len(block))

    with pytest.raises(ValueError, match="refused"):
        asyncio.run(run())
    assert len(handed) <= 2
