"""OpenAPI descriptions of bodies and parameters that handlers parse themselves (for docs and fuzzing)."""

from __future__ import annotations

from typing import Any

from glimpse.api.v2.image_params import MAX_INT64
from glimpse.domain.images import MAX_INT32, MAX_STRING

_STRING = {"type": "string"}


def _header(
    description: str, schema: dict[str, Any] | None = None, *, required: bool = True
) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema or _STRING}


IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": (
        "A unique value (such as a UUID) that makes retries of this request safe: the same request "
        "sent again with the same key within idempotency_key_ttl hours gets the first answer "
        "(another request with the key: 422; while the first still runs: 409 with Retry-After)."
    ),
}


IMAGE_BODY: dict[str, Any] = {
    "parameters": [IDEMPOTENCY_KEY],
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
                        "min_ram": {"type": "integer", "minimum": 0, "maximum": MAX_INT32},
                        "min_disk": {"type": "integer", "minimum": 0, "maximum": MAX_INT32},
                        "tags": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1, "maxLength": MAX_STRING},
                        },
                    },
                    "additionalProperties": _STRING,
                }
            }
        },
    },
    "responses": {
        "201": {
            "headers": {
                "Location": _header("Absolute URL of the new image."),
                "OpenStack-image-store-ids": _header("Comma list of the enabled stores."),
                "OpenStack-image-import-methods": _header(
                    "Comma list of the enabled import methods.", required=False
                ),
            }
        }
    },
}

#: A JSON pointer to one attribute of the image, e.g. /name or /os_distro (~1 stands for a slash).
_POINTER = {"type": "string", "pattern": "^/[^/]+$"}
#: add and replace carry a value, remove does not need one.
_V20_OPERATION = {
    "type": "object",
    "properties": {"add": _POINTER, "replace": _POINTER, "remove": _POINTER, "value": {}},
    "oneOf": [{"required": ["add", "value"]}, {"required": ["replace", "value"]}, {"required": ["remove"]}],
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
                            "path": _POINTER,
                            "value": {},
                        },
                        "anyOf": [{"properties": {"op": {"const": "remove"}}}, {"required": ["value"]}],
                    },
                }
            },
            # The older form: add, replace or remove names the path: {"replace": "/name", "value": "x"}.
            "application/openstack-images-v2.0-json-patch": {
                "schema": {"type": "array", "items": _V20_OPERATION}
            },
        },
    }
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


MEMBER_BODY = _json_body(
    {
        "type": "object",
        "required": ["member"],
        "properties": {"member": {"type": "string", "minLength": 1, "maxLength": MAX_STRING}},
    }
)
MEMBER_STATUS_BODY = _json_body(
    {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["pending", "accepted", "rejected"]}},
    }
)

OCTET_STREAM_BODY: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-image-meta-store",
            "in": "header",
            "required": False,
            "schema": _STRING,
            "description": "Store to upload to (one of GET /v2/info/stores); the default store otherwise.",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
}

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

