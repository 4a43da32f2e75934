"""The notifier of a process: events queued in memory and sent to RabbitMQ by a thread of their own.

``[oslo_messaging_notifications] driver = messagingv2`` makes :func:`build_notifier` return a
:class:`QueuedNotifier` around an :class:`OsloSender`; ``noop`` (the default) a :class:`NoopNotifier`.

Sending never slows or fails the code that announces an event: :meth:`QueuedNotifier.notify` puts
the event into a bounded queue and returns; one daemon thread per process (started on the first
event, so after a fork) takes events off the queue and sends them; oslo.messaging is imported and
its transport built when the notifier is built, at start-up. A full queue drops the event; a
broker that does not answer fails the send and the event is dropped too. Both are counted
(:meth:`QueuedNotifier.stats`) and logged once per spell: one line when the broker stops answering
and one when it answers again, not one per event.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from glimpse.config import NotificationSettings
from glimpse.domain.notifications import Event, is_disabled
from glimpse.errors import ConfigError
from glimpse.telemetry import metrics

__all__ = ["NoopNotifier", "NotifierStats", "OsloSender", "QueuedNotifier", "build_notifier", "shown_url"]

log = logging.getLogger(__name__)

#: Seconds :meth:`QueuedNotifier.close` waits for the queued events to go out.
CLOSE_TIMEOUT = 2.0


def shown_url(url: str | None) -> str:
    """``url`` without its password, for log lines."""
    if not url:
        return "-"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True, slots=True)
class NotifierStats:
    """What a notifier did since the process started."""

    #: Events handed to the broker.
    sent: int = 0
    #: Events dropped because the queue was full.
    dropped: int = 0
    #: Events dropped because the broker could not be reached or refused them.
    failed: int = 0
    #: Times the broker stopped answering (each outage counted once).
    outages: int = 0
    #: Events waiting in the queue now.
    queued: int = 0


class Sender(Protocol):
    """Sends one event, blocking, raising when it could not be sent."""

    def send(self, event: Event) -> None: ...

    def close(self) -> None: ...


class NoopNotifier:
    """``driver = noop``: every event is discarded."""

    def notify(self, event: Event) -> None:
        return None

    def wants(self, event_type: str) -> bool:
        return False

    def stats(self) -> NotifierStats:
        return NotifierStats()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        return None


class OsloSender:
    """Sends events with oslo.messaging, in its 2.0 envelope, to ``<topic>.<priority>`` of each topic.

    The transport's own send is called rather than oslo.messaging's ``Notifier``, which logs every
    failed send with its payload and swallows the error: here the error is what tells the queue's
    thread that the broker is down, and the outage is logged once.
    """

    def __init__(self, settings: NotificationSettings) -> None:
        # oslo.messaging's RabbitMQ connections import eventlet (through oslo.service and oslo.utils),
        # which warns on import that it is deprecated; nothing here uses eventlet.
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)
        import oslo_messaging
        from oslo_config import cfg

        conf = cfg.ConfigOpts()
        conf([], project="glimpse", default_config_files=[], default_config_dirs=[])
        self._messaging: Any = oslo_messaging
        self._transport: Any = oslo_messaging.get_notification_transport(conf, url=settings.transport_url)
        self._topics = settings.topics
        self._publisher_id = settings.publisher_id
        self._retry = settings.retry

    def send(self, event: Event) -> None:
        priority = event.priority.lower()
        message = {
            "message_id": str(uuid.uuid4()),
            "publisher_id": self._publisher_id,
            "event_type": event.event_type,
            "priority": event.priority.upper(),
            "payload": dict(event.payload),
            "timestamp": datetime.now(UTC).replace(tzinfo=None).isoformat(" "),
        }
        for topic in self._topics:
            target = self._messaging.Target(topic=f"{topic}.{priority}")
            self._transport._send_notification(
                target, dict(event.context), message, version=2.0, retry=self._retry
            )

    def close(self) -> None:
        self._transport.cleanup()


_STOP = object()


class QueuedNotifier:
    """Queues events and sends them from one daemon thread (see the module's docstring)."""

    def __init__(
        self,
        make_sender: Callable[[], Sender],
        *,
        queue_size: int,
        disabled: tuple[str, ...] = (),
        destination: str = "-",
    ) -> None:
        self._make_sender = make_sender
        self._disabled = disabled
        self._destination = destination
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sender: Sender | None = None
        self._closed = False
        self._down = False
        self._full = False
        self._counts = {"sent": 0, "dropped": 0, "failed": 0, "outages": 0}

    # -- the caller's side: never blocks, never raises ------------------------------------------------

    def wants(self, event_type: str) -> bool:
        return not self._closed and not is_disabled(event_type, self._disabled)

    def notify(self, event: Event) -> None:
        if not self.wants(event.event_type):
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            metrics().notifications.labels("dropped").inc()
            with self._lock:
                self._counts["dropped"] += 1
                first = not self._full
                self._full = True
            if first:
                log.warning(
                    "notifications: the queue of %d events is full (the broker at %s is slower than "
                    "the events come); events are dropped and counted until it drains",
                    self._queue.maxsize,
                    self._destination,
                )
            return
        if self._full and self._queue.qsize() < self._queue.maxsize // 2:
            with self._lock:
                self._full = False

    def stats(self) -> NotifierStats:
        with self._lock:
            return NotifierStats(queued=self._queue.qsize(), **self._counts)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop taking events; give the queued ones up to ``timeout`` seconds to go out."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=timeout)
            thread.join(timeout)
        if self._sender is not None and (thread is None or not thread.is_alive()):
            with contextlib.suppress(Exception):
                self._sender.close()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="glimpse-notifier", daemon=True)
                self._thread.start()

    # -- the sender thread ----------------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Event)
            try:
                if self._sender is None:
                    self._sender = self._make_sender()
                self._sender.send(item)
            except Exception as exc:
                self._failed(exc)
            else:
                self._succeeded()

    def _failed(self, exc: Exception) -> None:
        metrics().notifications.labels("failed").inc()
        with self._lock:
            self._counts["failed"] += 1
            first = not self._down
            if first:
                self._down = True
                self._counts["outages"] += 1
        if first:
            metrics().notification_outages.inc()
            log.warning(
                "notifications: the broker at %s cannot be reached (%s: %s); events are dropped and "
                "counted until it answers again",
                self._destination,
                type(exc).__name__,
                exc,
            )

    def _succeeded(self) -> None:
        metrics().notifications.labels("sent").inc()
        with self._lock:
            self._counts["sent"] += 1
            back = self._down
            self._down = False
            failed = self._counts["failed"]
        if back:
            log.warning(
                "notifications: the broker at %s answers again (%d events dropped so far)",
                self._destination,
                failed,
            )


def build_notifier(settings: NotificationSettings) -> QueuedNotifier | NoopNotifier:
    """The notifier ``settings`` describe. oslo.messaging is imported and its transport built here,
    at start-up (seconds of imports that would otherwise hold the interpreter while the first
    requests are served); no connection is made until the first event."""
    if not settings.enabled:
        return NoopNotifier()
    try:
        sender = OsloSender(settings)
    except Exception as exc:
        raise ConfigError(
            f"[oslo_messaging_notifications] transport_url {shown_url(settings.transport_url)} cannot be "
            f"used ({type(exc).__name__}: {exc}); write it as rabbit://user:password@host:5672/."
        ) from None
    return QueuedNotifier(
        lambda: sender,
        queue_size=settings.queue_size,
        disabled=settings.disabled,
        destination=shown_url(settings.transport_url),
    )
