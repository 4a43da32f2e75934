"""The SDK against a live ``glimpse-server serve`` on loopback; every test runs with ``Client`` and with
``AsyncClient`` (the ``connect`` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from bothclients import Connect

from glimpse_client import (
    AsyncClient,
    BadRequest,
    Client,
    ClientConfig,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    Task,
    TaskTimeout,
    TransportError,
)
from livesupport import Server, free_port
from tcprelay import TcpRelay

pytestmark = pytest.mark.live

PAYLOAD = os.urandom(300 * 1024)


def start(root: Path, name: str, **extra: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({"GLIMPSE_DATA_DIR": str(root / "data"), "GLIMPSE_LOG_LEVEL": "WARNING", **extra})
    live = Server(name=name, port=free_port(), log_path=root / "server.log")
    live.start(env)
    live.wait_ready()
    return live


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    live = start(tmp_path_factory.mktemp("sdk"), "sdk", GLIMPSE_TASK__TASK_PROGRESS_INTERVAL="0.1")
    yield live
    live.stop()


def config(live: Server, *roles: str) -> ClientConfig:
    return ClientConfig(live.url, project_id="p", user_id="u", roles=roles or ("member", "reader"))


@pytest.fixture
def client(server: Server, connect: Connect) -> Client:
    """A member of project p, as a ``Client`` or an ``AsyncClient`` (see bothclients.py)."""
    return connect(config(server))


def new_image(client: Client, **fields: object) -> str:
    return client.create_image(name="sdk", disk_format="raw", container_format="bare", **fields).id


def test_image_calls(client: Client, tmp_path: Path) -> None:
    image = client.create_image(name="basic", disk_format="raw", container_format="bare", flavour="x")
    assert image.status == "queued"
    assert image.properties["flavour"] == "x"
    assert client.get_image(image.id).name == "basic"

    updated = client.update_image(image.id, {"name": "renamed", "flavour": None, "colour": "blue"})
    assert updated.name == "renamed"
    assert "flavour" not in updated.properties
    assert updated.properties["colour"] == "blue"

    client.add_tag(image.id, "t1")
    client.add_tag(image.id, "t2")
    client.remove_tag(image.id, "t1")
    assert client.get_image(image.id).tags == ["t2"]

    member = client.add_member(image.id, "other")
    assert member.status == "pending"
    assert [m.member_id for m in client.list_members(image.id)] == ["other"]
    client.remove_member(image.id, "other")
    assert client.list_members(image.id) == []

    uploaded: list[tuple[int, int | None]] = []
    source = tmp_path / "source.raw"
    source.write_bytes(PAYLOAD)
    client.upload(image.id, source, on_progress=lambda done, total: uploaded.append((done, total)))
    assert uploaded[-1] == (len(PAYLOAD), len(PAYLOAD))
    active = client.get_image(image.id)
    assert active.status == "active"
    assert active.size == len(PAYLOAD)
    assert active.stores

    target = tmp_path / "out.raw"
    seen: list[int] = []
    client.download(image.id, target, on_progress=lambda done, total: seen.append(done))
    assert target.read_bytes() == PAYLOAD
    assert seen[-1] == len(PAYLOAD)

    target.write_bytes(PAYLOAD[:1000])
    resumed: list[int] = []
    size = client.download(image.id, target, on_progress=lambda done, total: resumed.append(done))
    assert size == len(PAYLOAD)
    assert target.read_bytes() == PAYLOAD
    assert resumed[0] > 1000
    assert client.download(image.id, target) == len(PAYLOAD)  # complete already: nothing to fetch
    assert target.read_bytes() == PAYLOAD

    client.deactivate_image(image.id)
    assert client.get_image(image.id).status == "deactivated"
    client.reactivate_image(image.id)
    assert client.get_image(image.id).status == "active"

    client.delete_image(image.id)
    with pytest.raises(NotFound) as caught:
        client.get_image(image.id)
    assert caught.value.status == 404
    assert caught.value.request_id


@pytest.mark.parametrize("store", ["cheap", "reliable"])
def test_upload_into_a_named_store(client: Client, store: str) -> None:
    image_id = new_image(client)
    client.upload(image_id, PAYLOAD, store=store)
    assert client.get_image(image_id).stores == [store]


def test_stage_and_upload_with_a_checksum(client: Client) -> None:
    """``checksum`` goes as ``Content-Digest``: the right one is accepted, another refused (400)
    with nothing kept, on PUT /stage and PUT /file alike."""
    right = f"sha256:{hashlib.sha256(PAYLOAD).hexdigest()}"
    wrong = f"sha512:{hashlib.sha512(b'other bytes').hexdigest()}"
    staged = new_image(client)
    with pytest.raises(BadRequest) as caught:
        client.stage(staged, PAYLOAD, checksum=wrong)
    assert f"has sha512 {hashlib.sha512(PAYLOAD).hexdigest()}" in str(caught.value)
    assert "Nothing was staged and the image is still queued." in str(caught.value)
    assert client.get_image(staged).status == "queued"
    client.stage(staged, PAYLOAD, checksum=right)
    assert client.get_image(staged).status == "uploading"

    uploaded = new_image(client)
    with pytest.raises(BadRequest, match="Nothing was stored"):
        client.upload(uploaded, PAYLOAD, checksum=wrong)
    client.upload(uploaded, PAYLOAD, checksum=right)
    assert client.get_image(uploaded).status == "active"
    with pytest.raises(ValueError, match="must be sha256:HEX or sha512:HEX"):
        client.stage(new_image(client), PAYLOAD, checksum=f"md5:{hashlib.md5(PAYLOAD).hexdigest()}")  # noqa: S324


def test_data_as_a_stream(client: Client) -> None:
    image_id = new_image(client)
    client.upload(image_id, PAYLOAD)
    seen: list[tuple[int, int | None]] = []
    chunks = list(client.iter_data(image_id, on_progress=lambda at, total: seen.append((at, total))))
    assert b"".join(chunks) == PAYLOAD
    assert len(chunks) > 1  # streamed in pieces, not read whole
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert b"".join(client.iter_data(image_id, offset=1000)) == PAYLOAD[1000:]
    assert b"".join(client.iter_data(image_id, offset=len(PAYLOAD) - 10)) == PAYLOAD[-10:]
    assert list(client.iter_data(image_id, offset=len(PAYLOAD))) == []


def test_list_pages_through_next_links(client: Client) -> None:
    tag = f"paged-{uuid.uuid4()}"
    ids = {new_image(client, tags=[tag]) for _ in range(5)}
    listed = [image.id for image in client.list_images(page_size=2, tag=tag)]
    assert sorted(listed) == sorted(ids)


def test_discovery(client: Client) -> None:
    assert {s["id"] for s in client.stores()} >= {"fast", "cheap", "reliable"}
    assert "glance-direct" in client.import_info()["import-methods"]["value"]


def test_glance_direct_import_then_admin_copy(client: Client, server: Server, connect: Connect) -> None:
    image_id = new_image(client)
    client.stage(image_id, iter([PAYLOAD[:1000], PAYLOAD[1000:]]))
    handle = client.import_image(image_id, "glance-direct", stores=["fast"])
    assert handle is not None
    assert handle.location == f"/v2/images/{image_id}/tasks/{handle.task_id}"
    assert handle.get().id == handle.task_id
    updates: list[Task] = []
    task = handle.wait(timeout=20, on_progress=updates.append)
    assert task.status == "success"
    assert task.request_id
    assert task.user_id == "u"
    assert updates
    assert updates[-1].status == "success"
    assert updates[-1].progress is not None
    assert client.get_image(image_id).stores == ["fast"]

    admin = connect(config(server, "admin"))
    copy = admin.copy_image(image_id, stores=["cheap"])
    assert copy is not None
    assert copy.wait(timeout=20).status == "success"
    assert sorted(admin.get_image(image_id).stores) == ["cheap", "fast"]
    assert admin.copy_image(image_id, all_stores=True) is not None
    tasks = client.image_tasks(image_id)
    assert [t.status for t in tasks][:2] == ["success", "success"]
    assert client.get_task(image_id, task.id).id == task.id
    # Once no import or copy is under way, waiting on the image returns it.
    assert sorted(client.wait_for_import(image_id, timeout=20).stores) == ["cheap", "fast", "reliable"]


def test_image_history_pages_newest_first(client: Client, server: Server, connect: Connect) -> None:
    image_id = new_image(client)
    client.upload(image_id, PAYLOAD)
    for _ in range(2):
        client.deactivate_image(image_id)
        client.reactivate_image(image_id)
    entries = list(client.image_history(image_id, page_size=2))
    assert [e.action for e in entries] == [
        "reactivate",
        "deactivate",
        "reactivate",
        "deactivate",
        "upload",
        "create",
    ]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    uploaded = entries[4]
    assert uploaded.bytes_moved == len(PAYLOAD)
    assert uploaded.stores == ["fast"]
    assert (uploaded.user_id, uploaded.project_id, uploaded.outcome) == ("u", "p", "success")
    assert [e.action for e in client.image_history(image_id, limit=1)] == ["reactivate"]
    stranger = connect(ClientConfig(server.url, project_id="q", user_id="v", roles=("member", "reader")))
    with pytest.raises(NotFound):
        list(stranger.image_history(image_id))


def test_watch_yields_until_the_tasks_are_done(client: Client) -> None:
    image_id = new_image(client)
    client.stage(image_id, PAYLOAD)
    handle = client.import_image(image_id, "glance-direct")
    assert handle is not None
    seen = list(client.watch_image_tasks(image_id, wait=10))
    assert seen[-1][0].id == handle.task_id
    assert seen[-1][0].status == "success"
    assert all(len(tasks) == 1 for tasks in seen)
    assert handle.wait(timeout=20).status == "success"
    assert client.get_image(image_id).status == "active"


def test_conflict_carries_the_lock(tmp_path: Path, connect: Connect) -> None:
    # Without a runner the import's task stays pending and keeps the lock.
    live = start(tmp_path, "no-runner", GLIMPSE_TASK__EMBEDDED_RUNNER="false")
    try:
        sdk = connect(config(live))
        image_id = new_image(sdk)
        sdk.stage(image_id, PAYLOAD)
        handle = sdk.import_image(image_id, "glance-direct")
        assert handle is not None
        with pytest.raises(Conflict) as caught:
            sdk.import_image(image_id, "glance-direct")
        assert caught.value.lock is not None
        assert caught.value.lock["task_id"] == handle.task_id
        assert caught.value.message.startswith("Image")
        with pytest.raises(TaskTimeout):
            handle.wait(timeout=1)
        assert sdk.get_task(image_id, handle.task_id).status == "pending"
    finally:
        live.stop()


def test_task_handle_cancels(tmp_path: Path, connect: Connect) -> None:
    # Without a runner the task stays pending, so the cancel ends it at once.
    live = start(tmp_path, "cancel", GLIMPSE_TASK__EMBEDDED_RUNNER="false")
    try:
        sdk = connect(config(live))
        image_id = new_image(sdk)
        sdk.stage(image_id, PAYLOAD)
        handle = sdk.import_image(image_id, "glance-direct")
        assert handle is not None
        task = handle.cancel()
        assert task.status == "failure"
        assert task.cancel_request is not None
        assert task.cancel_request["user_id"] == "u"
        assert task.message is not None
        assert task.message.startswith("Cancelled by user u of project p at ")
        assert "staged data kept" in task.message
        assert handle.cancel().message == task.message  # again: the same answer
        assert sdk.get_image(image_id).status == "uploading"

        # The staged data is still there: import again. Another project does not see the task (404),
        # a reader of the owner project sees it but may not cancel it (403).
        other = connect(ClientConfig(live.url, project_id="p", user_id="r", roles=("reader",)))
        again = sdk.import_image(image_id, "glance-direct")
        assert again is not None
        with pytest.raises(NotFound):
            connect(ClientConfig(live.url, project_id="q", user_id="v")).cancel_task(image_id, again.task_id)
        with pytest.raises(Forbidden) as refused:
            other.cancel_task(image_id, again.task_id)
        assert "cancel_image_task" in refused.value.message
        assert sdk.cancel_task(image_id, again.task_id).status == "failure"
    finally:
        live.stop()


def test_retry_failed_sends_stores_failed(client: Client) -> None:
    image_id = new_image(client)
    with pytest.raises(ValueError, match="retry_failed names the stores itself"):
        client.import_image(image_id, "web-download", uri="http://x/y", stores=["fast"], retry_failed=True)
    with pytest.raises(Conflict) as caught:
        client.import_image(image_id, "web-download", uri="http://127.0.0.1/y", retry_failed=True)
    assert caught.value.message.startswith(f"Image {image_id} has no failed stores to retry")


def test_a_member_accepts_a_shared_image(client: Client, server: Server, connect: Connect) -> None:
    image_id = new_image(client, visibility="shared")
    assert client.add_member(image_id, "p2").status == "pending"
    # A client acting as project p2 sends the member roles with its identity headers by default.
    member = connect(ClientConfig(server.url, project_id="p2"))
    assert image_id not in {image.id for image in member.list_images()}
    accepted = member.update_member(image_id, "p2", "accepted")
    assert (accepted.member_id, accepted.status) == ("p2", "accepted")
    assert image_id in {image.id for image in member.list_images()}
    assert [m.status for m in member.list_members(image_id)] == ["accepted"]
    assert [(m.member_id, m.status) for m in client.list_members(image_id)] == [("p2", "accepted")]
    # Without any role the server hides the image from the member, as Glance does.
    roleless = connect(ClientConfig(server.url, project_id="p2", roles=()))
    with pytest.raises(NotFound):
        roleless.update_member(image_id, "p2", "rejected")


def test_each_client_closes_at_the_end_of_its_block(server: Server) -> None:
    with Client(config(server)) as sdk:
        assert sdk.stores()
    with pytest.raises(RuntimeError, match="closed"):
        sdk.stores()

    async def use() -> None:
        async with AsyncClient(config(server)) as sdk:
            assert await sdk.stores()
        with pytest.raises(RuntimeError, match="closed"):
            await sdk.stores()

    asyncio.run(use())


def test_identity_headers() -> None:
    assert "X-Roles" not in ClientConfig("http://x").headers()
    assert ClientConfig("http://x", project_id="p").headers()["X-Roles"] == "member,reader"
    assert ClientConfig("http://x", user_id="u", roles=("admin",)).headers()["X-Roles"] == "admin"
    assert "X-Roles" not in ClientConfig("http://x", project_id="p", roles=()).headers()


def test_a_server_that_ignores_range_still_gives_the_asked_part(tmp_path: Path, connect: Connect) -> None:
    # Glimpse honours Range; a server (or proxy) that sends the whole body instead is simulated.
    def whole_body(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=1000-"
        return httpx.Response(200, content=PAYLOAD)

    sdk = connect(ClientConfig("http://image.invalid"), transport=httpx.MockTransport(whole_body))
    assert b"".join(sdk.iter_data("some-id", offset=1000)) == PAYLOAD[1000:]
    target = tmp_path / "partial.raw"
    target.write_bytes(b"x" * 1000)
    assert sdk.download("some-id", target) == len(PAYLOAD)
    assert target.read_bytes() == PAYLOAD  # started over, not appended


# -- safe retries: Idempotency-Key ---------------------------------------------------------------


def through(relay: TcpRelay, live: Server, **settings: Any) -> ClientConfig:
    """The member of project p, reaching the server through ``relay``."""
    return replace(config(live), endpoint=f"http://127.0.0.1:{relay.port}", retry_backoff=0.05, **settings)


@pytest.fixture
def relay(server: Server) -> Iterator[TcpRelay]:
    url = httpx.URL(server.url)
    with TcpRelay(url.host, url.port or 80) as running:
        yield running


def test_an_import_retried_after_a_dropped_connection_starts_one_task(
    client: Client, server: Server, connect: Connect, relay: TcpRelay
) -> None:
    image_id = new_image(client)
    client.stage(image_id, PAYLOAD)
    sdk = connect(through(relay, server))
    relay.drop_replies(1)
    handle = sdk.import_image(image_id, "glance-direct")
    assert relay.dropped == 1  # the first answer never reached the SDK; the retry got it again
    assert handle is not None
    assert handle.wait(timeout=20).status == "success"
    assert [t.id for t in client.image_tasks(image_id)] == [handle.task_id]
    assert client.get_image(image_id).status == "active"


def test_an_image_create_retried_after_a_dropped_connection_makes_one_image(
    client: Client, server: Server, connect: Connect, relay: TcpRelay
) -> None:
    name = f"retried-{uuid.uuid4()}"
    sdk = connect(through(relay, server))
    relay.drop_replies(1)
    image = sdk.create_image(name=name, disk_format="raw", container_format="bare")
    assert relay.dropped == 1
    assert [i.id for i in client.list_images(name=name)] == [image.id]


def test_retries_are_bounded_and_still_start_one_task(
    client: Client, server: Server, connect: Connect, relay: TcpRelay
) -> None:
    image_id = new_image(client)
    client.stage(image_id, PAYLOAD)
    sdk = connect(through(relay, server, retries=2))
    relay.drop_replies(10)
    with pytest.raises(TransportError):
        sdk.import_image(image_id, "glance-direct")
    assert relay.dropped == 3  # the request and its two retries
    relay.drop_replies(0)
    tasks = client.image_tasks(image_id)
    assert len(tasks) == 1


def test_one_key_for_two_different_imports_is_422(client: Client) -> None:
    image_id = new_image(client)
    key = str(uuid.uuid4())
    web = "https://images.example.com/first.raw"
    handle = client.import_image(image_id, "web-download", uri=web, idempotency_key=key)
    assert handle is not None
    again = client.import_image(image_id, "web-download", uri=web, idempotency_key=key)
    assert again is not None
    assert again.task_id == handle.task_id
    with pytest.raises(ClientError) as caught:
        client.import_image(image_id, "web-download", uri=web.replace("first", "second"), idempotency_key=key)
    assert caught.value.status == 422
    assert "already used for another request" in caught.value.message


def test_a_deadline_is_sent_with_the_import(client: Client) -> None:
    image_id = new_image(client)
    client.stage(image_id, PAYLOAD)
    handle = client.import_image(image_id, "glance-direct", deadline=900)
    assert handle is not None
    task = handle.wait(timeout=30)
    assert task.status == "success", task.message
    assert (task.input or {})["import_req"]["deadline"] == 900
    assert (task.eta_seconds, task.stalled_since) == (None, None)  # ended: nothing left to wait for
    for wrong in (0, -3, True):
        with pytest.raises(ValueError, match="deadline must be a whole number of seconds above 0"):
            client.import_image(image_id, "copy-image", deadline=wrong)  # type: ignore[arg-type]
