"""Images: create, read, list page by page, update with a JSON patch, delete, tags, (de)activation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from ._config import ClientConfig
from ._core import AsyncDriver, Call, Emit, Feed, Flow, SyncDriver, idempotent, request, send, single
from ._models import Image

PATCH_MEDIA_TYPE = "application/openstack-images-v2.1-json-patch"
_CORE_FIELDS = frozenset(
    {
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "min_ram",
        "min_disk",
        "container_format",
        "disk_format",
        "tags",
    }
)


def _image(response: httpx.Response) -> Image:
    return Image.from_json(response.json())


def _patch_ops(current: Image, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for key, value in changes.items():
        path = f"/{key}"
        if value is None:
            ops.append({"op": "remove", "path": path})
        elif key in _CORE_FIELDS or key in current.properties:
            ops.append({"op": "replace", "path": path, "value": value})
        else:
            ops.append({"op": "add", "path": path, "value": value})
    return ops


def create_image(config: ClientConfig, fields: Mapping[str, Any]) -> Flow[Image]:
    """Create the image, with an ``Idempotency-Key``: a broken connection is retried without
    creating a second image."""
    response = yield from idempotent(Call("POST", "/v2/images", json=dict(fields)), config)
    return _image(response)


def get_image(image_id: str) -> Flow[Image]:
    return single(Call("GET", f"/v2/images/{image_id}"), _image)


def list_images(filters: Mapping[str, Any], page_size: int | None) -> Feed[Image]:
    """Every matching image, following ``next`` links page by page."""
    params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()}
    if page_size is not None:
        params["limit"] = str(page_size)
    call: Call | None = Call("GET", "/v2/images", params=params)
    while call is not None:
        body = (yield from request(call)).json()
        for item in body["images"]:
            yield Emit(Image.from_json(item))
        nxt = body.get("next")
        call = Call("GET", nxt) if nxt else None


def update_image(image_id: str, changes: Mapping[str, Any]) -> Flow[Image]:
    """The image read, then ``changes`` sent as a JSON patch against what it holds."""
    ops = _patch_ops((yield from get_image(image_id)), changes)
    call = Call("PATCH", f"/v2/images/{image_id}", json=ops, headers={"Content-Type": PATCH_MEDIA_TYPE})
    return (yield from single(call, _image))


def delete_image(image_id: str) -> Flow[None]:
    return send(Call("DELETE", f"/v2/images/{image_id}"))


def add_tag(image_id: str, tag: str) -> Flow[None]:
    return send(Call("PUT", f"/v2/images/{image_id}/tags/{tag}"))


def remove_tag(image_id: str, tag: str) -> Flow[None]:
    return send(Call("DELETE", f"/v2/images/{image_id}/tags/{tag}"))


def deactivate_image(image_id: str) -> Flow[None]:
    return send(Call("POST", f"/v2/images/{image_id}/actions/deactivate"))


def reactivate_image(image_id: str) -> Flow[None]:
    return send(Call("POST", f"/v2/images/{image_id}/actions/reactivate"))


class SyncImages(SyncDriver):
    def create_image(self, **fields: Any) -> Image:
        return self._run(create_image(self.config, fields))

    def get_image(self, image_id: str) -> Image:
        return self._run(get_image(image_id))

    def list_images(self, *, page_size: int | None = None, **filters: Any) -> Iterator[Image]:
        """Every matching image, following ``next`` links page by page."""
        yield from self._stream(list_images(filters, page_size))

    def update_image(self, image_id: str, changes: Mapping[str, Any]) -> Image:
        """Apply ``changes`` as a JSON patch; a ``None`` value removes the property."""
        return self._run(update_image(image_id, changes))

    def delete_image(self, image_id: str) -> None:
        self._run(delete_image(image_id))

    def add_tag(self, image_id: str, tag: str) -> None:
        self._run(add_tag(image_id, tag))

    def remove_tag(self, image_id: str, tag: str) -> None:
        self._run(remove_tag(image_id, tag))

    def deactivate_image(self, image_id: str) -> None:
        self._run(deactivate_image(image_id))

    def reactivate_image(self, image_id: str) -> None:
        self._run(reactivate_image(image_id))


class AsyncImages(AsyncDriver):
    async def create_image(self, **fields: Any) -> Image:
        return await self._run(create_image(self.config, fields))

    async def get_image(self, image_id: str) -> Image:
        return await self._run(get_image(image_id))

    async def list_images(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[Image]:
        """Every matching image, following ``next`` links page by page."""
        async for image in self._stream(list_images(filters, page_size)):
            yield image

    async def update_image(self, image_id: str, changes: Mapping[str, Any]) -> Image:
        """Apply ``changes`` as a JSON patch; a ``None`` value removes the property."""
        return await self._run(update_image(image_id, changes))

    async def delete_image(self, image_id: str) -> None:
        await self._run(delete_image(image_id))

    async def add_tag(self, image_id: str, tag: str) -> None:
        await self._run(add_tag(image_id, tag))

    async def remove_tag(self, image_id: str, tag: str) -> None:
        await self._run(remove_tag(image_id, tag))

    async def deactivate_image(self, image_id: str) -> None:
        await self._run(deactivate_image(image_id))

    async def reactivate_image(self, image_id: str) -> None:
        await self._run(reactivate_image(image_id))
