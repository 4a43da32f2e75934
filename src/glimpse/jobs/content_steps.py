"""The import plugins as steps of the import flows: ``image_decompression``, ``image_conversion``
and ``no_op`` (what each decides is :mod:`glimpse.domain.import_plugins`).

They run on the staged data of glance-direct and web-download, in the order of
``[image_import_opts] image_import_plugins``, between the download and the copy to the stores. A
plugin never changes the data it reads: it writes a new staging object (``derived_key``), which
the next plugin and then :class:`~glimpse.jobs.import_steps.CopyToStores` read, so a task handed
back to the queue starts again from the data as it was staged. ``Complete`` removes the objects
when the image is active; a step's revert removes its own object on every path.

* **Decompression** streams: staged object → decompressor (in a worker thread) → new staging
  object through the staging store, counted against the same limit as any image data
  (``image_size_cap``, the owner's quota), so a decompression bomb fails the task cleanly.
* **Conversion** runs ``qemu-img convert -p -f <inspected format> -O <output_format>`` from the
  staged file to a scratch file in the staging directory, with asyncio's subprocesses; its percent
  output is the task's progress; it is killed when the task stops. The converted data is
  inspected again, against the new ``disk_format``, by the copy to the stores.
"""

from __future__ import annotations

import asyncio
import bz2
import collections
import contextlib
import gzip
import hashlib
import io
import logging
import lzma
import os
import zipfile
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import IO, Any, Protocol, TypeVar

import zstandard

from glimpse.domain.import_plugins import (
    MAGIC_LENGTH,
    QEMU_IMG,
    Compression,
    ConversionPlan,
    ImportPlugin,
    derived_key,
    detect_compression,
    plan_conversion,
    qemu_percent,
)
from glimpse.domain.inspection import ContentVerdict, content_judge
from glimpse.errors import (
    DatabaseUnavailable,
    FlowFailed,
    FormatMismatch,
    StorageError,
    StoreNotFound,
    TooLarge,
    UnsafeImage,
)
from glimpse.jobs.import_run import PHASE_CONVERTING, PHASE_DECOMPRESSING, ImportRun
from glimpse.jobs.objects import delete_object
from glimpse.jobs.steps import Why
from glimpse.ports import LocalFiles, StoredObject
from glimpse.streaming import BLOCK_SIZE, ContentInspector, rebuffer

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How much of qemu-img's error output a task message quotes (its last characters).
STDERR_QUOTED = 600

_RUNNING, _DONE, _SKIPPED, _FAILED = "running", "done", "skipped", "failed"


class _PluginStep:
    """What the plugin steps share: their state in the progress, their output object, the check
    of ``validation_data`` on the data as it came in, and the revert."""

    plugin: ImportPlugin
    name: str

    def _state(self, run: ImportRun, state: str) -> None:
        run.progress.plugins[self.plugin] = state

    async def _skip(self, run: ImportRun, why: str) -> None:
        log.info("task %s: %s skipped: %s", run.task.id, self.plugin, why)
        self._state(run, _SKIPPED)
        await run.heartbeat.beat(force=True)

    def _output_key(self, run: ImportRun) -> str:
        return derived_key(run.image_id, run.task.id, self.plugin)

    def _adopt_output(self, run: ImportRun, location: str, size: int) -> None:
        """The step's output is now what the next steps read."""
        run.derived.append(location)
        run.size = size
        for store_id in run.targets:
            run.heartbeat.store(store_id).bytes_total = size

    def _validator(self, run: ImportRun) -> Any | None:
        """A hash of the client's ``validation_data`` algorithm, when the data must be checked here:
        the first plugin that changes the data checks it as it came in."""
        expected = run.expected_digest
        if expected is None:
            return None
        return hashlib.new(expected.algorithm)

    def _check_validation(self, run: ImportRun, digest: Any | None) -> None:
        expected = run.expected_digest
        if digest is None or expected is None:
            return
        actual = digest.hexdigest()
        if actual != expected.value:
            given = "the remote image records" if expected is run.remote_digest else "validation_data expects"
            raise FlowFailed(
                f"The staged data has {expected.algorithm} {actual}, but {given} "
                f"{expected.value}; nothing was stored. Check the digest (or the URL) and import again."
            )
        run.validated = True

    def _fail(self, run: ImportRun, message: str) -> FlowFailed:
        self._state(run, _FAILED)
        return FlowFailed(f"The import plugin {self.plugin} failed: {message}")

    async def revert(self, run: ImportRun, reason: Why) -> None:
        # The output object is this task's own (its key names the task), whatever the reason.
        # It may exist without being recorded in ``run.derived`` (a check after the write failed).
        location = run.staging.location_for(self._output_key(run))
        await delete_object(run.staging, location)
        if location in run.derived:
            run.derived.remove(location)
        if run.progress.plugins.get(self.plugin) == _RUNNING:
            self._state(run, _FAILED)


class NoOp(_PluginStep):
    """``no_op``: does nothing (Glance's example plugin); shown as done in the progress."""

    plugin = ImportPlugin.NO_OP
    name = ImportPlugin.NO_OP.value

    async def execute(self, run: ImportRun) -> None:
        self._state(run, _DONE)


# -- decompression -------------------------------------------------------------------------------


class Decompress(_PluginStep):
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
        self._state(run, _RUNNING)
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
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    with contextlib.suppress(Exception):
                        await closer()

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
        self._state(run, _DONE)
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


# -- conversion ----------------------------------------------------------------------------------


