"""Checksums computed while bytes stream through, off the event loop, overlapping the store's writes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

#: Bytes handed to a worker thread at once: large enough that thread hops cost nothing measurable.
BLOCK_SIZE = 1024 * 1024


async def rebuffer(chunks: AsyncIterator[bytes], block_size: int = BLOCK_SIZE) -> AsyncIterator[bytes]:
    """Regroup arbitrary chunks into blocks of ``block_size`` bytes (the last one may be shorter)."""
    parts: list[bytes] = []
    buffered = 0
    async for chunk in chunks:
        if not chunk:
            continue
        parts.append(chunk)
        buffered += len(chunk)
        if buffered >= block_size:
            data = b"".join(parts)
            parts, buffered = [], 0
            for start in range(0, len(data) - block_size + 1, block_size):
                yield data[start : start + block_size]
            rest = len(data) % block_size
            if rest:
                parts, buffered = [data[-rest:]], rest
    if parts:
        yield b"".join(parts)


class _End:
    """Marks the end of a prefetched stream."""


async def prefetch(source: AsyncIterator[bytes], depth: int = 2) -> AsyncIterator[bytes]:
    """Read ``source`` ahead in its own task, up to ``depth`` blocks, so that receiving the next
    block overlaps whatever the consumer does with this one (a store write in a worker thread).

    An error of the source is raised to the consumer at the point where the data ran out; when the
    consumer stops early (an error of its own, cancellation), the reading task is cancelled.
    """
    queue: asyncio.Queue[bytes | _End | Exception] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except Exception as exc:  # handed over to the consumer, which re-raises it
            await queue.put(exc)
            return
        await queue.put(_End())

    reader = asyncio.create_task(produce())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                break
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


class StreamHasher:
    """MD5 (Glance's ``checksum``) and the configured multihash, fed block by block.

    ``wrap`` yields each block as soon as its hashing has *started*: the two digests run in worker
    threads (hashlib releases the GIL) while the consumer writes the same block to a store. A block's
    hashing is awaited before the next one starts, so the digests see bytes in order.
    """

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._multi = hashlib.new(algorithm)
        self.size = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        pending: asyncio.Future[Any] | None = None
        try:
            async for block in rebuffer(chunks):
                if pending is not None:
                    await pending
                pending = asyncio.gather(
                    asyncio.to_thread(self._md5.update, block), asyncio.to_thread(self._multi.update, block)
                )
                self.size += len(block)
                yield block
            if pending is not None:
                await pending
                pending = None
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multi.hexdigest()
