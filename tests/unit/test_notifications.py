"""Notification settings, payloads and the queue of the notifier (no broker: the broker tests are
tests/api/test_notifications_api.py and tests/integration/test_notifications_worker.py)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from glimpse.config import load_settings
from glimpse.domain.images import Image, ImageStatus, Visibility
from glimpse.domain.notifications import Event, import_payload, is_disabled, task_payload
from glimpse.domain.tasks import StoreProgress, StoreState, Task, TaskProgress, TaskStatus, TaskType
from glimpse.errors import ConfigError
from glimpse.notifier import NoopNotifier, QueuedNotifier, build_notifier, shown_url
from glimpse.ports import Outbox

NOW = datetime(2026, 12, 6, 5, 0, 0, tzinfo=UTC)


def settings(tmp_path: Path, **environ: str):  # type: ignore[no-untyped-def]
    return load_settings(environ={"GLIMPSE_DATA_DIR": str(tmp_path), **environ}).notifications


def test_notifications_are_off_unless_a_driver_is_set(tmp_path: Path) -> None:
    off = settings(tmp_path, GLIMPSE_TRANSPORT_URL="rabbit://u:p@h:5672/")
    assert off.driver == "noop"
    assert isinstance(build_notifier(off), NoopNotifier)
    noop = settings(tmp_path, GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER="noop")
    assert not noop.enabled


def test_glance_option_names_and_defaults(tmp_path: Path) -> None:
    on = settings(
        tmp_path,
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER="messagingv2",
        GLIMPSE_TRANSPORT_URL="rabbit://default:p@h:5672/",
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__TRANSPORT_URL="rabbit://section:p@h:5672/",
        GLIMPSE_DISABLED_NOTIFICATIONS="image.update, task",
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__RETRY="-1",
    )
    assert on.enabled
    assert on.transport_url == "rabbit://section:p@h:5672/"  # the section's option wins
    assert on.topics == ("notifications",)
    assert on.publisher_id == "image.localhost"
    assert on.disabled == ("image.update", "task")
    assert on.retry == 0  # "forever" would only fill the queue
    assert isinstance(build_notifier(on), QueuedNotifier)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER": "messagingv2"}, "needs a broker"),
        ({"GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER": "log"}, "use messagingv2"),
        (
            {
                "GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER": "messagingv2",
                "GLIMPSE_TRANSPORT_URL": "kafka://h/",
            },
            "use rabbit://",
        ),
    ],
)
def test_unusable_notification_settings_stop_the_start(
    tmp_path: Path, environ: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        settings(tmp_path, **environ)


def test_disabled_notifications_name_events_or_categories() -> None:
    assert is_disabled("image.update", ("image.update",))
    assert is_disabled("image.member.create", ("image.member",))
    assert is_disabled("task.success", ("task",))
    assert not is_disabled("image.upload", ("image.update", "task"))
    assert not is_disabled("image.member.create", ("image.member.update",))


def test_passwords_never_reach_the_log() -> None:
    assert shown_url("rabbit://glimpse:s3cret@mq:5672/vh") == "rabbit://glimpse:***@mq:5672/vh"
    assert shown_url("rabbit://mq:5672/") == "rabbit://mq:5672/"


def test_task_payload_adds_the_caller_and_each_store_outcome_but_never_the_input() -> None:
    progress = TaskProgress(
        stores={
            "fast": StoreProgress(state=StoreState.DONE, bytes_done=10, bytes_total=10),
            "cheap": StoreProgress(state=StoreState.COPYING, bytes_done=4, bytes_total=10),
        }
    )
    task = Task(
        id="t1",
        type=TaskType.API_IMAGE_IMPORT,
        status=TaskStatus.SUCCESS,
        owner="p",
        image_id="i1",
        request_id="req-1",
        user_id="u1",
        input={"import_req": {"method": {"uri": "https://user:secret@example.com/x"}}},
        created_at=NOW,
        updated_at=NOW,
        progress=progress,
    )
    payload = task_payload(task, failed={"cheap": "disk full"})
    assert "input" not in payload
    assert "secret" not in repr(payload)
    assert (payload["image_id"], payload["request_id"], payload["user_id"]) == ("i1", "req-1", "u1")
    assert payload["created_at"] == "2026-12-06T05:00:00Z"
    assert payload["stores"]["fast"] == {"state": "done", "bytes_done": 10, "bytes_total": 10, "error": None}
    assert payload["stores"]["cheap"]["state"] == "failed"
    assert payload["stores"]["cheap"]["error"] == "disk full"


def test_import_payload_lists_the_stores() -> None:
    image = Image(id="i1", owner="p", created_at=NOW, updated_at=NOW, status=ImageStatus.IMPORTING)
    image.visibility = Visibility.PUBLIC
    image.properties = {"os_glance_importing_to_stores": "fast,cheap", "os_glance_failed_import": ""}
    payload = import_payload(image)
    assert payload["os_glance_importing_to_stores"] == ["fast", "cheap"]
    assert payload["os_glance_failed_import"] == []
    assert payload["is_public"] is True


class _StuckSender:
    """A broker connection that hangs until released (a fault the broker tests cannot cause cheaply)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []

    def send(self, event: Event) -> None:
        self.release.wait(10)
        self.sent.append(event.event_type)

    def close(self) -> None:
        return None


