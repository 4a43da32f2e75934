"""Metadata definitions: namespaces and what they hold, with Glance's visibility, policy and protection.

Every operation on or in a namespace first loads it for the caller (:meth:`MetadefService.namespace`):
a namespace the caller may not see, or whose read rule refuses, is reported as 404; then the
operation's own rule is enforced (403 on refusal). A protected namespace, and anything in it, cannot
be deleted (403) until an update clears ``protected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from glimpse.context import RequestContext
from glimpse.domain.metadefs import (
    Association,
    Entry,
    EntryKind,
    MetaObject,
    Namespace,
    NamespaceDocument,
    NamespaceQuery,
    ResourceType,
    Tag,
    namespace_target,
    parse_association,
    parse_namespace,
    parse_object,
    parse_property,
    parse_tag_name,
    parse_tags,
    split_prefix,
    visible_to,
)
from glimpse.domain.policy import Policy, PolicyRule
from glimpse.errors import Forbidden, InvalidInput, NotFound
from glimpse.ports import Repositories

__all__ = ["MetadefService", "NamespaceView"]

_R = PolicyRule
_NOT_UPDATED = frozenset(
    {
        "resource_type_associations",
        "properties",
        "objects",
        "tags",
        "created_at",
        "updated_at",
        "schema",
        "self",
    }
)


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """A namespace as shown: its associations always, its contents on show and export."""

    namespace: Namespace
    associations: list[Association] = field(default_factory=list)
    properties: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    objects: list[MetaObject] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The namespace in the definitions-file format (Glance's): what ``db load-metadefs`` reads."""
        ns = self.namespace
        body: dict[str, Any] = {"namespace": ns.namespace}
        if ns.display_name is not None:
            body["display_name"] = ns.display_name
        if ns.description is not None:
            body["description"] = ns.description
        body.update({"visibility": ns.visibility, "protected": ns.protected})
        if ns.owner is not None:
            body["owner"] = ns.owner
        associations = []
        for association in self.associations:
            entry = {"name": association.name}
            if association.prefix is not None:
                entry["prefix"] = association.prefix
            if association.properties_target is not None:
                entry["properties_target"] = association.properties_target
            associations.append(entry)
        body["resource_type_associations"] = associations
        body["properties"] = {name: dict(definition) for name, definition in self.properties.items()}
        body["objects"] = [
            {
                "name": obj.name,
                **({"description": obj.description} if obj.description is not None else {}),
                "required": list(obj.required),
                "properties": {name: dict(definition) for name, definition in obj.properties.items()},
            }
            for obj in self.objects
        ]
        body["tags"] = [{"name": tag.name} for tag in self.tags]
        return body


def _object(entry: Entry) -> MetaObject:
    body = entry.body
    return MetaObject(
        name=entry.name,
        description=body.get("description"),
        required=tuple(body.get("required") or ()),
        properties=body.get("properties") or {},
        created_at=entry.created_at,
        updated_at=entry.updated_at,
    )


def _prefixed(obj: MetaObject, prefix: str) -> MetaObject:
    """``obj`` with its property names (and required ones) as a resource type with ``prefix`` sees them."""
    if not prefix:
        return obj
    return replace(
        obj,
        required=tuple(prefix + name for name in obj.required),
        properties={prefix + name: definition for name, definition in obj.properties.items()},
    )


def _object_body(obj: MetaObject) -> dict[str, Any]:
    body: dict[str, Any] = {"properties": dict(obj.properties), "required": list(obj.required)}
    if obj.description is not None:
        body["description"] = obj.description
    return body


def _body(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"The request body must be a JSON object describing {what}.")
    return value


