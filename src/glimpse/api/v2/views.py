"""Domain objects → Glance wire format (key names, datetime format, links)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from glimpse.config import Settings
from glimpse.domain.history import HistoryEntry
from glimpse.domain.images import HIDDEN_PROPERTIES, Image, in_store_order
from glimpse.domain.members import ImageMember
from glimpse.domain.tasks import Task


def isotime(value: datetime | None) -> str | None:
    """Glance's image/member timestamp format: seconds precision, UTC, trailing Z. Formatted field by
    field: half the cost of ``strftime`` (and of ``isoformat``, which formats the UTC offset only to
    drop it); a page of images formats forty of these."""
    if value is None:
        return None
    # %-formatting: an f-string with the same fields takes twice as long.
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
    )


def image_view(image: Image, settings: Settings) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in image.properties.items() if k not in HIDDEN_PROPERTIES}
    if image.import_task_id is not None:
        body["os_glance_import_task"] = image.import_task_id
    body.update(
        {
            "name": image.name,
            "disk_format": image.disk_format,
            "container_format": image.container_format,
            "visibility": str(image.visibility),
            "size": image.size,
            "virtual_size": image.virtual_size,
            "status": str(image.status),
            "checksum": image.checksum,
            "protected": image.protected,
            "min_ram": image.min_ram,
            "min_disk": image.min_disk,
            "owner": image.owner,
            "os_hidden": image.os_hidden,
            "os_hash_algo": image.os_hash_algo,
            "os_hash_value": image.os_hash_value,
            "id": image.id,
            "created_at": isotime(image.created_at),
            "updated_at": isotime(image.updated_at),
            "tags": list(image.tags),
            "self": f"/v2/images/{image.id}",
            "file": f"/v2/images/{image.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    if image.locations:
        locations = in_store_order(image.locations, [store.id for store in settings.stores])
        body["stores"] = ",".join(dict.fromkeys(location.store_id for location in locations))
        if settings.show_image_direct_url:
            body["direct_url"] = locations[0].url
    return body


def member_view(member: ImageMember) -> dict[str, Any]:
    return {
        "created_at": isotime(member.created_at),
        "image_id": member.image_id,
        "member_id": member.member_id,
        "schema": "/v2/schemas/member",
        "status": str(member.status),
        "updated_at": isotime(member.updated_at),
    }


def _task_time(value: datetime | None) -> str | None:
    """The image-tasks format Glance emits: microseconds, no zone suffix."""
    return None if value is None else value.isoformat(timespec="microseconds")[:26]


def history_entry_view(entry: HistoryEntry) -> dict[str, Any]:
    """One element of ``GET /v2/images/{id}/history`` (a Glimpse addition)."""
    return {
        "id": entry.id,
        "image_id": entry.image_id,
        "created_at": entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": str(entry.action),
        "outcome": str(entry.outcome),
        "user_id": entry.user_id,
        "project_id": entry.project_id,
        "request_id": entry.request_id,
        "task_id": entry.task_id,
        "stores": list(entry.stores),
        "bytes_moved": entry.bytes_moved,
        "status": entry.status,
        "message": entry.message,
    }


def image_task_view(task: Task) -> dict[str, Any]:
    """One element of ``GET /v2/images/{id}/tasks``: Glance's 15 keys, then Glimpse's additions."""
    return {
        "id": task.id,
        "type": str(task.type),
        "status": str(task.status),
        "owner": task.owner,
        "expires_at": _task_time(task.expires_at),
        "created_at": _task_time(task.created_at),
        "updated_at": _task_time(task.updated_at),
        "deleted_at": _task_time(task.deleted_at),
        "deleted": task.deleted,
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "input": task.shown_input,
        "result": task.result,
        "message": task.message,
        "progress": task.progress.to_dict(),
        "cancel_request": None if task.cancel is None else task.cancel.to_dict(),
    }


def _task_links(task: Task) -> dict[str, Any]:
    return {"self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task"}


def _optional(task: Task, *names: str) -> dict[str, Any]:
    values = {
        "image_id": task.image_id,
        "request_id": task.request_id,
        "user_id": task.user_id,
        "expires_at": isotime(task.expires_at),
    }
    return {name: values[name] for name in names if values[name] is not None}


def task_view(task: Task) -> dict[str, Any]:
    """``GET /v2/tasks/{id}`` (admin): Glance's keys and its seconds-precision ``Z`` timestamps."""
    return {
        "id": task.id,
        "input": task.shown_input,
        "type": str(task.type),
        "status": str(task.status),
        "owner": task.owner,
        "message": task.message,
        "result": task.result,
        "created_at": isotime(task.created_at),
        "updated_at": isotime(task.updated_at),
        **_task_links(task),
        **_optional(task, "image_id", "request_id", "user_id", "expires_at"),
    }


def task_summary_view(task: Task) -> dict[str, Any]:
    """An element of ``GET /v2/tasks``: no input, result or message, as in Glance."""
    return {
        "id": task.id,
        "type": str(task.type),
        "status": str(task.status),
        "owner": task.owner,
        "created_at": isotime(task.created_at),
        "updated_at": isotime(task.updated_at),
        **_task_links(task),
        **_optional(task, "expires_at"),
    }
