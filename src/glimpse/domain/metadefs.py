"""Metadata definitions (metadefs): the catalogue of properties that clients offer for images and other
resources, grouped in namespaces.

A namespace has a unique name, a visibility (``public`` or ``private``), an owner and a ``protected``
flag, and holds three kinds of named entries: *properties* (a JSON-schema fragment each), *objects*
(a named group of properties, some required) and *tags*. It is associated with resource types
(``OS::Glance::Image``, ``OS::Nova::Flavor``, ...), each association with an optional prefix that is put
before the property names when they are applied to that kind of resource.

This module holds the value types and the rules: what a valid document is (the functions ``parse_*``
raise :class:`~glimpse.errors.InvalidInput` or :class:`~glimpse.errors.ReservedAttribute` with a message
that says what to change), who can see a namespace and the policy target of one. It reads no files and
talks to no database.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from glimpse.context import RequestContext
from glimpse.domain.images import check_text
from glimpse.errors import InvalidInput, ReservedAttribute

__all__ = [
    "NAME_MAX",
    "PROPERTY_TYPES",
    "Association",
    "Entry",
    "EntryKind",
    "MetaObject",
    "Namespace",
    "NamespaceDocument",
    "NamespaceQuery",
    "ResourceType",
    "Tag",
    "namespace_target",
    "parse_association",
    "parse_namespace",
    "parse_object",
    "parse_properties",
    "parse_property",
    "parse_tag_name",
    "parse_tags",
    "split_prefix",
    "visible_to",
]

#: Longest namespace, object, property, tag, resource type, prefix or properties_target name.
NAME_MAX: Final = 80
#: Longest namespace description (the namespace schema's limit).
DESCRIPTION_MAX: Final = 500
#: Longest description of a property or an object: no schema limit, only what a TEXT column holds.
LONG_TEXT_MAX: Final = 65_535
OWNER_MAX: Final = 255
#: What Glance accepts as a property's ``type``.
PROPERTY_TYPES: Final = ("array", "boolean", "integer", "number", "object", "string")
VISIBILITIES: Final = ("public", "private")
#: Keys of every document that the service sets and a client may not send.
READ_ONLY: Final = ("created_at", "updated_at", "schema", "self")

_PROPERTY_KEYS: Final = frozenset(
    {
        "name",
        "title",
        "description",
        "type",
        "default",
        "minimum",
        "maximum",
        "maxLength",
        "minLength",
        "pattern",
        "enum",
        "readonly",
        "operators",
        "items",
        "uniqueItems",
        "minItems",
        "maxItems",
        "additionalItems",
    }
)
_ITEMS_KEYS: Final = frozenset({"type", "enum"})
_NAMESPACE_KEYS: Final = frozenset(
    {
        "namespace",
        "display_name",
        "description",
        "visibility",
        "protected",
        "owner",
        "resource_type_associations",
        "properties",
        "objects",
        "tags",
    }
)
_OBJECT_KEYS: Final = frozenset({"name", "description", "required", "properties"})
_ASSOCIATION_KEYS: Final = frozenset({"name", "prefix", "properties_target"})


class EntryKind(enum.StrEnum):
    """The three kinds of named entries a namespace holds."""

    OBJECT = "object"
    PROPERTY = "property"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class Namespace:
    namespace: str
    display_name: str | None = None
    description: str | None = None
    visibility: str = "private"
    protected: bool = False
    owner: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Association:
    """A namespace's association with a resource type."""

    name: str
    prefix: str | None = None
    properties_target: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    protected: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MetaObject:
    name: str
    description: str | None = None
    required: tuple[str, ...] = ()
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """An object, property or tag as stored: its name and its definition (empty for a tag)."""

    kind: EntryKind
    name: str
    body: Mapping[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NamespaceDocument:
    """A namespace with everything it holds: what a create request or a definitions file carries."""

    namespace: Namespace
    associations: tuple[Association, ...] = ()
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objects: tuple[MetaObject, ...] = ()
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class NamespaceQuery:
    """A namespace listing: filters, sort and page (``marker`` is a namespace name)."""

    limit: int
    marker: str | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    visibility: str | None = None
    resource_types: tuple[str, ...] = ()


# -- visibility and policy --------------------------------------------------------------------------


def visible_to(namespace: Namespace, ctx: RequestContext) -> bool:
    """Administrators see every namespace; others the public ones and their own project's."""
    return ctx.is_admin or namespace.visibility == "public" or namespace.owner == ctx.project_id


def namespace_target(namespace: Namespace) -> dict[str, object]:
    """The policy target of a rule about one namespace (or something in it)."""
    return {
        "project_id": namespace.owner,
        "owner": namespace.owner,
        "visibility": namespace.visibility,
        "protected": namespace.protected,
        "namespace": namespace.namespace,
    }


# -- parsing ----------------------------------------------------------------------------------------


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object.")
    return value


def _check_keys(body: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    for key in READ_ONLY:
        if key in body:
            raise ReservedAttribute(f"Attribute '{key}' of {what} is read-only; leave it out of the request.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(
            f"{what} has unknown attribute(s) {', '.join(repr(k) for k in unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}."
        )


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string.")
    if len(value) > NAME_MAX:
        raise InvalidInput(f"{what} is longer than {NAME_MAX} characters.")
    if "/" in value or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{what} {value!r} may not contain '/' or control characters.")
    return value


def _text(value: object, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string.")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters.")
    return check_text(what, value)


def _bool(value: object, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false.")
    return value


def parse_property(name: object, body: object, *, where: str = "") -> dict[str, Any]:
    """A property definition (the JSON-schema fragment, without its name), checked."""
    label = f"Property {name!r}{where}"
    definition = _object(body, label)
    _check_keys(definition, _PROPERTY_KEYS, label)
    _name(name, "A property name")
    kind = definition.get("type")
    if kind not in PROPERTY_TYPES:
        raise InvalidInput(f"{label}: 'type' must be one of {', '.join(PROPERTY_TYPES)}, not {kind!r}.")
    if not isinstance(definition.get("title"), str) or not definition["title"]:
        raise InvalidInput(f"{label}: 'title' is required and must be a non-empty string.")
    _text(definition.get("description"), f"{label}: 'description'", LONG_TEXT_MAX)
    for key in ("minimum", "maximum"):
        value = definition.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidInput(f"{label}: '{key}' must be a number.")
    for key in ("maxLength", "minLength", "minItems", "maxItems"):
        value = definition.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"{label}: '{key}' must be an integer of 0 or more.")
    for key in ("readonly", "uniqueItems", "additionalItems"):
        if key in definition and not isinstance(definition[key], bool):
            raise InvalidInput(f"{label}: '{key}' must be true or false.")
    if "pattern" in definition:
        pattern = definition["pattern"]
        try:
            re.compile(pattern if isinstance(pattern, str) else "(")
        except re.error:
            raise InvalidInput(f"{label}: 'pattern' must be a valid regular expression.") from None
    enum_ = definition.get("enum")
    if enum_ is not None and (not isinstance(enum_, list) or len(enum_) == 0):
        raise InvalidInput(f"{label}: 'enum' must be a non-empty list.")
    operators = definition.get("operators")
    if operators is not None and (
        not isinstance(operators, list) or not all(isinstance(o, str) for o in operators)
    ):
        raise InvalidInput(f"{label}: 'operators' must be a list of strings.")
    items = definition.get("items")
    if items is not None:
        items = _object(items, f"{label}: 'items'")
        unknown = sorted(set(items) - _ITEMS_KEYS)
        if unknown or items.get("type", "string") not in PROPERTY_TYPES:
            raise InvalidInput(
                f"{label}: 'items' may hold only 'type' (one of {', '.join(PROPERTY_TYPES)}) and 'enum'."
            )
    return {key: value for key, value in definition.items() if key != "name"}


def parse_properties(body: object, *, where: str = "") -> dict[str, dict[str, Any]]:
    """A ``{name: definition}`` mapping of properties."""
    if body is None:
        return {}
    mapping = _object(body, f"'properties'{where}")
    return {str(name): parse_property(name, definition, where=where) for name, definition in mapping.items()}


def parse_object(body: object) -> MetaObject:
    """An object definition: ``name``, ``description``, ``required`` and ``properties``."""
    document = _object(body, "An object")
    _check_keys(document, _OBJECT_KEYS, "an object")
    name = _name(document.get("name"), "An object's 'name'")
    where = f" of object {name!r}"
    properties = parse_properties(document.get("properties"), where=where)
    required = document.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise InvalidInput(f"'required'{where} must be a list of property names.")
    missing = [r for r in required if r not in properties]
    if missing:
        raise InvalidInput(f"'required'{where} names {', '.join(missing)}, which it does not define.")
    return MetaObject(
        name=name,
        description=_text(document.get("description"), f"'description'{where}", LONG_TEXT_MAX),
        required=tuple(required),
        properties=properties,
    )


def parse_tag_name(value: object) -> str:
    return _name(value, "A tag name")


def parse_tags(body: object) -> tuple[Tag, ...]:
    """The ``tags`` list of a namespace document or of ``POST .../tags``: ``[{"name": ...}, ...]``."""
    if body is None:
        return ()
    if not isinstance(body, list):
        raise InvalidInput('\'tags\' must be a list of objects such as {"name": "ssd"}.')
    tags: list[Tag] = []
    for item in body:
        entry = _object(item, "Each tag")
        _check_keys(entry, frozenset({"name"}), "a tag")
        name = parse_tag_name(entry.get("name"))
        if any(t.name == name for t in tags):
            raise InvalidInput(f"Tag {name!r} is given twice.")
        tags.append(Tag(name))
    return tuple(tags)


def parse_association(body: object) -> Association:
    document = _object(body, "A resource type association")
    _check_keys(document, _ASSOCIATION_KEYS, "a resource type association")
    return Association(
        name=_name(document.get("name"), "A resource type's 'name'"),
        prefix=_text(document.get("prefix"), "'prefix'", NAME_MAX),
        properties_target=_text(document.get("properties_target"), "'properties_target'", NAME_MAX),
    )


def parse_namespace(body: object, *, default_owner: str | None) -> NamespaceDocument:
    """A namespace document (create, update or a definitions file); unset attributes take defaults."""
    document = _object(body, "A namespace")
    _check_keys(document, _NAMESPACE_KEYS, "a namespace")
    visibility = document.get("visibility") or "private"
    if visibility not in VISIBILITIES:
        raise InvalidInput(f"'visibility' must be 'public' or 'private', not {visibility!r}.")
    namespace = Namespace(
        namespace=_name(document.get("namespace"), "'namespace'"),
        display_name=_text(document.get("display_name"), "'display_name'", NAME_MAX),
        description=_text(document.get("description"), "'description'", DESCRIPTION_MAX),
        visibility=visibility,
        protected=_bool(document.get("protected"), "'protected'"),
        owner=_text(document.get("owner"), "'owner'", OWNER_MAX) or default_owner,
    )
    raw_associations = document.get("resource_type_associations") or []
    if not isinstance(raw_associations, list):
        raise InvalidInput("'resource_type_associations' must be a list.")
    associations = tuple(parse_association(a) for a in raw_associations)
    objects = document.get("objects") or []
    if not isinstance(objects, list):
        raise InvalidInput("'objects' must be a list of object definitions.")
    parsed_objects = tuple(parse_object(o) for o in objects)
    for kind, names in (
        ("resource type association", [a.name for a in associations]),
        ("object", [o.name for o in parsed_objects]),
    ):
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise InvalidInput(f"The namespace names the {kind} {', '.join(doubled)} more than once.")
    return NamespaceDocument(
        namespace=namespace,
        associations=associations,
        properties=parse_properties(document.get("properties")),
        objects=parsed_objects,
        tags=parse_tags(document.get("tags")),
    )


def split_prefix(name: str, prefix: str | None) -> str:
    """``name`` without ``prefix`` (a property name as a resource type sees it, back to the namespace's)."""
    if prefix and name.startswith(prefix):
        return name[len(prefix) :]
    return name
