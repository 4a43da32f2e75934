"""Deadlines, stalls and resumed downloads of running tasks, through the real runner and database.

The clock of the runtime is a :class:`ManualClock` that the tests move: a deadline or a stall timeout
of minutes passes in milliseconds, and nothing else depends on it (the runner ticks in real time and
the lease is only checked by the reaper, which runs once here). A local HTTP server plays the web
server: one that stops sending half-way, and one that cuts the connection and serves the rest as a
byte range (``Accept-Ranges``, ``ETag``, ``If-Range``), or will not.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_runner_support import (
    ADMIN,
    MIB,
    ManualClock,
    WrappedStore,
    create_image,
    image_of,
    make_runtime,
    payload,
    run_all,
    stage,
    staged_files,
    start_import,
    store_files,
    stored_bytes,
    task_of,
    upload,
    wait_for,
)

from glimpse.domain.images import ImageStatus
from glimpse.domain.tasks import TaskStatus
from glimpse.jobs.runner import TaskRunner
from glimpse.ports import ImageStore, StoredObject
from glimpse.runtime import Runtime
from glimpse.telemetry import metrics

pytestmark = pytest.mark.timeout(120)

DATA = payload(3 * MIB + 3)
#: Seconds a stalling route holds its connection at most, so a failing test cannot hang the server.
HOLD_LIMIT = 30.0


# -- a store that stops taking bytes, and a web server -------------------------------------------------


class HoldingStore(WrappedStore):
    """Takes the first chunk, then waits for ever (a hung store); ``started`` is set then."""

    def __init__(self, inner: ImageStore) -> None:
        super().__init__(inner)
        self.started = asyncio.Event()

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        async def hold() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk
                self.started.set()
                await asyncio.Event().wait()

        return await self.inner.write(key, hold(), max_size)


@dataclass
class Web:
    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    #: Per path: how many times it was asked for, and the (Range, If-Range) headers of each request.
    hits: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, list[tuple[str | None, str | None]]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(web: Web) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            count = web.hits[url.path] = web.hits.get(url.path, 0) + 1
            web.ranges.setdefault(url.path, []).append(
                (self.headers.get("Range"), self.headers.get("If-Range"))
            )
            if query.get("mode") == "stall":
                self.stall(int(query["send"]))
            else:
                self.ranged(query, count)

        def stall(self, send: int) -> None:
            """Announces DATA, sends ``send`` bytes of it, then sends nothing more."""
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA[:send])
            self.wfile.flush()
            web.release.wait(HOLD_LIMIT)
            self.close_connection = True

        def ranged(self, query: dict[str, str], count: int) -> None:
            """DATA with ``Accept-Ranges: bytes`` and an ETag (``ranges=0``: neither); the first
            answer is cut after ``cut`` bytes; ``change=1`` gives every answer another ETag."""
            etag = f'"v{count}"' if query.get("change") == "1" else '"v1"'
            offered = query.get("ranges", "1") == "1"
            wanted = self.headers.get("Range")
            start = 0
            if offered and wanted and self.headers.get("If-Range") == etag:
                start = int(wanted.removeprefix("bytes=").rstrip("-"))
            body = DATA[start:]
            self.send_response(206 if start else 200)
            if offered:
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = int(query.get("cut", "0"))
            self.wfile.write(body[:cut] if cut and count == 1 else body)
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    web = Web()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(web))
    httpd.daemon_threads = True
    httpd.block_on_close = False
    web.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        web.release.set()
        httpd.shutdown()
        httpd.server_close()


def filtered(web: Web) -> dict[str, str]:
    return {
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS": "127.0.0.1",
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": str(web.port),
    }


def stalls_counted(method: str) -> float:
    text, _ = metrics().exposition()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "glimpse_task_stalls_total" and sample.labels.get("method") == method
    )


def holding(
    tmp_path: Path, url: str, store: str, clock: ManualClock, **settings: Any
) -> tuple[Runtime, dict[str, HoldingStore]]:
    held: dict[str, HoldingStore] = {}

    def wrap(inner: ImageStore) -> ImageStore:
        held[store] = HoldingStore(inner)
        return held[store]

    runtime = make_runtime(tmp_path, url, wrap={store: wrap}, **settings)
    runtime.clock = clock
    return runtime, held


# -- deadlines ---------------------------------------------------------------------------------------------


def test_the_request_deadline_stops_a_glance_direct_import_and_keeps_the_staged_data(
    tmp_path: Path, migrated_database_url: str
) -> None:
    clock = ManualClock()
    runtime, held = holding(tmp_path, migrated_database_url, "cheap", clock, task_max_duration=7200.0)

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        body = {"method": {"name": "glance-direct"}, "stores": ["fast", "cheap"], "deadline": 120}
        task_id = await start_import(runtime, image_id, body)
        assert task_of(runtime, task_id).input["import_req"]["deadline"] == 120
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(held["cheap"].started.wait(), 10)
        clock.advance(119)  # not yet: a beat at that time passes the check and is written
        await wait_for(lambda: task_of(runtime, task_id).heartbeat_at == clock.now, what="a beat at 119 s")
        assert runner.running == [task_id]
        clock.advance(1)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished[task_id] == "failure"
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.message.startswith(
        "Deadline reached: the import request asked for the task to end within 120 seconds of "
    ), task.message
    assert "in phase 'stores'" in task.message
    assert f"Image {image_id} is back to 'uploading' with its staged data kept" in task.message
    assert task.progress.stores["cheap"].state == "failed"
    assert (task.progress.stores["cheap"].error or "").startswith("out of time: Deadline reached")
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.UPLOADING
    assert image.import_task_id is None
    assert image.properties["os_glance_importing_to_stores"] == ""
    assert image_id in staged_files(runtime)
    for store in ("fast", "cheap"):
        assert store_files(runtime, store) == [], store

    # The staged data is still good: the same import without a deadline (and a store that works) ends.
    async def again() -> str:
        return await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["fast"]}
        )

    retry = asyncio.run(again())
    asyncio.run(run_all(runtime))
    assert task_of(runtime, retry).status == TaskStatus.SUCCESS
    assert stored_bytes(runtime, "fast", image_id) == DATA
    runtime.close()


def test_the_site_limit_stops_a_copy_when_it_comes_first(tmp_path: Path, migrated_database_url: str) -> None:
    clock = ManualClock()
    runtime, held = holding(tmp_path, migrated_database_url, "cheap", clock, task_max_duration=100.0)

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        await upload(runtime, image_id, DATA, store="fast")
        body = {"method": {"name": "copy-image"}, "stores": ["cheap"], "deadline": 3600}
        task_id = await start_import(runtime, image_id, body, ADMIN)
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(held["cheap"].started.wait(), 10)
        clock.advance(100)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished[task_id] == "failure"
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert task.message.startswith(
        "Time limit reached: this site lets a task run for at most 100 seconds ([task] task_max_duration)"
    ), task.message
    assert f"Image {image_id} is unchanged and the partial copies were removed" in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.stores == ["fast"]
    assert image.import_task_id is None
    assert store_files(runtime, "cheap") == []
    runtime.close()


# -- stalls ------------------------------------------------------------------------------------------------


def test_a_silent_web_server_is_a_stall_named_with_its_last_progress(
    tmp_path: Path, migrated_database_url: str, web: Web
) -> None:
    clock = ManualClock()
    runtime = make_runtime(tmp_path, migrated_database_url, environ=filtered(web), task_stall_timeout=600.0)
    runtime.clock = clock
    before = stalls_counted("web-download")

    async def scenario() -> tuple[str, str, TaskRunner]:
        image_id = create_image(runtime)
        uri = web.url(f"/silent-{image_id}?mode=stall&send={MIB + 10}")
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()

        def moved_then_stopped() -> bool:
            clock.advance(0.2)  # each look lets the next beat write (at most 300 s in 30 s: no stall)
            progress = task_of(runtime, task_id).progress
            return progress.staged_bytes == MIB and progress.stalled_since is not None

        await wait_for(moved_then_stopped, within=30, what="the download to show its stall")
        progress = task_of(runtime, task_id).progress
        assert progress.phase == "staging"
        assert progress.staged_total == len(DATA)
        assert progress.eta_seconds is None  # nothing moves: no estimate
        clock.advance(600)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id, runner

    image_id, task_id, runner = asyncio.run(scenario())
    assert runner.finished[task_id] == "failure"
    task = task_of(runtime, task_id)
    assert task.message.startswith("Stalled: no bytes moved for "), task.message
    assert "in step 'download' (the web-download into the staging area)" in task.message
    assert f"with {MIB} of {len(DATA)} bytes downloaded" in task.message
    assert f"Image {image_id} is back to 'queued' and the data downloaded for it was removed" in task.message
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image.import_task_id is None
    assert image_id not in staged_files(runtime)
    assert stalls_counted("web-download") == before + 1
    runtime.close()


def test_a_hung_store_is_a_stall_of_the_copy(tmp_path: Path, migrated_sqlite_url: str) -> None:
    clock = ManualClock()
    runtime, held = holding(tmp_path, migrated_sqlite_url, "cheap", clock, task_stall_timeout=60.0)

    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        await stage(runtime, image_id, DATA)
        task_id = await start_import(
            runtime, image_id, {"method": {"name": "glance-direct"}, "stores": ["cheap"]}
        )
        runner = TaskRunner(runtime, "runner-1")
        await runner.run_once()
        await asyncio.wait_for(held["cheap"].started.wait(), 10)

        def stopped() -> bool:
            # Small steps until a beat has seen the last bytes move and then none: a single jump
            # could come before the beat that sees the store's first block, which restarts the clock.
            clock.advance(0.2)
            task = task_of(runtime, task_id)
            return task.progress.stalled_since is not None or task.status == TaskStatus.FAILURE

        await wait_for(stopped, within=30, what="the copy to show its stall")
        clock.advance(60)
        await asyncio.wait_for(runner.wait_idle(), 10)
        return image_id, task_id

    image_id, task_id = asyncio.run(scenario())
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert "in step 'copy' (writing the target stores)" in task.message, task.message
    assert "store 'cheap' " in task.message
    assert image_of(runtime, image_id).status == ImageStatus.UPLOADING
    assert image_id in staged_files(runtime)
    newest = asyncio.run(runtime.run(lambda repos: repos.history.for_image(image_id, limit=1)))[0]
    assert (newest.task_id, str(newest.outcome), newest.message) == (task_id, "failure", task.message)
    runtime.close()


# -- web-download resumes ----------------------------------------------------------------------------------


def download(runtime: Runtime, uri: str) -> tuple[str, str]:
    async def scenario() -> tuple[str, str]:
        image_id = create_image(runtime)
        task_id = await start_import(runtime, image_id, {"method": {"name": "web-download", "uri": uri}})
        await run_all(runtime)
        return image_id, task_id

    return asyncio.run(scenario())


def test_a_cut_download_resumes_with_a_range_and_the_hashes_are_of_the_whole(
    tmp_path: Path, migrated_database_url: str, web: Web
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=filtered(web))
    path = f"/cut-{tmp_path.name}"
    image_id, task_id = download(runtime, web.url(f"{path}?cut={MIB + 5}"))
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.SUCCESS, task.message
    # The second request asked for the rest after the last whole chunk, if the file is unchanged.
    assert web.ranges[path] == [(None, None), (f"bytes={MIB}-", '"v1"')]
    image = image_of(runtime, image_id)
    assert image.size == len(DATA)
    assert image.checksum == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert image.os_hash_value == hashlib.sha512(DATA).hexdigest()
    assert stored_bytes(runtime, "fast", image_id) == DATA
    runtime.close()


@pytest.mark.parametrize(
    ("query", "requests", "why"),
    [
        ("ranges=0", 1, "the server does not offer to resume (no 'Accept-Ranges: bytes'"),
        ("change=1", 2, "the file changed on the server since the download began"),
    ],
    ids=["no-accept-ranges", "etag-changed"],
)
def test_no_resume_without_ranges_or_when_the_file_changed(
    tmp_path: Path, migrated_database_url: str, web: Web, query: str, requests: int, why: str
) -> None:
    runtime = make_runtime(tmp_path, migrated_database_url, environ=filtered(web))
    path = f"/refused-{tmp_path.name}"
    image_id, task_id = download(runtime, web.url(f"{path}?cut={MIB + 5}&{query}"))
    task = task_of(runtime, task_id)
    assert task.status == TaskStatus.FAILURE
    assert f"The server closed the connection after {MIB + 5} of {len(DATA)} bytes" in task.message
    assert why in task.message, task.message
    assert web.hits[path] == requests
    image = image_of(runtime, image_id)
    assert image.status == ImageStatus.QUEUED
    assert image_id not in staged_files(runtime)
    runtime.close()
