"""Several nodes on one machine, behind a real load balancer.

The module's topology: two ``glimpse-server serve`` nodes (one API process each, no embedded runner)
and two ``glimpse-server worker`` nodes, each with a data directory of its own, as separate
machines would have; one PostgreSQL database; three stores common to every node: ``file`` (a
directory standing for a mount such as NFS, the default store), ``s3`` and ``swift`` (the Swift +
s3api test server, reached through a relay the tests can slow down), and staging on that S3 server;
and
HAProxy in front of the two API nodes, round-robin, checking ``/healthcheck``. Every request of these
tests goes through HAProxy unless it says otherwise, and HAProxy's ``X-Glimpse-Node`` header tells
which node answered.

Settings every node has go into ``shared_environ()``; per-node settings go into
``Topology.node_environ()``. Select these tests with ``-m topology``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
import sqlalchemy as sa
import swiftclient.client
import swiftclient.exceptions
from test_object_stores import make_store, make_swift_store
from test_runner_support import MIB, WebServer, payload, serve

from balancersupport import NODE_HEADER, Balancer
from glimpse.db import migrate
from glimpse.db.session import make_engine
from livesupport import GLIMPSE_BIN, REPO_ROOT, Server, free_port
from objectsupport import ObjectServer
from tcprelay import TcpRelay

pytestmark = [
    pytest.mark.topology,
    pytest.mark.live,
    pytest.mark.objects,
    pytest.mark.postgres,
    pytest.mark.xdist_group("topology"),
]

ADMIN = {"X-Project-Id": "topology", "X-User-Id": "operator", "X-Roles": "admin,member,reader"}
LEASE = 3.0  # seconds: short, so that a killed worker's task is reaped quickly
WATCH_INTERVAL = 0.2
SERVE_NODES = ("api-1", "api-2")
WORKER_NODES = ("worker-1", "worker-2")
#: Four Python processes importing everything at once on a busy two-core machine take a while.
START_TIMEOUT = 120.0


@dataclass
class Topology:
    root: Path
    database_url: str
    objects: ObjectServer
    relay: TcpRelay
    bucket: str
    container: str
    web: WebServer
    api: dict[str, Server] = field(default_factory=dict)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    balancer: Balancer | None = None

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    @property
    def staging_bucket(self) -> str:
        return f"{self.bucket}-staging"

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=ADMIN, timeout=60, **kwargs)

    def shared_environ(self) -> dict[str, str]:
        """What every node has in common: database, stores, task timings."""
        relayed = f"http://127.0.0.1:{self.relay.port}"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")},
            "GLIMPSE_DATABASE__CONNECTION": self.database_url,
            "GLIMPSE_ENABLED_BACKENDS": "file:file, s3:s3, swift:swift",
            "GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND": "file",
            "GLIMPSE_FILE__FILESYSTEM_STORE_DATADIR": str(self.root / "common" / "file-store"),
            "GLIMPSE_FILE__FILESYSTEM_STORE_FSYNC": "false",
            "GLIMPSE_S3__S3_STORE_HOST": relayed,
            "GLIMPSE_S3__S3_STORE_ACCESS_KEY": self.objects.s3_access_key,
            "GLIMPSE_S3__S3_STORE_SECRET_KEY": self.objects.s3_secret_key,
            "GLIMPSE_S3__S3_STORE_BUCKET": self.bucket,
            "GLIMPSE_S3__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
            "GLIMPSE_S3__S3_STORE_BUCKET_URL_FORMAT": "path",
            "GLIMPSE_S3__S3_STORE_LARGE_OBJECT_SIZE": "5",
            "GLIMPSE_S3__S3_STORE_LARGE_OBJECT_CHUNK_SIZE": "5",
            "GLIMPSE_S3__S3_STORE_THREAD_POOLS": "2",
            "GLIMPSE_SWIFT__SWIFT_STORE_AUTH_ADDRESS": f"{relayed}/auth/v1.0",
            "GLIMPSE_SWIFT__SWIFT_STORE_USER": self.objects.swift_user,
            "GLIMPSE_SWIFT__SWIFT_STORE_KEY": self.objects.swift_key,
            "GLIMPSE_SWIFT__SWIFT_STORE_CONTAINER": self.container,
            "GLIMPSE_SWIFT__SWIFT_STORE_CREATE_CONTAINER_ON_PUT": "true",
            "GLIMPSE_SWIFT__SWIFT_STORE_LARGE_OBJECT_SIZE": "1",
            "GLIMPSE_SWIFT__SWIFT_STORE_LARGE_OBJECT_CHUNK_SIZE": "1",
            # Staging on the shared object store: data staged through one API node is imported by
            # any worker, whichever node received the import.
            "GLIMPSE_OS_GLANCE_STAGING_STORE__TYPE": "s3",
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_HOST": relayed,
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_ACCESS_KEY": self.objects.s3_access_key,
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_SECRET_KEY": self.objects.s3_secret_key,
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_BUCKET": self.staging_bucket,
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
            "GLIMPSE_OS_GLANCE_STAGING_STORE__S3_STORE_BUCKET_URL_FORMAT": "path",
            "GLIMPSE_TASK__EMBEDDED_RUNNER": "false",
            "GLIMPSE_TASK__TASK_LEASE_TIME": str(LEASE),
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.3",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
            "GLIMPSE_TASK__TASK_WATCH_INTERVAL": str(WATCH_INTERVAL),
            **self.web.filter_environ,
        }

    def node_environ(self, node: str) -> dict[str, str]:
        """One node's settings: its own data directory (and so its own local staging)."""
        return {
            **self.shared_environ(),
            "GLIMPSE_DATA_DIR": str(self.root / node / "data"),
            "GLIMPSE_WORKERS": "1",
            "GLIMPSE_HEALTHCHECK__DISABLE_BY_FILE_PATH": str(self.disable_file(node)),
        }

    def disable_file(self, node: str) -> Path:
        return self.root / node / "healthcheck_disable"

    def log_path(self, node: str) -> Path:
        return self.root / f"{node}.log"

    def start_worker(self, node: str) -> None:
        log_path = self.log_path(node)
        with log_path.open("ab") as log:
            self.workers[node] = subprocess.Popen(
                [str(GLIMPSE_BIN), "worker"],
                cwd=REPO_ROOT,
                env=self.node_environ(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.root.glob("*.log"))
        )

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for server in self.api.values():
            server.stop()