class Convert(_PluginStep):
    """``image_conversion``: the staged data converted to ``[image_conversion] output_format``."""

    plugin = ImportPlugin.IMAGE_CONVERSION
    name = ImportPlugin.IMAGE_CONVERSION.value

    async def execute(self, run: ImportRun) -> None:
        staging = run.staging
        output_format = run.ports.settings.conversion_output_format
        if not isinstance(staging, LocalFiles):
            raise self._fail(
                run,
                "qemu-img needs the staged data as a local file, and the staging area is not on a "
                "local filesystem; set node_staging_uri to a file:// directory.",
            )
        source = run.staged_source
        digest = self._validator(run)
        try:
            verdict = await self._inspect(run, source, digest)
        except StoreNotFound:
            raise self._fail(run, f"the staging area holds no data for image {run.image_id}.") from None
        except (FormatMismatch, UnsafeImage) as exc:
            raise self._fail(run, f"the data was refused, so it was not converted: {exc.message}") from None
        self._check_validation(run, digest)
        try:
            plan = plan_conversion(verdict.detected, output_format)
        except ValueError:
            raise self._fail(
                run,
                f"the data is {verdict.detected}, which cannot be converted to {output_format}; "
                f"upload {output_format} data.",
            ) from None
        if plan is None:
            # Nothing to convert: the disk_format stays as the image declares it (an ``ami`` image
            # whose data is raw stays ``ami``).
            await self._skip(run, f"the data already is {verdict.detected}")
            return
        limit = await run.data_limit()
        if output_format == "raw" and verdict.virtual_size and verdict.virtual_size > limit:
            raise self._fail(run, self._too_large(verdict.virtual_size, limit))
        self._state(run, _RUNNING)
        hb = run.heartbeat
        hb.start_phase(PHASE_CONVERTING)
        hb.progress.percent = 0.0
        await hb.beat(force=True)
        key = self._output_key(run)
        scratch = staging.scratch_path(key)

        async def convert() -> StoredObject:
            await self._convert(run, plan, staging.local_path(source), scratch)
            size = await asyncio.to_thread(os.path.getsize, scratch)
            if size > limit:
                raise self._fail(run, self._too_large(size, limit))
            return await staging.adopt(scratch, key)

        try:
            stored = await hb.guard(convert())
        except StorageError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise self._fail(run, f"the staging area failed: {exc.message}") from None
        finally:
            await asyncio.to_thread(_remove, scratch)
        self._adopt_output(run, stored.location, stored.size)
        run.disk_format = output_format
        hb.progress.percent = 100.0
        hb.progress.processed_bytes = stored.size
        self._state(run, _DONE)
        log.info(
            "task %s: image %s converted from %s to %s (%d bytes)",
            run.task.id,
            run.image_id,
            verdict.detected,
            output_format,
            stored.size,
        )
        await hb.beat(force=True)

    @staticmethod
    def _too_large(size: int, limit: int) -> str:
        return (
            f"the converted image would have {size} bytes, more than the {limit} this image may have "
            "(image_size_cap, or what the owner's storage quota leaves); nothing was kept. Import "
            "a smaller image, or ask an operator to raise the limit."
        )

    @staticmethod
    async def _inspect(run: ImportRun, location: str, digest: Any | None) -> ContentVerdict:
        """Inspect the staged data against the image's disk_format (reading it all when the
        client's digest must be checked too)."""
        inspector = ContentInspector(content_judge(run.disk_format, run.ports.settings.content_rules))
        size = (await run.staging.stat(location)).size
        stream = await run.staging.open(location)
        try:
            async for block in rebuffer(stream):
                if inspector.needs_data:
                    await asyncio.to_thread(inspector.feed, block)
                    inspector.check_early()
                if digest is not None:
                    await asyncio.to_thread(digest.update, block)
                elif not inspector.needs_data:
                    break
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        verdict = inspector.finish(size)
        assert isinstance(verdict, ContentVerdict)
        return verdict

    async def _convert(self, run: ImportRun, plan: ConversionPlan, source: str, target: str) -> None:
        """Run qemu-img; its ``-p`` percentages become the progress. Killed if the task stops."""
        hb = run.heartbeat
        command = [QEMU_IMG, "convert", "-p", "-f", plan.source, "-O", plan.output]
        if run.ports.settings.conversion_rate_limit:
            command += ["-r", str(run.ports.settings.conversion_rate_limit)]
        command += [source, target]
        log.info("task %s: %s", run.task.id, " ".join(command))
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "LC_ALL": "C"},
            )
        except OSError as exc:
            raise self._fail(run, f"{QEMU_IMG} could not be started ({exc.strerror or exc}).") from None
        errors: collections.deque[bytes] = collections.deque(maxlen=64)

        async def read_errors() -> None:
            assert process.stderr is not None
            async for line in process.stderr:
                errors.append(line)

        error_reader = asyncio.create_task(read_errors())
        try:
            assert process.stdout is not None
            while chunk := await process.stdout.read(4096):
                percent = qemu_percent(chunk.decode("ascii", "replace"))
                if percent is not None and percent != hb.progress.percent:
                    hb.progress.percent = percent
                    await hb.beat()
            status = await process.wait()
            await error_reader
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            error_reader.cancel()
            await asyncio.gather(error_reader, return_exceptions=True)
        if status != 0:
            said = b"".join(errors).decode("utf-8", "replace").strip().replace(source, "<staged data>")
            said = said.replace(target, "<output>")
            if len(said) > STDERR_QUOTED:
                said = "…" + said[-STDERR_QUOTED:]
            raise self._fail(
                run,
                f"qemu-img convert from {plan.source} to {plan.output} exited with status {status}: "
                f"{said or 'no message'}. The data may be damaged; check it with 'qemu-img check' and "
                "upload it again.",
            )


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
