"""Soak: a mixed load against Glimpse for a long time, one table row per minute, and a verdict.

The load: uploads and downloads, glance-direct and web-download imports (from an HTTP server of this
script on loopback), copy-image between the file stores, listings, a watcher on every import (long
poll or event stream, in turn) and bad requests that must be refused with a 4xx. Every minute one row:
requests, errors by class, p50/p99 latency, the RSS of every service process, their open file
descriptors and database connections. At the end a verdict: FAIL on any 5xx, connection error,
unexpected 4xx or wrong answer, or when RSS or descriptors grew past the allowance after the first
row (the warm-up).

Without ``--url`` the script starts ``glimpse-server serve`` on the embedded defaults in a temporary
directory (SQLite, the stores ``fast``, ``cheap`` and ``reliable``), allowing web-download from its
own server only, and removes it all at the end. Exit status: 0 PASS, 1 FAIL (or the server failed),
2 bad options, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import procinfo
from service import HOST, Server, ServerFailed

HEADERS = {
    "X-Project-Id": "soak",
    "X-User-Id": "soak",
    "X-Roles": "admin,member,reader",
    "Accept": "application/json",
}
#: Error classes, in the order of the table's columns. ``refused`` is a bad request answered 4xx (as
#: it must be); the others are failures.
CLASSES = ("refused", "4xx", "5xx", "conn", "wrong")
FAILURES = ("4xx", "5xx", "conn", "wrong")
COPY_TARGETS = ("cheap", "reliable")
SCENARIOS = {  # name: weight
    "upload": 3,
    "download": 4,
    "glance-direct": 1,
    "web-download": 1,
    "copy": 1,
    "list": 5,
    "bad": 2,
}
TERMINAL = ("success", "failure")
JSON = "application/json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def now_utc() -> str:
    """A ``changes-since`` value: UTC without a zone, as the task listing's ``updated_at``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


# -- counting -----------------------------------------------------------------------------------------


@dataclass
class Window:
    requests: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)


class Stats:
    """Requests and their outcomes, per row window and in total; shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.window = Window()
        self.total = Window()

    def record(
        self, what: str, status: int | None, seconds: float, *, bad: bool = False, timed: bool = True
    ) -> str:
        """Count one request; ``bad``: a request that must be refused; ``timed``: in the latency figures
        (not the watchers, which wait on purpose). Returns its class (``ok`` or one of CLASSES)."""
        if status is None:
            outcome = "conn"
        elif status >= 500:
            outcome = "5xx"
        elif bad:
            outcome = "refused" if 400 <= status < 500 else "wrong"
        elif status >= 400:
            outcome = "4xx"
        else:
            outcome = "ok"
        with self._lock:
            for window in (self.window, self.total):
                window.requests += 1
                window.classes[outcome] += 1
                if timed:
                    window.latencies.append(seconds)
                if outcome in FAILURES:
                    window.examples.setdefault(outcome, f"{what} -> {status}")
        return outcome

    def wrong(self, what: str) -> None:
        """A check of an answer failed (a size, a task that failed): counted without a request."""
        with self._lock:
            for window in (self.window, self.total):
                window.classes["wrong"] += 1
                window.examples.setdefault("wrong", what)

    def take_window(self) -> Window:
        with self._lock:
            window, self.window = self.window, Window()
        return window


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- the service's processes --------------------------------------------------------------------------


@dataclass
class Sample:
    rss: list[int]  # bytes, one per process of the service, the parent first
    fds: int
    db: int | None


class Probe:
    """RSS, descriptors and database connections of the service's process tree."""

    def __init__(self, pid: int | None, database_url: str | None) -> None:
        self.pid = pid
        self._engine: Any = None
        if database_url and not database_url.startswith("sqlite"):
            import sqlalchemy as sa

            self._engine = sa.create_engine(database_url, poolclass=sa.NullPool)
            self._database = sa.make_url(database_url).database

    def sample(self) -> Sample | None:
        if self.pid is None:
            return None
        pids = procinfo.process_tree(self.pid)
        fds, sqlite = 0, 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for entry in os.scandir(f"/proc/{pid}/fd"):
                    fds += 1
                    with contextlib.suppress(OSError):
                        if os.readlink(entry.path).endswith((".sqlite", ".db")):
                            sqlite += 1
        return Sample([procinfo.rss_bytes(pid) for pid in pids], fds, self._connections(sqlite))

    def _connections(self, sqlite: int) -> int | None:
        if self._engine is None:
            return sqlite
        import sqlalchemy as sa

        try:
            with self._engine.connect() as conn:
                count = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                        "AND pid <> pg_backend_pid()"
                    ),
                    {"name": self._database},
                ).scalar()
        except sa.exc.SQLAlchemyError:
            return None
        return int(count or 0)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


