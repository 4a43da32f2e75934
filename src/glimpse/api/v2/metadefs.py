"""/v2/metadefs/*: metadata definitions (namespaces, objects, properties, tags, resource types)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse, empty
from glimpse.api.v2.openapi import (
    METADEF_ASSOCIATION_BODY,
    METADEF_LIST_PARAMETERS,
    METADEF_NAMESPACE_BODY,
    METADEF_OBJECT_BODY,
    METADEF_PROPERTY_BODY,
    METADEF_TAG_BODY,
    METADEF_TAGS_BODY,
)
from glimpse.api.v2.views import isotime
from glimpse.domain.metadefs import Association, EntryKind, MetaObject, NamespaceQuery, Tag
from glimpse.errors import InvalidInput
from glimpse.ports import Repositories
from glimpse.services.metadefs import MetadefService, NamespaceView

router = APIRouter(prefix="/v2/metadefs", tags=["metadefs"])

T = TypeVar("T")
NS = "/v2/metadefs/namespaces"
SORT_KEYS = ("created_at", "updated_at", "namespace")


def _url(*parts: str) -> str:
    return "/".join([NS, *(quote(p, safe=":") for p in parts)])


async def _call(request: Request, fn: Callable[[MetadefService], T], *, readonly: bool = False) -> T:
    rt = deps.runtime(request)

    def work(repos: Repositories) -> T:
        return fn(MetadefService(repos, rt.policy))

    return await rt.run(work, readonly=readonly)


def _stamps(value: Any) -> dict[str, Any]:
    return {"created_at": isotime(value.created_at), "updated_at": isotime(value.updated_at)}


def association_view(association: Association) -> dict[str, Any]:
    body: dict[str, Any] = {"name": association.name}
    if association.prefix is not None:
        body["prefix"] = association.prefix
    if association.properties_target is not None:
        body["properties_target"] = association.properties_target
    return {**body, **_stamps(association)}


def property_view(name: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, **definition}


def object_view(namespace: str, obj: MetaObject) -> dict[str, Any]:
    body: dict[str, Any] = {"name": obj.name}
    if obj.description is not None:
        body["description"] = obj.description
    body["required"] = list(obj.required)
    body["properties"] = {name: property_view(name, d) for name, d in obj.properties.items()}
    return {
        **body,
        **_stamps(obj),
        "schema": "/v2/schemas/metadefs/object",
        "self": _url(namespace, "objects", obj.name),
    }


def tag_view(tag: Tag) -> dict[str, Any]:
    return {"name": tag.name, **_stamps(tag)}


def namespace_view(view: NamespaceView, *, full: bool) -> dict[str, Any]:
    ns = view.namespace
    body: dict[str, Any] = {"namespace": ns.namespace}
    for key in ("display_name", "description"):
        if getattr(ns, key) is not None:
            body[key] = getattr(ns, key)
    body.update({"visibility": ns.visibility, "protected": ns.protected})
    if ns.owner is not None:
        body["owner"] = ns.owner
    if view.associations:
        body["resource_type_associations"] = [association_view(a) for a in view.associations]
    if full and view.properties:
        body["properties"] = {name: property_view(name, d) for name, d in view.properties.items()}
    if full and view.objects:
        body["objects"] = [
            {k: v for k, v in object_view(ns.namespace, o).items() if k not in ("schema", "self")}
            for o in view.objects
        ]
    if full and view.tags:
        body["tags"] = [{"name": t.name} for t in view.tags]
    body.update(_stamps(ns))
    body.update({"schema": "/v2/schemas/metadefs/namespace", "self": _url(ns.namespace)})
    return body


def _query(request: Request) -> NamespaceQuery:
    params = request.query_params
    settings = deps.runtime(request).settings
    raw_limit = params.get("limit")
    limit = settings.limit_param_default
    if raw_limit is not None:
        if not raw_limit.isdigit():
            raise InvalidInput(f"limit must be a whole number of 0 or more, not {raw_limit!r}.")
        limit = int(raw_limit)
    sort_key = params.get("sort_key", "created_at")
    if sort_key not in SORT_KEYS:
        raise InvalidInput(f"Invalid sort_key {sort_key!r}; use one of {', '.join(SORT_KEYS)}.")
    sort_dir = params.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise InvalidInput(f"Invalid sort_dir {sort_dir!r}; use asc or desc.")
    visibility = params.get("visibility")
    if visibility is not None and visibility not in ("public", "private"):
        raise InvalidInput(f"Invalid visibility {visibility!r}; use public or private.")
    resource_types = tuple(t.strip() for t in params.get("resource_types", "").split(",") if t.strip())
    return NamespaceQuery(
        limit=min(limit, settings.api_limit_max),
        marker=params.get("marker"),
        sort_key=sort_key,
        sort_dir=sort_dir,
        visibility=visibility,
        resource_types=resource_types,
    )


def _add_delete_all(kind: EntryKind, plural: str) -> None:
    """DELETE /namespaces/{namespace}/<plural>: removes all the namespace's entries of one kind (the
    route is named ``delete_<plural>``)."""

    async def delete_all(request: Request, namespace: str) -> Response:
        ctx = deps.context(request)
        await _call(request, lambda svc: svc.delete_all(ctx, namespace, kind))
        return empty()

    router.add_api_route(
        f"/namespaces/{{namespace}}/{plural}",
        delete_all,
        methods=["DELETE"],
        status_code=204,
        name=f"delete_{plural}",
    )


# -- namespaces ---------------------------------------------------------------------------------------


@router.get("/namespaces", openapi_extra=METADEF_LIST_PARAMETERS)
async def list_namespaces(request: Request) -> Response:
    ctx, query = deps.context(request), _query(request)
    found = await _call(request, lambda svc: svc.list_namespaces(ctx, query), readonly=True)
    kept = {k: v for k, v in request.query_params.items() if k not in ("marker",)}
    body: dict[str, Any] = {
        "namespaces": [namespace_view(v, full=False) for v in found],
        "first": NS + (f"?{urlencode(kept)}" if kept else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if found and len(found) == query.limit:
        body["next"] = f"{NS}?{urlencode({**kept, 'marker': found[-1].namespace.namespace})}"
    return JSONResponse(body)


@router.post("/namespaces", openapi_extra=METADEF_NAMESPACE_BODY)
async def create_namespace(request: Request) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    view = await _call(request, lambda svc: svc.create_namespace(ctx, body))
    return JSONResponse(namespace_view(view, full=True), status_code=201)


@router.get("/namespaces/{namespace}")
async def show_namespace(request: Request, namespace: str) -> Response:
    ctx, resource_type = deps.context(request), request.query_params.get("resource_type")
    view = await _call(request, lambda svc: svc.show_namespace(ctx, namespace, resource_type), readonly=True)
    return JSONResponse(namespace_view(view, full=True))


@router.put("/namespaces/{namespace}", openapi_extra=METADEF_NAMESPACE_BODY)
async def update_namespace(request: Request, namespace: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    view = await _call(request, lambda svc: svc.update_namespace(ctx, namespace, body))
    return JSONResponse(namespace_view(view, full=False))


@router.delete("/namespaces/{namespace}", status_code=204)
async def delete_namespace(request: Request, namespace: str) -> Response:
    ctx = deps.context(request)
    await _call(request, lambda svc: svc.delete_namespace(ctx, namespace))
    return empty()


# -- objects ------------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/objects")
async def list_objects(request: Request, namespace: str) -> Response:
    ctx = deps.context(request)
    found = await _call(request, lambda svc: svc.list_objects(ctx, namespace), readonly=True)
    return JSONResponse(
        {"objects": [object_view(namespace, o) for o in found], "schema": "/v2/schemas/metadefs/objects"}
    )


@router.post("/namespaces/{namespace}/objects", openapi_extra=METADEF_OBJECT_BODY)
async def create_object(request: Request, namespace: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    obj = await _call(request, lambda svc: svc.create_object(ctx, namespace, body))
    return JSONResponse(object_view(namespace, obj), status_code=201)


_add_delete_all(EntryKind.OBJECT, "objects")


@router.get("/namespaces/{namespace}/objects/{name}")
async def show_object(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    obj = await _call(request, lambda svc: svc.show_object(ctx, namespace, name), readonly=True)
    return JSONResponse(object_view(namespace, obj))


@router.put("/namespaces/{namespace}/objects/{name}", openapi_extra=METADEF_OBJECT_BODY)
async def update_object(request: Request, namespace: str, name: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    obj = await _call(request, lambda svc: svc.update_object(ctx, namespace, name, body))
    return JSONResponse(object_view(namespace, obj))


@router.delete("/namespaces/{namespace}/objects/{name}", status_code=204)
async def delete_object(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    await _call(request, lambda svc: svc.delete_object(ctx, namespace, name))
    return empty()


# -- properties ---------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/properties")
async def list_properties(request: Request, namespace: str) -> Response:
    ctx = deps.context(request)
    found = await _call(request, lambda svc: svc.list_properties(ctx, namespace), readonly=True)
    return JSONResponse(
        {
            "properties": {name: property_view(name, d) for name, d in found.items()},
            "schema": "/v2/schemas/metadefs/properties",
        }
    )


@router.post("/namespaces/{namespace}/properties", openapi_extra=METADEF_PROPERTY_BODY)
async def create_property(request: Request, namespace: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    name, definition = await _call(request, lambda svc: svc.create_property(ctx, namespace, body))
    return JSONResponse(property_view(name, definition), status_code=201)


_add_delete_all(EntryKind.PROPERTY, "properties")


@router.get("/namespaces/{namespace}/properties/{name}")
async def show_property(request: Request, namespace: str, name: str) -> Response:
    ctx, resource_type = deps.context(request), request.query_params.get("resource_type")
    shown, definition = await _call(
        request, lambda svc: svc.show_property(ctx, namespace, name, resource_type), readonly=True
    )
    return JSONResponse(property_view(shown, definition))


@router.put("/namespaces/{namespace}/properties/{name}", openapi_extra=METADEF_PROPERTY_BODY)
async def update_property(request: Request, namespace: str, name: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    shown, definition = await _call(request, lambda svc: svc.update_property(ctx, namespace, name, body))
    return JSONResponse(property_view(shown, definition))


@router.delete("/namespaces/{namespace}/properties/{name}", status_code=204)
async def delete_property(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    await _call(request, lambda svc: svc.delete_property(ctx, namespace, name))
    return empty()


# -- tags ---------------------------------------------------------------------------------------------


@router.get("/namespaces/{namespace}/tags")
async def list_tags(request: Request, namespace: str) -> Response:
    ctx = deps.context(request)
    found = await _call(request, lambda svc: svc.list_tags(ctx, namespace), readonly=True)
    return JSONResponse({"tags": [tag_view(t) for t in found]})


@router.post("/namespaces/{namespace}/tags", openapi_extra=METADEF_TAGS_BODY)
async def create_tags(request: Request, namespace: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    append = request.headers.get("x-openstack-append", "false").strip().lower()
    if append not in ("true", "false"):
        raise InvalidInput(f"X-Openstack-Append must be true or false, not {append!r}.")
    found = await _call(request, lambda svc: svc.create_tags(ctx, namespace, body, append=append == "true"))
    return JSONResponse({"tags": [{"name": t.name} for t in found]}, status_code=201)


_add_delete_all(EntryKind.TAG, "tags")


@router.get("/namespaces/{namespace}/tags/{name}")
async def show_tag(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    tag = await _call(request, lambda svc: svc.show_tag(ctx, namespace, name), readonly=True)
    return JSONResponse(tag_view(tag))


@router.post("/namespaces/{namespace}/tags/{name}")
async def create_tag(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    tag = await _call(request, lambda svc: svc.create_tag(ctx, namespace, name))
    return JSONResponse(tag_view(tag), status_code=201)


@router.put("/namespaces/{namespace}/tags/{name}", openapi_extra=METADEF_TAG_BODY)
async def update_tag(request: Request, namespace: str, name: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    tag = await _call(request, lambda svc: svc.update_tag(ctx, namespace, name, body))
    return JSONResponse(tag_view(tag))


@router.delete("/namespaces/{namespace}/tags/{name}", status_code=204)
async def delete_tag(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    await _call(request, lambda svc: svc.delete_tag(ctx, namespace, name))
    return empty()


# -- resource types -----------------------------------------------------------------------------------


@router.get("/resource_types")
async def list_resource_types(request: Request) -> Response:
    ctx = deps.context(request)
    found = await _call(request, lambda svc: svc.list_resource_types(ctx), readonly=True)
    return JSONResponse({"resource_types": [{"name": t.name, **_stamps(t)} for t in found]})


@router.get("/namespaces/{namespace}/resource_types")
async def list_associations(request: Request, namespace: str) -> Response:
    ctx = deps.context(request)
    found = await _call(request, lambda svc: svc.list_associations(ctx, namespace), readonly=True)
    return JSONResponse({"resource_type_associations": [association_view(a) for a in found]})


@router.post("/namespaces/{namespace}/resource_types", openapi_extra=METADEF_ASSOCIATION_BODY)
async def add_association(request: Request, namespace: str) -> Response:
    ctx, body = deps.context(request), await deps.json_body(request)
    association = await _call(request, lambda svc: svc.add_association(ctx, namespace, body))
    return JSONResponse(association_view(association), status_code=201)


@router.delete("/namespaces/{namespace}/resource_types/{name}", status_code=204)
async def remove_association(request: Request, namespace: str, name: str) -> Response:
    ctx = deps.context(request)
    await _call(request, lambda svc: svc.remove_association(ctx, namespace, name))
    return empty()
