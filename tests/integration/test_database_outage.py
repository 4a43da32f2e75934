"""PostgreSQL or MariaDB stopped (by its own control script) under a live ``glimpse-server serve`` and a
``glimpse-server worker`` beside it, while an upload, a web-download import run by the worker and
listings run; then started again. Neither process is restarted.

What must hold: every request answers (503 with a message while the database is away, never 500), no
image stays ``saving`` or ``importing`` with nothing behind it, no acknowledged write is lost, and
everything works again by itself once the database is back: the pool reconnects, the upload's image
is ``queued`` again, the import task is handed back and run again. The server is never restarted.

The database is a private PostgreSQL or MariaDB server on a port of its own (``scripts/postgres.sh``
with ``GLIMPSE_TEST_PG_PORT``, ``scripts/mariadb.sh`` with ``GLIMPSE_TEST_MARIADB_PORT``), so
stopping it disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from test_runner_support import MIB, STORES, WebServer, payload, serve

from livesupport import GLIMPSE_BIN, REPO_ROOT, Server, free_port, wait_until

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.mariadb]

HEADERS = {"X-Project-Id": "p", "X-User-Id": "u", "X-Roles": "member,reader", "Accept": "application/json"}
#: Seconds a starting server may take to answer: a restart on a loaded 2-core machine takes tens.
START_ON_A_BUSY_MACHINE = 90.0
DATA = payload(8 * MIB, seed=11)


@dataclass
class PrivateDatabase:
    """A PostgreSQL or MariaDB server of this module only, driven by its ``scripts/<name>.sh`` on
    its own port."""

    name: str
    port: int

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        if self.name == "postgres":
            private = {"GLIMPSE_TEST_PG_PORT": str(self.port), "GLIMPSE_TEST_PG_LINK": ""}
        else:
            private = {"GLIMPSE_TEST_MARIADB_PORT": str(self.port), "GLIMPSE_TEST_MARIADB_LINK": ""}
        return subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / f"{self.name}.sh"), command],
            env={**os.environ, **private},
            capture_output=True,
            text=True,
            timeout=600,  # the first start may install the server's Debian package
            check=False,
        )

    def start(self) -> str:
        done = self._script("start")
        if done.returncode != 0:
            pytest.fail(
                f"scripts/{self.name}.sh start (port {self.port}) failed:\n{done.stderr}", pytrace=False
            )
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        done = self._script("stop")
        assert done.returncode == 0, done.stderr

    def destroy(self) -> None:
        self._script("destroy")


@pytest.fixture(scope="module", params=["postgres", "mariadb"])
def private_database(request: pytest.FixtureRequest) -> Iterator[tuple[PrivateDatabase, str]]:
    server = PrivateDatabase(request.param, free_port())
    try:
        admin_url = server.start()
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE DATABASE glimpse_outage"))
        engine.dispose()
        url = sa.make_url(admin_url).set(database="glimpse_outage")
        yield server, url.render_as_string(hide_password=False)
    finally:
        server.destroy()


@pytest.fixture
def slow_web() -> Iterator[WebServer]:
    # 128 chunks of 64 KiB, 40 ms apart: about five seconds for the whole image.
    yield from serve({"/big.raw": DATA}, delay=0.04)


def start_upload(port: int, image_id: str, data: bytes, first: int, what: str = "file") -> socket.socket:
    """A ``PUT /file`` (or ``/stage``) whose body stops after ``first`` bytes (the rest is sent by
    the test)."""
    upload = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    upload.sendall(
        (
            f"PUT /v2/images/{image_id}/{what} HTTP/1.1\r\nHost: x\r\n{head}"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:first]
    )
    return upload


def read_answer(connection: socket.socket) -> tuple[int, str]:
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    text = answer.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text


def test_a_database_outage_answers_503_and_heals_itself(
    tmp_path: Path, private_database: tuple[PrivateDatabase, str], slow_web: WebServer
) -> None:
    database, url = private_database
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": url,
            "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{s}:file" for s in STORES),
            "GLIMPSE_TASK__TASK_LEASE_TIME": "3",
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.2",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
            **slow_web.filter_environ,
        }
    )
    for store in STORES:
        env[f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_FSYNC"] = "false"
    # The API process runs no task; a `glimpse-server worker` process beside it does.
    env["GLIMPSE_TASK__EMBEDDED_RUNNER"] = "false"
    server = Server(name=f"outage-{database.port}", port=free_port(), log_path=tmp_path / "server.log")
    server.start(env)
    answers: list[int] = []
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(
            [str(GLIMPSE_BIN), "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def logs() -> str:
        return f"{server.log()}\n--- worker ---\n{worker_log.read_text(errors='replace')}"

    try:
        server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
        http = httpx.Client(base_url=server.url, headers=HEADERS, timeout=60)

        def create() -> str:
            created = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
            assert created.status_code == 201, created.text
            image_id: str = created.json()["id"]
            return image_id

        def status(image_id: str) -> str:
            answer = http.get(f"/v2/images/{image_id}")
            answers.append(answer.status_code)
            return (
                str(answer.json().get("status"))
                if answer.status_code == 200
                else f"http {answer.status_code}"
            )

        def task(image_id: str) -> dict[str, object]:
            tasks = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
            assert len(tasks) >= 1, tasks
            found: dict[str, object] = tasks[0]
            return found

        # Acknowledged before the outage: an active image with its data.
        kept = create()
        assert http.put(f"/v2/images/{kept}/file", content=DATA[:MIB]).status_code == 204
        # An import in flight: a web-download task downloading when the database goes.
        imported = create()
        started = http.post(
            f"/v2/images/{imported}/import",
            json={"method": {"name": "web-download", "uri": slow_web.url("/big.raw")}, "stores": ["fast"]},
        )
        assert started.status_code == 202, started.text
        # An upload in flight: its image is 'saving' and half its body is in.
        uploaded = create()
        upload = start_upload(server.port, uploaded, DATA, len(DATA) // 2)
        wait_until(lambda: status(uploaded) == "saving", server.log, within=60)
        # A stage in flight too: its image is 'uploading' and half its body is in.
        staged = create()
        stage = start_upload(server.port, staged, DATA, len(DATA) // 2, what="stage")
        wait_until(lambda: status(staged) == "uploading", server.log, within=60)

        def downloading() -> bool:
            found = task(imported)
            progress = found.get("progress") or {}
            return found["status"] == "processing" and bool(progress.get("staged_bytes"))  # type: ignore[union-attr]

        wait_until(downloading, logs, within=90)

        database.stop()
        stopped_at = time.monotonic()

        listing = http.get("/v2/images")
        assert listing.status_code == 503, listing.text
        assert "database cannot be reached" in listing.json()["message"], listing.text
        assert "try again" in listing.json()["message"], listing.text
        assert http.get("/versions").status_code == 200
        assert http.get("/healthcheck").status_code == 503
        refused = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
        assert refused.status_code == 503, refused.text
        download = http.get(f"/v2/images/{kept}/file")
        assert download.status_code == 503, download.text
        # The rest of the upload arrives while the database is away: 503, and nothing is kept.
        upload.sendall(DATA[len(DATA) // 2 :])
        code, text = read_answer(upload)
        upload.close()
        assert code == 503, text
        assert "upload it again" in text, text
        # So does the rest of the stage: 503, nothing is kept.
        stage.sendall(DATA[len(DATA) // 2 :])
        stage_code, stage_text = read_answer(stage)
        stage.close()
        assert stage_code == 503, stage_text
        assert "stage it again" in stage_text, stage_text
        answers.extend([listing.status_code, refused.status_code, download.status_code, code, stage_code])
        # The worker noticed: its task waits for the database. The outage lasts longer than a lease, so
        # every lease has lapsed when the database comes back (and must not be reaped at once).
        wait_until(lambda: "waiting for the database to undo and re-queue it" in logs(), logs, within=60)
        wait_until(lambda: time.monotonic() > stopped_at + 4, logs)

        database.start()

        # Without a restart: the pool reconnects, the upload's image is queued again, the import runs
        # again from the start and finishes.
        wait_until(lambda: status(uploaded) == "queued", server.log, within=60)
        # The stage's image too, long before upload_stale_after (15 minutes): its process undoes
        # the failed stage as soon as the database answers.
        wait_until(lambda: status(staged) == "queued", server.log, within=60)
        wait_until(lambda: task(imported)["status"] in ("success", "failure"), logs, within=90)
        assert task(imported)["status"] == "success", (task(imported), logs())
        assert status(imported) == "active"
        assert http.get(f"/v2/images/{imported}/file").content == DATA
        assert status(kept) == "active"
        assert http.get(f"/v2/images/{kept}/file").content == DATA[:MIB]
        again = http.put(f"/v2/images/{uploaded}/file", content=DATA)
        assert again.status_code == 204, again.text
        assert http.get(f"/v2/images/{uploaded}/file").content == DATA
        staging = tmp_path / "data" / "staging"
        wait_until(lambda: not any(staging.iterdir()), lambda: f"{list(staging.iterdir())}\n{server.log()}")
        restaged = http.put(
            f"/v2/images/{staged}/stage", content=DATA, headers={"Content-Type": "application/octet-stream"}
        )
        assert restaged.status_code == 204, restaged.text
        assert status(staged) == "uploading"
        assert http.get(f"/v2/images/{staged}").json()["size"] == len(DATA)
        listed = http.get("/v2/images")
        assert listed.status_code == 200
        assert {i["id"] for i in listed.json()["images"]} == {kept, imported, uploaded, staged}
        # Nothing was left behind: one object per active image in 'fast' (the failed upload's object
        # goes just after its image is queued again); in staging only the stage done again.
        fast = tmp_path / "data" / "stores" / "fast"
        wait_until(
            lambda: sorted(p.name for p in fast.iterdir()) == sorted([kept, imported, uploaded]),
            lambda: f"{sorted(p.name for p in fast.iterdir())}\n{server.log()}",
        )
        assert sorted(p.name for p in staging.iterdir()) == [staged], list(staging.iterdir())
    finally:
        server.stop()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
    assert "the database answers again" in worker_log.read_text(), logs()
    assert "Traceback" not in worker_log.read_text(), logs()
    assert 500 not in answers
    statuses = [line.split()[-2] for line in server.log().splitlines() if " glimpse.access " in line]
    assert statuses, server.log()
    assert "500" not in statuses, server.log()