#: GET /v2/images/{id}/file: the bytes, a single range of them, or nothing when there is no data yet.
DOWNLOAD: dict[str, Any] = {
    "parameters": [
        {
            "name": "range",
            "in": "header",
            "required": False,
            "schema": _STRING,
            "description": "A single byte range: bytes=0-1023, bytes=1024- or bytes=-512.",
        }
    ],
    "responses": {
        "200": {
            "description": "The image data.",
            "content": _BINARY,
            "headers": {"Content-Length": _header("Size of the data.", {"type": "integer"})},
        },
        "204": {"description": "The image has no data yet."},
        "206": {
            "description": "The requested range of the image data.",
            "content": _BINARY,
            "headers": {
                "Content-Length": _header("Size of the range.", {"type": "integer"}),
                "Content-Range": _header(
                    "The range sent and the size of the data.",
                    {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
                ),
            },
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIST_PARAMETERS: dict[str, Any] = {
    "parameters": [
        _query(
            "limit",
            {"type": "integer", "minimum": 0, "maximum": MAX_INT64},
            "Page size (capped at api_limit_max).",
        ),
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
        _query("size_min", {"type": "integer", "minimum": 0, "maximum": MAX_INT64}, "Minimum size in bytes."),
        _query("size_max", {"type": "integer", "minimum": 0, "maximum": MAX_INT64}, "Maximum size in bytes."),
        _query("created_at", _STRING, "Operator and timestamp, e.g. gt:2026-01-01T00:00:00Z."),
        _query("updated_at", _STRING, "Operator and timestamp."),
        _query("os_hidden", {"type": "boolean"}, "List hidden images instead of visible ones."),
        _query("container_format", _STRING, "Container format."),
        _query("disk_format", _STRING, "Disk format."),
    ]
}


HISTORY_PARAMETERS: dict[str, Any] = {
    "parameters": [
        _query(
            "limit",
            {"type": "integer", "minimum": 0, "maximum": MAX_INT64},
            "Page size (capped at api_limit_max).",
        ),
        _query(
            "marker",
            {"type": "integer", "minimum": 0},
            "Id of the last entry of the previous page: the page starts with the next older entry.",
        ),
    ]
}


# -- metadata definitions -----------------------------------------------------------------------------


_METADEF_NAME = {"type": "string", "minLength": 1, "maxLength": 80}
_METADEF_PROPERTY: dict[str, Any] = {
    "type": "object",
    "required": ["title", "type"],
    "properties": {
        "title": _STRING,
        "description": _STRING,
        "type": {"type": "string", "enum": ["array", "boolean", "integer", "number", "object", "string"]},
        "default": {},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "minLength": {"type": "integer", "minimum": 0},
        "maxLength": {"type": "integer", "minimum": 0},
        "pattern": _STRING,
        "enum": {"type": "array", "minItems": 1},
        "readonly": {"type": "boolean"},
        "operators": {"type": "array", "items": _STRING},
        "items": {"type": "object", "properties": {"type": _STRING, "enum": {"type": "array"}}},
    },
}
_METADEF_PROPERTIES = {"type": "object", "additionalProperties": _METADEF_PROPERTY}
_METADEF_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _METADEF_NAME,
        "description": _STRING,
        "required": {"type": "array", "items": _STRING},
        "properties": _METADEF_PROPERTIES,
    },
}
_METADEF_ASSOCIATION: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _METADEF_NAME, "prefix": _STRING, "properties_target": _STRING},
}
_METADEF_TAGS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": _METADEF_NAME}},
}

METADEF_NAMESPACE_BODY = _json_body(
    {
        "type": "object",
        "required": ["namespace"],
        "properties": {
            "namespace": _METADEF_NAME,
            "display_name": _STRING,
            "description": _STRING,
            "visibility": {"type": "string", "enum": ["public", "private"]},
            "protected": {"type": "boolean"},
            "owner": _STRING,
            "resource_type_associations": {"type": "array", "items": _METADEF_ASSOCIATION},
            "properties": _METADEF_PROPERTIES,
            "objects": {"type": "array", "items": _METADEF_OBJECT},
            "tags": _METADEF_TAGS,
        },
    }
)
METADEF_OBJECT_BODY = _json_body(_METADEF_OBJECT)
METADEF_PROPERTY_BODY = _json_body(
    {
        **_METADEF_PROPERTY,
        "required": ["name", "title", "type"],
        "properties": {"name": _METADEF_NAME, **_METADEF_PROPERTY["properties"]},
    }
)
METADEF_TAGS_BODY = _json_body(
    {"type": "object", "required": ["tags"], "properties": {"tags": _METADEF_TAGS}}
)
METADEF_TAG_BODY = _json_body({"type": "object", "required": ["name"], "properties": {"name": _METADEF_NAME}})
METADEF_ASSOCIATION_BODY = _json_body(_METADEF_ASSOCIATION)
METADEF_LIST_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
        {"name": "marker", "in": "query", "required": False, "schema": _STRING},
        {
            "name": "sort_key",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["created_at", "updated_at", "namespace"]},
        },
        {
            "name": "sort_dir",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["asc", "desc"]},
        },
        {
            "name": "visibility",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["public", "private"]},
        },
        {"name": "resource_types", "in": "query", "required": False, "schema": _STRING},
    ]
}
