"""bench/soak.py, the soak driver, run for a few seconds: it reports its rows and a verdict, and a 5xx
fails it.

Against a live ``glimpse-server serve`` the driver starts itself (as ``make soak`` does, on the
embedded defaults) every scenario runs, every row is printed and the verdict passes; against a tiny
server that answers 500 to everything the verdict counts the 5xx and the run exits 1.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from livesupport import REPO_ROOT

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

SOAK = REPO_ROOT / "bench" / "soak.py"
SHORT = ["--minutes", "0.15", "--row-seconds", "3", "--rate", "4", "--size-kib", "32"]
# Seconds are too short to tell growth from the connections and files of the moment: wide allowances.
ALLOWANCES = ["--rss-allowance-mib", "256", "--fd-allowance", "256"]


def soak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SOAK), *SHORT, *ALLOWANCES, *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The rows of the table (after its header line), as cells."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["min", "requests"])
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith(("total:", "scenarios:", "verdict:")):
            break
        rows.append(line.split())
    return rows


def verdict_of(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("verdict: "))


def test_a_short_soak_against_its_own_server_prints_rows_and_passes() -> None:
    run = soak()
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    rows = table_rows(run.stdout)
    assert len(rows) >= 2, run.stdout  # one every 3 s (a row late on a busy machine ends the run)
    assert sum(int(row[1]) for row in rows) > 0
    for row in rows:
        c4xx, c5xx, conn, wrong = (int(row[i]) for i in (3, 4, 5, 6))
        assert (c4xx, c5xx, conn, wrong) == (0, 0, 0, 0), run.stdout
        rss, fds = row[9], int(row[10])
        assert all(int(size) > 0 for size in rss.split("+"))  # every process of the service measured
        assert fds > 0
    assert int(rows[-1][11]) >= 1, run.stdout  # the SQLite database is open
    scenarios = next(line for line in run.stdout.splitlines() if line.startswith("scenarios: "))
    assert "upload" in scenarios
    assert "list" in scenarios
    verdict = verdict_of(run.stdout)
    assert "5xx: 0" in verdict
    assert verdict.endswith("PASS"), verdict
    assert "server stopped (exit status 0)" in run.stderr


class _Broken(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"message": "it broke"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def do_PUT(self) -> None:
        self.answer()

    def do_PATCH(self) -> None:
        self.answer()

    def do_DELETE(self) -> None:
        self.answer()


@pytest.fixture
def broken_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_server_that_answers_500_fails_the_soak(broken_server: str) -> None:
    run = soak("--url", broken_server)
    assert run.returncode == 1, f"{run.stdout}\n{run.stderr}"
    rows = table_rows(run.stdout)
    assert len(rows) >= 2, run.stdout
    assert sum(int(row[4]) for row in rows) > 0, run.stdout  # the 5xx column
    verdict = verdict_of(run.stdout)
    assert "5xx: 0" not in verdict
    assert "(first: " in verdict
    assert verdict.endswith("FAIL"), verdict
