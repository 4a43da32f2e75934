"""Checksums and format inspection computed while bytes stream through, off the event loop,
overlapping the store's writes."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from oslo_utils.imageutils import format_inspector as fi

#: Bytes handed to a worker thread at once: large enough that thread hops cost nothing measurable.
BLOCK_SIZE = 1024 * 1024


async def rebuffer(chunks: AsyncIterator[bytes], block_size: int = BLOCK_SIZE) -> AsyncIterator[bytes]:
    """Regroup arbitrary chunks into blocks of ``block_size`` bytes or more, but fewer than twice
    that (the last one may be shorter).

    Small chunks are joined up to the block boundary they cross, a chunk of one to two block sizes
    passes on as it is, and only a larger one is cut: the bytes of an upload, which arrive in
    pieces of a few hundred KiB, are copied once, where cutting exact blocks would copy them twice.
    """
    parts: list[bytes] = []
    buffered = 0
    async for chunk in chunks:
        if not chunk:
            continue
        if parts or len(chunk) < block_size:
            parts.append(chunk)
            buffered += len(chunk)
            if buffered < block_size:
                continue
            chunk = b"".join(parts)
            parts, buffered = [], 0
        start = 0
        while len(chunk) - start >= 2 * block_size:
            yield chunk[start : start + block_size]
            start += block_size
        yield chunk[start:] if start else chunk
    if parts:
        yield b"".join(parts)


async def counted(chunks: AsyncIterator[bytes], add: Callable[[int], object]) -> AsyncIterator[bytes]:
    """``chunks`` unchanged, with ``add(len(chunk))`` called as each one passes (a byte counter);
    ``chunks`` is closed when the stream ends or is abandoned."""
    try:
        async for chunk in chunks:
            add(len(chunk))
            yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


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


V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class ContentReport:
    """What an inspection found so far (``final``: after the last byte).

    ``formats``: each recognised format (never ``raw``: raw is what matches nothing) → the virtual
    size its header gives (0 when unknown); ``failures``: a recognised format → its failed safety
    checks (check name → reason); ``broken``: a format → why its inspector gave up on the data.
    """

    formats: dict[str, int]
    failures: dict[str, dict[str, str]]
    broken: dict[str, str]
    size: int
    final: bool


@dataclass(slots=True)
class _Candidate:
    inspector: fi.FileInspector
    #: Still wants bytes: its header regions are incomplete, or it reads the end of the stream.
    feeding: bool = True
    #: Its fixed regions are all read and the format matches.
    matched: bool = False
    error: str | None = None
    tail: bool = field(default=False)


class ContentInspector(Generic[V]):
    """Recognises the disk format of a stream block by block with oslo.utils' format inspectors.

    Every inspector (except raw) sees the blocks until it has read the header regions it needs;
    one that then does not match is dropped, one that matches keeps reading only if it also checks
    the end of the stream (a streamOptimized VMDK's footer). Nothing is kept but those regions.

    ``judge`` is given a :class:`ContentReport` as soon as every inspector has decided (usually
    after the first block, so a refused image fails before it is written) and again at the end;
    it raises to refuse the content, and what it returns at the end is :attr:`verdict`.
    """

    def __init__(self, judge: Callable[[ContentReport], V]) -> None:
        self._judge = judge
        # raw matches anything: it is what the data is when no other format matches.
        self._candidates = [_Candidate(cls()) for name, cls in fi.ALL_FORMATS.items() if name != "raw"]
        self._size = 0
        self._judged_early = False
        self.verdict: V | None = None

    @property
    def needs_data(self) -> bool:
        return any(c.feeding for c in self._candidates)

    def feed(self, block: bytes) -> None:
        """Present the next bytes (called from a worker thread, in order, any number at a time).

        The inspectors see them cut at every :data:`BLOCK_SIZE` boundary of the stream, whatever
        sizes the blocks have: a format whose header points to a region that points to another
        (VHDX: region table, metadata table, then its items, each 1 MiB-aligned or 64 KiB past the
        last) finds each region in a later piece, since an inspector learns of a new region only
        after the piece that names it.
        """
        at = 0
        while at < len(block) and self.needs_data:
            room = BLOCK_SIZE - self._size % BLOCK_SIZE
            piece = block if at == 0 and len(block) <= room else block[at : at + room]
            at += len(piece)
            self._eat(piece)

    def _eat(self, piece: bytes) -> None:
        self._size += len(piece)  # while it is fed; finish() is given the total
        for cand in self._candidates:
            if not cand.feeding:
                continue
            try:
                cand.inspector.eat_chunk(piece)
                self._settle(cand)
            except Exception as exc:  # a damaged header: this format is out
                cand.feeding, cand.matched, cand.error = False, False, str(exc) or type(exc).__name__

    @staticmethod
    def _settle(cand: _Candidate) -> None:
        insp = cand.inspector
        regions = [insp.region(name) for name in insp.context_info]
        tail = [r for r in regions if isinstance(r, fi.EndCaptureRegion)]
        if not all(r.complete for r in regions if not isinstance(r, fi.EndCaptureRegion)):
            return
        cand.matched = bool(insp.format_match)
        cand.tail = bool(tail)
        cand.feeding = cand.matched and cand.tail

    def check_early(self) -> None:
        """Judge once every inspector has decided before the end (raises to refuse the content)."""
        if self._judged_early or self.needs_data:
            return
        self._judged_early = True
        self._judge(self._report(final=False))

    def finish(self, size: int) -> V:
        """After the last block (``size`` bytes in all): complete the inspection, judge it, and
        return the verdict."""
        self._size = size
        for cand in self._candidates:
            if cand.error is None:
                try:
                    cand.inspector.finish()
                    self._settle(cand)
                    cand.matched = cand.matched and cand.inspector.complete
                except Exception as exc:
                    cand.matched, cand.error = False, str(exc) or type(exc).__name__
            cand.feeding = False
        self.verdict = self._judge(self._report(final=True))
        return self.verdict

    def _report(self, *, final: bool) -> ContentReport:
        formats: dict[str, int] = {}
        failures: dict[str, dict[str, str]] = {}
        broken: dict[str, str] = {}
        for cand in self._candidates:
            name = str(cand.inspector)
            if cand.error is not None:
                broken[name] = cand.error
                continue
            if not cand.matched:
                continue
            formats[name] = _virtual_size(cand.inspector)
            if final or not cand.tail:
                failed = _safety_failures(cand.inspector)
                if failed:
                    failures[name] = failed
        return ContentReport(formats=formats, failures=failures, broken=broken, size=self._size, final=final)


async def inspected(blocks: AsyncIterator[bytes], inspector: ContentInspector[Any]) -> AsyncIterator[bytes]:
    """Pass ``blocks`` through, inspecting them (where no hashing is wanted: the staging area).

    The inspector reads only until every format has decided (a block or two), in a worker thread;
    it is judged then, and again before the end of the stream is handed on.
    """
    size = 0
    async for block in blocks:
        if inspector.needs_data:
            await asyncio.to_thread(inspector.feed, block)
            inspector.check_early()
        size += len(block)
        yield block
    inspector.finish(size)


def _virtual_size(inspector: fi.FileInspector) -> int:
    try:
        return int(inspector.virtual_size)
    except Exception:  # a header that gives no usable size
        return 0


def _safety_failures(inspector: fi.FileInspector) -> dict[str, str]:
    """The failed safety checks of a matched inspector: check name → reason."""
    if not inspector.complete:
        # Regions still open (a footer not read yet): only the checks that need no missing
        # region can run, and the final report runs them all.
        return {}
    try:
        inspector.safety_check()
    except fi.SafetyCheckFailed as exc:
        return {name: str(reason) or "failed" for name, reason in exc.failures.items()}
    except fi.ImageFormatError as exc:
        return {"format": str(exc)}
    return {}


class _Lane:
    """One worker thread that runs the calls given to it in order (a digest must see its bytes in
    order), with at most ``depth`` calls waiting or running."""

    def __init__(self, name: str, depth: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._depth = depth
        self._queued: collections.deque[asyncio.Future[Any]] = collections.deque()

    async def submit(self, fn: Callable[[bytes], object], block: bytes) -> None:
        """Queue ``fn(block)``; waits only while the lane already holds ``depth`` calls."""
        while len(self._queued) >= self._depth:
            await self._queued.popleft()
        self._queued.append(asyncio.get_running_loop().run_in_executor(self._pool, fn, block))

    async def drain(self) -> None:
        """Wait for every queued call (raising the first error)."""
        while self._queued:
            await self._queued.popleft()

    async def close(self) -> None:
        """Wait for what is queued, errors ignored, and stop the thread."""
        pending = list(self._queued)
        self._queued.clear()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._pool.shutdown(wait=False)


class StreamHasher:
    """MD5 (Glance's ``checksum``) and the configured multihash, fed block by block; with an
    ``inspector``, the format inspection in the same pass.

    Each digest (and the inspector) has a lane of its own: one worker thread that takes the blocks
    in order. hashlib releases the GIL, so the digests run on as many cores as there are, each at
    its own pace, while the consumer writes the same blocks to a store. ``wrap`` hands a block on
    as soon as it is queued; a lane holds at most ``LANE_DEPTH`` blocks, which bounds the memory of
    a hashing that falls behind.
    """

    #: Blocks a digest may have waiting or in progress before ``wrap`` waits for it.
    LANE_DEPTH = 4

    def __init__(
        self,
        algorithm: str,
        inspector: ContentInspector[Any] | None = None,
        *,
        also: str | None = None,
        on_end: Callable[[StreamHasher], None] | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.inspector = inspector
        #: Called with the finished digests before the consumer sees the end of the stream (it
        #: raises to refuse the data, which then fails the store's write).
        self.on_end = on_end
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._multi = hashlib.new(algorithm)
        #: One more digest when asked for (a digest a client gave in another algorithm).
        self._also = hashlib.new(also) if also not in (None, "md5", algorithm) else None
        self.size = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        digests: list[tuple[_Lane, Callable[[bytes], object]]] = [
            (_Lane("md5", self.LANE_DEPTH), self._md5.update),
            (_Lane(self.algorithm, self.LANE_DEPTH), self._multi.update),
        ]
        if self._also is not None:
            digests.append((_Lane(self._also.name, self.LANE_DEPTH), self._also.update))
        # The inspector reads a block or two and must be judged before the next block goes on,
        # so that refused content fails before a store has kept much of it.
        inspection = _Lane("inspect", 1) if self.inspector is not None else None
        try:
            async for block in rebuffer(chunks):
                if inspection is not None and self.inspector is not None:
                    await inspection.drain()
                    self.inspector.check_early()
                    if self.inspector.needs_data:
                        await inspection.submit(self.inspector.feed, block)
                for lane, update in digests:
                    await lane.submit(update, block)
                self.size += len(block)
                yield block
            for lane, _ in digests:
                await lane.drain()
            if inspection is not None and self.inspector is not None:
                await inspection.drain()
                # Judged before the consumer sees the end of the stream: a refused image fails
                # the store's write, which then keeps nothing.
                self.inspector.finish(self.size)
            if self.on_end is not None:
                self.on_end(self)
        finally:
            for lane, _ in digests:
                await lane.close()
            if inspection is not None:
                await inspection.close()

    @property
    def checksum(self) -> str:
        return self._md5.hexdigest()

    @property
    def multihash(self) -> str:
        return self._multi.hexdigest()

    def digest(self, algorithm: str) -> str | None:
        """The hex digest in ``algorithm`` of what went through, if it was computed."""
        if algorithm == "md5":
            return self.checksum
        if algorithm == self.algorithm:
            return self.multihash
        if self._also is not None and self._also.name == algorithm:
            return self._also.hexdigest()
        return None
