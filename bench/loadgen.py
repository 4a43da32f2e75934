"""Keep-alive HTTP/1.1 load on loopback: wrk when it is installed, else a small asyncio generator.

wrk is what the Glance peer is measured with, so it is preferred: same tool, same -t/-c/-d, and it
is C, so on a 2-core machine it takes far less CPU away from the server than any Python client
would. The asyncio generator is the fallback and a cross-check: N connections, each sending the next
request as soon as the previous response has been read (closed loop, like wrk), latency measured
per request from the write to the last byte of the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration: float
    requests: int
    non_2xx: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    raw: str = ""
    extra: dict[str, float] = field(default_factory=dict)


class AsyncConnection:
    """One keep-alive connection; reconnects if the server closes it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        return self._reader, self._writer

    async def request(self, raw_request: bytes) -> tuple[int, bytes]:
        reader, writer = await self._ensure()
        writer.write(raw_request)
        status, body, close = await asyncio.wait_for(self._response(reader), self.timeout)
        if close:
            await self.close()
        return status, body

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            body = b"".join(parts)
        elif status in (204, 304):
            body = b""
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, body, headers.get("connection", "").lower() == "close"

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (less client CPU), else on the default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def build_request(
    host: str, port: int, method: str, path: str, body: bytes = b"", content_type: str | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _run_pool(
    host: str,
    port: int,
    connections: int,
    io_timeout: float,
    worker: Callable[[AsyncConnection], Awaitable[None]],
) -> None:
    pool = [AsyncConnection(host, port, io_timeout) for _ in range(connections)]
    try:
        await asyncio.gather(*(worker(conn) for conn in pool))
    finally:
        for conn in pool:
            await conn.close()


def seed_images(
    host: str,
    port: int,
    count: int,
    connections: int,
    *,
    timeout: float = 60.0,
    report: Callable[[int, float], None] | None = None,
    first_index: int = 0,
    max_failures: int | None = None,
) -> tuple[float, int]:
    """Create ``count`` images with POST /v2/images over ``connections`` keep-alive connections.

    The bodies are the ones the Glance peer uses (a tag and an extra property), so that listing
    returns documents of the same shape; they are named ``bulk-<first_index + n>``. More failed
    POSTs than ``max_failures`` (default: 1 % of ``count``, at least 10) abort the seeding.
    Returns (seconds, failures).
    """
    allowed = max(10, count // 100) if max_failures is None else max_failures
    next_index = 0
    created = 0
    failures = 0
    started = time.perf_counter()
    last_report = started

    async def worker(conn: AsyncConnection) -> None:
        nonlocal next_index, created, failures, last_report
        while next_index < count:
            index = first_index + next_index
            next_index += 1
            body = orjson.dumps(
                {
                    "name": f"bulk-{index}",
                    "disk_format": "raw",
                    "container_format": "bare",
                    "tags": ["bulk"],
                    "foo": f"bar-{index}",
                }
            )
            status, reply = await conn.request(
                build_request(host, port, "POST", "/v2/images", body, "application/json")
            )
            if status == 201:
                created += 1
            else:
                failures += 1
                if failures > allowed:
                    raise RuntimeError(
                        f"POST /v2/images failed {failures} times; last: {status} {reply[:300]!r}"
                    )
            now = time.perf_counter()
            if report is not None and now - last_report >= 5:
                last_report = now
                report(created, now - started)

    _run(_run_pool(host, port, connections, timeout, worker))
    return time.perf_counter() - started, failures


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def python_load(
    host: str, port: int, path: str, connections: int, duration: float, timeout: float = 10.0
) -> LoadResult:
    """Closed-loop GETs of ``path`` on ``connections`` connections for ``duration`` seconds."""
    raw = build_request(host, port, "GET", path)
    latencies: list[float] = []
    non_2xx = 0
    errors = 0

    async def worker(conn: AsyncConnection) -> None:
        nonlocal non_2xx, errors
        deadline = time.perf_counter() + duration
        while True:
            started = time.perf_counter()
            if started >= deadline:
                return
            try:
                status, _ = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                errors += 1
                await conn.close()
                continue
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                non_2xx += 1

    started = time.perf_counter()
    _run(_run_pool(host, port, connections, timeout, worker))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        tool="python-asyncio",
        connections=connections,
        duration=elapsed,
        requests=len(latencies),
        non_2xx=non_2xx,
        errors=errors,
        rps=len(latencies) / elapsed,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
    )


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str, connections: int, duration: float) -> LoadResult:
    """The figures of ``wrk --latency`` output."""

    def grab(pattern: str) -> str | None:
        match = re.search(pattern, output, re.MULTILINE)
        return match.group(1) if match else None

    rps = grab(r"^Requests/sec:\s+([\d.]+)")
    p50 = grab(r"^\s+50%\s+(\S+)")
    p99 = grab(r"^\s+99%\s+(\S+)")
    total = grab(r"^\s+(\d+) requests in")
    if rps is None or p50 is None or p99 is None or total is None:
        raise ValueError(f"could not read wrk's output:\n{output}")
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = sum(int(v) for v in socket_errors.groups()) if socket_errors else 0
    return LoadResult(
        tool="wrk",
        connections=connections,
        duration=duration,
        requests=int(total),
        non_2xx=int(grab(r"Non-2xx or 3xx responses:\s+(\d+)") or 0),
        errors=errors,
        rps=float(rps),
        p50_ms=_to_ms(p50),
        p99_ms=_to_ms(p99),
        raw=output,
    )


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_load(url: str, connections: int, duration: float, threads: int) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise FileNotFoundError("wrk is not installed")
    seconds = max(1, round(duration))
    command = [
        wrk,
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout, connections, seconds)


def install_wrk(timeout: float = 300.0) -> bool:
    """apt-get install wrk (only when asked for with --install-wrk: it reaches the network)."""
    apt = shutil.which("apt-get")
    if apt is None:
        return False
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            return False
        if done.returncode != 0:
            return False
    return wrk_path() is not None
