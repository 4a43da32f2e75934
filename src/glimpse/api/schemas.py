"""JSON-schema documents served under ``/v2/schemas/*``.

python-glanceclient reads these documents to build its command-line options and to validate what it
sends and receives (through warlock), so they follow Glance's documents key for key and in the same
order. Glance serves two shapes of document:

* *full* documents (``image``, ``images``, the metadefs ones) carry ``additionalProperties`` and,
  where Glance has them, ``links`` and ``required``;
* *minimal* documents (``member``, ``members``, ``task``, ``tasks``) carry only ``name`` and
  ``properties``, plus a single ``describedby`` link on the collections.

Every function here is pure and returns a new plain ``dict`` ready for JSON encoding; callers may
change the result without affecting later calls. The image documents list the disk and container
formats they are given (from ``Settings.disk_formats`` / ``Settings.container_formats``): nothing here
reads configuration. :data:`SCHEMA_NAMES` maps the name in the URL to a builder so that one route
serves them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "IMAGE_STATUSES",
    "IMAGE_VISIBILITIES",
    "MEMBER_STATUSES",
    "SCHEMA_NAMES",
    "TASK_STATUSES",
    "TASK_TYPES",
    "SchemaBuilder",
    "image_schema",
    "images_schema",
    "member_schema",
    "members_schema",
    "metadefs_namespace_schema",
    "metadefs_namespaces_schema",
    "metadefs_object_schema",
    "metadefs_objects_schema",
    "metadefs_properties_schema",
    "metadefs_property_schema",
    "metadefs_resource_type_schema",
    "metadefs_resource_types_schema",
    "metadefs_tag_schema",
    "metadefs_tags_schema",
    "task_schema",
    "tasks_schema",
]

JSONObject = dict[str, Any]
SchemaBuilder = Callable[[Sequence[str], Sequence[str]], JSONObject]
"""A builder called as ``builder(disk_formats, container_formats)``; most ignore both."""

UUID_PATTERN: Final = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
IMAGE_STATUSES: Final = (
    "queued",
    "saving",
    "active",
    "killed",
    "deleted",
    "uploading",
    "importing",
    "pending_delete",
    "deactivated",
)
IMAGE_VISIBILITIES: Final = ("community", "public", "private", "shared")
MEMBER_STATUSES: Final = ("pending", "accepted", "rejected")
TASK_TYPES: Final = ("import", "api_image_import", "location_import")
TASK_STATUSES: Final = ("pending", "processing", "success", "failure")

_TASK_STUB_HIDDEN: Final = frozenset({"input", "result", "message"})


def _nullable_enum(values: Sequence[str]) -> list[str | None]:
    """``null`` first, then each value once, in the order given (JSON Schema wants unique items)."""
    return [None, *dict.fromkeys(values)]


def _read_only_string(description: str) -> JSONObject:
    return {"type": "string", "readOnly": True, "description": description}


def _image_properties(disk_formats: Sequence[str], container_formats: Sequence[str]) -> JSONObject:
    return {
        "id": {
            "type": "string",
            "description": "An identifier for the image",
            "pattern": UUID_PATTERN,
        },
        "name": {
            "type": ["null", "string"],
            "description": "Descriptive name for the image",
            "maxLength": 255,
        },
        "status": {
            "type": "string",
            "readOnly": True,
            "description": "Status of the image",
            "enum": list(IMAGE_STATUSES),
        },
        "visibility": {
            "type": "string",
            "description": "Scope of image accessibility",
            "enum": list(IMAGE_VISIBILITIES),
        },
        "protected": {
            "type": "boolean",
            "description": "If true, image will not be deletable.",
        },
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": "md5 hash of image contents.",
            "maxLength": 32,
        },
        "os_hash_algo": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": "Algorithm to calculate the os_hash_value",
            "maxLength": 64,
        },
        "os_hash_value": {
            "type": ["null", "string"],
            "readOnly": True,
            "description": (
                "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"
            ),
            "maxLength": 128,
        },
        "owner": {
            "type": ["null", "string"],
            "description": "Owner of the image",
            "maxLength": 255,
        },
        "size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Size of image file in bytes",
        },
        "virtual_size": {
            "type": ["null", "integer"],
            "readOnly": True,
            "description": "Virtual size of image in bytes",
        },
        "container_format": {
            "type": ["null", "string"],
            "description": "Format of the container",
            "enum": _nullable_enum(container_formats),
        },
        "disk_format": {
            "type": ["null", "string"],
            "description": "Format of the disk",
            "enum": _nullable_enum(disk_formats),
        },
        "created_at": _read_only_string("Date and time of image registration"),
        "updated_at": _read_only_string("Date and time of the last image modification"),
        "tags": {
            "type": "array",
            "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "direct_url": _read_only_string("URL to access the image file kept in external store"),
        "min_ram": {
            "type": "integer",
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "description": "Amount of disk space (in GB) required to boot image.",
        },
        "self": _read_only_string("An image self url"),
        "file": _read_only_string("An image file url"),
        "stores": _read_only_string(
            "Store in which image data resides.  Only present when the operator has enabled multiple "
            "stores.  May be a comma-separated list of store identifiers."
        ),
        "schema": _read_only_string("An image schema url"),
        "locations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"},
                    "validation_data": {
                        "description": (
                            "Values to be used to populate the corresponding image properties. If the "
                            "image status is not 'queued', values must exactly match those already "
                            "contained in the image properties."
                        ),
                        "type": "object",
                        "writeOnly": True,
                        "additionalProperties": False,
                        "properties": {
                            "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                            "os_hash_algo": {"type": "string", "maxLength": 64},
                            "os_hash_value": {"type": "string", "maxLength": 128},
                        },
                        "required": ["os_hash_algo", "os_hash_value"],
                    },
                },
                "required": ["url", "metadata"],
            },
            "description": "A set of URLs to access the image file kept in external store",
        },
    }


def image_schema(disk_formats: Sequence[str], container_formats: Sequence[str]) -> JSONObject:
    """``GET /v2/schemas/image``: one image; unknown keys are allowed when their values are strings.

    ``disk_format`` and ``container_format`` accept ``null`` or one of the formats given, in the
    order given (duplicates are listed once).
    """
    return {
        "name": "image",
        "properties": _image_properties(disk_formats, container_formats),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema(disk_formats: Sequence[str], container_formats: Sequence[str]) -> JSONObject:
    """``GET /v2/schemas/images``: a page of images with its ``first``/``next`` links."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(disk_formats, container_formats)},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def _minimal_collection(name: str, item: JSONObject) -> JSONObject:
    return {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def member_schema() -> JSONObject:
    """``GET /v2/schemas/member``: one image membership (minimal document)."""
    return {
        "name": "member",
        "properties": {
            "member_id": {
                "type": "string",
                "description": "An identifier for the image member (tenantId)",
            },
            "image_id": {
                "type": "string",
                "description": "An identifier for the image",
                "pattern": UUID_PATTERN,
            },
            "created_at": {
                "type": "string",
                "description": "Date and time of image member creation",
            },
            "updated_at": {
                "type": "string",
                "description": "Date and time of last modification of image member",
            },
            "status": {
                "type": "string",
                "description": "The status of this image member",
                "enum": list(MEMBER_STATUSES),
            },
            "schema": {"readOnly": True, "type": "string"},
        },
    }


def members_schema() -> JSONObject:
    """``GET /v2/schemas/members``: the member list of one image (minimal document)."""
    return _minimal_collection("members", member_schema())


def _task_properties() -> JSONObject:
    return {
        "id": {
            "description": "An identifier for the task",
            "pattern": UUID_PATTERN,
            "type": "string",
        },
        "type": {
            "description": "The type of task represented by this content",
            "enum": list(TASK_TYPES),
            "type": "string",
        },
        "status": {
            "description": "The current status of this task",
            "enum": list(TASK_STATUSES),
            "type": "string",
        },
        "input": {
            "description": "The parameters required by task, JSON blob",
            "type": ["null", "object"],
        },
        "result": {
            "description": "The result of current task, JSON blob",
            "type": ["null", "object"],
        },
        "owner": {
            "description": "An identifier for the owner of this task",
            "type": "string",
        },
        "message": {
            "description": (
                "Human-readable informative message only included when appropriate (usually on failure)"
            ),
            "type": "string",
        },
        "image_id": {
            "description": "Image associated with the task",
            "type": "string",
        },
        "request_id": {
            "description": "Human-readable informative request-id",
            "type": "string",
        },
        "user_id": {
            "description": "User associated with the task",
            "type": "string",
        },
        "expires_at": {
            "description": "Datetime when this resource would be subject to removal",
            "type": ["null", "string"],
        },
        "created_at": {
            "description": "Datetime when this resource was created",
            "type": "string",
        },
        "updated_at": {
            "description": "Datetime when this resource was updated",
            "type": "string",
        },
        "self": {"readOnly": True, "type": "string"},
        "schema": {"readOnly": True, "type": "string"},
    }


def task_schema() -> JSONObject:
    """``GET /v2/schemas/task``: one task as ``GET /v2/tasks/{id}`` shows it (minimal document)."""
    return {"name": "task", "properties": _task_properties()}


def tasks_schema() -> JSONObject:
    """``GET /v2/schemas/tasks``: the task list, whose entries omit ``input``, ``result`` and ``message``."""
    stub = {key: value for key, value in _task_properties().items() if key not in _TASK_STUB_HIDDEN}
    return _minimal_collection("tasks", {"name": "task", "properties": stub})


def metadefs_namespace_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/namespace``: a metadata-definitions namespace with its contents.

    python-glanceclient downloads this document when it starts, turns its scalar properties into
    options of ``md-namespace-create`` and ``md-namespace-update``, and validates the namespaces it
    receives against it, so the nested associations, properties, objects and tags are described too.
    """
    doc: JSONObject = {
        "name": "namespace",
        "properties": {
            "namespace": {
                "type": "string",
                "description": "Unique name of the namespace.",
                "maxLength": 80,
            },
            "display_name": {
                "type": "string",
                "description": "Name of the namespace shown to users.",
                "maxLength": 80,
            },
            "description": {
                "type": "string",
                "description": "What the namespace is for.",
                "maxLength": 500,
            },
            "visibility": {
                "type": "string",
                "description": "Who can see the namespace.",
                "enum": ["public", "private"],
            },
            "protected": {
                "type": "boolean",
                "description": "If true, the namespace cannot be deleted.",
            },
            "owner": {
                "type": "string",
                "description": "Project that owns the namespace.",
                "maxLength": 255,
            },
            "created_at": {
                "type": "string",
                "description": "When the namespace was created (read-only).",
                "format": "date-time",
            },
            "updated_at": {
                "type": "string",
                "description": "When the namespace was last changed (read-only).",
                "format": "date-time",
            },
            "schema": {"type": "string"},
            "self": {"type": "string"},
        },
        "additionalProperties": False,
        "required": ["namespace"],
    }
    doc["properties"].update(
        {
            "resource_type_associations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        key: {"type": "string"} for key in ("name", "prefix", "properties_target")
                    },
                },
            },
            "properties": {"$ref": "#/definitions/property"},
            "objects": {"type": "array", "items": _metadef_object_item()},
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        }
    )
    doc["definitions"] = _metadef_definitions()
    return doc


_METADEF_TYPES: Final = ["array", "boolean", "integer", "number", "object", "string", None]


def _metadef_property_fields() -> JSONObject:
    """The fields of one property definition (a JSON-schema fragment describing an image property)."""
    return {
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string", "description": "Label shown to users."},
        "description": {"type": "string", "description": "What the property means."},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": list(_METADEF_TYPES)},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(_METADEF_TYPES)},
                "enum": {"type": "array"},
            },
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": False},
        "additionalItems": {"type": "boolean"},
    }


def _metadef_definitions() -> JSONObject:
    return {
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]},
        "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "property": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["title", "type"],
                "properties": _metadef_property_fields(),
            },
        },
    }


def _metadef_object_item() -> JSONObject:
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 80},
            "description": {"type": "string"},
            "required": {"$ref": "#/definitions/stringArray"},
            "properties": {"$ref": "#/definitions/property"},
        },
    }


def _stamp_fields(what: str) -> JSONObject:
    return {
        "created_at": {
            "type": "string",
            "readOnly": True,
            "description": f"When the {what} was created.",
            "format": "date-time",
        },
        "updated_at": {
            "type": "string",
            "readOnly": True,
            "description": f"When the {what} was last changed.",
            "format": "date-time",
        },
    }


def _metadef_collection(name: str, item: JSONObject, *, paged: bool = False) -> JSONObject:
    """A list document: ``{name: [item, ...]}`` plus the links Glance gives its metadef collections."""
    doc: JSONObject = {
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }
    if paged:
        doc["properties"].update({"first": {"type": "string"}, "next": {"type": "string"}})
        doc["links"] = [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ]
    if "definitions" in item:
        doc["definitions"] = item.pop("definitions")
    return doc


def metadefs_namespaces_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/namespaces``: one page of namespaces."""
    return _metadef_collection("namespaces", metadefs_namespace_schema(), paged=True)


def metadefs_object_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/object``: a named group of property definitions."""
    item = _metadef_object_item()
    item["properties"].update(_stamp_fields("object"))
    item["properties"].update(
        {"schema": {"type": "string", "readOnly": True}, "self": {"type": "string", "readOnly": True}}
    )
    return {
        "name": "object",
        "properties": item["properties"],
        "additionalProperties": False,
        "required": ["name"],
        "definitions": _metadef_definitions(),
    }


def metadefs_objects_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/objects``: the objects of a namespace."""
    return _metadef_collection("objects", metadefs_object_schema())


def metadefs_property_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/property``: one property definition."""
    return {
        "name": "property",
        "properties": _metadef_property_fields(),
        "additionalProperties": False,
        "required": ["name", "title", "type"],
        "definitions": {key: value for key, value in _metadef_definitions().items() if key != "property"},
    }


def metadefs_properties_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/properties``: a namespace's properties, keyed by name."""
    return {
        "name": "properties",
        "properties": {
            "properties": {"$ref": "#/definitions/property"},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
        "definitions": _metadef_definitions(),
    }


def metadefs_tag_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/tag``: a tag of a namespace."""
    return {
        "name": "tag",
        "properties": {
            "name": {"type": "string", "maxLength": 80, "description": "The tag."},
            **_stamp_fields("tag"),
        },
        "additionalProperties": False,
        "required": ["name"],
    }


def metadefs_tags_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/tags``: the tags of a namespace."""
    return _metadef_collection("tags", metadefs_tag_schema())


def metadefs_resource_types_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/resource_types``: a namespace's resource type associations."""
    return _metadef_collection("resource_type_associations", metadefs_resource_type_schema())


def metadefs_resource_type_schema() -> JSONObject:
    """``GET /v2/schemas/metadefs/resource_type``: a resource-type association, as Glance names it."""
    return {
        "name": "resource_type_association",
        "properties": {
            "name": {
                "type": "string",
                "description": "Name of the resource type, e.g. OS::Glance::Image.",
                "maxLength": 80,
            },
            "prefix": {
                "type": "string",
                "description": "Prefix, separator included, put before the namespace's property names "
                "when they are applied to this resource type.",
                "maxLength": 80,
            },
            "properties_target": {
                "type": "string",
                "description": "Which metadata of the resource the properties apply to, when it has more "
                "than one kind.",
                "maxLength": 80,
            },
            "created_at": {
                "type": "string",
                "readOnly": True,
                "description": "When the association was created.",
                "format": "date-time",
            },
            "updated_at": {
                "type": "string",
                "readOnly": True,
                "description": "When the association was last changed.",
                "format": "date-time",
            },
        },
        "additionalProperties": False,
        "required": ["name"],
    }


def _without_formats(build: Callable[[], JSONObject]) -> SchemaBuilder:
    def builder(disk_formats: Sequence[str], container_formats: Sequence[str]) -> JSONObject:
        return build()

    builder.__name__ = build.__name__
    builder.__doc__ = build.__doc__
    return builder


SCHEMA_NAMES: Final[Mapping[str, SchemaBuilder]] = MappingProxyType(
    {
        "image": image_schema,
        "images": images_schema,
        "member": _without_formats(member_schema),
        "members": _without_formats(members_schema),
        "task": _without_formats(task_schema),
        "tasks": _without_formats(tasks_schema),
        "metadefs/namespace": _without_formats(metadefs_namespace_schema),
        "metadefs/namespaces": _without_formats(metadefs_namespaces_schema),
        "metadefs/object": _without_formats(metadefs_object_schema),
        "metadefs/objects": _without_formats(metadefs_objects_schema),
        "metadefs/property": _without_formats(metadefs_property_schema),
        "metadefs/properties": _without_formats(metadefs_properties_schema),
        "metadefs/tag": _without_formats(metadefs_tag_schema),
        "metadefs/tags": _without_formats(metadefs_tags_schema),
        "metadefs/resource_type": _without_formats(metadefs_resource_type_schema),
        "metadefs/resource_types": _without_formats(metadefs_resource_types_schema),
    }
)
"""URL name (the part after ``/v2/schemas/``) -> ``builder(disk_formats, container_formats)``."""
