"""Notifications of the API's image work, received from a real RabbitMQ, and a broker that is down.

The app runs in process with ``[oslo_messaging_notifications] driver = messagingv2``; each test's
listener (oslo.messaging's own notification listener) has a topic of its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from apitools import OTHER, OWNER, PATCH, new_image, upload
from starlette.testclient import TestClient

from glimpse.notifier import QueuedNotifier
from glimpse.runtime import Runtime
from glimpse.telemetry import metrics
from livesupport import free_port
from rabbitsupport import Listener, listening

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def listener(rabbitmq_url: str) -> Iterator[Listener]:
    yield from listening(rabbitmq_url)


def notifying(make_client: Callable[..., TestClient], url: str, topic: str, **environ: str) -> TestClient:
    return make_client(
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER="messagingv2",
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__TRANSPORT_URL=url,
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__TOPICS=topic,
        **environ,
    )


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def test_image_create_update_upload_delete_are_announced(
    make_client: Callable[..., TestClient], rabbitmq_url: str, listener: Listener
) -> None:
    client = notifying(make_client, rabbitmq_url, listener.topic)
    request_id = "req-0123456789abcdef0123456789abcdef0123"
    created = client.post(
        "/v2/images",
        json={"name": "cirros", "disk_format": "raw", "container_format": "bare", "os_distro": "cirros"},
        headers={**OWNER, "X-Openstack-Request-Id": request_id},
    )
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    patched = client.patch(
        f"/v2/images/{image_id}",
        json=[{"op": "replace", "path": "/name", "value": "cirros-0.6"}],
        headers={**OWNER, **PATCH},
    )
    assert patched.status_code == 200, patched.text
    data = b"\x00" * 65536 + b"glimpse"
    upload(client, image_id, data)
    assert client.delete(f"/v2/images/{image_id}", headers=OWNER).status_code == 204

    (create,) = listener.wait_for("image.create")
    assert create.publisher_id == "image.localhost"
    assert create.priority == "INFO"
    assert create.payload["id"] == image_id
    assert create.payload["name"] == "cirros"
    assert create.payload["status"] == "queued"
    assert create.payload["owner"] == OWNER["X-Project-Id"]
    assert create.payload["properties"] == {"os_distro": "cirros"}
    assert create.payload["visibility"] == "shared"
    assert create.payload["is_public"] is False
    assert create.context["request_id"] == request_id
    assert create.context["user_id"] == OWNER["X-User-Id"]
    assert create.context["project_id"] == OWNER["X-Project-Id"]

    (update,) = listener.wait_for("image.update")
    assert update.payload["name"] == "cirros-0.6"

    (prepare,) = listener.wait_for("image.prepare")
    assert prepare.payload["status"] == "saving"
    (uploaded,) = listener.wait_for("image.upload")
    (activated,) = listener.wait_for("image.activate")
    for event in (uploaded, activated):
        assert event.payload["id"] == image_id
        assert event.payload["status"] == "active"
        assert event.payload["size"] == len(data)
        assert event.payload["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()

    (deleted,) = listener.wait_for("image.delete")
    assert deleted.payload["id"] == image_id
    assert deleted.payload["deleted"] is True
    assert deleted.payload["status"] == "deleted"
    assert deleted.payload["deleted_at"] is not None

    order = [r.event_type for r in listener.received if r.payload.get("id") == image_id]
    assert order == [
        "image.create",
        "image.update",
        "image.prepare",
        "image.upload",
        "image.activate",
        "image.delete",
    ]


def test_member_events_and_disabled_notifications(
    make_client: Callable[..., TestClient], rabbitmq_url: str, listener: Listener
) -> None:
    client = notifying(
        make_client, rabbitmq_url, listener.topic, GLIMPSE_DISABLED_NOTIFICATIONS="image.create,image.update"
    )
    image = new_image(client, visibility="shared")
    member = OTHER["X-Project-Id"]
    assert client.post(f"/v2/images/{image['id']}/members", json={"member": member}).status_code == 200
    accepted = client.put(
        f"/v2/images/{image['id']}/members/{member}", json={"status": "accepted"}, headers=OTHER
    )
    assert accepted.status_code == 200, accepted.text
    assert client.delete(f"/v2/images/{image['id']}/members/{member}").status_code == 204

    (created,) = listener.wait_for("image.member.create")
    assert created.payload["image_id"] == image["id"]
    assert created.payload["member_id"] == member
    assert created.payload["status"] == "pending"
    (updated,) = listener.wait_for("image.member.update")
    assert updated.payload["status"] == "accepted"
    assert updated.context["project_id"] == member
    (removed,) = listener.wait_for("image.member.delete")
    assert removed.payload["deleted"] is True
    # Disabled events are never sent, though the image was created.
    assert listener.of_type("image.create") == []


def test_a_broker_that_is_down_never_fails_or_slows_a_request(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on this port: every send is refused, as when the broker is down.
    client = notifying(make_client, f"rabbit://guest:guest@127.0.0.1:{free_port()}/", "down")
    notifier = runtime_of(client).notifier
    assert isinstance(notifier, QueuedNotifier)
    caplog.set_level(logging.WARNING, logger="glimpse.notifier")
    failed_before = metrics().notifications.labels("failed")._value.get()
    outages_before = metrics().notification_outages._value.get()

    started = time.monotonic()
    for n in range(20):
        image = new_image(client, name=f"img-{n}")
        upload(client, image["id"], b"x" * 1024)
    elapsed = time.monotonic() - started
    # 20 creates and 20 uploads (80 events) on SQLite: far below a second each even on a busy machine.
    assert elapsed < 20, elapsed

    deadline = time.monotonic() + 20
    while notifier.stats().failed < 80 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = notifier.stats()
    assert stats.failed == 80, stats
    assert stats.sent == 0, stats
    assert stats.outages == 1, stats
    # The same counts in GET /metrics.
    assert metrics().notifications.labels("failed")._value.get() - failed_before == 80
    assert metrics().notification_outages._value.get() - outages_before == 1
    down = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(down) == 1, [r.getMessage() for r in caplog.records]
    # The password never shows: the notifier writes "guest:***@", and the service's log filter,
    # when an earlier test in this process installed it, makes the whole user information "***@".
    message = down[0].getMessage()
    assert "***@127.0.0.1" in message
    assert ":guest@" not in message
