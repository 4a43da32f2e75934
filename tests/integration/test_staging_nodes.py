"""Staging across nodes: ``PUT /stage`` through node A, ``POST /import`` through node B.

Two layouts, each with two in-process nodes sharing one database (an SQLite file, or PostgreSQL)
and the target stores:

* each node has its own staging directory (``node_staging_uri``) and its own
  ``worker_self_reference_url``: the node that staged the data is recorded, and only its runners run
  the import; without node names the import is refused with a 409 that says what to set;
* staging on a shared object store (the S3 and the Swift API of the object store test server): no
  node is recorded and any runner runs the import.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_runner_support import (
    MIB,
    OWNER,
    ManualClock,
    create_image,
    image_of,
    payload,
    stage,
    start_import,
    task_of,
)

from glimpse.api.v2.views import image_view
from glimpse.db.task_repository import SqlTaskRepository
from glimpse.domain.images import STAGE_HOST_PROPERTY, ImageStatus
from glimpse.domain.tasks import TaskStatus
from glimpse.errors import Conflict
from glimpse.jobs.housekeeping import sweep_staging
from glimpse.services.image_data import ImageDataService
from glimpse.services.imports import FAILED_PROPERTY
from nodesupport import SHARED_STORES, Node, make_node, node_url, object_staging_environ
from objectsupport import ObjectServer

GLANCE_DIRECT = {"method": {"name": "glance-direct"}, "stores": list(SHARED_STORES)}
DATA = payload(3 * MIB + 11, seed=12)


def staged_keys(node: Node) -> list[str]:
    return [entry.key for entry in asyncio.run(node.runtime.stores.staging.objects())]


def shared_object(root: Path, store: str, image_id: str) -> bytes:
    return (root / "common" / store / image_id).read_bytes()


@pytest.fixture
def named_nodes(tmp_path: Path, migrated_database_url: str) -> Iterator[tuple[Node, Node]]:
    a = make_node(tmp_path, "a", migrated_database_url, url=node_url("a"))
    b = make_node(tmp_path, "b", migrated_database_url, url=node_url("b"))
    yield a, b
    a.close()
    b.close()


def test_data_staged_on_a_is_imported_by_a_runner_of_a_only(
    tmp_path: Path, named_nodes: tuple[Node, Node]
) -> None:
    a, b = named_nodes
    image_id = create_image(a.runtime)
    asyncio.run(stage(a.runtime, image_id, DATA))

    assert staged_keys(a) == [image_id]
    assert staged_keys(b) == []
    image = image_of(b.runtime, image_id)
    assert image.properties[STAGE_HOST_PROPERTY] == node_url("a")
    assert STAGE_HOST_PROPERTY not in image_view(image, b.runtime.settings)  # hidden, as in Glance

    task_id = asyncio.run(start_import(b.runtime, image_id, GLANCE_DIRECT))
    task = task_of(b.runtime, task_id)
    assert task.stage_host == node_url("a")
    assert node_url("a") in task.message
    assert "Waiting for a task runner" in task.message
    assert STAGE_HOST_PROPERTY not in image_of(b.runtime, image_id).properties  # the task holds it now

    # B's runners never claim it, however often they look.
    for _ in range(3):
        assert asyncio.run(b.run_pending()).finished == {}
    assert task_of(b.runtime, task_id).status == TaskStatus.PENDING
    # The claim itself refuses, in its conditional UPDATE, whatever a runner of B asks for.
    with b.runtime.uow() as session:
        lease = timedelta(seconds=30)
        assert not SqlTaskRepository(session).claim(
            task_id, "b-runner-9", b.runtime.clock(), lease, node=b.url
        )
        assert not SqlTaskRepository(session).claim(task_id, "b-runner-9", b.runtime.clock(), lease)
    assert task_of(b.runtime, task_id).status == TaskStatus.PENDING

    runner = asyncio.run(a.run_pending())

    assert runner.finished == {task_id: "success"}
    done = task_of(a.runtime, task_id)
    assert done.claimed_by == "a-runner-1"
    image = image_of(b.runtime, image_id)
    assert image.status == ImageStatus.ACTIVE
    assert image.checksum == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert [shared_object(tmp_path, store, image_id) == DATA for store in SHARED_STORES] == [True, True]
    assert staged_keys(a) == []


def test_a_task_waiting_for_a_stopped_node_says_so_and_fails_after_the_pending_lock_window(
    named_nodes: tuple[Node, Node],
) -> None:
    a, b = named_nodes
    clock = ManualClock()
    b.runtime.clock = clock
    image_id = create_image(a.runtime)
    asyncio.run(stage(a.runtime, image_id, DATA))
    task_id = asyncio.run(start_import(b.runtime, image_id, GLANCE_DIRECT))

    # Node A's runners are stopped: the task stays pending, and says which node it waits for.
    clock.advance(60 * 60)
    assert asyncio.run(b.run_pending()).finished == {}
    waiting = task_of(b.runtime, task_id)
    assert waiting.status == TaskStatus.PENDING
    assert f"Waiting for a task runner on node {node_url('a')}" in waiting.message

    # Past twice import_lock_stale_after (2 x 60 minutes) any runner gives up on it.
    clock.advance(60 * 60 + 1)
    assert asyncio.run(b.run_pending()).finished == {}

    failed = task_of(b.runtime, task_id)
    assert failed.status == TaskStatus.FAILURE
    assert f"No task runner of node {node_url('a')}" in failed.message
    assert "within 120 minutes" in failed.message
    image = image_of(b.runtime, image_id)
    assert (image.status, image.import_task_id, image.size) == (ImageStatus.QUEUED, None, None)
    assert image.properties[FAILED_PROPERTY] == ",".join(sorted(SHARED_STORES))
    # The data staged on A is now an orphan: A's staging sweep removes it.
    assert staged_keys(a) == [image_id]
    assert asyncio.run(sweep_staging(a.runtime)) == [image_id]
    assert staged_keys(a) == []


def test_data_staged_on_a_for_an_image_deleted_through_b_is_swept_by_a(
    named_nodes: tuple[Node, Node],
) -> None:
    a, b = named_nodes
    image_id = create_image(a.runtime)
    asyncio.run(stage(a.runtime, image_id, DATA))

    asyncio.run(ImageDataService(b.runtime).delete_image(OWNER, image_id))

    assert staged_keys(a) == [image_id]  # B cannot reach A's staging directory
    assert asyncio.run(sweep_staging(b.runtime)) == []
    assert asyncio.run(sweep_staging(a.runtime)) == [image_id]
    assert staged_keys(a) == []


def test_without_node_names_an_import_through_another_node_is_refused_with_what_to_set(
    tmp_path: Path, migrated_database_url: str
) -> None:
    a = make_node(tmp_path, "a", migrated_database_url)
    b = make_node(tmp_path, "b", migrated_database_url)
    try:
        image_id = create_image(a.runtime)
        asyncio.run(stage(a.runtime, image_id, DATA))
        assert STAGE_HOST_PROPERTY not in image_of(a.runtime, image_id).properties

        with pytest.raises(Conflict) as refused:
            asyncio.run(start_import(b.runtime, image_id, GLANCE_DIRECT))

        assert "worker_self_reference_url" in refused.value.message
        assert "send the import to the node that staged the data" in refused.value.message
        assert image_of(b.runtime, image_id).status == ImageStatus.UPLOADING  # nothing changed
        task_id = asyncio.run(start_import(a.runtime, image_id, GLANCE_DIRECT))
        assert task_of(a.runtime, task_id).stage_host is None
        assert asyncio.run(a.run_pending()).finished == {task_id: "success"}
        assert image_of(b.runtime, image_id).status == ImageStatus.ACTIVE
    finally:
        a.close()
        b.close()


@pytest.mark.objects
@pytest.mark.parametrize("kind", ["s3", "swift"])
def test_staging_on_an_object_store_lets_any_node_run_the_import(
    tmp_path: Path, migrated_database_url: str, s3_server: ObjectServer, kind: str
) -> None:
    staging = object_staging_environ(s3_server, kind)
    a = make_node(tmp_path, "a", migrated_database_url, url=node_url("a"), staging=staging)
    b = make_node(tmp_path, "b", migrated_database_url, url=node_url("b"), staging=staging)
    try:
        image_id = create_image(a.runtime)
        asyncio.run(stage(a.runtime, image_id, DATA))

        assert staged_keys(b) == [image_id]  # one staging area for every node
        assert STAGE_HOST_PROPERTY not in image_of(a.runtime, image_id).properties
        task_id = asyncio.run(start_import(b.runtime, image_id, GLANCE_DIRECT))
        assert task_of(b.runtime, task_id).stage_host is None

        assert asyncio.run(b.run_pending()).finished == {task_id: "success"}

        image = image_of(a.runtime, image_id)
        assert image.status == ImageStatus.ACTIVE
        assert image.checksum == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
        assert shared_object(tmp_path, "fast", image_id) == DATA
        assert staged_keys(a) == []  # the staged object was removed after the import
    finally:
        a.close()
        b.close()