def test_a_full_queue_drops_without_blocking_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="glimpse.notifier")
    sender = _StuckSender()
    notifier = QueuedNotifier(lambda: sender, queue_size=5, disabled=("image.update",))
    started = time.monotonic()
    for _ in range(50):
        notifier.notify(Event("image.create", {}))
        notifier.notify(Event("image.update", {}))  # disabled: not even queued
    assert time.monotonic() - started < 1.0
    sender.release.set()
    deadline = time.monotonic() + 10
    while notifier.stats().sent + notifier.stats().dropped < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    notifier.close()
    stats = notifier.stats()
    # Five queued (six if the thread had taken the first one off the queue before it filled up).
    assert stats.sent in (5, 6)
    assert stats.dropped == 50 - stats.sent
    assert sender.sent == ["image.create"] * stats.sent
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1


def test_only_wanted_events_reach_the_outbox() -> None:
    """A unit of work asks ``wants`` before it reads what a payload needs; events nobody will send
    (driver noop, disabled_notifications) are not even kept."""
    queued = QueuedNotifier(lambda: _StuckSender(), queue_size=5, disabled=("image.update", "task"))
    assert queued.wants("image.create")
    assert not queued.wants("image.update")
    assert not queued.wants("task.success")
    assert not NoopNotifier().wants("image.create")
    outbox = Outbox(queued.wants)
    for event_type in ("image.create", "image.update", "task.failure", "image.delete"):
        outbox.add(Event(event_type, {}))
    assert [e.event_type for e in outbox.events] == ["image.create", "image.delete"]
    silent = Outbox(NoopNotifier().wants)
    silent.add(Event("image.create", {}))
    assert silent.events == []
    queued.close()
    assert not queued.wants("image.create")


def test_close_stops_taking_events() -> None:
    sender = _StuckSender()
    sender.release.set()
    notifier = QueuedNotifier(lambda: sender, queue_size=5)
    notifier.notify(Event("image.create", {}))
    notifier.close()
    notifier.notify(Event("image.delete", {}))
    assert sender.sent == ["image.create"]


def test_a_transport_url_oslo_messaging_cannot_use_stops_the_start(tmp_path: Path) -> None:
    broken = settings(
        tmp_path,
        GLIMPSE_OSLO_MESSAGING_NOTIFICATIONS__DRIVER="messagingv2",
        GLIMPSE_TRANSPORT_URL="rabbit://glimpse:s3cret@mq:notaport/",
    )
    with pytest.raises(ConfigError, match="cannot be used") as caught:
        build_notifier(broken)
    assert "s3cret" not in str(caught.value)
