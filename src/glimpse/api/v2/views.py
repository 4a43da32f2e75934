"""Domain objects → Glance wire format (key names, datetime format, links)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from glimpse.config import Settings
from glimpse.domain.images import HIDDEN_PROPERTIES, Image
from glimpse.domain.members import ImageMember


def isotime(value: datetime | None) -> str | None:
    """Glance's image/member timestamp format: seconds precision, UTC, trailing Z."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        body["stores"] = ",".join(image.stores)
        if settings.show_image_direct_url:
            body["direct_url"] = image.locations[0].url
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
