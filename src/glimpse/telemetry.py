"""Prometheus metrics of one node: what every process of the node counts, and the text ``GET /metrics``
answers.

A node runs several processes (``serve --workers N`` and ``glimpse-server worker``); each counts in its
own memory-mapped files under one directory (prometheus_client's multiprocess mode), and ``/metrics``
adds them up when it is scraped. :func:`prepare_directory` picks that directory before the first metric
exists; without it (tests, embedded use) the counters live in this process only.

Callers say what happened through :func:`metrics`; they never read the values back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: prometheus_client's own variable: the directory of the per-process files (set by an operator, or
#: by :func:`prepare_directory` from ``[metrics] multiproc_dir``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Request durations: from a cached GET (milliseconds) to a long upload (minutes).
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
#: Task durations: from a copy with nothing to do (a second) to a day-long import.
_TASK_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class Metrics:
    """Every metric of the service. ``registry`` is None in multiprocess mode, where the values are in
    files and :class:`MultiProcessCollector` reads them."""

    def __init__(self, registry: CollectorRegistry | None, directory: Path | None) -> None:
        self.registry = registry
        self.directory = directory
        self.requests = Counter(
            "glimpse_http_requests",
            "API requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "glimpse_http_request_duration_seconds",
            "Time from a request's first byte to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.tasks_created = Counter(
            "glimpse_tasks_created",
            "Tasks created, by type and import method.",
            ["type", "method"],
            registry=registry,
        )
        self.tasks_finished = Counter(
            "glimpse_tasks_finished",
            "Task runs ended by a runner of this node, by type, import method and outcome "
            "(success, failure, cancelled, requeued, lost, error, aborted).",
            ["type", "method", "outcome"],
            registry=registry,
        )
        self.task_seconds = Histogram(
            "glimpse_task_duration_seconds",
            "Time a runner of this node spent on one task run, by import method and outcome.",
            ["method", "outcome"],
            buckets=_TASK_BUCKETS,
            registry=registry,
        )
        self.task_stalls = Counter(
            "glimpse_task_stalls",
            "Task runs stopped because a step moved no byte for [task] task_stall_timeout seconds, "
            "by type and import method.",
            ["type", "method"],
            registry=registry,
        )
        self.bytes = Counter(
            "glimpse_image_bytes",
            "Image bytes moved, by store and direction: uploaded (PUT /file), staged (PUT /stage), "
            "downloaded (GET /file), fetched (web-download, into the staging store), imported and "
            "copied (by tasks, into the store, counted as they are handed to it).",
            ["store", "direction"],
            registry=registry,
        )
        self.lock_conflicts = Counter(
            "glimpse_import_lock_conflicts",
            "Requests refused with 409 because another task holds the image's import lock.",
            registry=registry,
        )
        self.lock_busts = Counter(
            "glimpse_import_lock_busts",
            "Import locks taken over from a task whose heartbeat had stopped.",
            registry=registry,
        )
        self.reaper_actions = Counter(
            "glimpse_reaper_actions",
            "Housekeeping actions: tasks requeued or failed after their runner stopped, stranded tasks "
            "failed, expired tasks removed, orphan objects, staged data and unfinished writes removed.",
            ["action"],
            registry=registry,
        )
        self.store_errors = Counter(
            "glimpse_store_errors",
            "Store operations that failed (the store could not be reached, refused, or lost data), by store.",
            ["store"],
            registry=registry,
        )
        self.notifications = Counter(
            "glimpse_notifications",
            "Notifications by outcome: sent to the broker, dropped (the queue was full) or failed "
            "(the broker could not be reached or refused them).",
            ["outcome"],
            registry=registry,
        )
        self.notification_outages = Counter(
            "glimpse_notification_outages",
            "Times the notification broker stopped answering (each outage counted once).",
            registry=registry,
        )
        self.watchers = Gauge(
            "glimpse_task_watchers",
            "Clients following an image's tasks (text/event-stream) right now.",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of this node (every process when in multiprocess mode), and its media type."""
        if self.directory is None:
            assert self.registry is not None
            return generate_latest(self.registry), MEDIA_TYPE
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        return generate_latest(registry), MEDIA_TYPE

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Count one connected watcher for the duration of the block."""
        self.watchers.inc()
        try:
            yield
        finally:
            self.watchers.dec()


#: The text format every Prometheus (and compatible scraper) reads; the names here are plain ASCII.
MEDIA_TYPE = CONTENT_TYPE_PLAIN_0_0_4

_current: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics, made on first use (in the directory :data:`MULTIPROC_ENV` names, if any)."""
    global _current
    if _current is None:
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            # prometheus_client picks its value class when it is first imported, which may have been
            # before the variable was set: pick the file-backed one now.
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()  # type: ignore[no-untyped-call]
            _current = Metrics(None, Path(directory))
        else:
            _current = Metrics(CollectorRegistry(), None)
    return _current


def prepare_directory(directory: Path) -> None:
    """Use ``directory`` for the per-process files of this node (unless :data:`MULTIPROC_ENV` is set
    already), and remove the files of processes that are gone: a node's counters start again from zero
    when the node does, as a single process's would. Call before the first metric is made; processes
    started from this one inherit the choice."""
    chosen = Path(os.environ.get(MULTIPROC_ENV) or directory)
    chosen.mkdir(parents=True, exist_ok=True)
    for path in chosen.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), str(chosen))  # type: ignore[no-untyped-call]
            path.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(chosen)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
