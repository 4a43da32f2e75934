"""``GET /metrics`` of a node whose work is spread over processes: ``glimpse-server serve --workers 2``
(no task runner of its own) and a ``glimpse-server worker`` process, sharing the node's metrics
directory. One scrape, answered by either server process, adds up every process's counters."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_runner_support import MIB, WebServer, payload, serve
from test_runner_worker import start_worker

import metricsupport
from livesupport import Server, free_port, wait_until
from metricsupport import Samples, delta, value

pytestmark = pytest.mark.live

ADMIN = {"X-Project-Id": "ops", "X-User-Id": "admin", "X-Roles": "admin,member,reader"}
DATA = payload(8 * MIB, seed=31)


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 128 chunks of 64 KiB, 20 ms apart: about three seconds for the whole image.
    yield from serve({"/big.raw": DATA}, delay=0.02)


def scrape(url: str) -> Samples:
    with httpx.Client(base_url=url, timeout=10) as client:
        return metricsupport.scrape(client, ADMIN)


def test_one_scrape_adds_up_the_server_processes_and_the_worker_process(
    tmp_path: Path, migrated_sqlite_url: str, slow_web: WebServer
) -> None:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "PROMETHEUS_"))},
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": migrated_sqlite_url,
        "GLIMPSE_ENABLED_BACKENDS": "fast:file",
        "GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC": "false",
        "GLIMPSE_WORKERS": "2",
        "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
        "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.1",
        "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
        **slow_web.filter_environ,
    }
    server = Server(name="metrics", port=free_port(), log_path=tmp_path / "serve.log")
    server.start(environ)
    worker = None
    try:
        server.wait_ready(timeout=90)  # two worker processes importing at once on a busy machine
        worker = start_worker(environ, tmp_path / "worker.log")
        logs = lambda: f"{server.log()}\n--- worker ---\n{(tmp_path / 'worker.log').read_text()}"  # noqa: E731
        before = scrape(server.url)
        for _ in range(10):  # a new connection each: either server process may answer
            assert httpx.get(f"{server.url}/versions").status_code == 200
        with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as http:
            image_id = http.post(
                "/v2/images", json={"disk_format": "raw", "container_format": "bare"}
            ).json()["id"]
            body = {"method": {"name": "web-download", "uri": slow_web.url("/big.raw")}}
            started = http.post(f"/v2/images/{image_id}/import", json=body)
            assert started.status_code == 202, started.text

            # While the worker process downloads, a scrape of the server sees its bytes move.
            def fetching() -> bool:
                fetched = value(scrape(server.url), "glimpse_image_bytes_total", direction="fetched")
                return (
                    0 < fetched - value(before, "glimpse_image_bytes_total", direction="fetched") < len(DATA)
                )

            wait_until(fetching, logs, within=30)
            wait_until(
                lambda: http.get(f"/v2/images/{image_id}").json()["status"] == "active", logs, within=30
            )
        after = scrape(server.url)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        server.stop()

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    # Counted in the server processes ...
    assert moved("glimpse_http_requests_total", method="GET", route="/versions", status="200") == 10
    assert moved("glimpse_tasks_created_total", method="web-download") == 1
    # ... and in the worker process, which serves no HTTP at all.
    assert moved("glimpse_tasks_finished_total", method="web-download", outcome="success") == 1
    assert moved("glimpse_task_duration_seconds_count", method="web-download", outcome="success") == 1
    assert moved("glimpse_image_bytes_total", direction="fetched") == len(DATA)
    assert moved("glimpse_image_bytes_total", store="fast", direction="imported") == len(DATA)
    # One file set per process that counted something, in the node's directory.
    pids = {path.stem.rpartition("_")[2] for path in (tmp_path / "data" / "metrics").glob("*.db")}
    assert len(pids) >= 2, pids
