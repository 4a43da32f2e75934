"""Several Glimpse nodes in one test: each with its own data directory, staging area and identity
(``worker_self_reference_url``), all sharing one database and the target stores.

A node is described by its environment (:func:`node_environ`), so the same description serves an
in-process :class:`Node` (a :class:`~glimpse.runtime.Runtime` and its task runners) and a
``glimpse-server serve`` or ``worker`` subprocess started with that environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from glimpse.config import load_settings
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime
from livesupport import Server, start_server
from objectsupport import ObjectServer

#: The target stores every node shares (file stores in one directory tree, as an NFS mount would be).
SHARED_STORES = ("fast", "cheap")
#: Small numbers so that tasks are picked up and progress is written at once.
FAST_TASK_ENVIRON: Mapping[str, str] = {
    "GLIMPSE_TASK__TASK_LEASE_TIME": "2",
    "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
    "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.1",
}


def node_url(name: str) -> str:
    """A node's ``worker_self_reference_url`` (tests never connect to it unless they serve it)."""
    return f"http://{name}.nodes.test:9292"


def node_environ(
    root: Path,
    name: str,
    database_url: str,
    *,
    url: str | None,
    staging: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of node ``name``: data (and, by default, staging) under ``root/<name>``, the
    target stores under ``root/common``, the database given, ``worker_self_reference_url`` = ``url``
    (None: the node has no identity). ``staging`` adds ``[os_glance_staging_store]`` variables."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")},
        "GLIMPSE_DATA_DIR": str(root / name / "data"),
        "GLIMPSE_DATABASE__CONNECTION": database_url,
        "GLIMPSE_ENABLED_BACKENDS": ",".join(f"{store}:file" for store in SHARED_STORES),
        **FAST_TASK_ENVIRON,
        **(staging or {}),
        **(extra or {}),
    }
    for store in SHARED_STORES:
        env[f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_DATADIR"] = str(root / "common" / store)
        env[f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_FSYNC"] = "false"
    if url is not None:
        env["GLIMPSE_WORKER_SELF_REFERENCE_URL"] = url
    return env


@contextmanager
def live_nodes(
    root: Path, database_url: str, label: str, extra: Mapping[str, str], names: tuple[str, ...] = ("a", "b")
) -> Iterator[list[Server]]:
    """Live ``glimpse-server serve`` nodes sharing one database and the stores under ``root``
    (:func:`node_environ` plus ``extra``), started one after the other (each start checks the
    database's migrations) and stopped, last first, at the end."""
    started: list[Server] = []
    try:
        for name in names:
            env = node_environ(root, name, database_url, url=None, extra=extra)
            started.append(start_server(f"{label}-{name}", env, root))
        yield started
    finally:
        for node in reversed(started):
            node.stop()


def object_staging_environ(server: ObjectServer, kind: str, container: str | None = None) -> dict[str, str]:
    """``[os_glance_staging_store]`` on the object store test server: ``kind`` is ``s3`` or ``swift``;
    the bucket or container (a fresh name by default) is created on the first write."""
    prefix = "GLIMPSE_OS_GLANCE_STAGING_STORE__"
    name = container or f"glimpse-staging-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        options = {
            "S3_STORE_HOST": server.s3_endpoint_url,
            "S3_STORE_ACCESS_KEY": server.s3_access_key,
            "S3_STORE_SECRET_KEY": server.s3_secret_key,
            "S3_STORE_BUCKET": name,
            "S3_STORE_REGION_NAME": server.s3_region,
            "S3_STORE_BUCKET_URL_FORMAT": "path",
            "S3_STORE_CREATE_BUCKET_ON_PUT": "true",
        }
    elif kind == "swift":
        options = {
            "SWIFT_STORE_AUTH_ADDRESS": server.swift_auth_url,
            "SWIFT_STORE_USER": server.swift_user,
            "SWIFT_STORE_KEY": server.swift_key,
            "SWIFT_STORE_CONTAINER": name,
            "SWIFT_STORE_CREATE_CONTAINER_ON_PUT": "true",
        }
    else:
        raise ValueError(f"unknown object store kind {kind!r}")
    return {f"{prefix}TYPE": kind, **{prefix + key: value for key, value in options.items()}}


@dataclass
class Node:
    """One node, in process: its runtime (API services and runners use it) and its environment."""

    name: str
    environ: dict[str, str]
    runtime: Runtime

    @property
    def url(self) -> str | None:
        return self.runtime.settings.worker_self_reference_url

    def runner(self, number: int = 1) -> TaskRunner:
        return TaskRunner(self.runtime, f"{self.name}-runner-{number}")

    async def run_pending(self) -> TaskRunner:
        """One pass of a runner of this node (claims what this node may run), to the tasks' end."""
        runner = self.runner()
        await runner.run_once()
        await runner.wait_idle()
        return runner

    def close(self) -> None:
        self.runtime.close()


def make_node(
    root: Path,
    name: str,
    database_url: str,
    *,
    url: str | None = None,
    staging: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Node:
    environ = node_environ(root, name, database_url, url=url, staging=staging, extra=extra)
    return Node(name, environ, Runtime.build(load_settings(environ=environ)))
