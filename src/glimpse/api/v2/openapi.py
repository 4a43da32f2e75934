"""OpenAPI descriptions of bodies and parameters that handlers parse themselves (for docs and fuzzing)."""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": ["string", "null"], "maxLength": 255},
                        "visibility": {
                            "type": "string",
                            "enum": ["public", "private", "shared", "community"],
                        },
                        "protected": {"type": "boolean"},
                        "os_hidden": {"type": "boolean"},
                        "container_format": {"type": ["string", "null"]},
                        "disk_format": {"type": ["string", "null"]},
                        "min_ram": {"type": "integer", "minimum": 0},
                        "min_disk": {"type": "integer", "minimum": 0},
                        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
                    },
                    "additionalProperties": _STRING,
                }
            }
        },
    }
}

PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/openstack-images-v2.1-json-patch": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op", "path"],
                        "properties": {
                            "op": {"type": "string", "enum": ["add", "replace", "remove"]},
                            "path": {"type": "string"},
                            "value": {},
                        },
                    },
                }
            }
        },
    }
}

JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
}

OCTET_STREAM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIST_PARAMETERS: dict[str, Any] = {
    "parameters": [
        _query("limit", {"type": "integer", "minimum": 0}, "Page size (capped at api_limit_max)."),
        _query("marker", {"type": "string", "format": "uuid"}, "Id of the last image of the previous page."),
        _query("sort_key", _STRING, "Sort key (repeatable)."),
        _query("sort_dir", {"type": "string", "enum": ["asc", "desc"]}, "Sort direction."),
        _query("sort", _STRING, "Comma list of key:dir."),
        _query("name", _STRING, "Exact name, or in:a,b."),
        _query("status", _STRING, "Status, or in:a,b."),
        _query(
            "visibility",
            {"type": "string", "enum": ["public", "private", "shared", "community", "all"]},
            "Visibility.",
        ),
        _query(
            "member_status",
            {"type": "string", "enum": ["pending", "accepted", "rejected", "all"]},
            "Member status of shared images.",
        ),
        _query("owner", _STRING, "Owner project."),
        _query("tag", _STRING, "Tag the image must carry (repeatable)."),
        _query("size_min", {"type": "integer", "minimum": 0}, "Minimum size in bytes."),
        _query("size_max", {"type": "integer", "minimum": 0}, "Maximum size in bytes."),
        _query("created_at", _STRING, "Operator and timestamp, e.g. gt:2026-01-01T00:00:00Z."),
        _query("updated_at", _STRING, "Operator and timestamp."),
        _query("os_hidden", {"type": "boolean"}, "List hidden images instead of visible ones."),
        _query("container_format", _STRING, "Container format."),
        _query("disk_format", _STRING, "Disk format."),
    ]
}