# -- the web-download source --------------------------------------------------------------------------


class Source:
    """Serves ``/image-<size>.raw`` (``size`` pseudo-random bytes) on loopback for web-download."""

    def __init__(self) -> None:
        block = random.Random(3).randbytes(64 * 1024)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                if not (name.startswith("image-") and name.endswith(".raw")):
                    self.send_error(404)
                    return
                size = int(name[len("image-") : -len(".raw")])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                sent = 0
                while sent < size:
                    chunk = block[: min(len(block), size - sent)]
                    self.wfile.write(chunk)
                    sent += len(chunk)

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, size: int) -> str:
        return f"http://{HOST}:{self.port}/image-{size}.raw"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- the load -----------------------------------------------------------------------------------------


@dataclass
class Pooled:
    size: int
    stores: set[str] = field(default_factory=set)
    busy: bool = False


class Load:
    """The scenarios; each makes a few requests through one keep-alive client per thread."""

    def __init__(self, url: str, stats: Stats, args: argparse.Namespace, source: Source | None) -> None:
        self.url = url
        self.stats = stats
        self.args = args
        self.source = source
        self.size = args.size_kib * 1024
        self.data = random.Random(7).randbytes(self.size)
        self.pool: dict[str, Pooled] = {}
        self.lock = threading.Lock()
        self.local = threading.local()
        self.watch_turn = 0
        self.web_refused = False
        self.ran: Counter[str] = Counter()  # scenarios started, and the imports and copies that succeeded

    # plumbing

    def client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self.local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.url, headers=HEADERS, timeout=self.args.timeout)
            self.local.client = client
        return client

    def call(
        self, method: str, path: str, *, what: str, bad: bool = False, timed: bool = True, **kw: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = self.client().request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.stats.record(f"{what} ({type(exc).__name__})", None, time.perf_counter() - started)
            return None
        self.stats.record(what, response.status_code, time.perf_counter() - started, bad=bad, timed=timed)
        return response

    def new_image(self, what: str) -> str | None:
        body = {"name": f"soak-{what}", "disk_format": "raw", "container_format": "bare", "tags": ["soak"]}
        created = self.call("POST", "/v2/images", what=f"{what}: create", json=body)
        if created is None or created.status_code != 201:
            return None
        return str(created.json()["id"])

    def take(self, want: Callable[[Pooled], bool]) -> tuple[str, Pooled] | None:
        """An idle pooled image that ``want``s, marked busy (give it back with :meth:`give`)."""
        with self.lock:
            choices = [(i, p) for i, p in self.pool.items() if not p.busy and want(p)]
            if not choices:
                return None
            image_id, pooled = random.choice(choices)
            pooled.busy = True
            return image_id, pooled

    def give(self, image_id: str) -> None:
        with self.lock:
            if image_id in self.pool:
                self.pool[image_id].busy = False

    def add(self, image_id: str, stores: set[str]) -> None:
        """Pool a new active image; beyond ``--pool`` images the oldest idle one is deleted."""
        with self.lock:
            self.pool[image_id] = Pooled(self.size, stores)
            extra = len(self.pool) - self.args.pool
            victims = [i for i, p in self.pool.items() if not p.busy][: max(0, extra)]
            for victim in victims:
                del self.pool[victim]
        for victim in victims:
            self.call("DELETE", f"/v2/images/{victim}", what="delete")

    # scenarios

    def run(self, name: str) -> None:
        self.ran[name] += 1
        try:
            getattr(self, "do_" + name.replace("-", "_"))()
        except Exception as exc:  # an answer this script could not read: counted, never silent
            self.stats.wrong(f"{name}: {type(exc).__name__}: {exc}"[:300])

    def do_upload(self) -> None:
        image_id = self.new_image("upload")
        if image_id is None:
            return
        put = self.call(
            "PUT",
            f"/v2/images/{image_id}/file",
            what="upload: data",
            content=self.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if put is not None and put.status_code == 204:
            self.add(image_id, {"fast"})

    def do_download(self) -> None:
        taken = self.take(lambda p: True)
        if taken is None:
            self.do_upload()
            return
        image_id, pooled = taken
        try:
            started = time.perf_counter()
            try:
                with self.client().stream("GET", f"/v2/images/{image_id}/file") as response:
                    received = sum(len(chunk) for chunk in response.iter_bytes())
            except httpx.HTTPError as exc:
                self.stats.record(f"download ({type(exc).__name__})", None, time.perf_counter() - started)
                return
            self.stats.record("download", response.status_code, time.perf_counter() - started)
            if response.status_code == 200 and received != pooled.size:
                self.stats.wrong(f"download of {image_id}: {received} bytes, not {pooled.size}")
        finally:
            self.give(image_id)

    def do_glance_direct(self) -> None:
        image_id = self.new_image("glance-direct")
        if image_id is None:
            return
        staged = self.call(
            "PUT",
            f"/v2/images/{image_id}/stage",
            what="glance-direct: stage",
            content=self.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if staged is None or staged.status_code != 204:
            return
        self.import_and_watch(image_id, {"method": {"name": "glance-direct"}}, "glance-direct", {"fast"})

    def do_web_download(self) -> None:
        if self.source is None or self.web_refused:
            self.do_glance_direct()
            return
        image_id = self.new_image("web-download")
        if image_id is None:
            return
        body = {"method": {"name": "web-download", "uri": self.source.url(self.size)}}
        self.import_and_watch(image_id, body, "web-download", {"fast"})

    def do_copy(self) -> None:
        taken = self.take(lambda p: any(s not in p.stores for s in COPY_TARGETS))
        if taken is None:
            # Every idle image is in every store: take a copy away from one, to copy it again later.
            taken = self.take(lambda p: True)
            if taken is None:
                self.do_upload()
                return
            image_id, pooled = taken
            store = random.choice(COPY_TARGETS)
            gone = self.call("DELETE", f"/v2/stores/{store}/{image_id}", what="copy: delete from a store")
            if gone is not None and gone.status_code == 204:
                pooled.stores.discard(store)
            self.give(image_id)
            return
        image_id, pooled = taken
        try:
            store = random.choice([s for s in COPY_TARGETS if s not in pooled.stores])
            body = {"method": {"name": "copy-image"}, "stores": [store]}
            if self.watch(image_id, body, "copy-image"):
                pooled.stores.add(store)
        finally:
            self.give(image_id)

    def do_list(self) -> None:
        first = self.call("GET", "/v2/images?limit=20&sort=created_at:desc", what="list")
        if first is None or first.status_code != 200:
            return
        following = first.json().get("next")
        if following:
            self.call("GET", following, what="list: next page")
        self.call("GET", "/v2/images?limit=5&tag=soak&status=active", what="list: filtered")

    def do_bad(self) -> None:
        image_id = next(iter(self.pool), str(uuid.uuid4()))
        missing = str(uuid.uuid4())
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/v2/images/{missing}", {}),
            ("GET", "/v2/images?limit=many", {}),
            (
                "POST",
                "/v2/images",
                {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            ),
            ("POST", "/v2/images", {"json": {"disk_format": "floppy"}}),
            ("PATCH", f"/v2/images/{image_id}", {"json": [{"op": "replace", "path": "/name", "value": "x"}]}),
            ("PUT", f"/v2/images/{missing}/file", {"content": b"x" * 10}),
            ("POST", f"/v2/images/{image_id}/import", {"json": {"method": {"name": "carrier-pigeon"}}}),
            ("GET", f"/v2/images/{image_id}/tasks?changes-since=yesterday&wait=1", {}),
            (
                "POST",
                f"/v2/images/{image_id}/import",
                {"json": {"method": {"name": "web-download", "uri": "http://169.254.169.254/latest"}}},
            ),
            ("DELETE", f"/v2/stores/nowhere/{image_id}", {}),
            ("GET", "/v2/no-such-collection", {}),
        ]
        method, path, kw = random.choice(requests)
        self.call(method, path, what=f"bad: {method} {path.split('?')[0]}", bad=True, **kw)

    # imports and their watchers

    def import_and_watch(self, image_id: str, body: dict[str, Any], what: str, stores: set[str]) -> None:
        if self.watch(image_id, body, what):
            self.add(image_id, stores)

    def watch(self, image_id: str, body: dict[str, Any], what: str) -> bool:
        """POST the import and follow its task to the end with a watcher; True when it succeeded."""
        since = now_utc()
        started = self.call("POST", f"/v2/images/{image_id}/import", what=f"{what}: import", json=body)
        if started is None:
            return False
        if started.status_code != 202:
            if what == "web-download" and started.status_code == 400 and self.args.url:
                self.web_refused = True  # the server's filters refuse this script's source: say so once
                log(f"web-download refused by the server ({started.text[:200]}); doing glance-direct instead")
            return False
        self.watch_turn += 1
        follow = self.follow_stream if self.watch_turn % 2 else self.follow_long_poll
        task = follow(image_id, since, what)
        if task is None:
            self.stats.wrong(f"{what} of {image_id}: no end seen within {self.args.task_timeout:g} s")
            return False
        if task.get("status") != "success":
            self.stats.wrong(f"{what} of {image_id}: {task.get('status')}: {task.get('message', '')[:200]}")
            return False
        self.ran[f"{what} done"] += 1
        return True

    def follow_long_poll(self, image_id: str, since: str, what: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.args.task_timeout
        while time.monotonic() < deadline:
            answer = self.call(
                "GET",
                f"/v2/images/{image_id}/tasks?changes-since={since}&wait=10",
                what=f"{what}: watch (long poll)",
                timed=False,
            )
            if answer is None or answer.status_code != 200:
                return None
            tasks = answer.json()["tasks"]
            ended = [t for t in tasks if t["status"] in TERMINAL]
            if tasks and len(ended) == len(tasks):
                return dict(max(ended, key=lambda t: t["created_at"]))
            if tasks:
                since = max(t["updated_at"] for t in tasks)
        return None

    def follow_stream(self, image_id: str, since: str, what: str) -> dict[str, Any] | None:
        started = time.perf_counter()
        last: list[dict[str, Any]] = []
        headers = {"Accept": "text/event-stream"}
        status: int | None = None
        try:
            with self.client().stream(
                "GET",
                f"/v2/images/{image_id}/tasks",
                headers=headers,
                timeout=httpx.Timeout(self.args.timeout, read=self.args.task_timeout),
            ) as response:
                status = response.status_code
                event = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event == "tasks":
                        last = json.loads(line.split(":", 1)[1])["tasks"]
                    elif line.startswith("data:") and event in ("end", "error"):
                        break
        except httpx.HTTPError as exc:
            self.stats.record(f"{what}: watch (stream, {type(exc).__name__})", None, 0.0, timed=False)
            return None
        self.stats.record(f"{what}: watch (stream)", status, time.perf_counter() - started, timed=False)
        ended = [t for t in last if t["status"] in TERMINAL]
        return dict(max(ended, key=lambda t: t["created_at"])) if ended else None


# -- the run ------------------------------------------------------------------------------------------

COLUMNS = ("min", "requests", *CLASSES, "p50 ms", "p99 ms", "RSS MiB (each process)", "fds", "db conns")


def row_cells(label: str, window: Window, sample: Sample | None) -> list[str]:
    rss = "+".join(f"{size / 2**20:.0f}" for size in sample.rss) if sample else "-"
    return [
        label,
        str(window.requests),
        *(str(window.classes[name]) for name in CLASSES),
        f"{percentile(window.latencies, 0.5) * 1000:.0f}",
        f"{percentile(window.latencies, 0.99) * 1000:.0f}",
        rss,
        str(sample.fds) if sample else "-",
        str(sample.db) if sample and sample.db is not None else "-",
    ]


WIDTHS = (5, 8, 7, 5, 5, 5, 5, 6, 6, 22, 5, 8)


def print_row(cells: list[str] | tuple[str, ...]) -> None:
    print("  ".join(cell.rjust(width) for cell, width in zip(cells, WIDTHS, strict=True)), flush=True)


@dataclass
class Verdict:
    lines: list[str]
    passed: bool


def verdict(samples: list[Sample | None], total: Window, args: argparse.Namespace) -> Verdict:
    lines, passed = [], True
    for name in FAILURES:
        count = total.classes[name]
        example = f" (first: {total.examples[name]})" if name in total.examples else ""
        lines.append(f"{name}: {count}{example}")
        passed &= count == 0
    measured = [s for s in samples if s is not None]
    if len(measured) >= 2:
        base = measured[1] if len(measured) >= 3 else measured[0]  # the first row warms up
        last = measured[-1]
        rss0, rss1 = sum(base.rss), sum(last.rss)
        allowed = max(args.rss_allowance_mib * 2**20, 0.15 * rss0)
        grew = rss1 - rss0
        ok = grew <= allowed
        lines.append(
            f"RSS: {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB ({grew / 2**20:+.0f} MiB, allowed "
            f"{allowed / 2**20:.0f}): {'flat' if ok else 'GREW'}"
        )
        passed &= ok
        fd_ok = last.fds - base.fds <= args.fd_allowance
        lines.append(
            f"fds: {base.fds} -> {last.fds} ({last.fds - base.fds:+d}, allowed {args.fd_allowance}): "
            f"{'flat' if fd_ok else 'GREW'}"
        )
        passed &= fd_ok
    else:
        lines.append("RSS, fds: not measured (no service process to look at, or fewer than 2 rows)")
    lines.append("PASS" if passed else "FAIL")
    return Verdict(lines, passed)


def schedule(load: Load, stats: Stats, probe: Probe, args: argparse.Namespace, stop: threading.Event) -> bool:
    """Run the load for ``--minutes``, a row every ``--row-seconds``; True when the verdict passes."""
    names = list(SCENARIOS)
    weights = [SCENARIOS[name] for name in names]
    pending: set[Any] = set()
    samples: list[Sample | None] = []
    print_row(COLUMNS)
    cpu_pids = [os.getpid(), *(procinfo.process_tree(probe.pid) if probe.pid else [])]
    cpu0 = {pid: procinfo.cpu_seconds(pid) for pid in cpu_pids}
    begun = time.monotonic()
    end = begun + args.minutes * 60
    next_row = begun + args.row_seconds
    row = 0
    skipped = 0
    with ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="soak") as pool:
        next_start = begun
        while not stop.is_set():
            moment = time.monotonic()
            if moment >= next_row or moment >= end:
                row += 1
                sample = probe.sample()
                samples.append(sample)
                label = str(row) if args.row_seconds == 60 else f"{row * args.row_seconds:g}s"
                print_row(row_cells(label, stats.take_window(), sample))
                next_row += args.row_seconds
                if moment >= end:
                    break
            if moment >= next_start:
                pending = {f for f in pending if not f.done()}
                if len(pending) < args.concurrency * 2:
                    pending.add(pool.submit(load.run, random.choices(names, weights)[0]))
                else:
                    skipped += 1  # the service (or this client) is behind: do not pile up
                next_start += 1.0 / args.rate
            stop.wait(max(0.0, min(next_start, next_row, end) - time.monotonic()))
        stop.set()
        for future in pending:
            with contextlib.suppress(Exception):
                future.result(timeout=args.task_timeout + args.timeout)
    elapsed = max(0.001, time.monotonic() - begun)
    client_cpu = (procinfo.cpu_seconds(os.getpid()) - cpu0[os.getpid()]) / elapsed
    server_cpu = sum(procinfo.cpu_seconds(pid) - cpu0[pid] for pid in cpu_pids[1:]) / elapsed
    total = stats.total
    print(
        f"total: {total.requests} requests in {elapsed:.0f} s ({total.requests / elapsed:.1f}/s), "
        f"p50 {percentile(total.latencies, 0.5) * 1000:.0f} ms, p99 "
        f"{percentile(total.latencies, 0.99) * 1000:.0f} ms; CPU: this script {client_cpu:.2f} cores, "
        f"service {server_cpu:.2f} cores" + (f"; {skipped} starts skipped (behind)" if skipped else ""),
        flush=True,
    )
    print(
        "scenarios: " + ", ".join(f"{name} {count}" for name, count in sorted(load.ran.items())), flush=True
    )
    result = verdict(samples, total, args)
    print("verdict: " + "; ".join(result.lines), flush=True)
    return result.passed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the run (default 60)")
    parser.add_argument("--rate", type=float, default=4.0, help="scenarios started per second (default 4)")
    parser.add_argument("--concurrency", type=int, default=6, help="scenarios running at once, at most")
    parser.add_argument("--url", help="an existing Glimpse to load instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the service's main process, for RSS and fds")
    parser.add_argument(
        "--database-url", help="the service's database: counted in pg_stat_activity (PostgreSQL)"
    )
    parser.add_argument("--workers", type=int, help="glimpse-server serve --workers N (started server)")
    parser.add_argument("--size-kib", type=int, default=256, help="size of each image (default 256)")
    parser.add_argument("--pool", type=int, default=40, help="active images kept; older ones are deleted")
    parser.add_argument("--row-seconds", type=float, default=60.0, help="seconds per table row (60)")
    parser.add_argument("--timeout", type=float, default=30.0, help="timeout of each request (s)")
    parser.add_argument("--task-timeout", type=float, default=120.0, help="longest wait for a task (s)")
    parser.add_argument("--rss-allowance-mib", type=float, default=32.0, help="RSS growth allowed")
    parser.add_argument("--fd-allowance", type=int, default=16, help="descriptor growth allowed")
    parser.add_argument("--tmp-dir", help="where the started server's data directory goes")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.row_seconds <= 0 or args.concurrency < 1:
        parser.error("--minutes, --rate, --row-seconds and --concurrency must be positive")
    if args.pid is not None and not args.url:
        parser.error("--pid goes with --url")
    return args


@contextlib.contextmanager
def service(args: argparse.Namespace, source: Source) -> Iterator[tuple[str, int | None]]:
    """The URL and main process of the service under load: ``--url``, or one started here."""
    if args.url:
        yield args.url.rstrip("/"), args.pid
        return
    data_dir = Path(tempfile.mkdtemp(prefix="glimpse-soak-", dir=args.tmp_dir))
    environ = {
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS": HOST,
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": str(source.port),
    }
    if args.database_url:
        environ["GLIMPSE_DATABASE__CONNECTION"] = args.database_url
    server = Server(data_dir, args.workers, None, environ)
    try:
        server.start()
        log(f"glimpse-server serve on {server.url} (pid {server.pid}), data in {data_dir}")
        yield server.url, server.pid
        server.check_alive()
    finally:
        status = server.stop()
        log(f"server stopped (exit status {status})")
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    interrupted = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        interrupted.set()
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    source = Source()
    try:
        with service(args, source) as (url, pid):
            probe = Probe(pid, args.database_url)
            stats = Stats()
            load = Load(url, stats, args, source)
            log(
                f"soak: {args.minutes:g} min against {url}, {args.rate:g} scenarios/s, "
                f"{args.size_kib} KiB images, a row every {args.row_seconds:g} s"
            )
            try:
                passed = schedule(load, stats, probe, args, stop)
            finally:
                probe.close()
    except ServerFailed as exc:
        log(f"the server failed: {exc}")
        return 1
    finally:
        source.close()
    if interrupted.is_set():
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
