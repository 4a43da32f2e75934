"""Members: the projects an image is shared with, and their answers."""

from __future__ import annotations

import httpx

from ._core import AsyncDriver, Call, Flow, SyncDriver, send, single
from ._models import Member


def _member(response: httpx.Response) -> Member:
    return Member.from_json(response.json())


def _members(response: httpx.Response) -> list[Member]:
    return [Member.from_json(m) for m in response.json()["members"]]


def add_member(image_id: str, member_id: str) -> Flow[Member]:
    return single(Call("POST", f"/v2/images/{image_id}/members", json={"member": member_id}), _member)


def list_members(image_id: str) -> Flow[list[Member]]:
    return single(Call("GET", f"/v2/images/{image_id}/members"), _members)


def update_member(image_id: str, member_id: str, status: str) -> Flow[Member]:
    call = Call("PUT", f"/v2/images/{image_id}/members/{member_id}", json={"status": status})
    return single(call, _member)


def remove_member(image_id: str, member_id: str) -> Flow[None]:
    return send(Call("DELETE", f"/v2/images/{image_id}/members/{member_id}"))


class SyncMembers(SyncDriver):
    def add_member(self, image_id: str, member_id: str) -> Member:
        return self._run(add_member(image_id, member_id))

    def list_members(self, image_id: str) -> list[Member]:
        return self._run(list_members(image_id))

    def update_member(self, image_id: str, member_id: str, status: str) -> Member:
        return self._run(update_member(image_id, member_id, status))

    def remove_member(self, image_id: str, member_id: str) -> None:
        self._run(remove_member(image_id, member_id))


class AsyncMembers(AsyncDriver):
    async def add_member(self, image_id: str, member_id: str) -> Member:
        return await self._run(add_member(image_id, member_id))

    async def list_members(self, image_id: str) -> list[Member]:
        return await self._run(list_members(image_id))

    async def update_member(self, image_id: str, member_id: str, status: str) -> Member:
        return await self._run(update_member(image_id, member_id, status))

    async def remove_member(self, image_id: str, member_id: str) -> None:
        await self._run(remove_member(image_id, member_id))
