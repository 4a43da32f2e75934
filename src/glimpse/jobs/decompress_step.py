"""The ``image_decompression`` import plugin as a step (see :mod:`glimpse.jobs.plugin_steps`).

It streams: staged object → decompressor (in a worker thread) → new staging object through the
staging store, counted against the same limit as any image data (``image_size_cap``, the owner's
quota), so a decompression bomb fails the task cleanly.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import gzip
import io
import logging
import lzma
import zipfile
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import IO, Any, Protocol, TypeVar

import zstandard

from glimpse.domain.import_plugins import MAGIC_LENGTH, Compression, ImportPlugin, detect_compression
from glimpse.errors import DatabaseUnavailable, StorageError, StoreNotFound, TooLarge
from glimpse.jobs.import_run import PHASE_DECOMPRESSING, ImportRun
from glimpse.jobs.plugin_steps import DONE, RUNNING, PluginStep, close_quietly
from glimpse.ports import LocalFiles
from glimpse.streaming import BLOCK_SIZE, rebuffer

log = logging.getLogger(__name__)

T = TypeVar("T")


class Decompress(PluginStep):
    """``image_decompression``: gzip, bzip2, xz, zstd or a one-file zip → the data inside."""

    plugin = ImportPlugin.IMAGE_DECOMPRESSION
    name = ImportPlugin.IMAGE_DECOMPRESSION.value

    async def execute(self, run: ImportRun) -> None:
        source = run.staged_source
        staging = run.staging
        try:
            head = await _head(run, source)
        except StoreNotFound:
            raise self._fail(run, f"the staging area holds no data for image {run.image_id}.") from None
        kind = detect_compression(head)
        if kind is None:
            await self._skip(run, "the data is not compressed")
            return
        self._state(run, RUNNING)
        hb = run.heartbeat
        hb.start_phase(PHASE_DECOMPRESSING)
        await hb.beat(force=True)
        limit = await run.data_limit()
        total = (await staging.stat(source)).size
        digest = self._validator(run)
        if digest is not None and kind is Compression.ZIP:
            # The archive is read from its file, not streamed: the digest takes a pass of its own.
            await _digest_of(run, source, digest)
        loop = asyncio.get_running_loop()
        consumed = 0

        async def counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            nonlocal consumed
            async for chunk in chunks:
                consumed += len(chunk)
                if digest is not None:
                    await asyncio.to_thread(digest.update, chunk)
                hb.progress.percent = round(100.0 * consumed / total, 1) if total else None
                yield chunk

        async def output() -> AsyncGenerator[bytes, None]:
            stream = await staging.open(source)
            reader: _Reader | None = None
            try:
                reader = await _blocking(lambda: _decompressor(kind, _PullReader(counted(stream), loop), run))
                while True:
                    block = await _blocking(lambda: reader.read(BLOCK_SIZE) if reader else b"")
                    if not block:
                        break
                    hb.progress.processed_bytes += len(block)
                    yield block
                    await hb.beat()
            finally:
                if reader is not None:
                    await _blocking(reader.close)
                await close_quietly(stream)

        key = self._output_key(run)
        produced = output()
        try:
            stored = await hb.guard(staging.write(key, rebuffer(produced), max_size=limit))
        except TooLarge:
            raise self._fail(
                run,
                f"the {kind} data decompresses to more than {limit} bytes, the most this image may "
                "have (image_size_cap, or what the owner's storage quota leaves); nothing was kept. "
                "Upload a smaller image, or ask an operator to raise the limit.",
            ) from None
        except _CorruptData as exc:
            raise self._fail(
                run,
                f"the staged data starts like {kind} data but cannot be decompressed ({exc}); "
                "upload it again.",
            ) from None
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise self._fail(run, f"the staging area failed: {exc.message}") from None
        finally:
            await produced.aclose()  # closes the staged object and the decompressor now
        self._check_validation(run, digest)
        self._adopt_output(run, stored.location, stored.size)
        hb.progress.percent = 100.0
        self._state(run, DONE)
        log.info(
            "task %s: image %s decompressed (%s, %d → %d bytes)",
            run.task.id,
            run.image_id,
            kind,
            total,
            stored.size,
        )
        await hb.beat(force=True)


class _CorruptData(Exception):
    """The decompressor refused the data (a truncated or damaged stream)."""


#: The errors the decompressors raise on damaged input.
_DECOMPRESSION_ERRORS = (
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    zipfile.BadZipFile,
)


class _Reader(Protocol):
    """A blocking reader of decompressed data."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _decompressor(kind: Compression, raw: _PullReader, run: ImportRun) -> _Reader:
    """A reader of the decompressed data of ``raw`` (called in a worker thread)."""
    source = io.BufferedReader(raw, BLOCK_SIZE)
    try:
        if kind is Compression.GZIP:
            return gzip.GzipFile(fileobj=source, mode="rb")
        if kind is Compression.BZIP2:
            return bz2.BZ2File(source, mode="rb")
        if kind is Compression.XZ:
            return lzma.LZMAFile(source, mode="rb")
        if kind is Compression.ZSTD:
            return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        return _zip_member(run, source)
    except _DECOMPRESSION_ERRORS as exc:
        raise _CorruptData(str(exc) or type(exc).__name__) from None


def _zip_member(run: ImportRun, source: IO[bytes]) -> _Reader:
    """The one file of a zip archive (read from the staged file: zip needs random access)."""
    source.close()
    staging = run.staging
    if not isinstance(staging, LocalFiles):
        raise _CorruptData("zip archives can only be read from a staging area on a local filesystem")
    with zipfile.ZipFile(staging.local_path(run.staged_source)) as archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            raise _CorruptData(f"a zip archive must hold exactly one file, this one holds {len(members)}")
        # The member keeps the archive's file open until it is closed itself.
        return archive.open(members[0])


class _PullReader(io.RawIOBase):
    """A blocking reader over an async iterator of bytes, for a worker thread: each read that needs
    more data asks the event loop for the next chunk (the loop is free meanwhile: the coroutine that
    started the thread awaits it)."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._chunks = chunks
        self._loop = loop
        self._buffer = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            if self._ended:
                return 0
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if chunk is None:
                self._ended = True
                return 0
            self._buffer = memoryview(chunk)
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    async def _next(self) -> bytes | None:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return None


async def _blocking(func: Callable[[], T]) -> T:
    """Run ``func`` in a worker thread; when cancelled, wait for the thread before re-raising, so
    that nothing is closed under it. Decompression errors become :class:`_CorruptData`."""

    def call() -> T:
        try:
            return func()
        except _DECOMPRESSION_ERRORS as exc:
            raise _CorruptData(str(exc) or type(exc).__name__) from None

    future = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))
        raise


async def _digest_of(run: ImportRun, location: str, digest: Any) -> None:
    stream = await run.staging.open(location)
    async for block in rebuffer(stream):
        await asyncio.to_thread(digest.update, block)


async def _head(run: ImportRun, location: str) -> bytes:
    """The first bytes of a staged object."""
    stream = await run.staging.open(location, 0, MAGIC_LENGTH)
    parts = [chunk async for chunk in stream]
    return b"".join(parts)
