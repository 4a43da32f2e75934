"""The machine's own limits, measured over the same bytes and chunk size the service is given.

* hashing: hashlib md5 and sha512 as the upload computes them; alone, one after the other on each
  chunk in one thread (the single-pass limit of a service that hashes on the request path, as
  Glance does), and in two threads at once (the best a service can do on two cores);
* disk: writing the bytes to a file in the data directory, then fsync, as a store commits them;
  once with each file removed before the next is written, once with the files kept (as a server
  keeps the images it stored), and the CPU each costs;
* loopback: sending the bytes over a TCP connection on 127.0.0.1 to a thread that reads them.
"""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rawhttp import PatternStream

MiB = 1024 * 1024


@dataclass
class Limit:
    name: str
    runs_mib_s: list[float]
    #: For the disk writes: CPU milliseconds this process spent per MiB written, run by run (the
    #: kernel's work of putting the bytes into the page cache is most of it).
    cpu_ms_per_mib: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs_mib_s)


@dataclass
class HashLimits:
    md5: Limit
    sha512: Limit
    single_pass: Limit
    two_threads: Limit
    md5_hex: str
    sha512_hex: str


def _rate(size: int, seconds: float) -> float:
    return size / MiB / max(seconds, 1e-9)


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def hash_limits(stream: PatternStream, repeats: int) -> HashLimits:
    md5_runs, sha_runs, single_runs, parallel_runs = [], [], [], []
    md5_hex = sha512_hex = ""
    for _ in range(repeats):
        md5 = hashlib.md5(usedforsecurity=False)
        md5_runs.append(_rate(stream.size, _timed(lambda h=md5: _feed(h, stream))))
        sha = hashlib.sha512()
        sha_runs.append(_rate(stream.size, _timed(lambda h=sha: _feed(h, stream))))

        rate, md5_hex, sha512_hex = single_pass(stream)
        single_runs.append(rate)

        def parallel() -> None:
            threads = [
                threading.Thread(target=_feed, args=(hashlib.md5(usedforsecurity=False), stream)),
                threading.Thread(target=_feed, args=(hashlib.sha512(), stream)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        parallel_runs.append(_rate(stream.size, _timed(parallel)))
    return HashLimits(
        md5=Limit("hashlib md5", md5_runs),
        sha512=Limit("hashlib sha512", sha_runs),
        single_pass=Limit("hashlib md5+sha512, one thread", single_runs),
        two_threads=Limit("hashlib md5 | sha512, two threads", parallel_runs),
        md5_hex=md5_hex,
        sha512_hex=sha512_hex,
    )


def single_pass(stream: PatternStream) -> tuple[float, str, str]:
    """md5 then sha512 on each chunk, in this thread: (MiB/s, md5 hex, sha512 hex)."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    started = time.perf_counter()
    for view in stream.iter_views():
        md5.update(view)
        sha.update(view)
    return _rate(stream.size, time.perf_counter() - started), md5.hexdigest(), sha.hexdigest()


def _feed(hasher: hashlib._Hash, stream: PatternStream) -> None:
    for view in stream.iter_views():
        hasher.update(view)


def disk_write_limit(directory: Path, stream: PatternStream, repeats: int) -> Limit:
    """Write the stream to a new file, fsync it, close it (what a file store does per image).

    One untimed write of the same size goes first: the first write + fsync into fresh space is
    several times slower than the next ones on the virtual machines this runs on (``dd
    conv=fdatasync`` three times in a row: 0.35, 0.9, 2.1 GB/s), and would decide a median of few runs.
    Each file is removed before the next is written, so the page cache reuses the same memory.
    """
    paths = [directory / f".disk-limit-{attempt}" for attempt in range(-1, repeats)]
    runs, cpu = _writes(paths, stream, keep=False)
    return Limit("disk write + fsync", runs[1:], cpu[1:])


def kept_write_limit(directory: Path, stream: PatternStream, repeats: int) -> Limit:
    """The same writes with every file kept until the last is written, as a server keeps the images
    it stored: each write takes memory the page cache had not used. On these virtual machines such
    memory costs several times the CPU of memory just freed (the host backs a guest page again when
    it is touched), which a server's second and third upload of a sitting pay and its first one,
    after the limits' removed files, does not."""
    paths = [directory / f".disk-kept-{attempt}" for attempt in range(repeats)]
    runs, cpu = _writes(paths, stream, keep=True)
    return Limit("disk write + fsync, files kept", runs, cpu)


def _writes(paths: list[Path], stream: PatternStream, *, keep: bool) -> tuple[list[float], list[float]]:
    """Write + fsync the stream into each path in turn: the MiB/s and the CPU ms per MiB of each.
    Each file is removed right after its write, or with ``keep`` once all are written."""
    runs, cpu = [], []
    try:
        for path in paths:
            seconds, cpu_seconds = _write_fsync(path, stream)
            if not keep:
                path.unlink()
            runs.append(_rate(stream.size, seconds))
            cpu.append(_cpu_ms_per_mib(cpu_seconds, stream.size))
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    return runs, cpu


def _cpu_ms_per_mib(cpu_seconds: float, size: int) -> float:
    return 1000.0 * cpu_seconds / max(size / MiB, 1e-9)


def _write_fsync(path: Path, stream: PatternStream) -> tuple[float, float]:
    """Seconds to create ``path``, write the stream, fsync and close it, and the CPU seconds this
    process spent doing it."""
    cpu_before = sum(os.times()[:2])
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for view in stream.iter_views():
            while view:
                written = os.write(fd, view)
                view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started, sum(os.times()[:2]) - cpu_before


class _Receiver(threading.Thread):
    """Accepts one connection and reads it to the end into one reused buffer."""

    def __init__(self, listener: socket.socket, buffer_size: int, timeout: float) -> None:
        super().__init__(name="loopback-reader", daemon=True)
        self.listener = listener
        self.buffer_size = buffer_size
        self.timeout = timeout
        self.received = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(self.timeout)
                buffer = memoryview(bytearray(self.buffer_size))
                while got := conn.recv_into(buffer):
                    self.received += got
        except BaseException as exc:  # reported by the sending side
            self.failure = exc


def loopback_limit(stream: PatternStream, repeats: int, timeout: float = 120.0) -> Limit:
    """Copy the stream over TCP on 127.0.0.1 from this thread to a reading thread."""
    runs = []
    for _ in range(repeats):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(timeout)
            reader = _Receiver(listener, len(stream.block), timeout)
            started = time.perf_counter()
            reader.start()
            with socket.create_connection(listener.getsockname()[:2], timeout=timeout) as sender:
                for view in stream.iter_views():
                    sender.sendall(view)
            reader.join(timeout)
            elapsed = time.perf_counter() - started
            if reader.failure is not None:
                raise RuntimeError(f"loopback copy failed: {reader.failure}")
            if reader.received != stream.size:
                raise RuntimeError(f"loopback copy moved {reader.received} of {stream.size} bytes")
            runs.append(_rate(stream.size, elapsed))
    return Limit("loopback TCP copy", runs)
