"""The object store stopped (by its own control script) under a live ``glimpse-server serve`` with its
embedded task runner, during a copy-image task and downloads; then started again. Once as an S3
store, once as a Swift store (the same server speaks both APIs).

What must hold: the copy fails that store with a message, records no location for the bytes it did
not finish, leaves the image as it was and can be retried once the store is back; a download from
the stopped store answers 503 with a message (a download already streaming is cut off: its headers
were sent). The object server is a private one on a port of its own (``scripts/s3-server.sh`` with
``GLIMPSE_TEST_S3_PORT``), reached through a throttled relay (``tests/tcprelay.py``) so that the copy
is still moving bytes when the server stops.
"""

from __future__ import annotations

import os
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner_support import MIB, payload

from livesupport import REPO_ROOT, Server, free_port, wait_until
from tcprelay import TcpRelay

pytestmark = [pytest.mark.live, pytest.mark.objects]

HEADERS = {
    "X-Project-Id": "p",
    "X-User-Id": "u",
    "X-Roles": "admin,member,reader",
    "Accept": "application/json",
}
#: Seconds a starting server may take to answer: a restart on a loaded 2-core machine takes tens.
START_ON_A_BUSY_MACHINE = 90.0
SCRIPT = REPO_ROOT / "scripts" / "s3-server.sh"
DATA = payload(8 * MIB, seed=3)


