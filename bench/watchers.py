"""Many task watchers on one image: server cost while they wait, and wake-up latency.

Starts ``glimpse-server serve`` (1 worker) on loopback in a temporary data directory, creates and uploads
one small image, opens ``--watchers`` concurrent ``GET /v2/images/{id}/tasks?changes-since=…&wait=…``
requests (one HTTP/1.1 connection each, raw asyncio streams), samples the server's RSS and CPU for
``--idle`` seconds while they wait, then starts a copy-image import and times how long each watcher
takes to get its answer after the import's 202. With ``--events`` each watcher is an event stream
(``Accept: text/event-stream``, ``changes-since`` = now) instead, timed to its first ``tasks`` event.

Exit status: 0 when every watcher was woken with ``Glimpse-Tasks-Changed: true``, 1 when the server
or a watcher failed, 2 for bad options or too low a file descriptor limit, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import orjson
import procinfo
import rawhttp
from service import HOST, Server, ServerFailed

ADMIN = {"X-Project-Id": "bench-admin", "X-User-Id": "bench-admin", "X-Roles": "admin,member,reader"}
MIN_NOFILE = 4096
CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT = 30.0
SAMPLE_INTERVAL = 0.25
SETTLE_SECONDS = 1.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_nofile(needed: int) -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (at least MIN_NOFILE); the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        nr_open = 1 << 20
    target = nr_open if hard == resource.RLIM_INFINITY else hard
    if target < MIN_NOFILE:
        # Only a privileged process may raise the hard limit; try, and accept a refusal.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (MIN_NOFILE, MIN_NOFILE))
            target = hard = MIN_NOFILE
        except (ValueError, OSError):
            pass
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {soft} (hard {hard}); {needed} descriptors are needed")
    return soft, hard


def setup_image(server: Server) -> str:
    """An active raw/bare image of a few KiB, in the default store."""
    created = rawhttp.request(
        HOST,
        server.port,
        "POST",
        "/v2/images",
        json_body={"name": "watchers", "disk_format": "raw", "container_format": "bare"},
        timeout=30,
    )
    if created.status != 201:
        raise ServerFailed(f"POST /v2/images answered {created.status}: {created.body[:300]!r}")
    image_id = str(created.json()["id"])  # type: ignore[index]
    stream = rawhttp.PatternStream(os.urandom(4096), 4 * 4096)
    uploaded = rawhttp.upload(HOST, server.port, f"/v2/images/{image_id}/file", stream, timeout=30)
    if uploaded.status != 204:
        raise ServerFailed(f"PUT /file answered {uploaded.status}: {uploaded.body[:300]!r}")
    image = rawhttp.request(HOST, server.port, "GET", f"/v2/images/{image_id}", timeout=30).json()
    if image.get("status") != "active":  # type: ignore[union-attr]
        raise ServerFailed(f"the image is {image.get('status')!r} after the upload, not active")  # type: ignore[union-attr]
    return image_id


def tree_rss(pid: int) -> int:
    return sum(procinfo.rss_bytes(p) for p in procinfo.process_tree(pid))


@dataclass
class Watcher:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    status: int = 0
    changed: str = ""
    arrived: float = 0.0
    error: str = ""


@dataclass
class Result:
    watchers: int
    events: bool = False
    connected: int = 0
    connect_seconds: float = 0.0
    rss_before: int = 0
    rss_idle_samples: list[int] = field(default_factory=list)
    idle_seconds: float = 0.0
    idle_server_cpu_seconds: float = 0.0
    idle_client_cpu_seconds: float = 0.0
    early: int = 0
    woken: int = 0
    changed_true: int = 0
    changed_false: int = 0
    latencies: list[float] = field(default_factory=list)
    burst_latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, text: str) -> None:
        self.errors[text] = self.errors.get(text, 0) + 1


async def connect(watcher: Watcher, port: int, request: bytes, gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), CONNECT_TIMEOUT)
            writer.write(request)
            await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            watcher.error = f"connect: {type(exc).__name__}: {exc}"
            return
        watcher.reader, watcher.writer = reader, writer


async def read_answer(watcher: Watcher, limit: float, events: bool) -> None:
    """Read one response (Connection: close), note when it was complete; for an event stream, when
    its first ``tasks`` event arrived (which counts as ``Glimpse-Tasks-Changed: true``)."""
    if watcher.reader is None:
        return
    try:
        head = await asyncio.wait_for(watcher.reader.readuntil(b"\r\n\r\n"), limit)
        if events:
            await asyncio.wait_for(watcher.reader.readuntil(b"event: tasks\n"), limit)
            watcher.changed = "true"
        else:
            await asyncio.wait_for(watcher.reader.read(), limit)
        watcher.arrived = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        watcher.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "glimpse-tasks-changed":
                watcher.changed = value.strip().lower()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        watcher.error = f"read: {type(exc).__name__}"
    finally:
        if watcher.writer is not None:
            watcher.writer.close()


async def post_import(port: int, image_id: str) -> float:
    """POST the copy-image import on the loop; returns perf_counter() when its 202 was read."""
    body = orjson.dumps({"method": {"name": "copy-image"}, "stores": ["cheap"]})
    lines = [
        f"POST /v2/images/{image_id}/import HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in ADMIN.items()),
    ]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        done = time.perf_counter()
        status = int(head.split(b" ", 2)[1])
        if status != 202:
            rest = await asyncio.wait_for(reader.read(), 10)
            raise ServerFailed(f"POST /import answered {status}: {rest[:300]!r}")
        return done
    finally:
        writer.close()


async def listing_burst(server: Server, image_id: str, count: int, result: Result) -> None:
    """The floor under the wake-up latency: ``count`` plain task listings (the read every woken
    watcher makes) asked at the same moment on connections opened beforehand, each timed from
    the moment the requests were sent to its complete answer."""
    lines = [
        f"GET /v2/images/{image_id}/tasks HTTP/1.1",
        f"Host: {HOST}:{server.port}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in ADMIN.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    clients = [Watcher() for _ in range(count)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    await asyncio.gather(*(connect(c, server.port, b"", gate) for c in clients))
    sent = time.perf_counter()
    for client in clients:
        if client.writer is not None:
            client.writer.write(request)
    await asyncio.gather(*(read_answer(c, 60, events=False) for c in clients))
    for client in clients:
        if client.error or client.status != 200:
            result.add_error(f"burst: {client.error or client.status}")
        else:
            result.burst_latencies.append(client.arrived - sent)


async def run_watchers(server: Server, image_id: str, args: argparse.Namespace, result: Result) -> None:
    since = quote(datetime.datetime.now(datetime.UTC).isoformat(), safe="")
    wait = "" if args.events else f"&wait={args.wait:g}"
    lines = [
        f"GET /v2/images/{image_id}/tasks?changes-since={since}{wait} HTTP/1.1",
        f"Host: {HOST}:{server.port}",
        "Connection: close",
        *(["Accept: text/event-stream"] if args.events else []),
        *(f"{name}: {value}" for name, value in ADMIN.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    watchers = [Watcher() for _ in range(args.watchers)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()
    await asyncio.gather(*(connect(w, server.port, request, gate) for w in watchers))
    result.connect_seconds = time.perf_counter() - started
    result.connected = sum(1 for w in watchers if w.writer is not None)
    log(f"{result.connected}/{args.watchers} watchers connected in {result.connect_seconds:.2f} s")
    readers = [asyncio.create_task(read_answer(w, args.wait + 20, args.events)) for w in watchers]

    # Let the server finish parsing and registering the requests, then sample while everyone waits.
    await asyncio.sleep(SETTLE_SECONDS)
    pids = procinfo.process_tree(server.pid)
    cpu0, client0, t0 = procinfo.tree_cpu_seconds(pids), time.process_time(), time.perf_counter()
    deadline = t0 + args.idle
    while time.perf_counter() < deadline:
        result.rss_idle_samples.append(tree_rss(server.pid))
        await asyncio.sleep(min(SAMPLE_INTERVAL, max(0.0, deadline - time.perf_counter())))
    result.idle_seconds = time.perf_counter() - t0
    result.idle_server_cpu_seconds = procinfo.tree_cpu_seconds(pids) - cpu0
    result.idle_client_cpu_seconds = time.process_time() - client0
    server.check_alive()
    result.early = sum(1 for w in watchers if w.arrived or w.error)
    if result.early:
        log(f"{result.early} watchers answered or failed before the trigger")

    triggered = await post_import(server.port, image_id)
    log("import accepted (202); waiting for the watchers")
    await asyncio.gather(*readers)

    for watcher in watchers:
        if watcher.error:
            result.add_error(watcher.error)
            continue
        if watcher.status != 200:
            result.add_error(f"status {watcher.status}")
            continue
        result.woken += 1
        result.latencies.append(watcher.arrived - triggered)
        if watcher.changed == "true":
            result.changed_true += 1
        elif watcher.changed == "false":
            result.changed_false += 1
        else:
            result.add_error("no Glimpse-Tasks-Changed header")
    await listing_burst(server, image_id, args.watchers, result)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(result: Result, nofile: tuple[int, int]) -> dict[str, object]:
    idle = result.rss_idle_samples or [0]
    lat_ms = [x * 1000 for x in result.latencies]
    burst_ms = [x * 1000 for x in result.burst_latencies]
    return {
        "mode": "event streams" if result.events else "long polls",
        "watchers": result.watchers,
        "connected": result.connected,
        "connect_seconds": round(result.connect_seconds, 3),
        "rlimit_nofile": {"soft": nofile[0], "hard": nofile[1]},
        "idle_seconds": round(result.idle_seconds, 2),
        "idle_server_cpu_cores": round(result.idle_server_cpu_seconds / max(result.idle_seconds, 1e-9), 4),
        "idle_client_cpu_cores": round(result.idle_client_cpu_seconds / max(result.idle_seconds, 1e-9), 4),
        "rss_before_mib": round(result.rss_before / 2**20, 1),
        "rss_idle_mean_mib": round(statistics.fmean(idle) / 2**20, 1),
        "rss_idle_max_mib": round(max(idle) / 2**20, 1),
        "rss_per_watcher_kib": round((max(idle) - result.rss_before) / 1024 / max(result.connected, 1), 1),
        "answered_before_trigger": result.early,
        "woken": result.woken,
        "changed_true": result.changed_true,
        "changed_false": result.changed_false,
        "latency_ms": {
            "min": round(min(lat_ms), 1) if lat_ms else None,
            "p50": round(percentile(lat_ms, 0.50), 1) if lat_ms else None,
            "p99": round(percentile(lat_ms, 0.99), 1) if lat_ms else None,
            "max": round(max(lat_ms), 1) if lat_ms else None,
        },
        "plain_listing_burst_ms": {
            "p50": round(percentile(burst_ms, 0.50), 1) if burst_ms else None,
            "p99": round(percentile(burst_ms, 0.99), 1) if burst_ms else None,
            "max": round(max(burst_ms), 1) if burst_ms else None,
        },
        "errors": sum(result.errors.values()),
        "error_kinds": result.errors,
    }


def print_table(data: dict[str, object]) -> None:
    lat, burst = data["latency_ms"], data["plain_listing_burst_ms"]
    assert isinstance(lat, dict)
    assert isinstance(burst, dict)
    rows = [
        ("mode", str(data["mode"])),
        ("watchers connected", f"{data['connected']}/{data['watchers']} in {data['connect_seconds']} s"),
        ("RLIMIT_NOFILE", f"{data['rlimit_nofile']}"),
        ("server CPU while idle", f"{data['idle_server_cpu_cores']} cores over {data['idle_seconds']} s"),
        ("client CPU while idle", f"{data['idle_client_cpu_cores']} cores"),
        ("server RSS before", f"{data['rss_before_mib']} MiB"),
        ("server RSS while waiting", f"mean {data['rss_idle_mean_mib']}, max {data['rss_idle_max_mib']} MiB"),
        ("RSS per watcher", f"{data['rss_per_watcher_kib']} KiB"),
        ("answered before trigger", str(data["answered_before_trigger"])),
        ("woken (200)", str(data["woken"])),
        ("Glimpse-Tasks-Changed", f"true {data['changed_true']}, false {data['changed_false']}"),
        ("wake latency after 202", f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms"),
        (
            "same reads, no waiting",
            f"p50 {burst['p50']} ms, p99 {burst['p99']} ms, max {burst['max']} ms "
            f"({data['watchers']} plain listings sent at once)",
        ),
        ("errors", f"{data['errors']} {data['error_kinds'] or ''}".rstrip()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", type=int, default=1000, help="concurrent long-poll requests")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of sampling while they wait")
    parser.add_argument("--wait", type=float, default=30.0, help="the wait= of each request (0 < s <= 60)")
    parser.add_argument(
        "--events", action="store_true", help="event streams (text/event-stream) instead of long polls"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.watchers < 1:
        parser.error("--watchers must be at least 1")
    if not 0 < args.wait <= 60:
        parser.error("--wait must be above 0 and at most 60")
    if args.idle <= 0:
        parser.error("--idle must be above 0")
    # Connecting, sampling and the import must all fit inside the watchers' wait.
    if args.idle + 6 > args.wait:
        parser.error("--idle must be at least 6 s shorter than --wait")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        nofile = raise_nofile(args.watchers + 256)
    except SystemExit as exc:
        log(str(exc))
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="glimpse-watchers-"))
    server = Server(workdir / "data", 1, "WARNING")
    (workdir / "data").mkdir()
    result = Result(watchers=args.watchers, events=args.events)
    try:
        log(f"starting the server (RLIMIT_NOFILE {nofile[0]}/{nofile[1]})")
        server.start()
        image_id = setup_image(server)
        time.sleep(0.5)
        result.rss_before = tree_rss(server.pid)
        budget = args.wait + 90
        asyncio.run(asyncio.wait_for(run_watchers(server, image_id, args, result), budget))
        server.check_alive()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (ServerFailed, rawhttp.HttpError, OSError, TimeoutError) as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        if isinstance(exc, ServerFailed):
            log(server.log_tail())
        return 1
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    data = report(result, nofile)
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        print_table(data)
    ok = (
        result.connected == args.watchers
        and result.early == 0
        and not result.errors
        and result.changed_true == args.watchers
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
