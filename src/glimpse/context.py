"""The identity and request metadata every service call carries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking, and under which request id.

    Built by the auth layer (no-auth headers today, Keystone tokens later) and passed explicitly to every
    service. ``to_dict``/``from_dict`` let jobs carry the caller's context.
    """

    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    request_id: str = field(default_factory=new_request_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": list(self.roles),
            "is_admin": self.is_admin,
            "request_id": self.request_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestContext:
        return cls(
            user_id=data.get("user_id"),
            project_id=data.get("project_id"),
            roles=tuple(data.get("roles") or ()),
            is_admin=bool(data.get("is_admin")),
            request_id=str(data.get("request_id") or new_request_id()),
        )

    @classmethod
    def admin(cls, request_id: str | None = None) -> RequestContext:
        """A context for the service's own housekeeping work."""
        return cls(
            user_id=None,
            project_id=None,
            roles=("admin",),
            is_admin=True,
            request_id=request_id or new_request_id(),
        )