@dataclass
class PrivateObjectServer:
    """An object store server (Swift + S3) of this module only, on its own port."""

    port: int

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GLIMPSE_TEST_S3_PORT": str(self.port)}
        return subprocess.run(
            ["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=600, check=False
        )

    def start(self) -> dict[str, str]:
        done = self._script("start")
        values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        if done.returncode != 0 or "S3_ENDPOINT_URL" not in values:
            pytest.fail(
                f"scripts/s3-server.sh start (port {self.port}) failed:\n{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
        return values

    def stop(self) -> None:
        done = self._script("stop")
        assert done.returncode == 0, done.stderr

    def destroy(self) -> None:
        self._script("destroy")


@pytest.fixture(scope="module")
def object_server() -> Iterator[tuple[PrivateObjectServer, dict[str, str]]]:
    server = PrivateObjectServer(free_port())
    try:
        yield server, server.start()
    finally:
        server.destroy()


def store_environ(kind: str, values: dict[str, str], relay: TcpRelay) -> dict[str, str]:
    """The ``obj`` store's options: its API ``kind`` on the server, reached through ``relay``."""
    name = f"outage-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        return {
            "GLIMPSE_OBJ__S3_STORE_HOST": f"http://127.0.0.1:{relay.port}",
            "GLIMPSE_OBJ__S3_STORE_ACCESS_KEY": values["S3_ACCESS_KEY"],
            "GLIMPSE_OBJ__S3_STORE_SECRET_KEY": values["S3_SECRET_KEY"],
            "GLIMPSE_OBJ__S3_STORE_BUCKET": name,
            "GLIMPSE_OBJ__S3_STORE_REGION_NAME": values["S3_REGION"],
            "GLIMPSE_OBJ__S3_STORE_BUCKET_URL_FORMAT": "path",
            "GLIMPSE_OBJ__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
            "GLIMPSE_OBJ__S3_STORE_LARGE_OBJECT_SIZE": "4",
            "GLIMPSE_OBJ__S3_STORE_LARGE_OBJECT_CHUNK_SIZE": "5",
        }
    # tempauth hands out storage URLs on the host the client asked for: the relay's too.
    auth = urllib.parse.urlsplit(values["SWIFT_AUTH_URL"])._replace(netloc=f"127.0.0.1:{relay.port}")
    return {
        "GLIMPSE_OBJ__SWIFT_STORE_AUTH_ADDRESS": auth.geturl(),
        "GLIMPSE_OBJ__SWIFT_STORE_USER": values["SWIFT_USER"],
        "GLIMPSE_OBJ__SWIFT_STORE_KEY": values["SWIFT_KEY"],
        "GLIMPSE_OBJ__SWIFT_STORE_CONTAINER": name,
        "GLIMPSE_OBJ__SWIFT_STORE_CREATE_CONTAINER_ON_PUT": "true",
        "GLIMPSE_OBJ__SWIFT_STORE_LARGE_OBJECT_SIZE": "4",
        "GLIMPSE_OBJ__SWIFT_STORE_LARGE_OBJECT_CHUNK_SIZE": "2",
    }


@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_a_store_outage_fails_the_copy_to_it_and_downloads_answer_503(
    tmp_path: Path, object_server: tuple[PrivateObjectServer, dict[str, str]], kind: str
) -> None:
    objects, values = object_server
    relay = TcpRelay("127.0.0.1", objects.port)
    relay.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
            "GLIMPSE_DATABASE__CONNECTION": f"sqlite:///{tmp_path / 'glimpse.db'}",
            "GLIMPSE_ENABLED_BACKENDS": f"fast:file,obj:{kind}",
            "GLIMPSE_FAST__FILESYSTEM_STORE_FSYNC": "false",
            **store_environ(kind, values, relay),
            "GLIMPSE_TASK__TASK_LEASE_TIME": "3",
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.2",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
        }
    )
    server = Server(
        name=f"store-outage-{kind}-{objects.port}", port=free_port(), log_path=tmp_path / "server.log"
    )
    server.start(env)
    try:
        server.wait_ready(timeout=START_ON_A_BUSY_MACHINE)
        http = httpx.Client(base_url=server.url, headers=HEADERS, timeout=60)

        def create() -> str:
            created = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
            assert created.status_code == 201, created.text
            image_id: str = created.json()["id"]
            return image_id

        def image(image_id: str) -> dict[str, Any]:
            found: dict[str, Any] = http.get(f"/v2/images/{image_id}").json()
            return found

        def task(image_id: str, other_than: str = "") -> dict[str, Any]:
            """The image's one task (besides ``other_than``)."""
            tasks: list[dict[str, Any]] = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
            tasks = [found for found in tasks if found["id"] != other_than]
            assert len(tasks) == 1, tasks
            return tasks[0]

        copied, kept = create(), create()
        assert http.put(f"/v2/images/{copied}/file", content=DATA).status_code == 204
        stored = http.put(f"/v2/images/{kept}/file", content=DATA, headers={"X-Image-Meta-Store": "obj"})
        assert stored.status_code == 204, stored.text

        # A copy to the object store, slowed down to about 1 MiB/s, is under way when it stops.
        relay.rate = MIB
        started = http.post(
            f"/v2/images/{copied}/import", json={"method": {"name": "copy-image"}, "stores": ["obj"]}
        )
        assert started.status_code == 202, started.text

        def copying() -> bool:
            progress = task(copied).get("progress") or {}
            return bool(((progress.get("stores") or {}).get("obj") or {}).get("bytes_done"))

        wait_until(copying, server.log, within=60)
        # A download from the object store is streaming at the same time.
        with http.stream("GET", f"/v2/images/{kept}/file") as streaming:
            assert streaming.status_code == 200
            assert streaming.headers["content-length"] == str(len(DATA))
            chunks = streaming.iter_raw()
            received = [len(next(chunks))]
            objects.stop()
            relay.rate = None
            # Its headers were sent: the stream is cut off, never ended as if it were complete.
            with pytest.raises(httpx.TransportError):
                received.extend(len(chunk) for chunk in chunks)
        assert 0 < sum(received) < len(DATA)
        wait_until(
            lambda: "the answer was cut off after it had started: store 'obj'" in server.log(), server.log
        )

        wait_until(lambda: task(copied)["status"] in ("success", "failure"), server.log, within=60)
        failed = task(copied)
        assert failed["status"] == "failure", failed
        assert "'obj'" in failed["message"], failed
        after = image(copied)
        assert after["status"] == "active"
        assert after["stores"] == "fast"  # no location for the bytes that were not all written
        assert "obj" in after["os_glance_failed_import"].split(",")
        assert after["os_glance_importing_to_stores"] == ""

        # A download from the stopped store: 503 with a message, not 500.
        download = http.get(f"/v2/images/{kept}/file")
        assert download.status_code == 503, download.text
        assert "obj" in download.json()["message"], download.text
        assert http.get(f"/v2/images/{copied}/file").content == DATA  # the other store still serves

        objects.start()

        # The store is back: the copy can be retried and the download works, without a restart.
        again = http.post(
            f"/v2/images/{copied}/import", json={"method": {"name": "copy-image"}, "stores": ["obj"]}
        )
        assert again.status_code == 202, again.text
        retried = failed["id"]
        wait_until(lambda: task(copied, retried)["status"] in ("success", "failure"), server.log, within=60)
        assert task(copied, retried)["status"] == "success", (task(copied, retried), server.log())
        assert sorted(image(copied)["stores"].split(",")) == ["fast", "obj"]
        assert image(copied)["os_glance_failed_import"] == ""
        assert http.get(f"/v2/images/{kept}/file").content == DATA
        assert http.get(f"/v2/images/{copied}/file", headers={}).status_code == 200
    finally:
        server.stop()
        relay.stop()
    statuses = [line.split()[-2] for line in server.log().splitlines() if " glimpse.access " in line]
    assert statuses, server.log()
    assert "500" not in statuses, server.log()
