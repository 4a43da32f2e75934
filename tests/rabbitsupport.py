"""The RabbitMQ broker of the notification tests, and a listener that collects what arrives.

The broker is ``scripts/rabbitmq.sh``: started by the first test that needs ``rabbitmq_url`` (under a
file lock, so once per machine even under pytest-xdist) and stopped when the pytest run that started
it ends (``pytest_sessionfinish`` in ``conftest.py``). A broker that cannot be installed or started
makes those tests fail with the script's output.

:class:`Listener` is a real oslo.messaging notification listener (what a consumer such as Ceilometer
runs) on a topic of its own, so tests running at the same time never see each other's events.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RABBITMQ_SCRIPT = REPO_ROOT / "scripts" / "rabbitmq.sh"
#: Seconds the first start may take (it may install rabbitmq-server with apt-get).
RABBITMQ_START_TIMEOUT = 600
#: Written by the first test that uses the broker: the run that started it stops it at its end.
USED_MARK = REPO_ROOT / ".test-services" / "rabbitmq.used"


@dataclass(frozen=True)
class Received:
    """One notification as the listener got it."""

    publisher_id: str
    event_type: str
    payload: dict[str, Any]
    context: dict[str, Any]
    priority: str


class _Endpoint:
    def __init__(self, sink: Callable[[Received], None]) -> None:
        self._sink = sink

    def _take(self, priority: str, ctxt: Any, publisher_id: str, event_type: str, payload: Any) -> None:
        self._sink(Received(publisher_id, event_type, dict(payload), dict(ctxt), priority))

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take("INFO", ctxt, publisher_id, event_type, payload)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take("ERROR", ctxt, publisher_id, event_type, payload)


class Listener:
    """Collects the notifications sent to ``topic`` on the broker at ``url``."""

    def __init__(self, url: str, topic: str | None = None) -> None:
        self.topic = topic or f"glimpse-test-{uuid.uuid4().hex[:12]}"
        self.received: list[Received] = []
        self._cond = threading.Condition()
        # Imported here, not at the top: conftest.py imports this module, and oslo.messaging takes
        # seconds to import, which every pytest run would pay.
        import oslo_messaging
        from oslo_config import cfg

        conf = cfg.ConfigOpts()
        conf([], project="glimpse-tests", default_config_files=[], default_config_dirs=[])
        self._transport = oslo_messaging.get_notification_transport(conf, url=url)
        self._listener = oslo_messaging.get_notification_listener(
            self._transport,
            [oslo_messaging.Target(topic=self.topic)],
            [_Endpoint(self._add)],
            executor="threading",
        )

    def _add(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()
        self._listener.wait()
        self._transport.cleanup()

    def of_type(self, event_type: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.event_type == event_type]

    def wait_for(
        self, event_type: str, count: int = 1, timeout: float = 30.0, where: Callable[[Received], bool] = bool
    ) -> list[Received]:
        """The first ``count`` events of ``event_type`` (that ``where`` accepts), waiting up to
        ``timeout`` seconds; fails listing what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.received if r.event_type == event_type and where(r)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [r.event_type for r in self.received]
                    raise AssertionError(
                        f"expected {count} {event_type} notification(s) on {self.topic} within "
                        f"{timeout}s; received: {seen}"
                    )
                self._cond.wait(left)


def listening(url: str) -> Iterator[Listener]:
    listener = Listener(url)
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()
