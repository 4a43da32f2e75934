"""The identity and request metadata every service call carries."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, fields
from typing import Any


def new_request_id() -> str:
    """A fresh ``req-<uuid4>``. Request ids must be unique, not secret: they come from the ``random``
    module's generator (seeded from the system at start-up and again in a forked child), so making
    one costs no system call. ``uuid.uuid4()`` reads the kernel's random source every time, and on
    the event loop's thread that read hands the GIL to whichever worker thread wants it."""
    return f"req-{uuid.UUID(int=random.getrandbits(128), version=4)}"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the caller is, as a validated Keystone token (or, without authentication, the headers) says.

    Built in one place, ``glimpse.api.auth.identity_from_headers``, from the headers keystonemiddleware
    sets; a :class:`RequestContext` takes every one of these fields from it (:meth:`RequestContext.of`).
    The names, domains and scope come from the token; ``system_scope`` is ``"all"`` for a system-scoped
    token. ``service_*`` describe a valid service token sent beside the user's (``X-Service-Token``, as
    compute and volume services do when they act for a user): the request still runs as the user, and
    the service's roles are only kept for the policy and the logs.
    """

    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...] = ()
    user_name: str | None = None
    project_name: str | None = None
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    system_scope: str | None = None
    service_user_id: str | None = None
    service_project_id: str | None = None
    service_roles: tuple[str, ...] = ()


#: The fields a :class:`RequestContext` takes from an :class:`Identity`, in their order.
IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Identity))
#: The fields that hold several values (tuples, kept as lists by ``RequestContext.to_dict``).
_LISTS: frozenset[str] = frozenset(f.name for f in fields(Identity) if f.default == ())


@dataclass(frozen=True, slots=True)
class RequestContext(Identity):
    """Who is asking (every :class:`Identity` field, meaning what it means there), and under which
    request id.

    Built for a request by :meth:`of` from the caller's :class:`Identity` (``glimpse.api.deps.context``)
    and passed explicitly to every service. ``to_dict``/``from_dict`` let jobs carry the caller's
    context.
    """

    is_admin: bool = False
    request_id: str = field(default_factory=new_request_id)

    @classmethod
    def of(cls, identity: Identity, request_id: str, is_admin: bool = False) -> RequestContext:
        """The context of a request made by ``identity``: every identity field as the identity has it."""
        taken: dict[str, Any] = {name: getattr(identity, name) for name in IDENTITY_FIELDS}
        return cls(**taken, request_id=request_id, is_admin=is_admin)

    @property
    def identity(self) -> Identity:
        """The caller's identity, without the request's id and the admin flag."""
        taken: dict[str, Any] = {name: getattr(self, name) for name in IDENTITY_FIELDS}
        return Identity(**taken)

    def to_dict(self) -> dict[str, Any]:
        """Every field, tuples as lists: what a task keeps of its caller, and an event's context."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestContext:
        """The context ``to_dict`` gave (unknown keys ignored, missing ones defaulted)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if f.name in _LISTS:
                values[f.name] = tuple(value or ())
            elif f.name == "is_admin":
                values[f.name] = bool(value)
            elif f.name == "request_id":
                values[f.name] = str(value or new_request_id())
            else:
                values[f.name] = None if value is None else str(value)
        return cls(**values)

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
