"""Notifications: the events Glimpse announces and their payloads, in Glance's shapes. Pure.

An :class:`Event` is what a service or the task runner decides to announce; the notifier of the
process (``glimpse.notifier``) wraps it in the oslo.messaging envelope and sends it, off the request
path. Payloads follow Glance's: the image fields of an ``image.*`` event, the member fields of an
``image.member.*`` event, the task fields of a ``task.*`` event. Task payloads add what Glance's
lack: ``image_id``, ``request_id``, ``user_id`` and each target store's outcome (``stores``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glimpse.domain.images import Image, Visibility
from glimpse.domain.members import ImageMember
from glimpse.domain.tasks import Task

IMAGE_CREATE = "image.create"
IMAGE_UPDATE = "image.update"
IMAGE_DELETE = "image.delete"
IMAGE_PREPARE = "image.prepare"
IMAGE_UPLOAD = "image.upload"
IMAGE_ACTIVATE = "image.activate"
MEMBER_CREATE = "image.member.create"
MEMBER_UPDATE = "image.member.update"
MEMBER_DELETE = "image.member.delete"
TASK_CREATE = "task.create"
TASK_PROCESSING = "task.processing"
TASK_SUCCESS = "task.success"
TASK_FAILURE = "task.failure"

EVENT_TYPES = (
    IMAGE_CREATE,
    IMAGE_UPDATE,
    IMAGE_DELETE,
    IMAGE_PREPARE,
    IMAGE_UPLOAD,
    IMAGE_ACTIVATE,
    MEMBER_CREATE,
    MEMBER_UPDATE,
    MEMBER_DELETE,
    TASK_CREATE,
    TASK_PROCESSING,
    TASK_SUCCESS,
    TASK_FAILURE,
)

#: The image properties that list where an import is going and where it failed.
IMPORTING_TO_STORES = "os_glance_importing_to_stores"
FAILED_IMPORT = "os_glance_failed_import"


@dataclass(frozen=True, slots=True)
class Event:
    """One notification: its type, payload, priority and the context of whoever caused it."""

    event_type: str
    payload: Mapping[str, Any]
    #: ``RequestContext.to_dict()`` of the caller (the task's caller for the runner's events).
    context: Mapping[str, Any] = field(default_factory=dict)
    priority: str = "INFO"


def is_disabled(event_type: str, disabled: Collection[str]) -> bool:
    """Glance's ``disabled_notifications``: an entry names one event (``image.create``) or every
    event of a category (``image``, ``task``, ``image.member``)."""
    return any(event_type == entry or event_type.startswith(entry + ".") for entry in disabled)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stores(value: str | None) -> list[str]:
    return [s for s in (value or "").split(",") if s]


def image_payload(
    image: Image, *, deleted: bool = False, deleted_at: datetime | None = None
) -> dict[str, Any]:
    """The image as Glance's notifications show it (custom properties under ``properties``)."""
    properties = dict(image.properties)
    return {
        "id": image.id,
        "name": image.name,
        "status": str(image.status),
        "created_at": _time(image.created_at),
        "updated_at": _time(image.updated_at),
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "protected": image.protected,
        "checksum": image.checksum,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "owner": image.owner,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "is_public": image.visibility == Visibility.PUBLIC,
        "visibility": str(image.visibility),
        "os_hidden": image.os_hidden,
        "properties": properties,
        "tags": list(image.tags),
        "deleted": deleted,
        "deleted_at": _time(image.updated_at) if deleted else None,
    }


def import_payload(image: Image) -> dict[str, Any]:
    """An image event of an import (``image.prepare``/``upload``/``activate``): the image plus the
    stores still to be written and the stores that failed, as lists."""
    payload = image_payload(image)
    payload[IMPORTING_TO_STORES] = _stores(image.properties.get(IMPORTING_TO_STORES))
    payload[FAILED_IMPORT] = _stores(image.properties.get(FAILED_IMPORT))
    return payload


def member_payload(member: ImageMember, *, deleted: bool = False) -> dict[str, Any]:
    return {
        "image_id": member.image_id,
        "member_id": member.member_id,
        "status": str(member.status),
        "created_at": _time(member.created_at),
        "updated_at": _time(member.updated_at),
        "deleted": deleted,
        "deleted_at": None,
    }


def store_outcomes(task: Task, failed: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each target store of ``task``: its state, bytes written and, when it failed, why."""
    outcomes: dict[str, dict[str, Any]] = {}
    for store_id, progress in task.progress.stores.items():
        outcomes[store_id] = {
            "state": str(progress.state),
            "bytes_done": progress.bytes_done,
            "bytes_total": progress.bytes_total,
            "error": progress.error,
        }
    for store_id, reason in (failed or {}).items():
        entry = outcomes.setdefault(store_id, {"bytes_done": 0, "bytes_total": None})
        entry["state"] = "failed"
        entry["error"] = reason
    return outcomes


def task_payload(task: Task, failed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The task as Glance's notifications show it (never its input), plus ``image_id``,
    ``request_id``, ``user_id`` and ``stores`` (each target store's outcome so far)."""
    return {
        "id": task.id,
        "type": str(task.type),
        "status": str(task.status),
        "result": task.result,
        "owner": task.owner,
        "message": task.message,
        "expires_at": _time(task.expires_at),
        "created_at": _time(task.created_at),
        "updated_at": _time(task.updated_at),
        "deleted": task.deleted,
        "deleted_at": _time(task.deleted_at),
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "stores": store_outcomes(task, failed),
    }


def task_event(event_type: str, task: Task, failed: Mapping[str, str] | None = None) -> Event:
    """A task event sent on behalf of the request that started the task (by the reaper, or by an
    import that broke the task's stale lock): the context is the task's caller."""
    context = {"request_id": task.request_id, "user_id": task.user_id, "project_id": task.owner}
    return Event(event_type, task_payload(task, failed), context)