class MetadefService:
    def __init__(self, repos: Repositories, policy: Policy) -> None:
        self.repo = repos.metadefs
        self.policy = policy

    # -- loading and checks --------------------------------------------------------------------------

    def namespace(self, ctx: RequestContext, name: str, rule: str | None = None) -> Namespace:
        """The namespace ``name`` as the caller may see it, with ``rule`` enforced on it (403)."""
        found = self.repo.find_namespace(name)
        if (
            found is None
            or not visible_to(found, ctx)
            or not self.policy.check(_R.GET_METADEF_NAMESPACE, ctx, namespace_target(found))
        ):
            raise NotFound(f"Metadata definition namespace {name} not found.")
        if rule is not None:
            self.policy.enforce(rule, ctx, namespace_target(found))
        return found

    @staticmethod
    def _unprotected(namespace: Namespace, what: str) -> None:
        if namespace.protected:
            raise Forbidden(
                f"Namespace {namespace.namespace} is protected: {what} cannot be deleted. "
                'Update the namespace with "protected": false first.'
            )

    def _own_project(self, ctx: RequestContext, rule: str) -> None:
        self.policy.enforce(rule, ctx, {"project_id": ctx.project_id})

    # -- namespaces ----------------------------------------------------------------------------------

    def list_namespaces(self, ctx: RequestContext, query: NamespaceQuery) -> list[NamespaceView]:
        self._own_project(ctx, _R.GET_METADEF_NAMESPACES)
        found = self.repo.list_namespaces(query, project_id=ctx.project_id, admin=ctx.is_admin)
        found = [ns for ns in found if self.policy.check(_R.GET_METADEF_NAMESPACE, ctx, namespace_target(ns))]
        associations = self.repo.associations([ns.namespace for ns in found])
        return [NamespaceView(ns, associations[ns.namespace]) for ns in found]

    def show_namespace(
        self, ctx: RequestContext, name: str, resource_type: str | None = None
    ) -> NamespaceView:
        namespace = self.namespace(ctx, name)
        return self._full(namespace, resource_type)

    def _full(self, namespace: Namespace, resource_type: str | None = None) -> NamespaceView:
        name = namespace.namespace
        associations = self.repo.associations([name])[name]
        prefix = ""
        if resource_type is not None:
            match = next((a for a in associations if a.name == resource_type), None)
            prefix = (match.prefix or "") if match else ""
        return NamespaceView(
            namespace=namespace,
            associations=associations,
            properties={prefix + e.name: e.body for e in self.repo.entries(name, EntryKind.PROPERTY)},
            objects=[_prefixed(_object(e), prefix) for e in self.repo.entries(name, EntryKind.OBJECT)],
            tags=[Tag(e.name, e.created_at, e.updated_at) for e in self.repo.entries(name, EntryKind.TAG)],
        )

    def create_namespace(self, ctx: RequestContext, body: object) -> NamespaceView:
        document = parse_namespace(body, default_owner=ctx.project_id)
        self.policy.enforce(_R.ADD_METADEF_NAMESPACE, ctx, namespace_target(document.namespace))
        return self.store_document(document)

    def store_document(self, document: NamespaceDocument) -> NamespaceView:
        """Create a namespace with everything it holds (a create request, or a definitions file)."""
        namespace = self.repo.add_namespace(document.namespace)
        name = namespace.namespace
        for association in document.associations:
            self.repo.add_association(name, association)
        for prop_name, definition in document.properties.items():
            self.repo.add_entry(name, EntryKind.PROPERTY, prop_name, definition)
        for obj in document.objects:
            self.repo.add_entry(name, EntryKind.OBJECT, obj.name, _object_body(obj))
        for tag in document.tags:
            self.repo.add_entry(name, EntryKind.TAG, tag.name, {})
        return self._full(namespace)

    def update_namespace(self, ctx: RequestContext, name: str, body: object) -> NamespaceView:
        # The contents (and the read-only attributes a client sends back) are not changed by an update:
        # they have their own URLs under /v2/metadefs/namespaces/{namespace}/.
        document_body = {k: v for k, v in _body(body, "a namespace").items() if k not in _NOT_UPDATED}
        current = self.namespace(ctx, name, _R.MODIFY_METADEF_NAMESPACE)
        document = parse_namespace(document_body, default_owner=current.owner)
        updated = self.repo.update_namespace(name, document.namespace)
        return NamespaceView(updated, self.repo.associations([updated.namespace])[updated.namespace])

    def delete_namespace(self, ctx: RequestContext, name: str) -> None:
        namespace = self.namespace(ctx, name, _R.DELETE_METADEF_NAMESPACE)
        self._unprotected(namespace, "it")
        self.repo.delete_namespace(name)

    def delete_all(self, ctx: RequestContext, name: str, kind: EntryKind) -> None:
        """``DELETE .../objects``, ``.../properties`` (rule delete_metadef_namespace) or ``.../tags``."""
        rule = _R.DELETE_METADEF_TAGS if kind is EntryKind.TAG else _R.DELETE_METADEF_NAMESPACE
        namespace = self.namespace(ctx, name, rule)
        self._unprotected(namespace, f"its {kind} entries")
        self.repo.remove_entries(name, kind)

    # -- objects -------------------------------------------------------------------------------------

    def list_objects(self, ctx: RequestContext, name: str) -> list[MetaObject]:
        self.namespace(ctx, name, _R.GET_METADEF_OBJECTS)
        return [_object(e) for e in self.repo.entries(name, EntryKind.OBJECT)]

    def show_object(self, ctx: RequestContext, name: str, object_name: str) -> MetaObject:
        self.namespace(ctx, name, _R.GET_METADEF_OBJECT)
        return _object(self._entry(name, EntryKind.OBJECT, object_name))

    def create_object(self, ctx: RequestContext, name: str, body: object) -> MetaObject:
        obj = parse_object(_body(body, "an object"))
        self.namespace(ctx, name, _R.ADD_METADEF_OBJECT)
        return _object(self.repo.add_entry(name, EntryKind.OBJECT, obj.name, _object_body(obj)))

    def update_object(self, ctx: RequestContext, name: str, object_name: str, body: object) -> MetaObject:
        obj = parse_object(_body(body, "an object"))
        self.namespace(ctx, name, _R.MODIFY_METADEF_OBJECT)
        return _object(
            self.repo.replace_entry(name, EntryKind.OBJECT, object_name, obj.name, _object_body(obj))
        )

    def delete_object(self, ctx: RequestContext, name: str, object_name: str) -> None:
        namespace = self.namespace(ctx, name, _R.DELETE_METADEF_OBJECT)
        self._entry(name, EntryKind.OBJECT, object_name)
        self._unprotected(namespace, f"its object {object_name}")
        self.repo.remove_entry(name, EntryKind.OBJECT, object_name)

    def _entry(self, name: str, kind: EntryKind, entry_name: str) -> Entry:
        entry = self.repo.find_entry(name, kind, entry_name)
        if entry is None:
            raise NotFound(f"Metadata definition {kind} {entry_name} not found in namespace {name}.")
        return entry

    # -- properties ----------------------------------------------------------------------------------

    def list_properties(self, ctx: RequestContext, name: str) -> dict[str, Mapping[str, Any]]:
        self.namespace(ctx, name, _R.GET_METADEF_PROPERTIES)
        return {e.name: e.body for e in self.repo.entries(name, EntryKind.PROPERTY)}

    def show_property(
        self, ctx: RequestContext, name: str, property_name: str, resource_type: str | None = None
    ) -> tuple[str, Mapping[str, Any]]:
        """A property by name, or by its prefixed name for ``resource_type``: (name shown, definition)."""
        self.namespace(ctx, name, _R.GET_METADEF_PROPERTY)
        if resource_type is not None:
            association = next(
                (a for a in self.repo.associations([name])[name] if a.name == resource_type), None
            )
            if association is None:
                raise NotFound(f"Namespace {name} is not associated with resource type {resource_type}.")
            stripped = split_prefix(property_name, association.prefix)
            if association.prefix and stripped == property_name:
                raise NotFound(
                    f"Property {property_name} does not start with prefix {association.prefix} of "
                    f"resource type {resource_type}."
                )
            entry = self._entry(name, EntryKind.PROPERTY, stripped)
            return property_name, entry.body
        entry = self._entry(name, EntryKind.PROPERTY, property_name)
        return entry.name, entry.body

    @staticmethod
    def _property(body: object) -> tuple[str, dict[str, Any]]:
        document = _body(body, "a property")
        prop_name = document.get("name")
        definition = parse_property(prop_name, document)
        return str(prop_name), definition

    def create_property(self, ctx: RequestContext, name: str, body: object) -> tuple[str, Mapping[str, Any]]:
        prop_name, definition = self._property(body)
        self.namespace(ctx, name, _R.ADD_METADEF_PROPERTY)
        entry = self.repo.add_entry(name, EntryKind.PROPERTY, prop_name, definition)
        return entry.name, entry.body

    def update_property(
        self, ctx: RequestContext, name: str, property_name: str, body: object
    ) -> tuple[str, Mapping[str, Any]]:
        prop_name, definition = self._property(body)
        self.namespace(ctx, name, _R.MODIFY_METADEF_PROPERTY)
        entry = self.repo.replace_entry(name, EntryKind.PROPERTY, property_name, prop_name, definition)
        return entry.name, entry.body

    def delete_property(self, ctx: RequestContext, name: str, property_name: str) -> None:
        namespace = self.namespace(ctx, name, _R.REMOVE_METADEF_PROPERTY)
        self._entry(name, EntryKind.PROPERTY, property_name)
        self._unprotected(namespace, f"its property {property_name}")
        self.repo.remove_entry(name, EntryKind.PROPERTY, property_name)

    # -- tags ----------------------------------------------------------------------------------------

    def list_tags(self, ctx: RequestContext, name: str) -> list[Tag]:
        self.namespace(ctx, name, _R.GET_METADEF_TAGS)
        return [Tag(e.name, e.created_at, e.updated_at) for e in self.repo.entries(name, EntryKind.TAG)]

    def show_tag(self, ctx: RequestContext, name: str, tag_name: str) -> Tag:
        self.namespace(ctx, name, _R.GET_METADEF_TAG)
        entry = self._entry(name, EntryKind.TAG, tag_name)
        return Tag(entry.name, entry.created_at, entry.updated_at)

    def create_tag(self, ctx: RequestContext, name: str, tag_name: str) -> Tag:
        parse_tag_name(tag_name)
        self.namespace(ctx, name, _R.ADD_METADEF_TAG)
        entry = self.repo.add_entry(name, EntryKind.TAG, tag_name, {})
        return Tag(entry.name, entry.created_at, entry.updated_at)

    def create_tags(self, ctx: RequestContext, name: str, body: object, *, append: bool) -> list[Tag]:
        """``POST .../tags``: replace every tag with the given ones, or add them when ``append``."""
        document = _body(body, "tags")
        if set(document) != {"tags"}:
            raise InvalidInput('The request body must be {"tags": [{"name": ...}, ...]} and nothing else.')
        tags = parse_tags(document["tags"])
        self.namespace(ctx, name, _R.ADD_METADEF_TAGS)
        if not append:
            self.repo.remove_entries(name, EntryKind.TAG)
        created = [self.repo.add_entry(name, EntryKind.TAG, tag.name, {}) for tag in tags]
        return [Tag(e.name, e.created_at, e.updated_at) for e in created]

    def update_tag(self, ctx: RequestContext, name: str, tag_name: str, body: object) -> Tag:
        document = _body(body, "a tag")
        if set(document) - {"name"}:
            raise InvalidInput('The request body must be {"name": "<new tag name>"}.')
        new_name = parse_tag_name(document.get("name"))
        self.namespace(ctx, name, _R.MODIFY_METADEF_TAG)
        entry = self.repo.replace_entry(name, EntryKind.TAG, tag_name, new_name, {})
        return Tag(entry.name, entry.created_at, entry.updated_at)

    def delete_tag(self, ctx: RequestContext, name: str, tag_name: str) -> None:
        namespace = self.namespace(ctx, name, _R.DELETE_METADEF_TAG)
        self._entry(name, EntryKind.TAG, tag_name)
        self._unprotected(namespace, f"its tag {tag_name}")
        self.repo.remove_entry(name, EntryKind.TAG, tag_name)

    # -- resource types ------------------------------------------------------------------------------

    def list_resource_types(self, ctx: RequestContext) -> list[ResourceType]:
        self._own_project(ctx, _R.LIST_METADEF_RESOURCE_TYPES)
        return self.repo.resource_types()

    def list_associations(self, ctx: RequestContext, name: str) -> list[Association]:
        self.namespace(ctx, name, _R.GET_METADEF_RESOURCE_TYPE)
        return self.repo.associations([name])[name]

    def add_association(self, ctx: RequestContext, name: str, body: object) -> Association:
        association = parse_association(_body(body, "a resource type association"))
        self.namespace(ctx, name, _R.ADD_METADEF_RESOURCE_TYPE_ASSOCIATION)
        return self.repo.add_association(name, association)

    def remove_association(self, ctx: RequestContext, name: str, resource_type: str) -> None:
        namespace = self.namespace(ctx, name, _R.REMOVE_METADEF_RESOURCE_TYPE_ASSOCIATION)
        if not any(a.name == resource_type for a in self.repo.associations([name])[name]):
            raise NotFound(f"Namespace {name} is not associated with resource type {resource_type}.")
        self._unprotected(namespace, f"its association with {resource_type}")
        self.repo.remove_association(name, resource_type)

    # -- definitions files ---------------------------------------------------------------------------

    def export_all(self) -> list[NamespaceView]:
        """Every namespace with its contents (for ``glimpse-server db export-metadefs``; no policy)."""
        query = NamespaceQuery(limit=1_000_000, sort_key="namespace", sort_dir="asc")
        return [self._full(ns) for ns in self.repo.list_namespaces(query, project_id=None, admin=True)]

    def load_document(self, body: object, *, overwrite: bool) -> str:
        """Store one definitions file (no policy); an existing namespace is kept unless ``overwrite``.

        Returns ``created``, ``replaced`` or ``skipped``.
        """
        document = parse_namespace(body, default_owner=None)
        name = document.namespace.namespace
        if self.repo.find_namespace(name) is not None:
            if not overwrite:
                return "skipped"
            self.repo.delete_namespace(name)
            self.store_document(document)
            return "replaced"
        self.store_document(document)
        return "created"