def _s3_client(objects: ObjectServer) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=objects.s3_endpoint_url,
        aws_access_key_id=objects.s3_access_key,
        aws_secret_access_key=objects.s3_secret_key,
        config=botocore.config.Config(region_name=objects.s3_region, s3={"addressing_style": "path"}),
    )


def _swift(objects: ObjectServer) -> swiftclient.client.Connection:
    return swiftclient.client.Connection(
        authurl=objects.swift_auth_url, user=objects.swift_user, key=objects.swift_key, retries=1
    )


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    # 64 chunks of 64 KiB, 25 ms apart: a web-download that takes about 1.6 s.
    yield from serve({"/slow.raw": payload(4 * MIB, seed=11)}, delay=0.025)


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str, s3_server: ObjectServer, web: WebServer
) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("topology")
    name = f"glimpse_topology_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin_url = urllib.parse.urlsplit(postgres_admin_url)
    database_url = admin_url._replace(path=f"/{name}").geturl()
    endpoint = urllib.parse.urlsplit(s3_server.s3_endpoint_url)
    assert endpoint.hostname
    assert endpoint.port
    relay = TcpRelay(endpoint.hostname, endpoint.port)
    relay.start()
    suffix = uuid.uuid4().hex[:12]
    topo = Topology(
        root=root,
        database_url=database_url,
        objects=s3_server,
        relay=relay,
        bucket=f"topology-{suffix}",
        container=f"topology-{suffix}",
        web=web,
    )
    try:
        # Migrate once, here (no extra process to start), so that the four processes start on a
        # current schema.
        engine = make_engine(database_url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        for node in SERVE_NODES:
            server = Server(name=node, port=free_port(), log_path=topo.log_path(node))
            server.start(topo.node_environ(node))
            topo.api[node] = server
        for node in WORKER_NODES:
            topo.start_worker(node)
        for server in topo.api.values():
            server.wait_ready(timeout=START_TIMEOUT)
        topo.balancer = Balancer({node: topo.api[node].port for node in SERVE_NODES}, root)
        topo.balancer.start()
        topo.balancer.wait_serving()
        yield topo
    finally:
        topo.stop()
        relay.resume()
        relay.stop()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        _remove_bucket(_s3_client(s3_server), topo.bucket)
        _remove_bucket(_s3_client(s3_server), topo.staging_bucket)
        _remove_containers(_swift(s3_server), topo.container, f"{topo.container}_segments")


def _remove_bucket(client: Any, bucket: str) -> None:
    try:
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        pass


def _container_names(connection: swiftclient.client.Connection, container: str) -> list[str]:
    try:
        _, objects = connection.get_container(container, full_listing=True)
    except swiftclient.exceptions.ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [str(item["name"]) for item in objects]


def _remove_containers(connection: swiftclient.client.Connection, *containers: str) -> None:
    for container in containers:
        for name in _container_names(connection, container):
            connection.delete_object(container, name)
        try:
            connection.delete_container(container)
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status != 404:
                raise


# -- helpers -------------------------------------------------------------------------------------


def new_image_with_data(http: httpx.Client, data: bytes) -> str:
    created = http.post(
        "/v2/images", json={"name": "topology", "disk_format": "raw", "container_format": "bare"}
    )
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    uploaded = http.put(
        f"/v2/images/{image_id}/file", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert uploaded.status_code == 204, uploaded.text
    return image_id


def copy_image(http: httpx.Client, image_id: str, stores: list[str]) -> str:
    started = http.post(
        f"/v2/images/{image_id}/import", json={"method": {"name": "copy-image"}, "stores": stores}
    )
    assert started.status_code == 202, started.text
    return started.headers["openstack-image-import-task-id"]


def wait_task(
    http: httpx.Client, image_id: str, task_id: str, statuses: tuple[str, ...], within: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        task: dict[str, Any] = http.get(f"/v2/images/{image_id}/tasks/{task_id}").json()
        if task["status"] in statuses:
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task['status']} after {within}s: {task}"
        time.sleep(0.1)


def claimed_by(topology: Topology, task_id: str) -> str | None:
    engine = sa.create_engine(topology.database_url)
    try:
        with engine.connect() as connection:
            value = connection.execute(
                sa.text("SELECT claimed_by FROM tasks WHERE id = :id"), {"id": task_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return None if value is None else str(value)


# -- the tests -----------------------------------------------------------------------------------


def test_requests_reach_both_nodes(topology: Topology) -> None:
    with topology.http() as http:
        answers = [http.get("/v2/images") for _ in range(10)]
    assert all(answer.status_code == 200 for answer in answers)
    nodes = Counter(answer.headers[NODE_HEADER] for answer in answers)
    assert set(nodes) == set(SERVE_NODES), nodes
    assert min(nodes.values()) >= 3, nodes  # round-robin, give or take the health checks
    # The header tells the truth: each request id is in the access log of the node that answered.
    # A node writes the access line just after the response has gone out: wait for it.
    for answer in answers:
        request_id = answer.headers["x-openstack-request-id"]
        log_path = topology.log_path(answer.headers[NODE_HEADER])
        deadline = time.monotonic() + 10
        while request_id not in log_path.read_text():
            assert time.monotonic() < deadline, f"{request_id} is not in the log of {log_path.name}"
            time.sleep(0.05)


def test_balancer_drains_a_node_whose_health_check_fails(topology: Topology) -> None:
    flag = topology.disable_file("api-2")
    flag.touch()
    try:
        with topology.http() as http:
            deadline = time.monotonic() + 10
            while True:  # HAProxy checks every 500 ms and takes a node out after 2 failures
                nodes = {http.get("/versions").headers[NODE_HEADER] for _ in range(6)}
                if nodes == {"api-1"}:
                    break
                assert time.monotonic() < deadline, f"api-2 still gets requests: {nodes}"
                time.sleep(0.2)
            assert httpx.get(f"{topology.api['api-2'].url}/healthcheck").text == "DISABLED BY FILE"
    finally:
        flag.unlink()
    assert topology.balancer is not None
    topology.balancer.wait_serving()


def test_copy_image_into_s3_and_swift_with_progress(topology: Topology) -> None:
    data = payload(12 * MIB, seed=3)
    with topology.http() as http:
        image_id = new_image_with_data(http, data)
        task_id = copy_image(http, image_id, ["s3", "swift"])
        task = wait_task(http, image_id, task_id, ("success", "failure"))
        assert task["status"] == "success", task["message"]
        assert task["message"] == "Copied 12 MiB"
        progress = task["progress"]
        assert progress["phase"] == "done"
        for store in ("s3", "swift"):
            entry = progress["stores"][store]
            assert (entry["state"], entry["bytes_done"], entry["percent"]) == ("done", len(data), 100.0)
        image = http.get(f"/v2/images/{image_id}").json()
        downloaded = http.get(f"/v2/images/{image_id}/file")
    assert set(image["stores"].split(",")) == {"file", "s3", "swift"}
    assert image["os_glance_importing_to_stores"] == ""
    assert image["os_glance_failed_import"] == ""
    assert "os_glance_import_task" not in image
    assert hashlib.sha256(downloaded.content).digest() == hashlib.sha256(data).digest()
    # The objects themselves: an S3 multipart object (parts of 5 MiB) and a Swift large object.
    head = _s3_client(topology.objects).head_object(Bucket=topology.bucket, Key=image_id)
    assert head["ContentLength"] == len(data)
    assert "-" in head["ETag"]  # a multipart object ("<md5>-<parts>"; Swift's s3api says "-N")
    headers = _swift(topology.objects).head_object(topology.container, image_id)
    assert int(headers["content-length"]) == len(data)
    assert headers["x-static-large-object"].lower() == "true"


def test_stage_through_one_node_and_import_through_the_other(topology: Topology) -> None:
    data = payload(6 * MIB, seed=11)
    with topology.http() as http:
        created = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
        image_id = created.json()["id"]
        staged = http.put(
            f"/v2/images/{image_id}/stage", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert staged.status_code == 204, staged.text
        stage_node = staged.headers[NODE_HEADER]
        # Round robin: once a request lands on the staging node, the next one goes to the other.
        deadline = time.monotonic() + 10
        while http.get("/versions").headers[NODE_HEADER] != stage_node:
            assert time.monotonic() < deadline, "the balancer never came back to the staging node"
        started = http.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
        assert started.status_code == 202, started.text
        assert started.headers[NODE_HEADER] != stage_node
        task_id = started.headers["openstack-image-import-task-id"]
        task = wait_task(http, image_id, task_id, ("success", "failure"))
        assert task["status"] == "success", task["message"]
        downloaded = http.get(f"/v2/images/{image_id}/file")
    assert downloaded.content == data
    ran_on = [node for node in WORKER_NODES if task_id in topology.log_path(node).read_text(errors="replace")]
    assert len(ran_on) == 1, ran_on
    leftovers = (
        _s3_client(topology.objects).list_objects_v2(Bucket=topology.staging_bucket).get("Contents", [])
    )
    assert leftovers == [], leftovers


def test_fifty_concurrent_imports_through_the_balancer_one_wins(topology: Topology) -> None:
    with topology.http() as http:
        image_id = new_image_with_data(http, payload(MIB, seed=5))

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=0)
        headers = {**ADMIN, "Accept": "application/json"}  # errors in JSON, with the lock object
        async with httpx.AsyncClient(
            base_url=topology.url, headers=headers, timeout=60, limits=limits
        ) as client:
            body = {"method": {"name": "copy-image"}, "stores": ["s3", "swift"]}
            return list(
                await asyncio.gather(
                    *(client.post(f"/v2/images/{image_id}/import", json=body) for _ in range(50))
                )
            )

    # No worker may finish the winner's copy (and free the lock) while the race is still on.
    for process in topology.workers.values():
        process.send_signal(signal.SIGSTOP)
    try:
        answers = asyncio.run(race())
    finally:
        for process in topology.workers.values():
            process.send_signal(signal.SIGCONT)
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {202: 1, 409: 49}, statuses
    assert {answer.headers[NODE_HEADER] for answer in answers} == set(SERVE_NODES)
    winner = next(answer for answer in answers if answer.status_code == 202)
    task_id = winner.headers["openstack-image-import-task-id"]
    for loser in (answer for answer in answers if answer.status_code == 409):
        assert loser.json()["lock"]["task_id"] == task_id
    with topology.http() as http:
        task = wait_task(http, image_id, task_id, ("success", "failure"))
        assert task["status"] == "success", task["message"]
        tasks = http.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    assert [t["id"] for t in tasks] == [task_id]


def test_watcher_on_one_node_is_woken_by_a_worker_on_another(topology: Topology) -> None:
    with topology.http() as http:
        created = http.post("/v2/images", json={"disk_format": "raw", "container_format": "bare"})
        image_id = created.json()["id"]
        started = http.post(
            f"/v2/images/{image_id}/import",
            json={"method": {"name": "web-download", "uri": topology.web.url("/slow.raw")}},
        )
        assert started.status_code == 202, started.text
        task_id = started.headers["openstack-image-import-task-id"]
        since = http.get(f"/v2/images/{image_id}/tasks/{task_id}").json()["updated_at"]
    # The watcher talks to one API node directly; no API node runs tasks, a worker node does.
    watched = topology.api["api-1"]
    wakes: list[tuple[float, str, int]] = []
    status = "pending"
    with httpx.Client(base_url=watched.url, headers=ADMIN, timeout=60) as http:
        deadline = time.monotonic() + 60
        while status not in ("success", "failure"):
            assert time.monotonic() < deadline, wakes
            began = time.monotonic()
            answer = http.get(f"/v2/images/{image_id}/tasks", params={"changes-since": since, "wait": "20"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["glimpse-tasks-changed"] == "true"  # woken, not timed out
            task = next(t for t in answer.json()["tasks"] if t["id"] == task_id)
            status, since = task["status"], task["updated_at"]
            staged = int((task.get("progress") or {}).get("staged_bytes") or 0)
            wakes.append((time.monotonic() - began, status, staged))
    assert status == "success", wakes
    assert all(after < 5 for after, _, _ in wakes), wakes  # each wake came within a few watch intervals
    downloading = [staged for _, status, staged in wakes if status == "processing" and staged > 0]
    assert len(downloading) >= 2, wakes  # progress heartbeats from the worker woke the watcher
    assert downloading == sorted(downloading)


def test_sigkilled_worker_running_a_copy_is_reaped_by_the_other(topology: Topology) -> None:
    data = payload(16 * MIB, seed=9)
    s3 = _s3_client(topology.objects)
    swift = _swift(topology.objects)
    victim: str | None = None
    with topology.http() as http:
        image_id = new_image_with_data(http, data)
        topology.relay.rate = 256 * 1024  # bytes/s per connection: the copy takes far longer than the test
        try:
            task_id = copy_image(http, image_id, ["s3", "swift"])
            deadline = time.monotonic() + 30
            while True:  # until S3 went multipart (more than 5 MiB handed over) and Swift got bytes
                task = http.get(f"/v2/images/{image_id}/tasks/{task_id}").json()
                stores = (task.get("progress") or {}).get("stores") or {}
                done = {s: int((stores.get(s) or {}).get("bytes_done") or 0) for s in ("s3", "swift")}
                if task["status"] == "processing" and done["s3"] > 5 * MIB and done["swift"] > 0:
                    break
                assert task["status"] in ("pending", "processing"), task
                assert time.monotonic() < deadline, f"the copy did not start moving bytes: {task}"
                time.sleep(0.1)
            time.sleep(0.5)  # CreateMultipartUpload is a small request: let it complete
            holder = claimed_by(topology, task_id)
            assert holder is not None
            pid = int(holder.split(":")[1])
            victim = next(node for node, process in topology.workers.items() if process.pid == pid)
            topology.workers[victim].send_signal(signal.SIGKILL)
            topology.workers[victim].wait(timeout=10)
            killed_at = time.monotonic()
        finally:
            topology.relay.rate = None
        try:
            task = wait_task(http, image_id, task_id, ("success", "failure"), within=4 * LEASE + 10)
            reaped_after = time.monotonic() - killed_at
            assert task["status"] == "failure"
            assert "The worker running this task stopped (lease expired at" in task["message"]
            # The lease lapses LEASE seconds after the last heartbeat; the other worker looks every 0.2 s.
            assert reaped_after < LEASE + 3, reaped_after
            image = http.get(f"/v2/images/{image_id}").json()
        finally:
            if victim is not None:
                topology.start_worker(victim)
    assert image["status"] == "active"
    assert image["stores"] == "file"
    assert "os_glance_import_task" not in image  # the lock is free
    assert image["os_glance_importing_to_stores"] == ""
    assert set(image["os_glance_failed_import"].split(",")) == {"s3", "swift"}
    assert image["checksum"] == hashlib.md5(data).hexdigest()  # noqa: S324 - Glance's checksum
    # No complete object of the image in either store ...
    objects = {item["Key"] for item in s3.list_objects_v2(Bucket=topology.bucket).get("Contents", [])}
    assert image_id not in objects
    assert image_id not in _container_names(swift, topology.container)
    # ... but what the killed process had in flight is left: its S3 multipart upload (the parts it
    # had sent) and any Swift segment whose PUT had completed (named "<image id>/<random>/<number>";
    # at this link speed usually none) ...
    uploads = s3.list_multipart_uploads(Bucket=topology.bucket).get("Uploads", [])
    assert [upload["Key"] for upload in uploads if upload["Key"] == image_id] == [image_id]
    segments = _container_names(swift, f"{topology.container}_segments")
    assert all(re.fullmatch(r"[0-9a-f-]{36}/[0-9a-f]{32}/\d{8}", name) for name in segments), segments
    # ... until the orphan sweep's pass over unfinished writes once the grace time is over (here:
    # the stores' sweep with a cut-off just ahead; nothing else writes to them now).
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    s3_store = make_store(topology.objects, topology.bucket, id="s3", create_bucket_on_put=False)
    swift_store = make_swift_store(topology.objects, topology.container, id="swift")
    removed = asyncio.run(s3_store.sweep_unfinished(cutoff))
    assert len([what for what in removed if f" of {image_id} " in what]) == 1, removed
    uploads = s3.list_multipart_uploads(Bucket=topology.bucket).get("Uploads", [])
    assert [upload for upload in uploads if upload["Key"] == image_id] == []
    unpublished = [name for name in segments if name.startswith(f"{image_id}/")]  # no manifest: failed
    swept = asyncio.run(swift_store.sweep_unfinished(cutoff))
    assert len([what for what in swept if f" of {image_id} " in what]) == (1 if unpublished else 0)
    left = set(_container_names(swift, f"{topology.container}_segments"))
    assert not any(name.startswith(f"{image_id}/") for name in left)
    # Every published large object keeps every segment its manifest lists (a set no manifest lists,
    # left by an earlier test's write, may go as well: that is what the sweep is for). The bucket is
    # the same container, so the S3 store's multipart objects are there too, as manifests of the
    # s3api's own segments container: those are not the Swift store's to sweep or check.
    ours = f"{topology.container}_segments"
    for name in _container_names(swift, topology.container):
        headers, manifest = swift.get_object(topology.container, name, query_string="multipart-manifest=get")
        if headers.get("x-static-large-object", "").lower() == "true":
            paths = [str(entry["name"]).lstrip("/").partition("/") for entry in json.loads(manifest)]
            listed = {segment for container, _, segment in paths if container == ours}
            assert listed <= left, (name, swept)
    # And the topology works again: the same copy now succeeds on the remaining workers.
    with topology.http() as http:
        again = copy_image(http, image_id, ["s3", "swift"])
        assert wait_task(http, image_id, again, ("success", "failure"))["status"] == "success"
